/**
 * Load generators, each a separate process on the load generator's core:
 *   saturation: wrk (C, preferred: costs the least CPU per request, so the direct figure is
 *               not held down by the generator) or autocannon (Node, always installed here);
 *   fixed rate: bench/paced.ts (open loop, even spacing, microsecond latencies).
 * All return the same LoadResult.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PacedOptions, PacedResult } from '../paced.ts';
import { output } from './system.ts';

export interface Request {
  url: string;
  headers: [string, string][];
}

export interface LoadResult {
  tool: string;
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Socket errors and timeouts. */
  errors: number;
  non2xx: number;
  /** Fixed rate only: p99 of the generator's own lateness, and whether it gave up. */
  lagP99Ms?: number;
  overloaded?: boolean;
}

export interface SaturationOptions {
  connections: number;
  seconds: number;
  threads: number;
  cpus: string | null;
  onSpawn?: (child: ChildProcess) => void;
}

export interface SaturationTool {
  name: string;
  run(request: Request, o: SaturationOptions): Promise<LoadResult>;
}

const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));

// ---- wrk ------------------------------------------------------------------------------

const WRK_SCRIPT = `-- written by bench/lib/load.ts: the result as one JSON line, latencies in microseconds
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nBENCH_JSON {"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

export function wrk(tmpDir: string): SaturationTool {
  const script = join(tmpDir, 'wrk-result.lua');
  writeFileSync(script, WRK_SCRIPT);
  return {
    name: 'wrk',
    async run(request, o) {
      const argv = [
        'wrk',
        '-t',
        String(o.threads),
        '-c',
        String(o.connections),
        '-d',
        `${o.seconds}s`,
        '--timeout',
        '10s',
        '-s',
        script,
      ];
      for (const [k, v] of request.headers) argv.push('-H', `${k}: ${v}`);
      argv.push(request.url);
      const out = await output(argv, o.cpus, o.onSpawn);
      const line = /BENCH_JSON (\{.*\})/.exec(out)?.[1];
      if (!line) throw new Error(`wrk printed no result:\n${out}`);
      const r = JSON.parse(line) as Record<string, number>;
      const seconds = r.duration_us! / 1e6;
      return {
        tool: 'wrk',
        requests: r.requests!,
        seconds,
        rps: r.requests! / seconds,
        p50Ms: r.p50! / 1000,
        p90Ms: r.p90! / 1000,
        p99Ms: r.p99! / 1000,
        maxMs: r.max! / 1000,
        errors: r.connect! + r.read! + r.write! + r.timeout!,
        non2xx: r.status!,
      };
    },
  };
}

// ---- autocannon -----------------------------------------------------------------------

export function autocannon(): SaturationTool {
  return {
    name: 'autocannon',
    async run(request, o) {
      const args = {
        url: request.url,
        headers: Object.fromEntries(request.headers),
        connections: o.connections,
        duration: o.seconds,
        workers: o.threads > 1 ? o.threads : undefined,
      };
      const out = await output(
        [process.execPath, join(BENCH_DIR, 'autocannon.ts'), JSON.stringify(args)],
        o.cpus,
        o.onSpawn,
      );
      const r = JSON.parse(out.trim().split('\n').pop()!) as {
        duration: number;
        requests: { total: number };
        latency: { p50: number; p90: number; p99: number; max: number };
        errors: number;
        timeouts: number;
        non2xx: number;
      };
      return {
        tool: 'autocannon',
        requests: r.requests.total,
        seconds: r.duration,
        rps: r.requests.total / r.duration,
        p50Ms: r.latency.p50,
        p90Ms: r.latency.p90,
        p99Ms: r.latency.p99,
        maxMs: r.latency.max,
        errors: r.errors + r.timeouts,
        non2xx: r.non2xx,
      };
    },
  };
}

// ---- fixed rate -----------------------------------------------------------------------

export async function paced(
  request: Request,
  o: {
    rate: number;
    seconds: number;
    warmup: number;
    connections: number;
    cpus: string | null;
    onSpawn?: (child: ChildProcess) => void;
  },
): Promise<LoadResult> {
  const options: PacedOptions = {
    url: request.url,
    headers: request.headers,
    rate: o.rate,
    duration: o.seconds,
    warmup: o.warmup,
    connections: o.connections,
  };
  const out = await output([process.execPath, join(BENCH_DIR, 'paced.ts'), JSON.stringify(options)], o.cpus, o.onSpawn);
  const r = JSON.parse(out.trim().split('\n').pop()!) as PacedResult;
  return {
    tool: 'paced',
    requests: r.completed,
    seconds: r.seconds,
    rps: r.rps,
    p50Ms: r.latencyMs.p50,
    p90Ms: r.latencyMs.p90,
    p99Ms: r.latencyMs.p99,
    maxMs: r.latencyMs.max,
    errors: r.errors,
    non2xx: r.non2xx,
    lagP99Ms: r.lagMs.p99,
    overloaded: r.overloaded,
  };
}
