/**
 * The machine side of the bench: where processes run (taskset), how they are started and
 * stopped, and what they cost (CPU time and RSS from /proc). Linux only for pinning and
 * /proc figures; elsewhere the bench still runs and says those figures are missing.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export type Role = 'loadgen' | 'upstream' | 'gatehouse';

export interface Layout {
  name: string;
  /** taskset CPU list per role; null = not pinned. */
  cpus: Record<Role, string | null>;
  /** One line for the report: who runs where, and why. */
  description: string;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export const LAYOUTS = ['split', 'shared', 'none'] as const;
export type LayoutName = (typeof LAYOUTS)[number];

/**
 * split (default): load generator and app share core 0, Gatehouse has core 1 to itself, as a
 * proxy would on its own host or container. Between a and b/c only the Gatehouse hop differs;
 * the ratio says how much one core of Gatehouse forwards compared with one core of the app.
 * shared: load generator on core 0; app and Gatehouse compete for core 1, as when the proxy
 * is squeezed onto the app's own CPU. A harsher figure: the app loses what Gatehouse uses.
 * none: no pinning, the scheduler decides.
 */
export function layout(name: LayoutName): { layout: Layout; note?: string } {
  const cores = availableParallelism();
  const none = (why?: string) => ({
    layout: {
      name: 'none',
      cpus: { loadgen: null, upstream: null, gatehouse: null },
      description: 'not pinned: the scheduler places load generator, app and Gatehouse',
    },
    note: why,
  });
  if (name === 'none') return none();
  if (process.platform !== 'linux' || !hasCommand('taskset'))
    return none('taskset not found (util-linux): processes are not pinned, so figures are noisier');
  if (cores < 2) return none(`only ${cores} core: nothing to pin apart`);
  if (name === 'shared') {
    return {
      layout: {
        name,
        cpus: { loadgen: '0', upstream: '1', gatehouse: '1' },
        description: 'taskset: load generator on core 0; app and Gatehouse share core 1',
      },
    };
  }
  return {
    layout: {
      name,
      cpus: { loadgen: '0', upstream: '0', gatehouse: '1' },
      description: 'taskset: load generator and app on core 0; Gatehouse alone on core 1',
    },
  };
}

// ---- child processes ----------------------------------------------------------------

const children = new Set<ChildProcess>();

/** Starts `argv` pinned to `cpus` (taskset execs it, so the pid is the program's own). */
export function start(
  argv: string[],
  cpus: string | null,
  options: { cwd?: string; stdio?: StdioOptions; env?: NodeJS.ProcessEnv } = {},
): ChildProcess {
  const [cmd, ...args] = cpus ? ['taskset', '-c', cpus, ...argv] : argv;
  const child = spawn(cmd!, args, {
    cwd: options.cwd,
    stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** The command line as it was run, for the report. */
export function commandLine(argv: string[], cpus: string | null): string {
  return (cpus ? ['taskset', '-c', cpus, ...argv] : argv)
    .map((a) => (/^[\w./:=@,-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`))
    .join(' ');
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

/** Whatever is still running when the bench ends (error, Ctrl-C) is killed with it. */
export function killAll(): void {
  for (const c of children) c.kill('SIGKILL');
}

/** Runs a program to completion and returns its stdout (stderr is kept for errors). */
export async function output(
  argv: string[],
  cpus: string | null,
  onSpawn?: (child: ChildProcess) => void,
): Promise<string> {
  const child = start(argv, cpus);
  onSpawn?.(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await exited(child);
  if (code !== 0) throw new Error(`${argv[0]} exited with ${code}: ${err.trim() || out.trim()}`);
  return out;
}

// ---- /proc figures ------------------------------------------------------------------

const TICKS_PER_SECOND = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  return Number(r.stdout?.trim()) || 100;
})();

/** User and system (kernel) CPU seconds a process has used so far, or null when unknown. */
function cpuTimes(pid: number | undefined): { user: number; kernel: number } | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / TICKS_PER_SECOND, kernel: Number(f[12]) / TICKS_PER_SECOND };
  } catch {
    return null;
  }
}

/** User + system CPU seconds a process has used so far, or null when unknown. */
export function cpuSeconds(pid: number | undefined): number | null {
  const t = cpuTimes(pid);
  return t && t.user + t.kernel;
}

/** The pid and every process below it (a Gatehouse with listen.workers has children). */
export function withDescendants(pid: number | undefined): number[] {
  if (!pid) return [];
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const c of readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'latin1').trim().split(/\s+/))
        if (c) out.push(Number(c));
    } catch {
      // gone, or not Linux
    }
  }
  return out;
}

/** CPU seconds of several processes together, all or in the kernel only (null when none is known). */
function cpuSecondsOf(pids: number[], kernelOnly = false): number | null {
  let sum: number | null = null;
  for (const p of pids) {
    const t = cpuTimes(p);
    if (t !== null) sum = (sum ?? 0) + t.kernel + (kernelOnly ? 0 : t.user);
  }
  return sum;
}

/** Resident set size now and at its peak (VmHWM), in MiB. */
export function memory(pid: number | undefined): { rssMiB: number; peakMiB: number } | null {
  if (!pid) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/** Busy and total CPU seconds per core, from /proc/stat. */
export function coreTimes(): Map<string, { busy: number; total: number }> {
  const out = new Map<string, { busy: number; total: number }>();
  try {
    for (const line of readFileSync('/proc/stat', 'latin1').split('\n')) {
      const m = /^cpu(\d+) (.*)$/.exec(line);
      if (!m) continue;
      const v = m[2]!.trim().split(/\s+/).map(Number);
      // user nice system idle iowait irq softirq steal (guest time is already in user)
      const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
      const idle = v[3]! + v[4]!;
      out.set(m[1]!, { busy: (total - idle) / TICKS_PER_SECOND, total: total / TICKS_PER_SECOND });
    }
  } catch {
    // not Linux: no per-core figures
  }
  return out;
}

export interface CpuUsage {
  /** Percent of one core, over the window. */
  gatehouse: number | null;
  /** Of it, in the kernel (system time: system calls, the network stack), percent of one core. */
  gatehouseKernel: number | null;
  upstream: number | null;
  loadgen: number | null;
  /** Busy percent of each core. */
  cores: Record<string, number>;
  /** Core time used by processes other than these three, in percent of one core. */
  other: number | null;
}

/**
 * CPU use over one measurement window. The load generator is a short-lived process, so its
 * CPU time is sampled while it runs (the last ≤200 ms are missed, a percent or two).
 */
/** Microseconds on the monotonic clock, the one V8's CPU profiles use. */
export const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export class CpuWindow {
  /** When the window opened (nowUs), to pick a CPU profile's samples of this window. */
  readonly startUs = nowUs();
  /** gatehouse: the proxy's processes (Gatehouse and its workers, or nginx + Gatehouse), summed. */
  private readonly pids: { gatehouse: number[]; upstream?: number };
  private readonly startedAt = performance.now();
  private readonly before: {
    gatehouse: number | null;
    gatehouseKernel: number | null;
    upstream: number | null;
    cores: Map<string, { busy: number; total: number }>;
  };
  private loadgenPid: number | undefined;
  private loadgenCpu: number | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(pids: { gatehouse?: number | number[]; upstream?: number }) {
    const proxy = Array.isArray(pids.gatehouse) ? pids.gatehouse : [pids.gatehouse];
    this.pids = { gatehouse: proxy.flatMap((p) => withDescendants(p)), upstream: pids.upstream };
    this.before = {
      gatehouse: cpuSecondsOf(this.pids.gatehouse),
      gatehouseKernel: cpuSecondsOf(this.pids.gatehouse, true),
      upstream: cpuSeconds(pids.upstream),
      cores: coreTimes(),
    };
    this.timer = setInterval(() => this.sample(), 200);
  }

  watchLoadgen(pid: number | undefined): void {
    this.loadgenPid = pid;
  }

  private sample(): void {
    const s = cpuSeconds(this.loadgenPid);
    if (s !== null) this.loadgenCpu = s;
  }

  end(): CpuUsage {
    clearInterval(this.timer);
    this.sample();
    const wall = (performance.now() - this.startedAt) / 1000;
    const pct = (before: number | null, after: number | null) =>
      before === null || after === null ? null : (100 * (after - before)) / wall;
    const gatehouse = pct(this.before.gatehouse, cpuSecondsOf(this.pids.gatehouse));
    const gatehouseKernel = pct(this.before.gatehouseKernel, cpuSecondsOf(this.pids.gatehouse, true));
    const upstream = pct(this.before.upstream, cpuSeconds(this.pids.upstream));
    const loadgen = this.loadgenCpu === null ? null : (100 * this.loadgenCpu) / wall;
    const cores: Record<string, number> = {};
    let busy = 0;
    for (const [core, after] of coreTimes()) {
      const b = this.before.cores.get(core);
      if (!b) continue;
      const total = after.total - b.total;
      cores[core] = total > 0 ? (100 * (after.busy - b.busy)) / total : 0;
      busy += (100 * (after.busy - b.busy)) / wall;
    }
    const ours = (gatehouse ?? 0) + (upstream ?? 0) + (loadgen ?? 0);
    return {
      gatehouse,
      gatehouseKernel,
      upstream,
      loadgen,
      cores,
      other: Object.keys(cores).length ? Math.max(0, busy - ours) : null,
    };
  }
}
