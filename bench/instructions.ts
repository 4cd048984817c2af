/**
 * Instructions per request, counted by valgrind (callgrind), for a machine too busy for
 * requests per second to mean anything: the count does not depend on what else runs. It
 * leaves out the kernel (the sockets' own work, the same for every proxy here) and counts
 * V8's garbage collection and JIT code like any other code.
 *
 *   node bench/instructions.ts [--requests 3000] [--warmup 3000] [--connections 8] [floor] [gatehouse[=DIR]] [metrics[=DIR]] ...
 *
 * `floor` is bench/floor-proxy.ts; `gatehouse` is this checkout's Gatehouse with a valid
 * session and the signed assertion, log level info to a file (bench/run.ts's scenario c);
 * `gatehouse=DIR` the same from another checkout (with node_modules), to compare a change;
 * `metrics` (or `metrics=DIR`) is `gatehouse` with Prometheus metrics on (bench/run.ts's m).
 * Each target runs under `valgrind --tool=callgrind --instr-atstart=no`: counting is switched
 * on (callgrind_control -i on) after the warm-up, for the measured requests only.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { serveV8Flags } from '../src/cli/v8-flags.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: v, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: 'string', default: '1000' },
    warmup: { type: 'string', default: '3000' },
    connections: { type: 'string', default: '8' },
    'node-flags': { type: 'string', default: '' },
  },
});
const REQUESTS = Number(v.requests);
const WARMUP = Number(v.warmup);
const CONNECTIONS = Number(v.connections);
const targets = positionals.length ? positionals : ['floor', 'gatehouse'];
const tmp = mkdtempSync(join(tmpdir(), 'gatehouse-instr-'));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function run(argv: string[], o: { cwd?: string; out?: string } = {}): ChildProcess {
  const fd = o.out ? openSync(o.out, 'a') : 'ignore';
  const c = spawn(argv[0]!, argv.slice(1), {
    cwd: o.cwd ?? ROOT,
    stdio: ['ignore', fd === 'ignore' ? 'pipe' : fd, fd],
  });
  if (typeof fd === 'number') closeSync(fd);
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

async function until(ok: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null) return;
  const done = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 120_000);
  await done;
  clearTimeout(t);
}

/** `n` GETs over `CONNECTIONS` keep-alive connections, each checked. */
async function load(url: string, headers: Record<string, string>, n: number): Promise<void> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: CONNECTIONS, pipelining: 1 });
  let left = n;
  const worker = async () => {
    while (left-- > 0) {
      const r = await pool.request({ path: u.pathname, method: 'GET', headers });
      await r.body.text();
      if (r.statusCode !== 200) throw new Error(`${url}: ${r.statusCode}`);
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  await pool.close();
}

const port = await freePort();
const upstream = run([process.execPath, join(ROOT, 'bench/upstream.ts'), String(port)]);
const app = `http://127.0.0.1:${port}`;
await until(async () => (await fetch(app)).ok, 20_000, 'the app');

/** A Gatehouse dir with a config, a store and a session, made once without valgrind. */
async function prepare(
  root: string,
  id: string,
  metrics: boolean,
): Promise<{ config: string; cookie: string; port: number }> {
  const dir = join(tmp, id);
  const gport = await freePort();
  const config = join(dir, 'gatehouse.yaml');
  execFileSync('mkdir', ['-p', dir]);
  writeFileSync(
    config,
    stringify({
      publicUrl: `http://127.0.0.1:${gport}`,
      // Under valgrind a request takes a hundred times as long: no timeout may cut it off.
      listen: {
        host: '127.0.0.1',
        port: gport,
        timeouts: { headers: '10m', request: '1h', idle: '1h', keepAlive: '10m' },
      },
      store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
      secrets: { key: randomBytes(32).toString('base64') },
      name: 'bench',
      upstream: app,
      routes: [{ path: '/open/**', access: 'public' }],
      log: { level: 'info' },
      ...(metrics ? { metrics: { listen: '127.0.0.1:0' } } : {}),
    }),
  );
  const gh = run([process.execPath, 'src/cli/main.ts', 'serve', '--config', config], { cwd: root });
  const url = `http://127.0.0.1:${gport}`;
  await until(async () => (await fetch(`${url}/.auth/health`)).ok, 30_000, 'Gatehouse');
  const res = await fetch(`${url}/.auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ email: 'instr@example.com', password: 'correct horse battery staple 42' }),
  });
  const cookie = res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0]!)
    .find((c) => c.startsWith('gatehouse='));
  if (!cookie) throw new Error(`register: ${res.status}`);
  await stop(gh);
  return { config, cookie, port: gport };
}

const results: { target: string; perRequest: number; steady: number; gc: number }[] = [];

/**
 * Instructions spent in V8's optimizing compilers (TurboFan, Maglev) and in its garbage
 * collector while counting. A warm-up short enough for valgrind leaves some tiering-up inside
 * the counted requests, which a server that has run for a while no longer does: left out of
 * the "steady" figure. GC comes in discrete pauses, so a few hundred requests hold one more
 * or one fewer: shown apart, and "code" is steady without it.
 */
function compiling(file: string): { jit: number; gc: number } {
  const text = execFileSync('callgrind_annotate', ['--threshold=100', '--auto=no', file], {
    encoding: 'utf8',
    maxBuffer: 256 * 2 ** 20,
  });
  let jit = 0;
  let gc = 0;
  // The function table only: it ends at the second line of dashes after its header.
  const lines = text.slice(text.indexOf('file:function')).split('\n').slice(2);
  for (const line of lines) {
    if (line.startsWith('-----')) break;
    const m = /^\s*([\d,]+) /.exec(line);
    if (!m) continue;
    const n = Number(m[1]!.replaceAll(',', ''));
    if (
      /compiler::|maglev::|turboshaft::|v8::internal::Zone|RegisterAllocat|InstructionSelector|LiveRange|Pipeline|Typer|GraphReducer/.test(
        line,
      )
    )
      jit += n;
    else if (/Scaveng|MarkCompact|Sweeper|Evacuat|Marking|IteratePointers|Heap::/.test(line)) gc += n;
  }
  return { jit, gc };
}
for (const target of targets) {
  const [kind, dir] = target.split('=') as [string, string | undefined];
  const out = join(tmp, `${target.replace(/[^a-z0-9]/gi, '_')}.callgrind`);
  const valgrind = [
    'valgrind',
    '--tool=callgrind',
    '--instr-atstart=no',
    '--smc-check=all-non-file',
    `--callgrind-out-file=${out}`,
    process.execPath,
    // V8 compiles on background threads, which valgrind runs in turn with the main thread: code
    // would be optimized late, inside the counted requests. On the main thread, the warm-up
    // leaves the server as tiered-up as a long-running one.
    '--single-threaded',
    ...v['node-flags'].split(/\s+/).filter(Boolean),
  ];
  let child: ChildProcess;
  let url: string;
  let headers: Record<string, string> = { 'user-agent': 'gatehouse-bench', accept: 'application/json' };
  if (kind === 'floor') {
    process.env.FLOOR_KEEP_ALIVE_MS = '600000';
    child = run([...valgrind, join(ROOT, 'bench/floor-proxy.ts'), app]);
    const port = await new Promise<number>((resolve) => {
      let s = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        s += d;
        const m = /READY (\d+)/.exec(s);
        if (m) resolve(Number(m[1]));
      });
    });
    url = `http://127.0.0.1:${port}/open/item`;
    headers = { ...headers, cookie: `benchpad1=${'x'.repeat(43)}` };
  } else if (kind === 'gatehouse' || kind === 'metrics') {
    const root = dir ?? ROOT;
    const p = await prepare(root, target.replace(/[^a-z0-9]/gi, '_'), kind === 'metrics');
    // serve's own V8 flags given here: without them it would re-execute itself to add them,
    // and the new image would run outside valgrind.
    child = run([...valgrind, ...serveV8Flags([]), 'src/cli/main.ts', 'serve', '--config', p.config], {
      cwd: root,
      out: join(tmp, 'gatehouse-valgrind.log'),
    });
    await until(async () => (await fetch(`http://127.0.0.1:${p.port}/.auth/health`)).ok, 600_000, target);
    url = `http://127.0.0.1:${p.port}/home/item`;
    headers = { ...headers, cookie: p.cookie };
  } else throw new Error(`unknown target ${target} (floor, gatehouse[=DIR], metrics[=DIR])`);
  process.stderr.write(`${target}: warming up (${WARMUP} requests)\n`);
  await load(url, headers, WARMUP);
  execFileSync('callgrind_control', ['-i', 'on', String(child.pid)], { stdio: 'ignore' });
  process.stderr.write(`${target}: counting ${REQUESTS} requests\n`);
  await load(url, headers, REQUESTS);
  execFileSync('callgrind_control', ['-i', 'off', String(child.pid)], { stdio: 'ignore' });
  await stop(child);
  const text = readFileSync(out, 'utf8');
  const total = Number(/^totals: (\d+)/m.exec(text)?.[1] ?? NaN);
  const { jit, gc } = compiling(out);
  results.push({ target, perRequest: total / REQUESTS, steady: (total - jit) / REQUESTS, gc: gc / REQUESTS });
  process.stderr.write(
    `${target}: ${Math.round(total / REQUESTS).toLocaleString('en-US')} instructions/request, ${Math.round((100 * jit) / total)}% of them V8 compiling, ${Math.round((100 * gc) / total)}% GC\n`,
  );
}
await stop(upstream);
const floor = results.find((r) => r.target === 'floor');
const fmt = (n: number) => Math.round(n).toLocaleString('en-US').padStart(10);
process.stdout.write(
  `instructions per request: all; steady = without V8 compiling; GC (in steady); code = steady without GC\n${'target'.padEnd(28)} ${'all'.padStart(10)} ${'steady'.padStart(10)} ${'GC'.padStart(10)} ${'code'.padStart(10)}\n`,
);
for (const r of results)
  process.stdout.write(
    `${r.target.padEnd(28)} ${fmt(r.perRequest)} ${fmt(r.steady)} ${fmt(r.gc)} ${fmt(r.steady - r.gc)}${floor ? `  steady ${(r.steady / floor.steady).toFixed(2)}×, code ${((r.steady - r.gc) / (floor.steady - floor.gc)).toFixed(2)}× the floor's` : ''}\n`,
  );
