// pipeline/: the request path: route (route.ts) → decide (decide.ts) → outcome (outcome.ts), and its entry
// points: HTTP requests (this file), WebSocket upgrades, forward-auth, and `gatehouse check --explain`.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CacheUnavailableError } from '../cache/index.ts';
import { formatSize } from '../config/size.ts';
import { PasswordBusyError } from '../accounts/passwords.ts';
import { DiagnosedError, type Diagnosis } from '../diagnosis/index.ts';
import { rateLimitAddress, type TrustedProxies } from '../http/client-ip.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import { answerPreflight, isPreflight, setCorsHeaders } from '../http/cors.ts';
import { HttpError } from '../http/errors.ts';
import type { Forwarding } from '../http/forwarded.ts';
import { h2Stream, protocolError, toOriginForm } from '../http/protocol.ts';
import { traceOf } from '../http/trace.ts';
import { sendJson, wantsHtml } from '../http/respond.ts';
import type { Match } from '../http/router.ts';
import { paths } from '../http/paths.ts';
import { normalizeTarget } from '../http/target.ts';
import type { Assertions } from '../identity/assertion.ts';
import { type Logger, type RequestLine, type RequestLines, requestLine } from '../log/index.ts';
import { type Metrics, NO_APP, type RequestKind } from '../metrics/index.ts';
import { type RateLimitFields, type RouteLimiter, rateLimitFields } from '../policy/rate-limit.ts';
import type { Rule } from '../policy/rules.ts';
import type { ProviderService } from '../providers/service.ts';
import { sessionProvider } from '../providers/service.ts';
import { forward, type Upstreams } from '../proxy/forward.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import { appFor, appPath, type App, type Site } from '../sites/index.ts';
import { StoreUnavailableError } from '../store/index.ts';
import { type BearerCheck, closedForMaintenance, decide } from './decide.ts';
import { errorPage, maintenancePage, outcome, redirectToLogin, respondSignIn } from './outcome.ts';
import type { RouteEntry, Routes } from './route.ts';
import type { RelayFailure, ToApp } from './to-app.ts';

/** What the HTTP entry point uses (the composition root makes it). */
export interface HttpEntryDeps {
  logger: Logger;
  routes: Routes;
  trusted: TrustedProxies;
  forwarding: Forwarding;
  diagnosis: Diagnosis;
  sessions: Sessions;
  oauth: BearerCheck & { challenge(app: App, error?: string, code?: string): string };
  providers: Pick<ProviderService, 'get'>;
  assertions: Assertions;
  toApp: ToApp;
  upstreams: Upstreams;
  /** The page of a signed-in user whose address must be verified first (accounts/verification.ts). */
  verification: { blocked(ctx: RequestContext, active: ActiveSession): number };
  /** routes[].rateLimit (policy/rate-limit.ts). */
  limits: RouteLimiter;
  /** Replicas passed over: counted and logged. */
  passedOver: PassedOver;
  /** config.authPrefix, without the base path (diagnosis names it). */
  authPrefix: string;
  /** log.requests: which requests (and WebSocket upgrades) get their line. */
  logRequests: RequestLines;
  /** HTTP/1 connections whose framing was refused: what else the parser finds on them is not served. */
  refused: WeakSet<object>;
  /** The node is shutting down: responses close their connection. */
  draining(): boolean;
  /** Prometheus metrics, when `metrics:` is configured. */
  metrics?: Metrics;
  /**
   * A request failed closed because a dependency (store, cache, the password hasher) could not
   * serve it: counted, and logged once per outage (health/), not once per request.
   */
  unavailable(err: Error): void;
}

const PASSED_OVER_LOG_MS = 10_000;

/**
 * Replicas of an app that could not be connected to, passed over for the next: each counted, and
 * logged at most every 10 s per replica (`times`: this one and those since its last line), so a
 * replica down for an hour is not a line per request that tries it.
 */
export class PassedOver {
  private readonly logger: Logger;
  private readonly metrics: Metrics | undefined;
  /** app and replica → when its last line was written, and the passes since. */
  private readonly logged = new Map<string, { at: number; since: number }>();

  constructor(logger: Logger, metrics: Metrics | undefined) {
    this.logger = logger;
    this.metrics = metrics;
  }

  note(app: App, requestId: string, cause: string, at: string | undefined): void {
    this.metrics?.passedOver.inc({ app: app.name });
    const key = `${app.name} ${at ?? cause}`;
    const now = performance.now();
    const last = this.logged.get(key);
    if (last && now - last.at < PASSED_OVER_LOG_MS) return void last.since++;
    this.logged.set(key, { at: now, since: 0 });
    this.logger.warn(
      { event: 'upstream_unreachable', app: app.name, cause, at, requestId, times: (last?.since ?? 0) + 1 },
      'a replica of the app could not be reached: passed over',
    );
  }
}

/**
 * Expect: 100-continue: the client waits for "100 Continue" before it sends its body. Gatehouse
 * takes over Node's automatic 100 (server/gatehouse.ts) and sends it here, right before the body
 * is read: an own route's, or the app's request being forwarded. A refusal before that (401, 403,
 * 413, 429, 503) costs the client no upload, and Node closes such a connection after the answer
 * (the body the client may still send is never read as a request).
 */
function continueIfAsked(req: IncomingMessage, res: ServerResponse): void {
  const expect = req.headers.expect;
  if (expect !== undefined && expect.toLowerCase() === '100-continue' && !res.headersSent) res.writeContinue();
}

/**
 * What picks an app's replica (its affinity): the user, or the client's address (IPv6 by its /64,
 * which a client's temporary addresses share); undefined: balanced.
 */
export function affinityKey(app: App, userId: string | undefined, ip: string): string | undefined {
  if (app.affinity === 'none') return undefined;
  return app.affinity === 'user' && userId !== undefined ? `u:${userId}` : `ip:${rateLimitAddress(ip)}`;
}

/** What a request was, for its metrics: set as the pipeline learns it. */
interface Meter {
  kind: RequestKind;
  app: string;
  /** performance.now() when the request went to the app (its own time ends there). */
  sentAt: number;
  /** The own route's path in the route table (a bounded set): the `limit` of a 429. */
  route?: string;
}

/**
 * The HTTP entry point of the pipeline: every request the listener gets (HTTP/1.1 and HTTP/2).
 * Protocol checks, then route (route.ts): own route | well-known document | the app, where
 * decide (decide.ts) and outcome (outcome.ts) say what the answer is; an allowed request is
 * streamed to the app with its identity headers (to-app.ts, proxy/forward.ts). One log line
 * per request.
 */
export class HttpEntry {
  private readonly d: HttpEntryDeps;
  /** The request line, written without pino's generic path (log/index.ts). */
  private readonly line: RequestLine;
  /** Requests under way, from their first byte to the end of the exchange with the app. */
  private active = 0;
  private idle: (() => void) | undefined;

  constructor(deps: HttpEntryDeps) {
    this.d = deps;
    this.line = requestLine(deps.logger, deps.logRequests);
  }

  /** Resolves once no request is under way (a reload waits so before it closes what they use). */
  whenIdle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const before = this.idle;
      this.idle = () => {
        before?.();
        resolve();
      };
    });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Pipelined behind a refused request: its framing may hide this one. Its connection closes
    // after the refusal is sent.
    if (this.d.refused.has(req.socket)) return;
    const started = performance.now();
    const requestId = requestIdOf(req, this.d.trusted);
    const trace = traceOf(req);
    if (this.d.draining() && !h2Stream(req)) res.setHeader('connection', 'close');
    let ctx: RequestContext<Site> | undefined;
    let status = 0;
    const meter: Meter | undefined = this.d.metrics && { kind: 'own', app: NO_APP, sentAt: 0 };
    this.active++;
    try {
      // An absolute-form target becomes origin-form here, before anything reads req.url.
      const bad = protocolError(req) ?? toOriginForm(req);
      if (bad) {
        status = bad.status;
        // The client may frame the rest otherwise: nothing more is read on this connection.
        if (!h2Stream(req)) {
          res.setHeader('connection', 'close');
          this.d.refused.add(req.socket);
        }
        return errorPage(req, res, undefined, bad.status, bad.code, bad.message);
      }
      const via = this.d.forwarding.resolve(req);
      const site = this.d.routes.siteFor(via.host);
      if (!site) {
        // Load balancers and kubelets probe by address (Host: 10.0.0.7:8080), apps fetch the
        // JWKS by an internal one: those routes answer whatever the Host; every other route
        // needs a known site.
        const anyHost = this.d.routes.anyHost(req.method ?? 'GET', req.url ?? '');
        if (anyHost) {
          await anyHost({ req, res, requestId });
          status = res.statusCode;
          return;
        }
        status = 421;
        return this.misdirected(req, res, requestId);
      }
      if (site.hsts !== null) res.setHeader('strict-transport-security', site.hsts);
      const target = normalizeTarget(req.url ?? '');
      if (!target.ok) {
        status = 400;
        return errorPage(req, res, site, 400, 'bad_request', 'This address is not valid.', target.reason);
      }
      ctx = {
        req,
        res,
        site,
        path: target.path,
        query: target.query,
        ip: via.ip,
        scheme: via.scheme,
        viaProxy: via.viaProxy,
        requestId,
        trace,
      };
      const routed = this.d.routes.route(req.method ?? 'GET', target.path);
      if (routed.kind === 'app') {
        if (meter) meter.kind = 'proxied';
        status = await this.proxy(ctx, meter);
        return;
      }
      if (routed.kind === 'outside_base') {
        status = 404;
        const cause = this.d.diagnosis.outsideBase(ctx, this.d.authPrefix);
        if (cause) return this.d.diagnosis.respond(req, res, site, cause, requestId);
        return errorPage(
          req,
          res,
          site,
          404,
          'not_found',
          'There is no page at this address.',
          `This server serves ${site.origin}${site.home}`,
        );
      }
      if (routed.kind === 'own') {
        // Gatehouse's own forms and JSON are small: their body is always wanted.
        continueIfAsked(req, res);
        if (meter) {
          if (routed.sub === paths.check) meter.kind = 'forward_auth';
          if (routed.found && 'handler' in routed.found) meter.route = routed.found.handler.path;
        }
        await this.own(ctx, routed.sub, routed.found);
      } else {
        if (meter) meter.kind = 'well_known';
        await this.wellKnown(routed.path === ctx.path ? ctx : { ...ctx, path: routed.path }, routed.entry);
      }
      status = res.statusCode;
    } catch (err) {
      status = this.failure(req, res, ctx?.site, err, requestId);
    } finally {
      if (--this.active === 0 && this.idle) {
        const idle = this.idle;
        this.idle = undefined;
        idle();
      }
      const ended = performance.now();
      if (meter) {
        this.d.metrics!.request(meter.app, meter.kind).done(status, ((meter.sentAt || ended) - started) / 1000);
        // Gatehouse's own 429s (sign-in, registration, reset, OAuth limits), by route: not an app's.
        if (status === 429 && meter.route) this.d.metrics!.rateLimited.inc({ limit: meter.route });
      }
      this.line(
        requestId,
        req.method,
        ctx?.path ?? '(invalid)',
        status,
        Math.round((ended - started) * 10) / 10,
        ctx?.userId,
        trace.id,
      );
    }
  }

  /** An own route below the prefix (`sub`: the path without it) and the table's match for it. */
  private async own(ctx: RequestContext<Site>, sub: string, match: Match<RouteEntry>): Promise<void> {
    if (!match) return errorPage(ctx.req, ctx.res, ctx.site, 404, 'not_found', 'There is no page at this address.');
    if ('allowed' in match) {
      ctx.res.setHeader('allow', match.allowed.join(', '));
      return errorPage(ctx.req, ctx.res, ctx.site, 405, 'method_not_allowed', 'This method is not allowed here.');
    }
    // A sign-in that cannot work (wrong scheme, untrusted proxy) is explained, not looped.
    if (this.d.diagnosis.guards(sub)) {
      const cause = this.d.diagnosis.check(ctx);
      if (cause) return this.d.diagnosis.respond(ctx.req, ctx.res, ctx.site, cause, ctx.requestId);
    }
    await match.handler.handler(ctx, match.params);
  }

  /** One of Gatehouse's documents under <base>/.well-known/; ctx.path is below the base path. */
  private async wellKnown(ctx: RequestContext<Site>, entry: RouteEntry): Promise<void> {
    const method = ctx.req.method ?? 'GET';
    if (!entry.methods.includes(method)) {
      return sendJson(
        ctx.res,
        405,
        { error: 'method_not_allowed', message: 'This method is not allowed here.' },
        { allow: entry.methods.join(', ') },
      );
    }
    await entry.handler(ctx, {});
  }

  /** Decides and, when allowed, forwards. Returns the status the client got. */
  private async proxy(ctx: RequestContext<Site>, meter?: Meter): Promise<number> {
    const { req, res, site } = ctx;
    const method = req.method ?? 'GET';
    // An app with cors: answers a preflight here (it carries no credentials: never refused as
    // anonymous, never forwarded), and every other answer, the app's or a refusal, carries the
    // CORS headers (http/cors.ts).
    const served = appFor(site, ctx.path);
    const cors = served?.cors ?? null;
    if (cors) {
      if (isPreflight(req)) {
        if (meter) meter.app = served!.name;
        return answerPreflight(cors, req, res);
      }
      setCorsHeaders(cors, req, res);
    }
    let d = decide(this.d.sessions, site, req, method, ctx.path, ctx.ip, this.d.oauth, served);
    if (d instanceof Promise) d = await d;
    if (d.kind === 'forbidden') ctx.userId = d.active.user.id;
    if (meter && d.kind !== 'no_app') meter.app = d.app.name;
    const closed = closedForMaintenance(d);
    if (closed) return maintenancePage(ctx, closed.app, this.d.routes.prefix, closed.signedIn);
    const o = outcome(d, ctx, this.d.routes.prefix, method);
    switch (o.kind) {
      case 'refuse':
        return (errorPage(req, res, site, o.status, o.code, o.message), o.status);
      case 'sign_in':
        return respondSignIn(ctx, o, this.d, this.d.oauth.challenge(o.app));
      case 'invalid_token':
        return this.bearerRefused(ctx, o.app, o.description, o.stepUp);
      case 'verify_email':
        return this.d.verification.blocked(ctx, o.active);
    }
    const { app, active, rule } = o;
    if (active) ctx.userId = active.user.id;
    let rateLimit: RateLimitFields | undefined;
    if (rule.rateLimit) {
      const verdict = await this.d.limits.take(app.name, rule, active?.user.id, ctx.ip);
      // The answer says the allowance and what is left of it, whoever gives it (the app or Gatehouse).
      rateLimit = rateLimitFields(rule.rateLimit, verdict);
      if (rateLimit) {
        res.setHeader('ratelimit-policy', rateLimit[0]);
        res.setHeader('ratelimit', rateLimit[1]);
      }
      if (!verdict.ok) {
        res.setHeader('retry-after', String(verdict.retryAfterSeconds));
        return (errorPage(req, res, site, 429, 'rate_limited', verdict.message), 429);
      }
    }

    const maxBody = app.maxRequestBody;
    if (maxBody !== null && Number(req.headers['content-length'] ?? 0) > maxBody) return this.tooLarge(ctx, app);

    let relay = this.d.toApp.tokenRelay(rule, app, active);
    if (relay instanceof Promise) relay = await relay;
    if ('reason' in relay) return this.relayFailed(ctx, rule, active!, relay.provider, relay.reason);
    const { bearer } = relay;

    let assertion: string | Promise<string> | undefined;
    if (active && app.signed) assertion = this.d.assertions.get(app, active);
    if (typeof assertion === 'object') assertion = await assertion;
    const headers = this.d.toApp.headers(ctx, app, active, assertion, bearer, o.ownToken);
    if (meter) meter.sentAt = performance.now();
    continueIfAsked(req, res);
    const to = appPath(app, ctx.path) + ctx.query;
    const forwarded = await forward(req, res, this.d.upstreams.of(app), to, headers, {
      ownCors: cors !== null,
      maxBody,
      affinity: affinityKey(app, active?.user.id, ctx.ip),
      add: app.responseHeaders,
      timeouts: rule.timeouts,
      publicBase: app.publicBase,
      rateLimit,
    });
    if (meter && forwarded.headersAt)
      this.d.metrics!.upstream(app.name).observe((forwarded.headersAt - meter.sentAt) / 1000);
    if (forwarded.passedOver)
      for (const { cause, at } of forwarded.passedOver) this.d.passedOver.note(app, ctx.requestId, cause, at);
    if (forwarded.retried) this.d.metrics?.upstreamRetries.inc({ app: app.name });
    if (forwarded.error === 'payload_too_large') return this.tooLarge(ctx, app);
    if (forwarded.error) {
      this.d.logger.warn(
        { event: 'upstream_error', app: app.name, cause: forwarded.cause, requestId: ctx.requestId },
        'upstream failed',
      );
      const message =
        forwarded.error === 'gateway_timeout' ? 'The app took too long to answer.' : 'The app could not be reached.';
      return (errorPage(req, res, site, forwarded.status, forwarded.error, message), forwarded.status);
    }
    return forwarded.status;
  }

  /**
   * A request body over the app's maxRequestBody: logged, and the connection closed after the 413
   * (the rest of the body is not read).
   */
  private tooLarge(ctx: RequestContext<Site>, app: App): number {
    const { req, res, site } = ctx;
    const limit = app.maxRequestBody!;
    if (!h2Stream(req)) res.setHeader('connection', 'close');
    this.d.logger.info(
      { event: 'request_body_too_large', app: app.name, limit, requestId: ctx.requestId },
      "request body over the app's maxRequestBody: refused",
    );
    errorPage(
      req,
      res,
      site,
      413,
      'payload_too_large',
      `This request is too large: the app takes at most ${formatSize(limit)}.`,
    );
    return 413;
  }

  /** A bearer token that is not good for this app: 401 with the RFC 6750 error, always JSON. */
  private bearerRefused(ctx: RequestContext<Site>, app: App, description: string, stepUp?: boolean): number {
    this.d.logger.info(
      { event: 'bearer_refused', app: app.name, reason: description, requestId: ctx.requestId },
      'bearer token refused',
    );
    sendJson(
      ctx.res,
      401,
      stepUp
        ? { error: 'insufficient_user_authentication', message: `Sign in again: ${description}.` }
        : { error: 'invalid_token', message: `Sign in again: ${description}.` },
      {
        'www-authenticate': this.d.oauth.challenge(
          app,
          description,
          stepUp ? 'insufficient_user_authentication' : 'invalid_token',
        ),
      },
    );
    return 401;
  }

  /**
   * tokenRelay without a usable provider token (none for this session, or the refresh
   * failed): a browser signs in with that provider again, landing back here; an API call
   * gets 401. Right after a sign-in with that very provider it is an error page instead,
   * so a provider that hands out unusable tokens cannot make the browser loop.
   */
  private relayFailed(
    ctx: RequestContext<Site>,
    rule: Rule,
    active: ActiveSession,
    provider: string,
    reason: RelayFailure,
  ): number {
    const { req, res, site } = ctx;
    const name = this.d.providers.get(provider)?.name ?? provider;
    this.d.logger.info(
      { event: 'token_relay_unavailable', provider, reason, userId: active.user.id, requestId: ctx.requestId },
      `no usable ${provider} access token`,
    );
    if (reason === 'unavailable') {
      res.setHeader('retry-after', '5');
      return (
        errorPage(
          req,
          res,
          site,
          503,
          'provider_unavailable',
          `${name} cannot be reached right now. Try again in a moment.`,
        ),
        503
      );
    }
    const login = `${site.origin}${this.d.routes.prefix}/login/${provider}?rd=${encodeURIComponent(ctx.path + ctx.query)}`;
    const mode =
      rule.unauthenticated ?? ((req.method === 'GET' || req.method === 'HEAD') && wantsHtml(req) ? 'redirect' : '401');
    if (mode === 'redirect') {
      // A sign-in with this provider just now that left no usable token (none stored, or one
      // already expired) would only repeat itself. A refresh the provider refused is cured by
      // signing in again, so that still redirects.
      const fresh =
        reason !== 'refresh_failed' &&
        sessionProvider(active.session) === provider &&
        Date.now() - active.session.createdAt < 10_000;
      if (fresh)
        return (
          errorPage(
            req,
            res,
            site,
            502,
            'provider_token_unusable',
            `${name} did not give Gatehouse an access token it can use.`,
            'Signing in again would not help; tell the administrator.',
          ),
          502
        );
      return redirectToLogin(ctx, this.d.diagnosis, login);
    }
    sendJson(
      res,
      401,
      { error: 'provider_token_required', message: `Sign in with ${name} again to use this resource.`, login },
      { 'www-authenticate': `Bearer realm="${site.origin}", error="invalid_token"` },
    );
    return 401;
  }

  // ---- errors -----------------------------------------------------------------------

  /** 421 for a host no site answers for, never trusted or redirected (security.md #7). */
  private misdirected(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    const { diagnosis, routes } = this.d;
    diagnosis.respond(
      req,
      res,
      undefined,
      diagnosis.misdirected(req, routes.sites, (h) => routes.siteFor(h)),
      requestId,
    );
  }

  private failure(
    req: IncomingMessage,
    res: ServerResponse,
    site: SiteInfo | undefined,
    err: unknown,
    requestId: string,
  ): number {
    if (err instanceof DiagnosedError) {
      this.d.diagnosis.respond(req, res, site, err.diagnosis, requestId);
      return err.diagnosis.status;
    }
    if (err instanceof HttpError) {
      // HTTP/2 has no Connection header (and no per-request close).
      for (const [k, v] of Object.entries(err.headers ?? {}))
        if (!res.headersSent && !(k === 'connection' && h2Stream(req))) res.setHeader(k, v);
      errorPage(req, res, site, err.status, err.code, err.message);
      return err.status;
    }
    if (
      err instanceof StoreUnavailableError ||
      err instanceof CacheUnavailableError ||
      err instanceof PasswordBusyError
    ) {
      this.d.unavailable(err as Error);
      if (!res.headersSent) res.setHeader('retry-after', '5');
      errorPage(req, res, site, 503, 'unavailable', 'Sign-in is temporarily unavailable. Try again in a moment.');
      return 503;
    }
    this.d.logger.error({ event: 'internal_error', err }, 'request failed');
    errorPage(req, res, site, 500, 'internal_error', 'Something went wrong on our side.');
    return 500;
  }
}

/** A trusted proxy's X-Request-Id is kept, so one id follows the request end to end. */
export function requestIdOf(req: IncomingMessage, trusted: TrustedProxies): string {
  const given = req.headers['x-request-id'];
  if (
    typeof given === 'string' &&
    !trusted.empty &&
    /^[A-Za-z0-9._:-]{1,128}$/.test(given) &&
    trusted.has(req.socket.remoteAddress)
  )
    return given;
  return randomUUID();
}
