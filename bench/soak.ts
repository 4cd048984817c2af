/**
 * Memory over a long run at a fixed rate (issue 13): starts `gatehouse serve` as users run it
 * (SQLite, a master key, log level info to a file, `serve`'s own V8 flags), registers a user,
 * then prints the server's RSS (primary + workers) idle, after a saturation run of signed-in
 * requests (wrk, else autocannon), and every `sample` seconds through a long run of signed-in
 * requests at a fixed rate (bench/paced.ts), then once more after the load stops. Linux only.
 *
 *   node bench/soak.ts [--rate=1000] [--minutes=10] [--saturation=30] [--workers=1] [--sample=30]
 *
 * Each line says the load average, since the figures depend on what else the machine runs.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { autocannon, paced, wrk } from './lib/load.ts';
import { hasCommand, killAll, memory, start, stop, withDescendants } from './lib/system.ts';

const opt = (name: string, fallback: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.slice(name.length + 3)) : fallback;
};
const rate = opt('rate', 1000);
const minutes = opt('minutes', 10);
const saturationSeconds = opt('saturation', 30);
const workers = opt('workers', 1);
const sampleSeconds = opt('sample', 30);

process.on('exit', killAll);
process.on('SIGINT', () => process.exit(130));

const app = http.createServer((_req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end('{"ok":true,"service":"bench-upstream","padding":"xxxx"}');
});
await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
const probe = createServer();
await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
const port = (probe.address() as AddressInfo).port;
await new Promise<void>((r) => probe.close(() => r()));

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-soak-'));
const file = join(dir, 'gatehouse.yaml');
writeFileSync(
  file,
  [
    `publicUrl: http://127.0.0.1:${port}`,
    `listen: {host: 127.0.0.1, port: ${port}${workers > 1 ? `, workers: ${workers}` : ''}}`,
    `store: {type: sqlite, path: ${join(dir, 'g.db')}}`,
    `secrets: {key: ${randomBytes(32).toString('base64')}}`,
    `upstream: ${appUrl}`,
    'log: {level: info}',
    '',
  ].join('\n'),
);
const logFile = join(dir, 'gatehouse.log');
const log = openSync(logFile, 'a');
const child = start([process.execPath, 'src/cli/main.ts', 'serve', '--config', file], null, {
  stdio: ['ignore', log, log],
});
closeSync(log);
const url = `http://127.0.0.1:${port}`;
const deadline = Date.now() + 30_000;
for (;;) {
  if (child.exitCode !== null) throw new Error(`gatehouse exited:\n${readFileSync(logFile, 'utf8')}`);
  if (
    await fetch(`${url}/.auth/health`).then(
      (r) => r.ok,
      () => false,
    )
  )
    break;
  if (Date.now() > deadline) throw new Error(`gatehouse did not answer:\n${readFileSync(logFile, 'utf8')}`);
  await new Promise((r) => setTimeout(r, 200));
}
const res = await fetch(`${url}/.auth/register`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', accept: 'application/json' },
  body: JSON.stringify({ email: 'soak@example.com', password: 'correct horse battery staple 42' }),
});
const cookie = res.headers
  .getSetCookie()
  .map((c) => c.split(';')[0]!)
  .find((c) => c.startsWith('gatehouse='));
if (res.status !== 201 || !cookie) throw new Error(`register: ${res.status} ${await res.text()}`);
const request = { url: `${url}/soak`, headers: [['Cookie', cookie] as [string, string]] };
const check = await fetch(request.url, { headers: { cookie } });
if (check.status !== 200) throw new Error(`signed-in request: ${check.status}`);

const t0 = Date.now();
function rss(): string {
  const pids = withDescendants(child.pid);
  const each = pids.map((p) => memory(p)?.rssMiB ?? 0);
  const total = each.reduce((a, b) => a + b, 0);
  const parts = pids.length > 1 ? ` (${each.map((m) => m.toFixed(0)).join(' + ')})` : '';
  // PSS shares pages mapped by several processes (node's code, a cluster's forked pages) among them.
  const pss = pids.reduce((sum, p) => sum + pssMiB(p), 0);
  return `RSS ${total.toFixed(0)} MiB${parts}, PSS ${pss.toFixed(0)} MiB`;
}
function pssMiB(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}
function line(what: string): void {
  const la = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const t = ((Date.now() - t0) / 1000).toFixed(0).padStart(4);
  console.log(`${new Date().toISOString().slice(11, 19)} +${t}s ${what}: ${rss()}  [load ${la}]`);
}

console.log(`gatehouse serve, listen.workers ${workers}, log level info to a file, ${dir}`);
await new Promise((r) => setTimeout(r, 5000));
line('idle after start and one registration');

if (saturationSeconds > 0) {
  const tool = hasCommand('wrk') ? wrk(dir) : autocannon();
  const r = await tool.run(request, { connections: 32, seconds: saturationSeconds, threads: 1, cpus: null });
  console.log(
    `saturation (${tool.name}, 32 connections, ${saturationSeconds} s): ${r.rps.toFixed(0)} req/s, p99 ${r.p99Ms.toFixed(1)} ms, errors ${r.errors}, non-2xx ${r.non2xx}`,
  );
  line('after the saturation run');
  await new Promise((r) => setTimeout(r, 10_000));
  line('10 s later');
}

// One minute at a time: a minute the machine could not keep up with (the generator gives up when
// two seconds of requests are queued) is reported and the next one starts, instead of ending the run.
const sampler = setInterval(() => line(`at ${rate} req/s`), sampleSeconds * 1000);
for (let minute = 1; minute <= Math.ceil(minutes); minute++) {
  const seconds = Math.min(60, Math.round((minutes - minute + 1) * 60));
  const r = await paced(request, { rate, seconds, warmup: 0, connections: 16, cpus: null });
  console.log(
    `minute ${minute}: ${r.requests} requests (${r.rps.toFixed(0)} req/s), p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, max ${r.maxMs.toFixed(0)} ms, errors ${r.errors}, non-2xx ${r.non2xx}, generator lag p99 ${r.lagP99Ms?.toFixed(2)} ms${r.overloaded ? ', OVERLOADED (minute cut short)' : ''}`,
  );
}
clearInterval(sampler);
line('after the fixed-rate run');
await new Promise((r) => setTimeout(r, 10_000));
line('10 s later');
await stop(child);
app.close();
