// jobs/ (model): background jobs (the purges of what expired), each run by one node at a time under a
// lease in the store, in small batches that leave the event loop free between them.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/index.ts';
import type { Store } from '../store/index.ts';

/**
 * The purge-function contract: delete at most `limit` of the rows that have expired at `now`
 * (per table, for a purge of several) and return how many went. The runner calls it again while
 * it returns `limit` or more, with a limit it adapts so that one call stays near BATCH's target,
 * and lets the event loop run between calls. One statement per table, selected by an index:
 * `DELETE FROM t WHERE pk IN (SELECT pk FROM t WHERE expires_at <= ? LIMIT ?)`.
 */
export type PurgeFn = (now: number, limit: number) => Promise<number>;

export interface Job {
  readonly name: string;
  /** Runs until done or until `ctx.stopped()`; returns what it did, for the log. */
  run(ctx: JobContext): Promise<JobCounts>;
}

export interface JobCounts {
  deleted: number;
  batches: number;
  /** The longest batch, in ms of wall time (PostgreSQL: mostly waiting for the database). */
  longestBatchMs: number;
  /**
   * The most CPU time this thread used during one batch, in ms. On SQLite (which runs on the
   * event loop) that is what the batch held the loop for, whatever else the machine is doing;
   * on PostgreSQL it is whatever requests ran meanwhile.
   */
  longestBatchCpuMs: number;
}

export interface JobContext {
  /**
   * How long one batch should take: SQLite runs on the event loop, so a few ms; PostgreSQL
   * works off it, so longer batches only bound each transaction's size and lock time.
   */
  batch: { targetMs: number; maxLimit: number };
  stopped(): boolean;
  /** Between batches: lets pending I/O run, and keeps the lease while the job lasts. */
  pause(): Promise<void>;
}

export interface JobResult extends Partial<JobCounts> {
  job: string;
  /** ran: done; skipped: another node holds the lease; failed: logged as job_failed. */
  outcome: 'ran' | 'skipped' | 'failed';
  ms?: number;
}

/**
 * One batch's target duration on SQLite, which runs on the event loop; the limit halves above
 * twice the target and doubles below half of it. SQLite deletes a session row with its four
 * index entries in 10 to 20 µs, so batches of a few hundred rows, plus the WAL checkpoint a
 * commit sometimes runs, stay far below 50 ms. PostgreSQL's batches take longer (they do not
 * hold the event loop): their target only bounds one transaction.
 */
export const BATCH = {
  sqlite: { targetMs: 5, maxLimit: 2000 },
  postgres: { targetMs: 200, maxLimit: 10_000 },
} as const;
const MIN_LIMIT = 20;
const FIRST_LIMIT = 200;
/** A run that deleted this many rows or more compacts the store afterwards (SQLite: truncates the WAL). */
export const COMPACT_AFTER_ROWS = 10_000;

/** A job that calls `purge` in batches until it deletes fewer than it was allowed (see PurgeFn). */
export function purgeJob(name: string, purge: PurgeFn): Job {
  return {
    name,
    async run(ctx) {
      let limit = FIRST_LIMIT;
      const counts: JobCounts = { deleted: 0, batches: 0, longestBatchMs: 0, longestBatchCpuMs: 0 };
      while (!ctx.stopped()) {
        const started = performance.now();
        const cpu = process.threadCpuUsage();
        const n = await purge(Date.now(), limit);
        const ms = performance.now() - started;
        const used = process.threadCpuUsage(cpu);
        counts.deleted += n;
        counts.batches++;
        counts.longestBatchMs = Math.max(counts.longestBatchMs, Math.round(ms * 10) / 10);
        counts.longestBatchCpuMs = Math.max(counts.longestBatchCpuMs, Math.round((used.user + used.system) / 100) / 10);
        if (n < limit) break;
        if (ms > 2 * ctx.batch.targetMs) limit = Math.max(MIN_LIMIT, limit >> 1);
        else if (ms < ctx.batch.targetMs / 2) limit = Math.min(ctx.batch.maxLimit, limit * 2);
        await ctx.pause();
      }
      return counts;
    },
  };
}

export interface JobRunnerOptions {
  store: Store;
  logger: Logger;
  /** How often each job runs (somewhere in the cluster). */
  intervalMs: number;
  /** The first run after start: a random moment between these (ms); default 5 s to 30 s. */
  firstRunMs?: [number, number];
  /** Identifies this node in job_leases; default a random id per process start. */
  holder?: string;
}

/**
 * Runs the jobs: first soon after start (so a node restarted more often than the interval still
 * purges), then every interval. Each job runs only under its lease (job_leases): the node that
 * takes it keeps it for 90% of the interval, so across N nodes each job runs about once per
 * interval, whichever node's timer comes first. Jobs run one after another, never in parallel.
 * Each run is logged (`job_done`: counts and duration; `job_failed`: the error, retried at the
 * next run); a run that deleted many rows compacts the store.
 */
export class JobRunner {
  private readonly o: Required<Omit<JobRunnerOptions, 'firstRunMs'>> & { firstRunMs: [number, number] };
  private readonly jobs: Job[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<JobResult[]> | undefined;
  private stopping = false;

  constructor(options: JobRunnerOptions) {
    this.o = { firstRunMs: [5000, 30_000], holder: randomUUID(), ...options };
  }

  get holder(): string {
    return this.o.holder;
  }

  add(job: Job): this {
    if (this.jobs.some((j) => j.name === job.name)) throw new Error(`job ${job.name} is already added`);
    this.jobs.push(job);
    return this;
  }

  /** Starts the timer: a first run soon (jittered), then every interval. */
  start(): void {
    if (this.timer || this.stopping) return;
    const [min, max] = this.o.firstRunMs;
    const tick = (delay: number) => {
      this.timer = setTimeout(() => {
        void this.runAll().finally(() => {
          if (!this.stopping) tick(this.o.intervalMs);
        });
      }, delay);
      this.timer.unref();
    };
    tick(min + Math.random() * Math.max(0, max - min));
  }

  /** Runs every job now (each under its lease), one after another. A run under way is joined. */
  runAll(): Promise<JobResult[]> {
    this.running ??= this.runEach().finally(() => (this.running = undefined));
    return this.running;
  }

  private async runEach(): Promise<JobResult[]> {
    const results: JobResult[] = [];
    for (const job of this.jobs) {
      if (this.stopping) break;
      results.push(await this.runOne(job));
    }
    const deleted = results.reduce((sum, r) => sum + (r.deleted ?? 0), 0);
    if (deleted >= COMPACT_AFTER_ROWS && !this.stopping) {
      const started = performance.now();
      try {
        await this.o.store.compact();
        this.o.logger.info(
          { event: 'store_compacted', deleted, ms: Math.round(performance.now() - started) },
          'compacted',
        );
      } catch (err) {
        this.o.logger.warn({ event: 'job_failed', job: 'compact', err: errorOf(err) }, 'could not compact the store');
      }
    }
    return results;
  }

  private async runOne(job: Job): Promise<JobResult> {
    const { store, logger, holder, intervalMs } = this.o;
    const leaseMs = Math.max(1000, Math.floor(intervalMs * 0.9));
    const started = performance.now();
    let leaseUntil = 0;
    try {
      const now = Date.now();
      leaseUntil = now + leaseMs;
      if (!(await store.jobs.acquire(job.name, holder, now, leaseUntil))) {
        logger.debug({ event: 'job_skipped', job: job.name }, 'another node holds the lease');
        return { job: job.name, outcome: 'skipped' };
      }
    } catch (err) {
      logger.warn(
        { event: 'job_failed', job: job.name, err: errorOf(err) },
        'could not take the job lease; next run retries',
      );
      return { job: job.name, outcome: 'failed' };
    }
    let lost = false;
    const ctx: JobContext = {
      batch: BATCH[store.kind],
      stopped: () => this.stopping || lost,
      pause: async () => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        await store.settle();
        // Half the lease left: extend it, so a long run is not taken over halfway.
        if (leaseUntil - Date.now() < leaseMs / 2) {
          const until = Date.now() + leaseMs;
          if (await store.jobs.renew(job.name, holder, until)) leaseUntil = until;
          else lost = true;
        }
      },
    };
    try {
      const counts = await job.run(ctx);
      const ms = Math.round(performance.now() - started);
      // Stopped halfway (shutdown): the lease is handed back, so another node finishes soon.
      if (this.stopping && !lost) await store.jobs.renew(job.name, holder, Date.now()).catch(() => {});
      logger.info(
        { event: 'job_done', job: job.name, ...counts, ms, ...(lost ? { leaseLost: true } : {}) },
        `${job.name}: ${counts.deleted} deleted`,
      );
      return { job: job.name, outcome: 'ran', ...counts, ms };
    } catch (err) {
      logger.warn(
        { event: 'job_failed', job: job.name, err: errorOf(err) },
        `${job.name} failed; the next run retries`,
      );
      return { job: job.name, outcome: 'failed', ms: Math.round(performance.now() - started) };
    }
  }

  /** Stops the timer and the run under way (after its current batch). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => {});
  }
}

function errorOf(err: unknown): { name: string; message: string } {
  const e = err as Error;
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err) };
}
