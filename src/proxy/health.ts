import { Agent, type Dispatcher, request } from 'undici';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { HealthCheck } from '../sites/index.ts';
import type { UpstreamTlsOptions } from './tls.ts';

/** How much of a health answer's body is read for healthCheck.body (the rest is dropped). */
const BODY_LIMIT = 64 * 1024;

/**
 * One check of one replica (`gatehouse serve` every interval, `gatehouse check --connect` once):
 * GET the health path with the app's Host. Healthy: within the timeout, a status `status` lists (by
 * default any 2xx or 3xx) and, with `body`, an answer whose first 64 KiB contain that text. `cause`
 * says why not ("HTTP 503", "ECONNREFUSED", "timeout", "body without \"ok\"").
 */
export async function checkReplica(
  dispatcher: Dispatcher,
  replica: URL,
  host: string,
  check: Pick<HealthCheck, 'path' | 'timeout' | 'status' | 'body'>,
): Promise<{ status?: number; cause?: string }> {
  try {
    const res = await request(new URL(check.path, replica.origin), {
      dispatcher,
      headers: { host, 'user-agent': 'Gatehouse health check' },
      headersTimeout: check.timeout,
      bodyTimeout: check.timeout,
      signal: AbortSignal.timeout(check.timeout),
    });
    const status = res.statusCode;
    const passes = check.status ? check.status.includes(status) : status < 400;
    if (!passes || check.body === undefined) {
      await res.body.dump();
      return passes ? { status } : { status, cause: `HTTP ${status}` };
    }
    let text = '';
    res.body.setEncoding('utf8');
    for await (const chunk of res.body) {
      text += chunk as string;
      if (text.length >= BODY_LIMIT || text.includes(check.body)) break;
    }
    res.body.destroy();
    return text.slice(0, BODY_LIMIT).includes(check.body)
      ? { status }
      : { status, cause: `body without ${JSON.stringify(check.body)}` };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const timedOut =
      e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT';
    return { cause: timedOut ? 'timeout' : (e.code ?? e.name) };
  }
}

/**
 * Where a replica's change of health is told: the log and the gauge (set by the wiring serving);
 * with listen.workers, `share` passes each round's results to the other workers of the node.
 */
export interface HealthReporter {
  logger: Logger;
  metrics: Metrics | undefined;
  share?: (app: string, replicas: string[], healthy: boolean[]) => void;
}

/**
 * Active health checks of an app's replicas (healthCheck): each is checked every interval, all at
 * once, the next round starting an interval after the last ended (a slow replica never makes rounds
 * overlap). A replica is taken out after `unhealthyAfter` failed checks in a row and put back after
 * `healthyAfter` passed ones; every replica starts healthy. `changed` is called at each change.
 * With listen.workers one worker of the node checks; the others follow what it shares (apply()),
 * so a replica gets one check per interval from a node, and every worker routes alike.
 */
export class HealthChecks {
  private readonly replicas: URL[];
  /** The replicas' URLs as a worker shares them (and checks() compares them). */
  private readonly hrefs: string[];
  private readonly host: string;
  private readonly check: HealthCheck;
  private readonly changed: () => void;
  private readonly healthy: boolean[];
  /** Checks in a row whose result differs from the replica's state. */
  private readonly against: number[];
  /** Made at the first round: a worker that only follows (apply()) never makes one. */
  private agent: Agent | undefined;
  private tls: UpstreamTlsOptions;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  /** The app's name in logs and metrics, and where they go (attach()). */
  private app = '';
  private reporter: HealthReporter | undefined;

  constructor(replicas: URL[], host: string, check: HealthCheck, tls: UpstreamTlsOptions, changed: () => void) {
    this.replicas = replicas;
    this.hrefs = replicas.map((r) => r.href);
    this.host = host;
    this.check = check;
    this.changed = changed;
    this.healthy = replicas.map(() => true);
    this.against = replicas.map(() => 0);
    this.tls = tls;
  }

  /**
   * Reports as `app` to `reporter` from now on (a reload that keeps the pool hands it the new
   * wiring's), the gauge set for every replica; the first round starts now, then one every interval
   * until close(). `follow`: no rounds here; another worker's results come by apply().
   */
  attach(app: string, reporter: HealthReporter, follow = false): void {
    if (this.closed) return;
    this.unpublish();
    this.app = app;
    this.reporter = reporter;
    this.replicas.forEach((_, i) => this.publish(i));
    if (this.started || follow) return;
    this.started = true;
    void this.round();
  }

  isHealthy(i: number): boolean {
    return this.healthy[i]!;
  }

  /** Whether these are the replicas checked here (a worker's share matches only the same list). */
  checks(replicas: string[]): boolean {
    return replicas.length === this.hrefs.length && this.hrefs.every((r, i) => r === replicas[i]);
  }

  /** The checking worker's results (listen.workers): taken as this process's own, without a log line of its own. */
  apply(healthy: boolean[]): void {
    if (this.closed) return;
    let changed = false;
    healthy.forEach((h, i) => {
      if (h === this.healthy[i]) return;
      this.set(i, h);
      changed = true;
    });
    if (changed) this.changed();
  }

  /** New upstreamTls files (SIGHUP): the next round connects with them. */
  useTls(tls: UpstreamTlsOptions): void {
    this.tls = tls;
    void this.agent?.close();
    this.agent = undefined;
  }

  private async round(): Promise<void> {
    // A connection per check (no keep-alive): a replica that stopped accepting them is seen at once.
    const agent = (this.agent ??= new Agent({ pipelining: 0, connect: { timeout: this.check.timeout, ...this.tls } }));
    const results = await Promise.all(
      this.replicas.map((replica) => checkReplica(agent, replica, this.host, this.check)),
    );
    if (this.closed) return;
    let changed = false;
    results.forEach((r, i) => {
      const passed = r.cause === undefined;
      if (passed === this.healthy[i]) return void (this.against[i] = 0);
      if (++this.against[i]! < (passed ? this.check.healthyAfter : this.check.unhealthyAfter)) return;
      this.set(i, passed);
      changed = true;
      this.report(i, r.cause);
    });
    if (changed) this.changed();
    this.reporter?.share?.(this.app, this.hrefs, [...this.healthy]);
    this.timer = setTimeout(() => void this.round(), this.check.interval).unref();
  }

  /** Replica i is now in (healthy) or out: its count starts over and its gauge says so. */
  private set(i: number, healthy: boolean): void {
    this.healthy[i] = healthy;
    this.against[i] = 0;
    this.publish(i);
  }

  private report(i: number, cause: string | undefined): void {
    const healthy = this.healthy[i]!;
    const replica = this.replicas[i]!.origin;
    const serving = this.healthy.filter(Boolean).length;
    const fields = {
      event: 'upstream_health',
      app: this.app,
      replica,
      healthy,
      cause,
      healthyReplicas: `${serving} of ${this.replicas.length}`,
    };
    if (healthy)
      this.reporter?.logger.info(fields, 'a replica of the app passed its health checks: it gets requests again');
    else
      this.reporter?.logger.warn(
        fields,
        serving
          ? 'a replica of the app failed its health checks: it gets no requests until it passes again'
          : this.replicas.length === 1
            ? 'the app failed its health checks: as its only upstream it still gets every request'
            : 'every replica of the app failed its health checks: requests go to all of them, as if none were checked',
      );
  }

  /** gatehouse_upstream_healthy of replica i. */
  private publish(i: number): void {
    const replica = this.replicas[i]!.origin;
    this.reporter?.metrics?.upstreamHealthy.set({ app: this.app, replica }, this.healthy[i] ? 1 : 0);
  }

  private unpublish(): void {
    for (const r of this.replicas) this.reporter?.metrics?.upstreamHealthy.remove({ app: this.app, replica: r.origin });
  }

  /** Stops the checks (the pool is closing, or a reload replaced it) and drops its gauges. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.unpublish();
    void this.agent?.close();
  }
}
