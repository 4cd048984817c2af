// metrics/ (model): Prometheus metrics over prom-client. This module owns the one registry of a node (a
// cluster's primary can aggregate the workers' registries from here, prom-client's AggregatorRegistry),
// every metric's name and labels, the hot-path meters (label children resolved once, no allocation per
// request), the timing wrappers of the store and the cache, and the listener that serves /metrics.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { toOriginForm } from '../http/protocol.ts';
import client, { type Counter, type Gauge, Registry } from 'prom-client';
import { type CounterChild, FastCounter, FastHistogram, type HistogramChild } from './fast.ts';

/** What a request was, as the `kind` label: a bounded set. */
export type RequestKind = 'proxied' | 'own' | 'forward_auth' | 'well_known';

/** Label value for requests that belong to no app (own routes, a host no site serves). */
export const NO_APP = '-';

const STATUS_CLASSES = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Seconds: from a fast answer out of memory to a slow app. */
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** The meters of one (app, kind): a counter child per status class and the duration histogram's child. */
export interface RequestMeter {
  /** Counts one request with its final status and Gatehouse's own time in seconds. */
  done(status: number, ownSeconds: number): void;
}

class Meter implements RequestMeter {
  private readonly byClass: CounterChild[];
  private readonly duration: HistogramChild;
  constructor(m: Metrics, app: string, kind: RequestKind) {
    // Children are made lazily by prom-client only when labelled; making all six here keeps
    // the per-request path to an array index.
    this.byClass = STATUS_CLASSES.map((status) => m.httpRequests.labels({ app, kind, status }));
    this.duration = m.httpDuration.labels({ app, kind });
  }
  done(status: number, ownSeconds: number): void {
    const c = (status / 100) | 0;
    this.byClass[c >= 1 && c <= 5 ? c : 5]!.inc();
    this.duration.observe(ownSeconds);
  }
}

/** Values read only when Prometheus scrapes (composition root supplies them). */
export interface Collectors {
  /** Sessions that have not expired (a COUNT; cached for a few seconds here). */
  sessionsActive?: () => Promise<number>;
  mailQueueDepth?: () => number;
  /** Epoch ms the key that signs now was created. */
  signingKeyCreatedAt?: () => number | undefined;
}

/**
 * The node's metrics (names in docs/observability.md). Label values come from bounded sets
 * only: app names from the config, kinds, status classes, method and outcome names from the
 * code; never a path, a user or anything a client sends.
 */
export class Metrics {
  readonly registry: Registry;
  readonly httpRequests: FastCounter;
  readonly httpDuration: FastHistogram;
  readonly upstreamDuration: FastHistogram;
  readonly logins: Counter<'method' | 'outcome'>;
  readonly registrations: Counter<string>;
  readonly oauthTokens: Counter<'grant' | 'outcome'>;
  readonly refreshReuse: Counter<string>;
  readonly rateLimited: Counter<'limit'>;
  readonly storeDuration: FastHistogram;
  readonly storeErrors: FastCounter;
  readonly cacheDuration: FastHistogram;
  readonly cacheErrors: FastCounter;
  readonly auditDropped: Counter<string>;
  readonly appEvents: Counter<'app' | 'outcome'>;
  readonly passedOver: Counter<'app'>;
  readonly upstreamHealthy: Gauge<'app' | 'replica'>;
  readonly upstreamRetries: Counter<'app'>;
  readonly revalidations: Counter<'provider' | 'outcome'>;
  readonly providerBearer: Counter<'provider' | 'outcome'>;
  private readonly configReloads: Counter<'outcome'>;
  private readonly configServed: Gauge<string>;
  private readonly configLoadedAt: Gauge<string>;
  private readonly sessionsActive: Gauge<string>;
  private readonly meters = new Map<RequestKind, Map<string, Meter>>();
  private readonly upstreams = new Map<string, HistogramChild>();
  private collectors: Collectors = {};

  constructor(o: { version: string; processMetrics?: boolean } = { version: '0.0.0' }) {
    const registry = new Registry();
    this.registry = registry;
    if (o.processMetrics !== false) client.collectDefaultMetrics({ register: registry });
    const r = [registry];
    this.httpRequests = new FastCounter({
      name: 'gatehouse_http_requests_total',
      help: 'Requests answered, by app, kind (proxied, own, forward_auth, well_known) and status class',
      labelNames: ['app', 'kind', 'status'],
      registers: r,
    });
    this.httpDuration = new FastHistogram({
      name: 'gatehouse_http_request_duration_seconds',
      help: "Gatehouse's own time per request (for a proxied one, until it is sent to the app)",
      labelNames: ['app', 'kind'],
      buckets: HTTP_BUCKETS,
      registers: r,
    });
    this.upstreamDuration = new FastHistogram({
      name: 'gatehouse_upstream_duration_seconds',
      help: "Time from sending a request to the app to the app's response headers",
      labelNames: ['app'],
      buckets: HTTP_BUCKETS,
      registers: r,
    });
    this.logins = new client.Counter({
      name: 'gatehouse_logins_total',
      help: 'Sign-ins by method (password, provider, device, ...) and outcome',
      labelNames: ['method', 'outcome'],
      registers: r,
    });
    this.registrations = new client.Counter({
      name: 'gatehouse_registrations_total',
      help: 'Accounts registered',
      registers: r,
    });
    this.sessionsActive = new client.Gauge({
      name: 'gatehouse_sessions_active',
      help: 'Browser sessions that have not expired (read at scrape time, cached 10 s)',
      registers: r,
      // A fact of the store, which every worker reads alike: not multiplied by the workers.
      aggregator: 'first',
      collect: async () => {
        const v = await this.activeSessions();
        if (v !== undefined) this.sessionsActive.set(v);
      },
    });
    this.oauthTokens = new client.Counter({
      name: 'gatehouse_oauth_tokens_total',
      help: 'Token requests to the OAuth server, by grant and outcome',
      labelNames: ['grant', 'outcome'],
      registers: r,
    });
    this.refreshReuse = new client.Counter({
      name: 'gatehouse_refresh_reuse_total',
      help: 'Refresh tokens presented again after rotation (the grant is revoked)',
      registers: r,
    });
    this.rateLimited = new client.Counter({
      name: 'gatehouse_rate_limited_total',
      help: 'Requests refused by a rate limit, by limit',
      labelNames: ['limit'],
      registers: r,
    });
    this.storeDuration = new FastHistogram({
      name: 'gatehouse_store_duration_seconds',
      help: 'Store calls by operation (area.method)',
      labelNames: ['op'],
      buckets: STORE_BUCKETS,
      registers: r,
    });
    this.storeErrors = new FastCounter({
      name: 'gatehouse_store_errors_total',
      help: 'Store calls that failed (a conflict such as a taken email is no error)',
      registers: r,
    });
    this.cacheDuration = new FastHistogram({
      name: 'gatehouse_cache_duration_seconds',
      help: 'Cache calls by operation',
      labelNames: ['op'],
      buckets: STORE_BUCKETS,
      registers: r,
    });
    this.cacheErrors = new FastCounter({
      name: 'gatehouse_cache_errors_total',
      help: 'Cache calls that failed',
      registers: r,
    });
    this.auditDropped = new client.Counter({
      name: 'gatehouse_audit_write_failures_total',
      help: 'Audit events that could not be written to the store (they are still in the log)',
      registers: r,
    });
    this.passedOver = new client.Counter({
      name: 'gatehouse_upstream_passed_over_total',
      help: 'Replicas of an app (upstream: [...]) passed over because they could not be connected to; the request went to the next',
      labelNames: ['app'],
      registers: r,
    });
    this.upstreamRetries = new client.Counter({
      name: 'gatehouse_upstream_retries_total',
      help: 'Safe requests (GET, HEAD, OPTIONS without a body) sent to the app once more because the connection closed before it answered (most often a keep-alive connection the app had just closed)',
      labelNames: ['app'],
      registers: r,
    });
    this.upstreamHealthy = new client.Gauge({
      name: 'gatehouse_upstream_healthy',
      help: '1 while a replica of an app passes its health checks (healthCheck), 0 while it fails them and gets no requests',
      labelNames: ['app', 'replica'],
      registers: r,
      // Across workers (each checks on its own): 0 when any of them has taken the replica out.
      aggregator: 'min',
    });
    this.appEvents = new client.Counter({
      name: 'gatehouse_app_events_total',
      help: 'Attempts to tell an app of an account event: delivered, failed (retried), rejected (400: not sent again), dropped',
      labelNames: ['app', 'outcome'],
      registers: r,
    });
    this.revalidations = new client.Counter({
      name: 'gatehouse_session_revalidations_total',
      help: 'Sessions checked with their provider (providers[].revalidate): confirmed (asked, and it took the refresh token), ended (refused, no refresh token past the interval, or unconfirmed past revalidateGrace), unavailable (the provider could not be asked)',
      labelNames: ['provider', 'outcome'],
      registers: r,
    });
    this.providerBearer = new client.Counter({
      name: 'gatehouse_provider_bearer_tokens_total',
      help: "Requests with a provider's own access token (providers[].bearerTokens): accepted, refused (401 invalid_token: its audience, signature, expiry, user, app), unavailable (503: the provider's keys could not be had)",
      labelNames: ['provider', 'outcome'],
      registers: r,
    });
    this.configReloads = new client.Counter({
      name: 'gatehouse_config_reloads_total',
      help: 'Reloads of the configuration file (SIGHUP), by outcome: ok, unchanged, restart_required (it changes a key only a restart can), failed (it does not validate, check fails it, or a file it names cannot be used)',
      labelNames: ['outcome'],
      registers: r,
    });
    this.configServed = new client.Gauge({
      name: 'gatehouse_config_last_reload_successful',
      help: '1 when the node serves its configuration file as it was at the last reload (or the start); 0 when that reload was refused and the file differs from what is served',
      registers: r,
      // Across workers: 0 when any of them refused it.
      aggregator: 'min',
    });
    this.configServed.set(1);
    this.configLoadedAt = new client.Gauge({
      name: 'gatehouse_config_last_reload_success_timestamp_seconds',
      help: 'When the configuration being served was loaded: the start, or the last reload that changed it (Unix time)',
      registers: r,
      aggregator: 'min',
    });
    this.configLoadedAt.set(Date.now() / 1000);
    const mailQueue: Gauge = new client.Gauge({
      name: 'gatehouse_mail_queue_depth',
      help: 'Messages queued, being sent or waiting for a retry',
      registers: r,
      collect: () => mailQueue.set(this.collectors.mailQueueDepth?.() ?? 0),
    });
    const keyAge: Gauge = new client.Gauge({
      name: 'gatehouse_signing_key_age_seconds',
      help: 'Age of the key that signs now',
      registers: r,
      // Across workers: the oldest key still signing in any of them.
      aggregator: 'max',
      collect: () => {
        const created = this.collectors.signingKeyCreatedAt?.();
        if (created !== undefined) keyAge.set(Math.max(0, (Date.now() - created) / 1000));
      },
    });
    new client.Gauge({
      name: 'gatehouse_build_info',
      help: 'Always 1; the version as a label',
      labelNames: ['version'],
      registers: r,
      aggregator: 'first',
    }).set({ version: o.version }, 1);
  }

  /** A reload's outcome (server/gatehouse.ts reload()). */
  configReloaded(outcome: 'ok' | 'unchanged' | 'restart_required' | 'failed'): void {
    this.configReloads.inc({ outcome });
    this.configServed.set(outcome === 'ok' || outcome === 'unchanged' ? 1 : 0);
    if (outcome === 'ok') this.configLoadedAt.set(Date.now() / 1000);
  }

  /** Sets what the scrape-time gauges read. */
  collect(c: Collectors): void {
    this.collectors = { ...this.collectors, ...c };
  }

  private activeCache: { at: number; value: number } | undefined;
  private async activeSessions(): Promise<number | undefined> {
    const read = this.collectors.sessionsActive;
    if (!read) return undefined;
    const now = Date.now();
    if (this.activeCache && now - this.activeCache.at < 10_000) return this.activeCache.value;
    try {
      const value = await read();
      this.activeCache = { at: now, value };
      return value;
    } catch {
      return this.activeCache?.value;
    }
  }

  /** The meter of (app, kind), made once: the request path calls done() on it. */
  request(app: string, kind: RequestKind): RequestMeter {
    let byApp = this.meters.get(kind);
    if (!byApp) this.meters.set(kind, (byApp = new Map()));
    let m = byApp.get(app);
    if (!m) byApp.set(app, (m = new Meter(this, app, kind)));
    return m;
  }

  /** The upstream histogram's child of an app. */
  upstream(app: string): HistogramChild {
    let h = this.upstreams.get(app);
    if (!h) this.upstreams.set(app, (h = this.upstreamDuration.labels({ app })));
    return h;
  }

  login(method: string, outcome: string): void {
    this.logins.inc({ method, outcome });
  }

  /** The text Prometheus scrapes. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Every metric name the registry has (the dashboard test checks its queries against them). */
export function metricNames(m: Metrics): string[] {
  return m.registry.getMetricsAsArray().map((x) => x.name);
}

const seconds = (since: number) => (performance.now() - since) / 1000;

type AnyFn = (...args: unknown[]) => unknown;

/** Methods of an object and its prototype chain, Object's own excluded. */
function methodNames(o: object): string[] {
  const names = new Set<string>();
  for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null)
    for (const k of Object.getOwnPropertyNames(p))
      if (k !== 'constructor' && typeof (o as Record<string, unknown>)[k] === 'function') names.add(k);
  return names.size ? [...names] : [];
}

/**
 * An object like `target` whose methods are timed into `duration{op}` (op: prefix + method
 * name, a bounded set) and whose failures count in `errors`, except those `expected` says are
 * answers (a conflict). What is not a method is read through from the original.
 */
function timed<T extends object>(
  target: T,
  prefix: string,
  duration: FastHistogram,
  errors: FastCounter,
  expected: (err: unknown) => boolean,
): T {
  const out = Object.create(target) as Record<string, unknown>;
  for (const name of methodNames(target)) {
    const fn = (target as Record<string, AnyFn>)[name]!;
    if (UNTIMED.has(name)) {
      out[name] = fn.bind(target);
      continue;
    }
    const child = duration.labels({ op: prefix + name });
    out[name] = function (this: unknown, ...args: unknown[]) {
      const start = performance.now();
      let r: unknown;
      try {
        r = fn.apply(target, args);
      } catch (err) {
        if (!expected(err)) errors.inc();
        throw err;
      }
      if (!(r instanceof Promise)) return (child.observe(seconds(start)), r);
      return r.then(
        (v) => (child.observe(seconds(start)), v),
        (err: unknown) => {
          child.observe(seconds(start));
          if (!expected(err)) errors.inc();
          throw err;
        },
      );
    };
  }
  return out as T;
}

/**
 * Methods that answer from memory, never asking the store: the read cache's session lookup,
 * which every signed-in request makes. Timing it would cost the hot path two clock reads and a
 * generic call, for a histogram of microseconds that says nothing about the database.
 */
const UNTIMED = new Set(['cachedWithUser']);

const isConflict = (err: unknown) => (err as Error | undefined)?.name === 'StoreConflictError';

/**
 * The store with every call of every area (users, sessions, oauth, ...) timed as
 * `gatehouse_store_duration_seconds{op="sessions.getWithUser"}`: the boundary, so no caller changes.
 */
export function timeStore<S extends object>(store: S, m: Metrics): S {
  const out = Object.create(store) as Record<string, unknown>;
  for (const key of Object.keys(store)) {
    // `db`: the driver itself, which the areas call directly; only the areas are the boundary.
    if (key === 'db') continue;
    const v = (store as Record<string, unknown>)[key];
    if (v && typeof v === 'object' && !Array.isArray(v))
      out[key] = timed(v, `${key}.`, m.storeDuration, m.storeErrors, isConflict);
  }
  for (const name of ['ping', 'close'])
    if (typeof (store as Record<string, unknown>)[name] === 'function')
      out[name] = ((store as Record<string, AnyFn>)[name] as AnyFn).bind(store);
  return out as S;
}

/** The cache with its calls timed as `gatehouse_cache_duration_seconds{op}`. */
export function timeCache<C extends object>(cache: C, m: Metrics): C {
  return timed(cache, '', m.cacheDuration, m.cacheErrors, () => false);
}

/** What the listener serves: one process's registry, or a cluster's primary aggregating its workers'. */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

/**
 * The listener of `metrics.listen`: GET /metrics, nothing else (in absolute form too, when it
 * names the Host, like the public listener: http/protocol.ts). A source that rejects with a
 * `status` of 503 (metrics/cluster.ts: a worker did not answer) is a 503 with its message.
 */
export class MetricsListener {
  private readonly server: http.Server;
  constructor(metrics: MetricsSource) {
    this.server = http.createServer((req, res) => {
      const bad = toOriginForm(req);
      if (bad)
        return void res
          .writeHead(bad.status, { 'content-type': 'text/plain', connection: 'close' })
          .end(`${bad.message}\n`);
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics') return void res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n');
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return void res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end();
      metrics.text().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(text),
        (e: unknown) =>
          (e as { status?: number }).status === 503
            ? res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end(`${(e as Error).message}\n`)
            : res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
      );
    });
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 5_000;
  }

  async listen(address: string): Promise<AddressInfo> {
    const at = address.lastIndexOf(':');
    const host = address.slice(0, at).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(at + 1));
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  address(): AddressInfo | undefined {
    return (this.server.address() as AddressInfo | null) ?? undefined;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
