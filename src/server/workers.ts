import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { answerCacheRequest, isCacheRequest } from '../cache/cluster.ts';
import type { Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import type { Warning } from '../config/warning.ts';
import type { Logger } from '../log/index.ts';
import type { ClusterMetrics } from '../metrics/cluster.ts';

/**
 * `listen.workers` > 1: one node as several processes (node:cluster). The primary serves no
 * traffic: it forks the workers (each a whole Gatehouse on the same port, the primary handing
 * out connections in turn), keeps the node's memory cache for them (cache/cluster.ts), replaces
 * a worker that dies, and passes SIGTERM (drain) and SIGHUP (reload: the TLS files and the
 * configuration) on to all of them. docs/workers.md explains the consistency of each piece of shared state.
 */

/**
 * Messages the primary sends a worker: drain, or reload: re-read the TLS files, and serve `text`,
 * the configuration the primary has read and checked; or, with `refused`, say why the file read
 * was not sent (it does not validate, or `gatehouse check` fails it).
 */
export type WorkerCommand = { gatehouse: 'drain' } | ({ gatehouse: 'reload' } & Reload);

/** A reload as the primary sends it. */
export interface Reload {
  text: string;
  refused?: string;
}

export function isWorkerCommand(m: unknown): m is WorkerCommand {
  const c = m as { gatehouse?: unknown; text?: unknown; refused?: unknown } | null;
  return (
    typeof m === 'object' &&
    c !== null &&
    (c.gatehouse === 'drain' ||
      (c.gatehouse === 'reload' &&
        typeof c.text === 'string' &&
        (c.refused === undefined || typeof c.refused === 'string')))
  );
}

/**
 * What one worker tells the others (through the primary): a copy they keep in memory is no longer
 * good. Everything else they share is in the store or kept by the primary.
 */
export type PeerEvent =
  | { kind: 'provider-tokens-forgotten'; userId: string; provider: string }
  /** The checking worker's view of an app's replicas after a round of health checks (healthCheck). */
  | { kind: 'upstream-health'; app: string; replicas: string[]; healthy: boolean[] };

export interface Peers {
  publish(event: PeerEvent): void;
  subscribe(listener: (event: PeerEvent) => void): void;
}

interface PeerMessage {
  gatehouse: 'peers';
  event: PeerEvent;
}

function isPeerMessage(m: unknown): m is PeerMessage {
  const p = m as PeerMessage | null;
  if (typeof m !== 'object' || p === null || p.gatehouse !== 'peers') return false;
  const e = p.event;
  if (e?.kind === 'provider-tokens-forgotten') return typeof e.userId === 'string' && typeof e.provider === 'string';
  return (
    e?.kind === 'upstream-health' &&
    typeof e.app === 'string' &&
    Array.isArray(e.replicas) &&
    e.replicas.every((r) => typeof r === 'string') &&
    Array.isArray(e.healthy) &&
    e.healthy.length === e.replicas.length &&
    e.healthy.every((h) => typeof h === 'boolean')
  );
}

/**
 * Set by the primary for each worker: `run` for the one that runs the node's health checks
 * (healthCheck) and tells the others what it found, `follow` for the others. The first worker
 * forked runs them, and when it exits the next one forked (its replacement) takes over.
 */
export const HEALTH_CHECKS_ENV = 'GATEHOUSE_WORKER_HEALTH_CHECKS';

/** Whether this process runs health checks itself: a single process does; of workers, the one the primary chose. */
export function runsHealthChecks(): boolean {
  return !cluster.isWorker || process.env[HEALTH_CHECKS_ENV] !== 'follow';
}

/** A worker's Peers: published to the primary, which passes it to every other worker. */
export function workerPeers(channel: NodeJS.Process = process): Peers {
  return {
    publish(event) {
      if (channel.connected) channel.send?.({ gatehouse: 'peers', event } satisfies PeerMessage);
    },
    subscribe(listener) {
      channel.on('message', (m: unknown) => {
        if (isPeerMessage(m)) listener(m.event);
      });
    },
  };
}

/** The environment variable a worker reads its configuration text from (the primary's, as it read it). */
export const CONFIG_ENV = 'GATEHOUSE_WORKER_CONFIG';

/** How many processes `listen.workers` asks for: `auto` is the cores Node may use. */
export function workerCount(config: Config, cores = availableParallelism()): number {
  const w = config.listen.workers;
  return w === 'auto' ? cores : w;
}

/** `gatehouse check` (and the start-up log) about listen.workers. */
export function lintWorkers(config: Config, cores = availableParallelism()): Warning[] {
  const w: Warning[] = [];
  const count = workerCount(config, cores);
  if (count > cores) {
    w.push({
      key: 'listen.workers',
      message: `${count} workers, but Node may use ${cores} core${cores === 1 ? '' : 's'} here: the extra processes only take turns on the same cores, each with its own memory (about 150 MB resident). Use auto, or at most ${cores}.`,
    });
  }
  if (count > 1 && config.cache.type === 'memory') {
    w.push({
      key: 'cache',
      message: `with ${count} workers and the memory cache, the rate-limit counters are kept by the primary process and shared by its workers (one allowance per node, not per worker). They are per node: several nodes behind one load balancer each count their own, so use cache: redis there.`,
    });
  }
  return w;
}

/** In a worker: its id (1, 2, ...; a replacement gets the next one). Undefined in a single process or the primary. */
export function workerId(): number | undefined {
  return cluster.isWorker ? cluster.worker?.id : undefined;
}

export interface SupervisorOptions {
  count: number;
  logger: Logger;
  /** listen.timeouts.drain: after it (and a margin for flushing) a worker still running is killed. */
  drainMs: number;
  /** The cache whose counters the workers share (the memory cache); undefined with Redis. */
  cache?: Cache;
  /** Environment variables of every worker (the configuration text). */
  env?: NodeJS.ProcessEnv;
  /** What a worker runs: by default the same script, arguments and Node flags as the primary. */
  exec?: string;
  args?: string[];
  execArgv?: string[];
  /** The first restart waits this long, doubling with each crash in the last minute, up to maxRestartDelayMs. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  /** Workers that exit before they listen, in a row (none listening in between): then the node gives up. */
  maxStartupFailures?: number;
  /** `metrics.listen`: the primary's aggregator, which gets the workers' replies. */
  metrics?: ClusterMetrics;
}

const KILL_MARGIN_MS = 5000;

/**
 * The primary process. run() forks the workers and resolves with the exit code of the node:
 * 0 once every worker has drained after stop(), 1 when workers crash at startup in a row
 * (a configuration they cannot serve: giving up beats restarting forever, security.md #183).
 */
export class Supervisor {
  private readonly o: Required<Omit<SupervisorOptions, 'cache' | 'env' | 'metrics'>> &
    Pick<SupervisorOptions, 'cache' | 'env' | 'metrics'>;
  private readonly logger: Logger;
  /** `text`: the configuration the worker was started with or last sent. */
  private readonly workers = new Map<number, { worker: Worker; listening: boolean; text: string | undefined }>();
  private readonly restarts = new Set<NodeJS.Timeout>();
  /** Exit times of crashed workers in the last minute: the next restart waits longer the more there are. */
  private crashes: number[] = [];
  private startupFailures = 0;
  /** The worker that runs the health checks (HEALTH_CHECKS_ENV); undefined until the next fork takes over. */
  private checker: number | undefined;
  private stopping = false;
  private exitCode = 0;
  private killTimer: NodeJS.Timeout | undefined;
  private resolveRun: ((code: number) => void) | undefined;

  constructor(options: SupervisorOptions) {
    this.o = {
      exec: process.argv[1]!,
      args: process.argv.slice(2),
      execArgv: process.execArgv,
      restartDelayMs: 100,
      maxRestartDelayMs: 30_000,
      maxStartupFailures: 5,
      ...options,
    };
    this.logger = options.logger;
  }

  /** Live workers' process ids, by worker id (tests, the metrics aggregator). */
  get pids(): Map<number, number | undefined> {
    return new Map([...this.workers].map(([id, w]) => [id, w.worker.process.pid]));
  }

  /** The workers serving now (listening): those a scrape asks for their metrics. */
  serving(): Worker[] {
    return [...this.workers.values()].filter((w) => w.listening).map((w) => w.worker);
  }

  run(): Promise<number> {
    cluster.setupPrimary({ exec: this.o.exec, args: this.o.args, execArgv: this.o.execArgv });
    cluster.on('message', this.onMessage);
    cluster.on('exit', this.onExit);
    cluster.on('listening', this.onListening);
    const done = new Promise<number>((resolve) => (this.resolveRun = resolve));
    this.logger.info(
      { event: 'workers_start', workers: this.o.count },
      `starting ${this.o.count} worker processes; this primary serves none itself`,
    );
    for (let i = 0; i < this.o.count; i++) this.fork();
    return done;
  }

  private fork(): void {
    const checks = this.checker === undefined;
    const worker = cluster.fork({ ...this.o.env, [HEALTH_CHECKS_ENV]: checks ? 'run' : 'follow' });
    if (checks) this.checker = worker.id;
    this.workers.set(worker.id, { worker, listening: false, text: this.o.env?.[CONFIG_ENV] });
    // A worker's IPC channel closing under a send is no reason for the primary to die.
    worker.on('error', (err) =>
      this.logger.warn({ event: 'worker_ipc_error', worker: worker.id, err: { message: err.message } }, 'IPC error'),
    );
  }

  private readonly onListening = (worker: Worker) => {
    const w = this.workers.get(worker.id);
    if (!w || w.listening) return;
    w.listening = true;
    this.startupFailures = 0;
    // Started before a reload it did not get: it is sent the configuration now served.
    const text = this.o.env?.[CONFIG_ENV];
    if (text !== undefined && w.text !== text) this.send(w, { text });
  };

  private readonly onMessage = (worker: Worker, message: unknown) => {
    if (this.o.metrics?.onMessage(worker, message)) return;
    if (isPeerMessage(message)) {
      for (const other of this.workers.values())
        if (other.worker !== worker && other.worker.isConnected()) other.worker.send(message);
      return;
    }
    if (!isCacheRequest(message)) return;
    const cache = this.o.cache;
    if (!cache) return void worker.send({ gatehouse: 'cache', id: message.id, error: 'no shared cache' });
    void answerCacheRequest(cache, message).then((reply) => {
      if (worker.isConnected()) worker.send(reply);
    });
  };

  private readonly onExit = (worker: Worker, code: number | null, signal: string | null) => {
    const w = this.workers.get(worker.id);
    this.workers.delete(worker.id);
    if (worker.id === this.checker) this.checker = undefined;
    if (this.stopping) {
      this.logger.info({ event: 'worker_stopped', worker: worker.id, code, signal }, 'worker stopped');
      const ended = signal === 'SIGTERM' && !w?.listening;
      if (code !== 0 && !ended) this.exitCode ||= 1;
      if (this.workers.size === 0) this.finish();
      return;
    }
    const now = Date.now();
    this.crashes = [...this.crashes.filter((t) => now - t < 60_000), now];
    if (!w?.listening) this.startupFailures++;
    if (this.startupFailures >= this.o.maxStartupFailures) {
      this.logger.fatal(
        { event: 'workers_crash_loop', worker: worker.id, code, signal, failures: this.startupFailures },
        `${this.startupFailures} workers in a row exited before serving (the last with ${signal ?? `code ${code}`}); giving up instead of restarting them forever: see the workers' last lines above`,
      );
      this.exitCode = 1;
      this.stop('crash loop');
      return;
    }
    const delay = Math.min(this.o.maxRestartDelayMs, this.o.restartDelayMs * 2 ** (this.crashes.length - 1));
    this.logger.error(
      {
        event: 'worker_exit',
        worker: worker.id,
        pid: worker.process.pid,
        code,
        signal,
        serving: w?.listening ?? false,
        restartInMs: delay,
      },
      `worker ${worker.id} exited (${signal ?? `code ${code}`}); starting a new one in ${delay} ms`,
    );
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      if (!this.stopping) this.fork();
    }, delay);
    this.restarts.add(timer);
  };

  /**
   * SIGHUP: every worker re-reads listen.tls and upstreamTls (each logs tls_reload with its outcome)
   * and serves the configuration the primary has read and checked, or says why it was refused
   * (each logs config_reload). `adopt`: the workers started from now on get it too; one still
   * starting reads the files anyway and is sent it once it listens.
   */
  reload(reload: Reload, adopt = false): void {
    this.logger.info({ event: 'reload', workers: this.workers.size }, 'asking every worker to reload');
    if (adopt && this.o.env) this.o.env[CONFIG_ENV] = reload.text;
    for (const w of this.workers.values()) if (w.listening) this.send(w, reload);
  }

  private send(w: { worker: Worker; text: string | undefined }, reload: Reload): void {
    if (!w.worker.isConnected()) return;
    if (reload.refused === undefined) w.text = reload.text;
    w.worker.send({ gatehouse: 'reload', ...reload } satisfies WorkerCommand);
  }

  /** SIGTERM / SIGINT: every worker drains (its own graceful shutdown); run() resolves once all have exited. */
  stop(reason: string): void {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.restarts) clearTimeout(t);
    this.restarts.clear();
    this.logger.info({ event: 'shutdown', reason, workers: this.workers.size }, 'draining every worker');
    if (this.workers.size === 0) return this.finish();
    // A serving worker drains; one still starting has nothing to drain and is ended.
    for (const { worker, listening } of this.workers.values()) {
      if (listening && worker.isConnected()) worker.send({ gatehouse: 'drain' } satisfies WorkerCommand);
      else worker.process.kill('SIGTERM');
    }
    this.killTimer = setTimeout(() => {
      for (const { worker } of this.workers.values()) {
        this.logger.warn({ event: 'worker_killed', worker: worker.id }, 'worker did not drain in time; killed');
        worker.process.kill('SIGKILL');
      }
    }, this.o.drainMs + KILL_MARGIN_MS);
    this.killTimer.unref();
  }

  private finish(): void {
    clearTimeout(this.killTimer);
    cluster.off('message', this.onMessage);
    cluster.off('exit', this.onExit);
    cluster.off('listening', this.onListening);
    this.resolveRun?.(this.exitCode);
  }
}
