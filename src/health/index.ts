// health/ (base): what the node's dependencies (store, cache) are doing, for /.auth/ready and the log:
// an outage is logged when it starts, every `repeatMs` while it lasts (with counts) and when it ends,
// never once per failed request.
import type { Logger } from '../log/index.ts';

export interface DependencyOptions {
  /** A cheap round trip; while the dependency is down it is asked every probeMs to notice it is back. */
  ping(): Promise<void>;
  /** A node that cannot reach a critical dependency cannot serve (readiness 503); others only degrade it. */
  critical: boolean;
  /** Up again only after a ping answers and no operation failed for this long (no flapping). Default 0. */
  settleMs?: number;
}

export interface DependencyState {
  name: string;
  critical: boolean;
  up: boolean;
  /** Since when it has been down (epoch ms); undefined while up. */
  downSince?: number;
  /** Operations that failed, or were served without it, since it went down. */
  failures: number;
}

interface Tracked extends DependencyOptions, DependencyState {
  lastLogged: number;
  lastFailure: number;
  lastError?: { name: string; message: string };
  probe?: NodeJS.Timeout;
}

/**
 * Tracks the health of each dependency from what requests see (`failed`) and from its ping.
 * Logs `dependency_down` (warn, the first error) when it goes down, `dependency_still_down`
 * every `repeatMs` while it stays down (failed operations so far, how long), and
 * `dependency_up` (info) when a ping answers again.
 */
export class DependencyHealth {
  private readonly deps = new Map<string, Tracked>();
  private readonly logger: Logger;
  private readonly repeatMs: number;
  private readonly probeMs: number;
  private closed = false;

  constructor(logger: Logger, options: { repeatMs?: number; probeMs?: number } = {}) {
    this.logger = logger;
    this.repeatMs = options.repeatMs ?? 30_000;
    this.probeMs = options.probeMs ?? 1000;
  }

  register(name: string, options: DependencyOptions): this {
    this.deps.set(name, { ...options, name, up: true, failures: 0, lastLogged: 0, lastFailure: 0 });
    return this;
  }

  /** An operation on `name` failed (or was served without it): counted; logged only on a change of state. */
  failed(name: string, err?: unknown): void {
    const d = this.deps.get(name);
    if (!d) return;
    const now = Date.now();
    d.failures++;
    d.lastFailure = now;
    if (err) d.lastError = errorOf(err);
    if (d.up) {
      d.up = false;
      d.downSince = now;
      d.failures = 1;
      d.lastLogged = now;
      this.logger.error(
        { event: 'dependency_down', dependency: name, critical: d.critical, err: d.lastError },
        `${name} is unavailable`,
      );
      this.startProbe(d);
    } else this.stillDown(d, now);
  }

  /** `name` answered: if it was down, it is up again (logged once). */
  succeeded(name: string): void {
    const d = this.deps.get(name);
    if (!d || d.up) return;
    if (d.settleMs && Date.now() - d.lastFailure < d.settleMs) return;
    const downMs = Date.now() - (d.downSince ?? Date.now());
    this.logger.info(
      { event: 'dependency_up', dependency: name, failures: d.failures, downMs },
      `${name} is available again`,
    );
    clearInterval(d.probe);
    Object.assign(d, { up: true, downSince: undefined, failures: 0, probe: undefined, lastError: undefined });
  }

  /** Whether `name` is known to be down (from what requests or probes saw). */
  isDown(name: string): boolean {
    return this.deps.get(name)?.up === false;
  }

  /**
   * Pings every dependency now (each bounded by `timeoutMs`) and records the answers: the
   * readiness probe. `ready` is false when a critical one did not answer.
   */
  async check(timeoutMs = 2000): Promise<{ ready: boolean; states: DependencyState[] }> {
    await Promise.all([...this.deps.values()].map((d) => this.ping(d, timeoutMs)));
    const states = this.snapshot();
    return { ready: states.every((s) => s.up || !s.critical), states };
  }

  snapshot(): DependencyState[] {
    return [...this.deps.values()].map(({ name, critical, up, downSince, failures }) => ({
      name,
      critical,
      up,
      ...(up ? {} : { downSince }),
      failures: up ? 0 : failures,
    }));
  }

  close(): void {
    this.closed = true;
    for (const d of this.deps.values()) clearInterval(d.probe);
  }

  private async ping(d: Tracked, timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        d.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      this.succeeded(d.name);
      return true;
    } catch (err) {
      this.failed(d.name, err);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private startProbe(d: Tracked): void {
    if (this.closed || d.probe) return;
    let busy = false;
    d.probe = setInterval(() => {
      if (busy) return;
      busy = true;
      void this.pingQuietly(d).finally(() => (busy = false));
    }, this.probeMs);
    d.probe.unref();
  }

  /** A probe's ping: a failure is not an operation that failed, only a reminder to log. */
  private async pingQuietly(d: Tracked): Promise<void> {
    try {
      await d.ping();
      this.succeeded(d.name);
    } catch (err) {
      d.lastError = errorOf(err);
      this.stillDown(d, Date.now());
    }
  }

  private stillDown(d: Tracked, now: number): void {
    if (now - d.lastLogged < this.repeatMs) return;
    d.lastLogged = now;
    this.logger.warn(
      {
        event: 'dependency_still_down',
        dependency: d.name,
        failures: d.failures,
        downMs: now - (d.downSince ?? now),
        err: d.lastError,
      },
      `${d.name} is still unavailable`,
    );
  }
}

function errorOf(err: unknown): { name: string; message: string } {
  const e = err as Error;
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err) };
}
