// proxy/ (feature): moving bytes to the app: one undici pool per app and streaming forward (this file),
// header hygiene (headers.ts), the WebSocket tunnel (upgrade.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { BalancedPool, type Dispatcher, Pool } from 'undici';
import { withoutAppCors } from '../http/cors.ts';
import { hasBody } from '../http/protocol.ts';
import type { RateLimitFields } from '../policy/rate-limit.ts';
import type { App, UpstreamTarget } from '../sites/index.ts';
import { downstreamResponseHeaders } from './headers.ts';
import { HealthChecks, type HealthReporter } from './health.ts';
import { loadUpstreamTls, type UpstreamTls } from './tls.ts';

/**
 * One app's upstream: a keep-alive connection pool, created once by the Gatehouse that serves it;
 * for several replicas, undici's BalancedPool (a pool per replica, taken in turn, one that fails to
 * connect taken less often until it connects again). With healthCheck, a replica that fails its
 * checks is taken out of the pool (its requests under way finish) until it passes again; when every
 * replica fails, all of them are in (a check that is wrong must not take the whole app down).
 */
export class Upstream {
  /** The first replica (its host is the Host header; scheme and path are every replica's). */
  readonly url: URL;
  /** Every replica. */
  readonly urls: URL[];
  /** Every replica's origin, as a Location from the app may name it (publicLocation()). */
  private readonly origins: string[];
  readonly host: string;
  /** Path of the upstream URL without its trailing slash, prepended to every request. */
  readonly basePath: string;
  /** Replaced (and the old one closed once its requests end) when reloadTls() reads new files. */
  pool: Pool | BalancedPool;
  readonly timeouts: UpstreamTarget['timeouts'];
  /** upstreamTls as read at start or at the last reloadTls(). */
  tls: UpstreamTls;
  private readonly target: UpstreamTarget;
  /** Which replica the next WebSocket tunnel tries first. */
  private turn = 0;
  /** healthCheck's state, when the app has one. */
  readonly health: HealthChecks | undefined;
  /** The replicas requests go to: the healthy ones, or all when none is (or nothing is checked). */
  private members: URL[];

  /** Reads the app's upstreamTls files: a TlsFileError names the one to fix. */
  constructor(target: UpstreamTarget) {
    this.target = target;
    this.url = target.url;
    this.urls = target.urls;
    this.host = target.host;
    this.basePath = target.basePath;
    this.timeouts = target.timeouts;
    this.tls = loadUpstreamTls(target.tls);
    this.members = this.urls;
    this.origins = [...new Set(this.urls.map((u) => u.origin))];
    this.health = target.health
      ? new HealthChecks(this.urls, this.host, target.health, this.tls.options, () => this.rebalance())
      : undefined;
    this.pool = this.newPool();
  }

  private newPool(): Pool | BalancedPool {
    const timeouts = this.timeouts;
    const options = {
      connections: 512,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 60_000,
      headersTimeout: timeouts.response,
      bodyTimeout: timeouts.idle,
      connect: { timeout: timeouts.connect, ...this.tls.options },
    };
    return this.urls.length === 1
      ? new Pool(this.url.origin, options)
      : new BalancedPool(
          this.members.map((u) => u.origin),
          options,
        );
  }

  /** After a health check changed a replica's state: the pool takes in the healthy ones and lets go of the rest. */
  private rebalance(): void {
    const healthy = this.urls.filter((_, i) => this.health!.isHealthy(i));
    const next = healthy.length ? healthy : this.urls;
    const pool = this.pool;
    if (pool instanceof BalancedPool) {
      for (const u of next) if (!this.members.includes(u)) pool.addUpstream(u.origin);
      for (const u of this.members) if (!next.includes(u)) pool.removeUpstream(u.origin);
    }
    this.members = next;
  }

  /**
   * affinity: the replicas requests go to in the order `key` (a user id, a client address) prefers
   * them, by rendezvous hashing: the same order on every node and worker, and when a replica is
   * taken out or comes back only the keys that prefer it move. The first is used; one that cannot
   * be connected to is passed over for the next.
   */
  preferred(key: string): URL[] {
    const members = this.members;
    if (members.length === 1) return [members[0]!];
    const scored = members.map((u) => ({ u, score: fnv1a(`${key}\n${u.origin}`) }));
    scored.sort((a, b) => b.score - a.score);
    return scored.map((s) => s.u);
  }

  /**
   * A Location the app sent that points at its own upstream URL (an app that builds absolute URLs
   * from its Host header, which is the upstream's): the same place as the browser reaches it, at
   * `publicBase` (App.publicBase), as nginx's `proxy_redirect default` and Apache's
   * ProxyPassReverse do. Undefined for any other Location (another site, a relative path), which
   * passes unchanged. Scheme and host compared without regard to case, the path exactly.
   */
  publicLocation(location: string, publicBase: string): string | undefined {
    for (const origin of this.origins) {
      const end = origin.length + this.basePath.length;
      if (
        location.length >= end &&
        location.slice(0, origin.length).toLowerCase() === origin &&
        location.startsWith(this.basePath, origin.length)
      ) {
        const rest = location.slice(end);
        const next = rest.charCodeAt(0);
        // After the upstream's path: a path, or the end, a query or a fragment (not /v2x for /v2).
        if (next === 47 /* / */) return publicBase + rest;
        if (rest === '' || next === 63 /* ? */ || next === 35 /* # */) return `${publicBase}/${rest}`;
      }
    }
    return undefined;
  }

  /** The pool of one replica (BalancedPool keeps one per replica); the whole pool when it has none of its own. */
  poolOf(replica: URL): Pool | BalancedPool {
    const pool = this.pool;
    return pool instanceof BalancedPool ? (pool.getUpstream(replica.origin) ?? pool) : pool;
  }

  /** The replicas requests go to, starting from the next in turn (WebSocket tunnels: the first that connects is used). */
  replicasInTurn(): URL[] {
    const members = this.members;
    const n = members.length;
    if (n === 1) return [members[0]!];
    const first = this.turn++ % n;
    return members.map((_, i) => members[(first + i) % n]!);
  }

  /**
   * Re-reads upstreamTls (a renewed client certificate or CA): new connections use the new files,
   * requests under way finish on theirs. Throws a TlsFileError, keeping what it has, when a file
   * cannot be used; null when the app has no upstreamTls.
   */
  reloadTls(): UpstreamTls | null {
    if (!this.target.tls) return null;
    this.tls = loadUpstreamTls(this.target.tls);
    const old = this.pool;
    this.pool = this.newPool();
    void old.close();
    this.health?.useTls(this.tls.options);
    return this.tls;
  }

  close(): Promise<void> {
    this.health?.close();
    return this.pool.close();
  }
}

/** The pools of every app of the sites served: one per app, made at start, closed at shutdown. */
export class Upstreams {
  private readonly pools = new Map<App, Upstream>();

  /**
   * `previous`: the pools of the configuration a reload replaces. An app whose upstream (URL,
   * timeouts, upstreamTls) is the same keeps its pool and its open connections; retire() closes
   * the rest.
   */
  constructor(apps: Iterable<App>, previous?: Upstreams) {
    const kept = new Map<string, Upstream>();
    if (previous) for (const [app, upstream] of previous.pools) kept.set(targetKey(app.upstream), upstream);
    for (const app of apps) this.pools.set(app, kept.get(targetKey(app.upstream)) ?? new Upstream(app.upstream));
  }

  /**
   * Starts the apps' health checks (healthCheck), reporting to `reporter`. At a reload's swap,
   * `previous` is the configuration replaced: the checks of its pools this one does not keep stop
   * now (their pools close later, once idle), those of kept pools go on with their state.
   * `follow`: this worker does not check; another's results come by applyHealth().
   */
  checkHealth(reporter: HealthReporter, previous?: Upstreams, follow = false): void {
    if (previous) {
      const kept = new Set(this.pools.values());
      for (const u of previous.pools.values()) if (!kept.has(u)) u.health?.close();
    }
    for (const [app, upstream] of this.pools) upstream.health?.attach(app.name, reporter, follow);
  }

  /** listen.workers: the checking worker's results for `app`, when its replicas are the same as here. */
  applyHealth(app: string, replicas: string[], healthy: boolean[]): void {
    for (const [a, upstream] of this.pools)
      if (a.name === app && upstream.health?.checks(replicas)) upstream.health.apply(healthy);
  }

  /** Closes the pools `next` does not use (each once its requests end). */
  async retire(next: Upstreams): Promise<void> {
    const used = new Set(next.pools.values());
    await Promise.allSettled([...new Set(this.pools.values())].filter((u) => !used.has(u)).map((u) => u.close()));
  }

  /** The app's pool (every app of the sites it was made with has one). */
  of(app: App): Upstream {
    return this.pools.get(app)!;
  }

  /** Every app's upstream, for SIGHUP's reload. */
  all(): IterableIterator<[App, Upstream]> {
    return this.pools.entries();
  }

  async close(): Promise<void> {
    await Promise.allSettled([...new Set(this.pools.values())].map((u) => u.close()));
  }
}

/** FNV-1a, 32 bits: a cheap, stable hash for rendezvous hashing (not a secret: no crypto needed). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** What makes two apps' pools interchangeable: the same upstream URL, timeouts, upstreamTls and healthCheck. */
function targetKey(t: UpstreamTarget): string {
  return JSON.stringify([t.urls.map((u) => u.href), t.timeouts, t.tls, t.health]);
}

/**
 * A request body streamed without a Content-Length, passed on while it stays within the app's
 * maxRequestBody. Past it, the client's body is no longer read (the 413 closes the connection)
 * and this stream fails, which aborts the request to the app: it never gets a whole body.
 */
class CappedBody extends Transform {
  over = false;
  private readonly source: IncomingMessage;
  private left: number;

  constructor(source: IncomingMessage, limit: number) {
    super();
    this.source = source;
    this.left = limit;
    source.once('error', (err) => this.destroy(err));
    source.pipe(this);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.left -= chunk.length;
    if (this.left >= 0) return done(null, chunk);
    this.over = true;
    this.source.unpipe(this);
    done(new Error('the request body is larger than maxRequestBody'));
  }
}

/**
 * headersAt: performance.now() when the app's response headers came (0: they did not). passedOver:
 * the replicas that could not be connected to and were passed over for the next (when the last
 * one tried fails too, its error is `cause`).
 */
export type ForwardOutcome = {
  status: number;
  error?: 'bad_gateway' | 'gateway_timeout' | 'payload_too_large';
  cause?: string;
  headersAt?: number;
  passedOver?: { cause: string; at?: string }[];
  /** The request was sent once more after the connection closed before an answer (CLOSED): why. */
  retried?: string;
};

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);
/** Errors of connecting: the replica got nothing of the request, which can go to another. */
const UNREACHED = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/**
 * The connection closed before the app answered: most often a keep-alive connection the app closed
 * as it idled just as the request was sent on it. A safe request (GET, HEAD, OPTIONS without a
 * body) is sent once more on another connection, as nginx does; any other is not.
 */
const CLOSED = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/**
 * A replica that could not be connected to, as `passedOver` names it (the error's code and the
 * address it was at); undefined for any other error, after which the request is not sent again.
 */
export function unreached(err: Error): { cause: string; at?: string } | undefined {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const cause = e.code ?? e.name;
  if (!UNREACHED.has(cause)) return undefined;
  return e.address ? { cause, at: `${e.address}:${e.port}` } : { cause };
}

/**
 * Streams the request to the app and the response back, both ways without buffering: a
 * 1 GiB upload or download passes through in chunks, with backpressure. A request is sent
 * once (undici never retries it), with two exceptions: with several replicas, one that cannot be
 * connected to (so got nothing, and no byte of the body was read) is passed over for the next,
 * each at most once; and a safe request (GET, HEAD, OPTIONS, no body) whose connection closed
 * before any answer is sent once more (CLOSED). Resolves once the exchange is over. When the app fails
 * before answering, nothing has been written and the caller renders 502/504; when it fails
 * midway, the client connection is cut, so a truncated body is never passed off as whole.
 * `ownCors`: Gatehouse set the app's CORS headers on `res` (http/cors.ts); the app's own go.
 * `maxBody`: the app's maxRequestBody. `affinity`: the key that picks the replica (preferred()).
 * `add`: the app's responseHeaders, set where its response lacks them. `timeouts`: the rule's own.
 * `publicBase`: the app's App.publicBase, for a Location that names the upstream (publicLocation()).
 * `rateLimit`: the rule's RateLimit fields, added to the app's own.
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: Upstream,
  path: string,
  headers: string[],
  o: ForwardOptions = {},
): Promise<ForwardOutcome> {
  return new Promise((resolve) => new Exchange(req, res, upstream, path, headers, o, resolve).send());
}

type ForwardOptions = {
  ownCors?: boolean;
  maxBody?: number | null;
  affinity?: string;
  add?: [string, string][] | null;
  timeouts?: { response?: number; idle?: number } | null;
  publicBase?: string;
  rateLimit?: RateLimitFields;
};

/** A list field's value with one more member, after the app's own (its field lines joined as one list). */
function listed(app: string | string[] | undefined, ours: string): string {
  return app === undefined ? ours : `${Array.isArray(app) ? app.join(', ') : app}, ${ours}`;
}

/** undici's handle on one request under way (its dispatch handler API). */
type Controller = { abort(reason: Error): void; pause(): void; resume(): void };

/**
 * One request to the app and its response, as undici's dispatch handler: undici calls it as the
 * request starts, as the response's head, body chunks and end come, or with the error that ended
 * it. A handler of its own, rather than undici's `stream()`, which wraps the same calls in an
 * AsyncResource, an abort signal and three listeners on the response per request: one listener
 * (the client's `close`) is all it takes, and the bench's floor shows the difference (about a fifth
 * of a bare proxy's CPU per request).
 */
class Exchange {
  private readonly res: ServerResponse;
  private readonly upstream: Upstream;
  private readonly o: ForwardOptions;
  private readonly opts: Dispatcher.DispatchOptions;
  private readonly resolve: (outcome: ForwardOutcome) => void;
  private readonly body: IncomingMessage | CappedBody | null;
  /** With affinity, the replicas in the order the key prefers them; else the pool balances. */
  private readonly order: URL[] | undefined;
  private controller: Controller | null = null;
  /** The client closed its connection before the response was whole. */
  private gone = false;
  private settled = false;
  private status = 0;
  private headersAt = 0;
  private passedOver: ForwardOutcome['passedOver'];
  private retried: string | undefined;

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    upstream: Upstream,
    path: string,
    headers: string[],
    o: ForwardOptions,
    resolve: (outcome: ForwardOutcome) => void,
  ) {
    this.res = res;
    this.upstream = upstream;
    this.o = o;
    this.resolve = resolve;
    this.order = o.affinity === undefined ? undefined : upstream.preferred(o.affinity);
    // A body of declared length was checked against maxRequestBody before; one streamed without
    // a length is counted on its way.
    const maxBody = o.maxBody ?? null;
    this.body = !hasBody(req)
      ? null
      : maxBody !== null && req.headers['content-length'] === undefined
        ? new CappedBody(req, maxBody)
        : req;
    const timeouts = o.timeouts;
    this.opts = {
      path: upstream.basePath + path,
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: this.body,
      // A route's own timeouts (routes[].timeouts); undefined: the pool's, the app's.
      headersTimeout: timeouts?.response || undefined,
      bodyTimeout: timeouts?.idle || undefined,
    };
    // The response's close: the exchange is over (the response was sent whole) or the client left.
    res.on('close', this.onClose);
  }

  send(): void {
    const order = this.order;
    const upstream = this.upstream;
    (order ? upstream.poolOf(order[this.passedOver?.length ?? 0]!) : upstream.pool).dispatch(this.opts, this);
  }

  /** Sends the request once more, after undici is done with the attempt that failed (not from inside its error handling). */
  private again(): void {
    queueMicrotask(() => this.send());
  }

  private readonly onClose = (): void => {
    if (this.settled) return;
    if (this.res.writableFinished) return this.settle({ status: this.status, headersAt: this.headersAt });
    this.gone = true;
    // Not started yet (waiting for a connection): onRequestStart aborts it.
    this.controller?.abort(new Error('client closed'));
  };

  private settle(outcome: ForwardOutcome): void {
    this.settled = true;
    if (this.passedOver) outcome.passedOver = this.passedOver;
    if (this.retried !== undefined) outcome.retried = this.retried;
    this.resolve(outcome);
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    if (this.gone) controller.abort(new Error('client closed'));
  }

  onResponseStart(
    _controller: Controller,
    statusCode: number,
    upstreamHeaders: Record<string, string | string[]>,
  ): void {
    if (statusCode < 200) return; // 1xx: the app's interim answers are not passed on
    this.status = statusCode;
    this.headersAt = performance.now();
    const { add, publicBase, ownCors } = this.o;
    const res = this.res;
    const out = downstreamResponseHeaders(upstreamHeaders);
    if (add) for (const [name, value] of add) out[name] ??= value;
    const rateLimit = this.o.rateLimit;
    if (rateLimit) {
      // Lists (structured fields): an app that states policies of its own keeps them, Gatehouse's follows.
      out['ratelimit-policy'] = listed(out['ratelimit-policy'], rateLimit[0]);
      out.ratelimit = listed(out.ratelimit, rateLimit[1]);
    }
    const location = out.location;
    if (typeof location === 'string' && publicBase !== undefined) {
      const moved = this.upstream.publicLocation(location, publicBase);
      if (moved !== undefined) out.location = moved;
    }
    res.writeHead(statusCode, ownCors ? withoutAppCors(out, res) : out);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.res.write(chunk)) return;
    // The client reads slower than the app writes: the app's connection waits for the client's.
    controller.pause();
    this.res.once('drain', () => controller.resume());
  }

  onResponseEnd(): void {
    this.res.end();
  }

  onResponseError(_controller: Controller | null, err: Error): void {
    if (this.settled) return;
    const res = this.res;
    const code = (err as NodeJS.ErrnoException).code ?? err.name;
    const missed = unreached(err);
    const body = this.body;
    if (
      missed &&
      !res.headersSent &&
      !this.gone &&
      !body?.readableDidRead &&
      (this.passedOver?.length ?? 0) < (this.order ?? this.upstream.urls).length - 1
    ) {
      (this.passedOver ??= []).push(missed);
      return this.again();
    }
    const safe =
      body === null && (this.opts.method === 'GET' || this.opts.method === 'HEAD' || this.opts.method === 'OPTIONS');
    if (safe && this.retried === undefined && CLOSED.has(code) && !res.headersSent && !this.gone) {
      this.retried = code;
      return this.again();
    }
    if (body instanceof CappedBody && body.over && !res.headersSent)
      return this.settle({ status: 413, error: 'payload_too_large', cause: 'maxRequestBody' });
    if (res.headersSent) {
      res.destroy();
      return this.settle({ status: this.status, cause: this.gone ? 'client closed' : code, headersAt: this.headersAt });
    }
    if (this.gone) return this.settle({ status: 499, cause: 'client closed' });
    const timeout = TIMEOUTS.has(code);
    this.settle({ status: timeout ? 504 : 502, error: timeout ? 'gateway_timeout' : 'bad_gateway', cause: code });
  }
}
