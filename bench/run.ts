/**
 * `npm run bench`: the same GET load sent (a) straight to the app, (b) through Gatehouse on a
 * public route, (c) through Gatehouse with a valid session, in one run; at saturation and at
 * a fixed rate. Prints requests/s, p50 and p99 for each, the ratios against the targets,
 * Gatehouse's RSS, where each process ran, and a last line of JSON. See bench/README.md.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { autocannon, paced, wrk, type LoadResult, type Request, type SaturationTool } from './lib/load.ts';
import {
  LATENCY_TARGETS,
  RATIOS,
  REFERENCES,
  SCENARIOS,
  VARIANTS,
  type GatehouseVariant,
  type RatioTarget,
  type Scenario,
} from './lib/scenarios.ts';
import {
  cacheDir,
  cachedForwardAuthConfig,
  nginxPath,
  plainConfig,
  startNginx,
  type RunningNginx,
} from './lib/nginx.ts';
import { summarizeProfiles, type ProfileWindow } from './lib/profile.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import {
  commandLine,
  CpuWindow,
  nowUs,
  hasCommand,
  killAll,
  layout as chooseLayout,
  LAYOUTS,
  memory,
  start,
  stop,
  type CpuUsage,
  type Layout,
  type LayoutName,
} from './lib/system.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const HELP = `npm run bench [-- options]

  --mode saturation|fixed|both   what to measure (both)
  --duration S                   measured seconds per scenario and round (10)
  --warmup S                     warm-up seconds before each measurement (3)
  --rounds N                     rounds, scenarios interleaved a b c a b c ...; medians are shown (2)
  --connections N                saturation: concurrent connections (32)
  --rate N                       fixed rate: requests per second (1000)
  --paced-connections N          fixed rate: connection pool of the paced generator (64)
  --tool wrk|autocannon          saturation load generator (wrk if installed, else autocannon)
  --threads N                    load generator threads (1)
  --layout ${LAYOUTS.join('|')}       CPU pinning (split); see bench/README.md
  --log-level L                  Gatehouse log level (info, as in production)
  --only a,c                     run only these scenarios (a z n b c d f w; optional: y q e; see bench/README.md)
  --floor                        (z, the bare Node proxy, now always runs; kept for old scripts)
  --quick                        --duration 4 --warmup 2 --rounds 1
  --node-flags="F ..."           Node flags for every Gatehouse process, e.g. "--max-semi-space-size=16"
  --flag-sets="A|B|..."          also c once per set of Node flags, as scenarios c1, c2, ... (interleaved,
                                 so one run compares them), e.g. --flag-sets="--max-semi-space-size=8|--max-semi-space-size=32"
  --compare-with=DIR              also c as Gatehouse from another checkout (e.g. a git worktree of main,
                                 with node_modules), scenario c0, interleaved: a change's effect in one run
  --profile                      CPU-profile Gatehouse (node --cpu-prof): .cpuprofile files in
                                 bench/results/profiles/ and the top functions while measuring
  --keep                         keep the temp dir (config, store, Gatehouse log)
`;

type Mode = 'saturation' | 'fixed';

interface Options {
  modes: Mode[];
  duration: number;
  warmup: number;
  rounds: number;
  connections: number;
  rate: number;
  pacedConnections: number;
  tool: string;
  threads: number;
  layout: LayoutName;
  logLevel: string;
  only: string[] | null;
  floor: boolean;
  nodeFlags: string[];
  flagSets: string[][];
  compareWith: string | null;
  profile: boolean;
  keep: boolean;
}

function options(): Options {
  const { values: v } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      mode: { type: 'string', default: 'both' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string', default: '32' },
      rate: { type: 'string', default: '1000' },
      'paced-connections': { type: 'string', default: '64' },
      tool: { type: 'string' },
      threads: { type: 'string', default: '1' },
      layout: { type: 'string', default: 'split' },
      'log-level': { type: 'string', default: 'info' },
      only: { type: 'string' },
      floor: { type: 'boolean', default: false },
      'node-flags': { type: 'string', default: '' },
      'flag-sets': { type: 'string', default: '' },
      'compare-with': { type: 'string' },
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (name: string, value: string | undefined, def: number, min = 1): number => {
    const n = value === undefined ? def : Number(value);
    if (!Number.isFinite(n) || n < min) usage(`--${name} must be a number ≥ ${min}`);
    return n;
  };
  const mode = v.mode;
  if (mode !== 'saturation' && mode !== 'fixed' && mode !== 'both') usage('--mode is saturation, fixed or both');
  if (!(LAYOUTS as readonly string[]).includes(v.layout)) usage(`--layout is one of ${LAYOUTS.join(', ')}`);
  const tool = v.tool ?? (hasCommand('wrk') ? 'wrk' : 'autocannon');
  if (tool !== 'wrk' && tool !== 'autocannon') usage('--tool is wrk or autocannon');
  if (tool === 'wrk' && !hasCommand('wrk'))
    usage(
      'wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS), or use --tool autocannon',
    );
  const only = v.only ? v.only.split(',').map((s) => s.trim()) : null;
  const flagSets = v['flag-sets']
    .split('|')
    .map((f) => f.trim().split(/\s+/).filter(Boolean))
    .filter((f) => f.length > 0);
  for (const id of only ?? [])
    if (!SCENARIOS.some((s) => s.id === id) && !/^c\d+$/.test(id))
      usage(
        `no scenario "${id}" (there are ${SCENARIOS.map((s) => s.id).join(', ')}, and c1, c2, ... with --flag-sets)`,
      );
  return {
    modes: mode === 'both' ? ['saturation', 'fixed'] : [mode],
    duration: num('duration', v.duration, v.quick ? 4 : 10),
    warmup: num('warmup', v.warmup, v.quick ? 2 : 3, 0),
    rounds: num('rounds', v.rounds, v.quick ? 1 : 2),
    connections: num('connections', v.connections, 32),
    rate: num('rate', v.rate, 1000),
    pacedConnections: num('paced-connections', v['paced-connections'], 64),
    tool,
    threads: num('threads', v.threads, 1),
    layout: v.layout as LayoutName,
    logLevel: v['log-level'],
    only,
    floor: v.floor,
    nodeFlags: v['node-flags'].split(/\s+/).filter(Boolean),
    flagSets,
    compareWith: v['compare-with'] ?? null,
    profile: v.profile,
    keep: v.keep,
  };
}

function usage(message: string): never {
  process.stderr.write(`bench: ${message}\n\n${HELP}`);
  process.exit(2);
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

// ---- the processes under test -------------------------------------------------------------

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Starts a bench process that prints "READY <port>" once it listens. */
async function startListening(
  argv: string[],
  cpus: string | null,
  what: string,
): Promise<{ child: ChildProcess; url: string; command: string }> {
  const child = start(argv, cpus);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}`)));
  });
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    command: commandLine(
      argv.map((a) => a.replace(ROOT, '')),
      cpus,
    ),
  };
}

interface RunningGatehouse {
  variant: GatehouseVariant;
  child: ChildProcess;
  /** Where the load goes: Gatehouse, or the nginx in front of it (variant.front). */
  url: string;
  /** The nginx that asks this Gatehouse (variant.front). */
  front?: RunningNginx;
  logFile: string;
  command: string;
  /** "name=value" of a session made through POST /.auth/register. */
  sessionCookie: string;
  userId: string;
}

/** Whether this build's config takes `config` (a variant's keys, e.g. listen.workers). */
function schemaTakes(config: Record<string, unknown>): boolean {
  const base = { publicUrl: 'http://127.0.0.1:1', upstream: 'http://127.0.0.1:2' };
  return ConfigSchema.safeParse(merge(base, config)).success;
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** What a user would write: SQLite store, a master key, one app, a public area, info logs. */
function gatehouseConfig(
  port: number,
  upstream: string,
  dir: string,
  logLevel: string,
  variant: GatehouseVariant,
): Record<string, unknown> {
  return merge(
    {
      publicUrl: `http://127.0.0.1:${port}`,
      listen: { host: '127.0.0.1', port },
      store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
      secrets: { key: randomBytes(32).toString('base64') },
      name: 'bench',
      upstream,
      routes: [{ path: '/open/**', access: 'public' }],
      log: { level: logLevel },
    },
    variant.config,
  );
}

async function startGatehouse(
  variant: GatehouseVariant,
  upstream: string,
  tmp: string,
  o: Options,
  cpus: string | null,
  nginx: string | null,
): Promise<RunningGatehouse> {
  const dir = join(tmp, variant.id);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  // With nginx in front, users (and the bench) reach the app at nginx's address: publicUrl.
  const frontPort = variant.front ? await freePort() : undefined;
  const config = gatehouseConfig(port, upstream, dir, o.logLevel, variant);
  if (frontPort) config.publicUrl = `http://127.0.0.1:${frontPort}`;
  const configFile = join(dir, 'gatehouse.yaml');
  writeFileSync(configFile, `# generated by bench/run.ts\n${stringify(config)}`);
  const logFile = join(dir, 'gatehouse.log');
  const log = openSync(logFile, 'a');
  const profileDir = join(ROOT, 'bench/results/profiles');
  if (o.profile) mkdirSync(profileDir, { recursive: true });
  const argv = [
    process.execPath,
    ...o.nodeFlags,
    ...(variant.nodeFlags ?? []),
    ...(o.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
    'src/cli/main.ts',
    'serve',
    '--config',
    configFile,
  ];
  // stdout/stderr to a file, as `gatehouse serve > gatehouse.log` would: every log line is written for real.
  const child = start(argv, cpus, { cwd: variant.root ?? ROOT, stdio: ['ignore', log, log] });
  closeSync(log);
  const own = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`Gatehouse (${variant.id}) exited with ${child.exitCode}:\n${readFileSync(logFile, 'utf8')}`);
    const ok = await fetch(`${own}/.auth/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline)
      throw new Error(
        `Gatehouse (${variant.id}) did not answer on ${own} within 20 s:\n${readFileSync(logFile, 'utf8')}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
  let front: RunningNginx | undefined;
  if (variant.front) {
    const nginxDir = join(dir, 'nginx');
    const conf = cachedForwardAuthConfig(frontPort!, own, upstream, nginxDir);
    front = await startNginx(nginx!, conf, frontPort!, nginxDir, cpus);
  }
  const url = front?.url ?? own;
  // A real session, made the way a user's browser or SPA makes one.
  const email = `bench-${variant.id}@example.com`;
  const res = await fetch(`${url}/.auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ email, password: 'correct horse battery staple 42' }),
  });
  const body = (await res.json()) as { user?: { id: string } };
  const sessionCookie = res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0]!)
    .find((c) => c.startsWith('gatehouse='));
  if (res.status !== 201 || !sessionCookie || !body.user)
    throw new Error(`registering ${email} failed: ${res.status} ${JSON.stringify(body)}`);
  return {
    variant,
    child,
    url,
    ...(front ? { front } : {}),
    logFile,
    command: commandLine(
      argv.map((a) => a.replace(tmp, '$TMP').replace(profileDir, 'bench/results/profiles')),
      cpus,
    ),
    sessionCookie,
    userId: body.user.id,
  };
}

// ---- scenarios ------------------------------------------------------------------------------

interface Target {
  scenario: Scenario;
  request: Request;
  gatehouse: RunningGatehouse | undefined;
  /**
   * The processes between load and app, for their CPU figures: Gatehouse (with its workers),
   * nginx and the Gatehouse it asks, the floor proxy, or nginx without auth.
   */
  proxyPids: number[];
}

/**
 * Every scenario sends the same request bytes apart from the path: the signed-out ones carry
 * a cookie of the same size that Gatehouse does not own, in place of the session cookie.
 */
function targets(
  scenarios: Scenario[],
  upstream: string,
  gatehouses: Map<string, RunningGatehouse>,
  /** The proxies without auth by `via`: floor, floor-dispatch, nginx. */
  proxies: Map<string, { child: ChildProcess; url: string }>,
): Target[] {
  return scenarios.map((scenario) => {
    const bare = proxies.get(scenario.via);
    const plain = scenario.via === 'direct' || bare !== undefined;
    const gh = plain ? undefined : gatehouses.get(scenario.via);
    if (!plain && !gh) throw new Error(`scenario ${scenario.id}: no Gatehouse variant "${scenario.via}"`);
    const session = gh?.sessionCookie ?? [...gatehouses.values()][0]?.sessionCookie ?? `gatehouse=${'x'.repeat(43)}`;
    const cookie = scenario.signedIn ? session : `benchpad1=${session.slice(session.indexOf('=') + 1)}`;
    if (scenario.signedIn && !gh) throw new Error(`scenario ${scenario.id}: a session needs Gatehouse`);
    const base = bare?.url ?? gh?.url ?? upstream;
    const proxy = bare ? [bare.child] : [];
    if (gh) proxy.push(...(gh.front ? [gh.front.child] : []), gh.child);
    return {
      scenario,
      gatehouse: gh,
      proxyPids: proxy.map((c) => c.pid!),
      request: {
        url: `${base}${scenario.path}`,
        headers: [
          ['User-Agent', 'gatehouse-bench'],
          ['Accept', 'application/json'],
          ['Cookie', cookie],
        ],
      },
    };
  });
}

/** One request per scenario through the echo path: the scenario is what it claims to be. */
async function verify(t: Target): Promise<void> {
  const res = await fetch(`${t.request.url}?echo`, { headers: t.request.headers });
  const text = await res.text();
  if (res.status !== 200)
    throw new Error(
      `scenario ${t.scenario.id} (${t.scenario.label}): expected 200, got ${res.status}: ${text.slice(0, 300)}`,
    );
  const seen = (JSON.parse(text) as { headers: Record<string, string> }).headers;
  const user = seen['x-user-id'];
  if (t.scenario.signedIn && user !== t.gatehouse?.userId)
    throw new Error(`scenario ${t.scenario.id}: the app did not get X-User-Id of the session (got ${user})`);
  if (!t.scenario.signedIn && user !== undefined)
    throw new Error(`scenario ${t.scenario.id}: the app got an X-User-Id without a session`);
  if (t.gatehouse && seen['cookie']?.includes('gatehouse='))
    throw new Error(`scenario ${t.scenario.id}: the session cookie reached the app`);
  // With nginx in front, nginx builds the app's request (no X-Request-Id); X-User-Id says Gatehouse decided.
  if (t.gatehouse && !t.gatehouse.front && !seen['x-request-id'])
    throw new Error(`scenario ${t.scenario.id}: the request did not go through Gatehouse`);
  const assertion = seen['x-gatehouse-assertion'];
  const wantAssertion = t.scenario.assertion ?? t.scenario.signedIn;
  if (
    wantAssertion &&
    !(
      assertion && JSON.parse(Buffer.from(assertion.split('.')[1]!, 'base64url').toString()).sub === t.gatehouse?.userId
    )
  ) {
    throw new Error(`scenario ${t.scenario.id}: the app did not get an X-Gatehouse-Assertion for the session's user`);
  }
  if (!wantAssertion && assertion !== undefined)
    throw new Error(`scenario ${t.scenario.id}: the app got an X-Gatehouse-Assertion it should not have`);
}

// ---- measuring ------------------------------------------------------------------------------

interface Sample {
  load: LoadResult;
  cpu: CpuUsage;
}

interface Summary {
  rps: number;
  rpsMin: number;
  rpsMax: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  lagP99?: number;
  errors: number;
  non2xx: number;
  cpu: {
    gatehouse: number | null;
    gatehouseKernel: number | null;
    upstream: number | null;
    loadgen: number | null;
    cores: Record<string, number>;
    other: number | null;
  };
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const medianOrNull = (xs: (number | null)[]): number | null =>
  xs.some((x) => x === null) ? null : median(xs as number[]);

function summarize(samples: Sample[]): Summary {
  const l = samples.map((s) => s.load);
  const cores: Record<string, number> = {};
  for (const core of Object.keys(samples[0]?.cpu.cores ?? {}))
    cores[core] = median(samples.map((s) => s.cpu.cores[core] ?? NaN));
  return {
    rps: median(l.map((x) => x.rps)),
    rpsMin: Math.min(...l.map((x) => x.rps)),
    rpsMax: Math.max(...l.map((x) => x.rps)),
    p50: median(l.map((x) => x.p50Ms)),
    p90: median(l.map((x) => x.p90Ms)),
    p99: median(l.map((x) => x.p99Ms)),
    max: Math.max(...l.map((x) => x.maxMs)),
    lagP99: l[0]?.lagP99Ms === undefined ? undefined : median(l.map((x) => x.lagP99Ms ?? NaN)),
    errors: l.reduce((a, x) => a + x.errors, 0),
    non2xx: l.reduce((a, x) => a + x.non2xx, 0),
    cpu: {
      gatehouse: medianOrNull(samples.map((s) => s.cpu.gatehouse)),
      gatehouseKernel: medianOrNull(samples.map((s) => s.cpu.gatehouseKernel)),
      upstream: medianOrNull(samples.map((s) => s.cpu.upstream)),
      loadgen: medianOrNull(samples.map((s) => s.cpu.loadgen)),
      cores,
      other: medianOrNull(samples.map((s) => s.cpu.other)),
    },
  };
}

// ---- report ---------------------------------------------------------------------------------

function table(head: string[], rows: string[][], rightAlignFrom = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < rightAlignFrom ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const fmtMs = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');
const fmtPct = (n: number | null | undefined) =>
  n === null || n === undefined || !Number.isFinite(n) ? '—' : `${Math.round(n)}%`;
const round = (n: number, digits: number) => (Number.isFinite(n) ? Math.round(n * 10 ** digits) / 10 ** digits : null);

/**
 * The proxy's CPU time per request, in microseconds (less sensitive to a busy machine than
 * req/s): all of it, or its kernel part (system calls, the loopback network stack).
 */
const cpuPerRequest = (s: Summary, kernelOnly = false): number | null => {
  const pct = kernelOnly ? s.cpu.gatehouseKernel : s.cpu.gatehouse;
  return pct === null || !(s.rps > 0) ? null : (pct * 1e4) / s.rps;
};

function cpuCells(s: Summary, coreIds: string[], gatehouse: boolean): string[] {
  const us = cpuPerRequest(s);
  const kernel = cpuPerRequest(s, true);
  return [
    gatehouse && us !== null ? fmtInt(us) : '—',
    gatehouse && kernel !== null ? fmtInt(kernel) : '—',
    fmtPct(s.cpu.gatehouse),
    fmtPct(s.cpu.upstream),
    fmtPct(s.cpu.loadgen),
    ...coreIds.map((c) => fmtPct(s.cpu.cores[c])),
  ];
}

// ---- main -----------------------------------------------------------------------------------

/** Lines in a file, read in chunks: a fast run's log outgrows the longest string V8 makes (512 MiB). */
function countLines(file: string): number {
  const fd = openSync(file, 'r');
  const chunk = Buffer.allocUnsafe(1 << 20);
  let lines = 0;
  try {
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) {
      for (let i = chunk.indexOf(10); i !== -1 && i < n; i = chunk.indexOf(10, i + 1)) lines++;
    }
  } finally {
    closeSync(fd);
  }
  return lines;
}

async function main(): Promise<void> {
  const o = options();
  if (Number(process.versions.node.split('.')[0]) < 24)
    usage(`Node.js 24+ is needed (this is ${process.version}); the README's quick start says how to get it`);
  const { layout, note: layoutNote } = chooseLayout(o.layout);
  const notes: string[] = [];
  if (layoutNote) notes.push(layoutNote);
  if (o.tool === 'autocannon' && o.modes.includes('saturation')) {
    notes.push(
      `saturation load from autocannon${hasCommand('wrk') ? ' (--tool autocannon)' : ': wrk is not installed (apt-get install -y wrk on Debian/Ubuntu, brew install wrk on macOS)'}. autocannon costs more CPU per request on the load generator's core${layout.cpus.loadgen !== null && layout.cpus.loadgen === layout.cpus.upstream ? ', which it shares with the app here: the direct figure (a) is held down and the ratios look better than with wrk' : ''}.`,
    );
  }
  const tmp = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  let gatehouses = new Map<string, RunningGatehouse>();
  let upstream: Awaited<ReturnType<typeof startListening>> | undefined;
  let floor: Awaited<ReturnType<typeof startListening>> | undefined;
  let floorDispatch: Awaited<ReturnType<typeof startListening>> | undefined;
  let plainNginx: RunningNginx | undefined;
  const windows: ProfileWindow[] = [];
  try {
    // --flag-sets: c once more per set of Node flags, on a Gatehouse of its own.
    const flagVariants: GatehouseVariant[] = o.flagSets.map((flags, i) => ({
      id: `flags${i + 1}`,
      config: {},
      nodeFlags: flags,
    }));
    if (o.compareWith) flagVariants.push({ id: 'other-checkout', config: {}, root: o.compareWith });
    const allVariants = [...VARIANTS, ...flagVariants];
    const allScenarios: Scenario[] = [
      ...SCENARIOS,
      ...o.flagSets.map((flags, i) => ({
        id: `c${i + 1}`,
        label: `valid session, node ${flags.join(' ')}`,
        via: `flags${i + 1}`,
        path: '/home/item',
        signedIn: true,
      })),
      ...(o.compareWith
        ? [
            {
              id: 'c0',
              label: `valid session, ${o.compareWith.split('/').filter(Boolean).pop()}`,
              via: 'other-checkout',
              path: '/home/item',
              signedIn: true,
            },
          ]
        : []),
    ];
    const ratioTargets: RatioTarget[] = [
      ...RATIOS,
      ...o.flagSets.map((flags, i) => ({ num: `c${i + 1}`, den: 'c', label: `${flags.join(' ')} / without` })),
      ...(o.compareWith ? [{ num: 'c', den: 'c0', label: `this checkout / ${o.compareWith}` }] : []),
    ];
    const nginxBinary = nginxPath();
    const skipped = new Map<string, string>();
    for (const v of allVariants)
      if (v.requires && !schemaTakes(v.config)) skipped.set(v.id, `this build's config has no ${v.requires}`);
      else if (v.front && !nginxBinary) skipped.set(v.id, 'nginx is not installed (apt-get install -y nginx)');
    if (!nginxBinary) skipped.set('nginx', 'nginx is not installed (apt-get install -y nginx)');
    const wanted = allScenarios.filter((s) => (o.only ? o.only.includes(s.id) : !s.optional));
    const scenarios = wanted.filter((s) => !skipped.has(s.via));
    for (const s of wanted)
      if (skipped.has(s.via)) notes.push(`scenario ${s.id} (${s.label}) skipped: ${skipped.get(s.via)}`);
    const variants = allVariants.filter((v) => scenarios.some((s) => s.via === v.id));
    progress(`bench: starting the app and ${variants.length} Gatehouse process(es) (${layout.description})`);
    upstream = await startListening(
      [process.execPath, join(ROOT, 'bench/upstream.ts'), '0'],
      layout.cpus.upstream,
      'the bench app',
    );
    const floorArgv = [process.execPath, join(ROOT, 'bench/floor-proxy.ts'), upstream.url];
    floor = scenarios.some((s) => s.via === 'floor')
      ? await startListening(floorArgv, layout.cpus.gatehouse, 'the floor proxy')
      : undefined;
    floorDispatch = scenarios.some((s) => s.via === 'floor-dispatch')
      ? await startListening([...floorArgv, 'dispatch'], layout.cpus.gatehouse, 'the floor proxy with dispatch()')
      : undefined;
    if (scenarios.some((s) => s.via === 'nginx')) {
      const port = await freePort();
      const dir = join(tmp, 'nginx');
      plainNginx = await startNginx(
        nginxBinary!,
        plainConfig(port, upstream.url, dir),
        port,
        dir,
        layout.cpus.gatehouse,
      );
    }
    for (const v of variants.length ? variants : VARIANTS.slice(0, 1))
      gatehouses.set(v.id, await startGatehouse(v, upstream.url, tmp, o, layout.cpus.gatehouse, nginxBinary));
    const proxies = new Map<string, { child: ChildProcess; url: string }>();
    if (floor) proxies.set('floor', floor);
    if (floorDispatch) proxies.set('floor-dispatch', floorDispatch);
    if (plainNginx) proxies.set('nginx', plainNginx);
    const list = targets(scenarios, upstream.url, gatehouses, proxies);
    for (const t of list) await verify(t);
    const firstGatehouse = [...gatehouses.values()][0]!;
    const idleMemory = memory(firstGatehouse.child.pid);
    const tool: SaturationTool = o.tool === 'wrk' ? wrk(tmp) : autocannon();

    const samples: Record<Mode, Map<string, Sample[]>> = { saturation: new Map(), fixed: new Map() };
    for (const mode of o.modes) {
      for (let round = 1; round <= o.rounds; round++) {
        for (const t of list) {
          progress(`bench: ${mode} round ${round}/${o.rounds}: ${t.scenario.id} (${t.scenario.label})`);
          const gh = t.gatehouse ?? firstGatehouse;
          let window: CpuWindow;
          let load: LoadResult;
          if (mode === 'saturation') {
            if (o.warmup > 0)
              await tool.run(t.request, {
                connections: o.connections,
                seconds: o.warmup,
                threads: o.threads,
                cpus: layout.cpus.loadgen,
              });
            window = new CpuWindow({ gatehouse: t.proxyPids, upstream: upstream.child.pid });
            load = await tool.run(t.request, {
              connections: o.connections,
              seconds: o.duration,
              threads: o.threads,
              cpus: layout.cpus.loadgen,
              onSpawn: (c) => window.watchLoadgen(c.pid),
            });
          } else {
            window = new CpuWindow({ gatehouse: t.proxyPids, upstream: upstream.child.pid });
            load = await paced(t.request, {
              rate: o.rate,
              seconds: o.duration,
              warmup: o.warmup,
              connections: o.pacedConnections,
              cpus: layout.cpus.loadgen,
              onSpawn: (c) => window.watchLoadgen(c.pid),
            });
          }
          const cpu = window.end();
          if (t.gatehouse) windows.push({ pid: t.gatehouse.child.pid!, startUs: window.startUs, endUs: nowUs() });
          if (load.errors || load.non2xx || load.overloaded)
            progress(
              `bench:   ${load.errors} errors, ${load.non2xx} non-2xx${load.overloaded ? ', generator overloaded' : ''}`,
            );
          const list = samples[mode].get(t.scenario.id) ?? [];
          list.push({ load, cpu });
          samples[mode].set(t.scenario.id, list);
        }
      }
    }
    const endMemory = memory(firstGatehouse.child.pid);
    const logBytes = statSync(firstGatehouse.logFile).size;
    const logLines = countLines(firstGatehouse.logFile);

    // ---- print ----
    const sum: Record<Mode, Map<string, Summary>> = { saturation: new Map(), fixed: new Map() };
    for (const mode of o.modes) for (const [id, s] of samples[mode]) sum[mode].set(id, summarize(s));
    const coreIds = Object.keys([...sum.saturation.values(), ...sum.fixed.values()][0]?.cpu.cores ?? {}).filter(
      (c) => Object.values(layout.cpus).includes(c) || layout.name === 'none',
    );
    const out: string[] = [];
    const say = (s = '') => out.push(s);
    const label = (s: Scenario) => `${s.id}  ${s.label}`;
    say();
    say(`Gatehouse bench — Node ${process.version}, ${layout.description}`);
    for (const n of notes) say(`note: ${n}`);
    say(
      `CPU: proxy µs/req = CPU time (all threads) the proxy spent per request (Gatehouse with its workers; z the floor proxy; n nginx; f nginx + the Gatehouse it asks), of it kernel = its system time (system calls, the loopback network stack); proxy, app, load gen = percent of one core each used; core N = how busy that core was.`,
    );
    if (sum.saturation.size) {
      say();
      say(
        `Saturation: ${tool.name}, ${o.connections} connections, ${o.threads} thread(s), ${o.duration} s per run after ${o.warmup} s warm-up, ${o.rounds} round(s) interleaved; medians`,
      );
      const times = (id: string, x: Summary) => {
        const base = sum.saturation.get(id)?.rps;
        return base ? `${(x.rps / base).toFixed(2)}×` : '—';
      };
      const rows = scenarios.map((s) => {
        const x = sum.saturation.get(s.id)!;
        const spread = o.rounds > 1 ? `${fmtInt(x.rpsMin)}–${fmtInt(x.rpsMax)}` : '';
        return [
          label(s),
          fmtInt(x.rps),
          spread,
          times('a', x),
          times('z', x),
          fmtMs(x.p50),
          fmtMs(x.p99),
          ...cpuCells(x, coreIds, s.via !== 'direct'),
          String(x.errors + x.non2xx),
        ];
      });
      say(
        table(
          [
            'scenario',
            'req/s',
            o.rounds > 1 ? 'range' : '',
            '× direct',
            '× floor',
            'p50 ms',
            'p99 ms',
            'proxy µs/req',
            'of it kernel',
            'proxy',
            'app',
            'load gen',
            ...coreIds.map((c) => `core ${c}`),
            'errors',
          ],
          rows,
        ),
      );
    }
    if (sum.fixed.size) {
      say();
      say(
        `Fixed rate: ${fmtInt(o.rate)} req/s, paced open-loop generator (bench/paced.ts), ${o.pacedConnections} connections, ${o.duration} s per run after ${o.warmup} s warm-up, ${o.rounds} round(s); medians`,
      );
      const rows = scenarios.map((s) => {
        const x = sum.fixed.get(s.id)!;
        return [
          label(s),
          fmtInt(x.rps),
          fmtMs(x.p50),
          fmtMs(x.p90),
          fmtMs(x.p99),
          fmtMs(x.max),
          fmtMs(x.lagP99 ?? NaN),
          ...cpuCells(x, coreIds, s.via !== 'direct'),
          String(x.errors + x.non2xx),
        ];
      });
      say(
        table(
          [
            'scenario',
            'req/s',
            'p50 ms',
            'p90 ms',
            'p99 ms',
            'max ms',
            'gen lag p99',
            'proxy µs/req',
            'of it kernel',
            'proxy',
            'app',
            'load gen',
            ...coreIds.map((c) => `core ${c}`),
            'errors',
          ],
          rows,
        ),
      );
    }

    const ratios: Record<string, number | null> = {};
    const checks: Record<string, boolean> = {};
    const rows: string[][] = [];
    const satRps = (id: string) => sum.saturation.get(id)?.rps;
    for (const r of ratioTargets) {
      const num = satRps(r.num);
      const den = satRps(r.den);
      if (num === undefined || den === undefined) continue;
      const value = num / den;
      ratios[`${r.num}/${r.den}`] = round(value, 3);
      const verdict = r.min === undefined ? '' : value >= r.min ? 'met' : 'MISSED';
      if (r.min !== undefined) checks[`${r.num}/${r.den}>=${r.min}`] = value >= r.min;
      rows.push([
        `${r.num}/${r.den}  ${r.label}`,
        value.toFixed(2),
        r.min === undefined ? '—' : `≥ ${r.min.toFixed(2)}`,
        verdict,
      ]);
    }
    const extra: Record<string, number | null> = {};
    for (const t of LATENCY_TARGETS) {
      const x = sum.fixed.get(t.scenario);
      const base = sum.fixed.get(t.baseline);
      if (!x || !base) continue;
      const d = x.p99 - base.p99;
      extra[t.scenario] = round(d, 3);
      checks[`p99(${t.scenario})-p99(${t.baseline})<=${t.maxExtraMs}ms`] = d <= t.maxExtraMs;
      rows.push([
        `p99 ${t.scenario} − p99 ${t.baseline} at ${fmtInt(o.rate)} req/s`,
        `${d >= 0 ? '+' : ''}${d.toFixed(2)} ms`,
        `≤ ${t.maxExtraMs} ms`,
        d <= t.maxExtraMs ? 'met' : 'MISSED',
      ]);
    }
    if (rows.length) {
      say();
      say('Targets (ratios are of saturation requests/s)');
      say(table(['', 'measured', 'target', ''], rows));
      say(REFERENCES);
    }
    say();
    const mib = (m: { rssMiB: number; peakMiB: number } | null, k: 'rssMiB' | 'peakMiB') =>
      m ? `${m[k].toFixed(0)} MiB` : '—';
    say(
      `Gatehouse RSS: ${mib(idleMemory, 'rssMiB')} idle after start, ${mib(endMemory, 'rssMiB')} after the run, ${mib(endMemory, 'peakMiB')} peak`,
    );
    say(
      `Gatehouse log: level ${o.logLevel}, ${fmtInt(logLines)} lines (${(logBytes / 2 ** 20).toFixed(1)} MiB) written to a file during the run`,
    );
    const maxOther = Math.max(0, ...[...sum.saturation.values(), ...sum.fixed.values()].map((s) => s.cpu.other ?? 0));
    if (maxOther > 15)
      say(
        `warning: other processes on this machine used up to ${Math.round(maxOther)}% of a core during the measurements; the figures are disturbed, rerun on a quiet machine`,
      );
    say('Processes:');
    say(`  app        ${upstream.command.replace(ROOT, '')}`);
    if (floor) say(`  floor      ${floor.command.replace(ROOT, '')}`);
    if (floorDispatch) say(`  floor      ${floorDispatch.command.replace(ROOT, '')}   (y)`);
    if (plainNginx) say(`  nginx      ${plainNginx.command}   (no auth)`);
    for (const g of gatehouses.values()) {
      say(`  gatehouse  ${g.command}${gatehouses.size > 1 ? `   (${g.variant.id})` : ''}`);
      if (g.front)
        say(`  nginx      ${g.front.command}   (in front of ${g.variant.id}: examples/nginx-forward-auth-cached.conf)`);
    }
    say(
      `  load       ${o.modes.includes('saturation') ? `${tool.name}${layout.cpus.loadgen !== null ? ` under taskset -c ${layout.cpus.loadgen}` : ''}` : ''}${o.modes.length === 2 ? '; ' : ''}${o.modes.includes('fixed') ? `node bench/paced.ts${layout.cpus.loadgen !== null ? ` under taskset -c ${layout.cpus.loadgen}` : ''}` : ''}`,
    );

    const perScenario = (mode: Mode) =>
      Object.fromEntries(
        [...sum[mode]].map(([id, s]) => [
          id,
          {
            rps: round(s.rps, 0),
            p50Ms: round(s.p50, 3),
            p99Ms: round(s.p99, 3),
            proxyCpuPct: s.cpu.gatehouse === null ? null : round(s.cpu.gatehouse, 0),
            proxyCpuUsPerReq:
              SCENARIOS.find((x) => x.id === id)?.via === 'direct' ? null : round(cpuPerRequest(s) ?? NaN, 1),
            proxyKernelUsPerReq:
              SCENARIOS.find((x) => x.id === id)?.via === 'direct' ? null : round(cpuPerRequest(s, true) ?? NaN, 1),
            errors: s.errors + s.non2xx,
          },
        ]),
      );
    const summaryJson = {
      bench: 'gatehouse',
      date: new Date().toISOString(),
      node: process.version,
      layout: layout.name,
      pinning: layout.cpus,
      tool: tool.name,
      connections: o.connections,
      durationS: o.duration,
      warmupS: o.warmup,
      rounds: o.rounds,
      fixedRate: o.rate,
      logLevel: o.logLevel,
      saturation: perScenario('saturation'),
      fixed: perScenario('fixed'),
      ratios,
      p99ExtraMs: extra,
      targets: checks,
      gatehouseRssMiB: {
        idle: idleMemory ? round(idleMemory.rssMiB, 1) : null,
        end: endMemory ? round(endMemory.rssMiB, 1) : null,
        peak: endMemory ? round(endMemory.peakMiB, 1) : null,
      },
    };
    const resultsDir = join(ROOT, 'bench/results');
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `${summaryJson.date.replaceAll(':', '-')}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        { summary: summaryJson, samples: Object.fromEntries(o.modes.map((m) => [m, Object.fromEntries(samples[m])])) },
        null,
        2,
      ),
    );
    say(`Details: ${file.replace(ROOT, '')}${o.keep ? `; config, store and log kept in ${tmp}` : ''}`);
    say(JSON.stringify(summaryJson));
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await Promise.all([
      ...[...gatehouses.values()].flatMap((g) => [stop(g.child), ...(g.front ? [stop(g.front.child)] : [])]),
      ...[upstream, floor, floorDispatch, plainNginx].map((p) => (p ? stop(p.child) : Promise.resolve())),
    ]);
    for (const g of gatehouses.values())
      if (g.front) rmSync(cacheDir(join(tmp, g.variant.id, 'nginx')), { recursive: true, force: true });
    gatehouses = new Map();
    if (o.profile && windows.length)
      process.stdout.write(`\n${summarizeProfiles(join(ROOT, 'bench/results/profiles'), windows)}\n`);
    if (!o.keep) rmSync(tmp, { recursive: true, force: true });
  }
}

process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}
main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exitCode = 1;
});
