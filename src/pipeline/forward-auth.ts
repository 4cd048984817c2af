import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { RequestContext } from '../http/context.ts';
import { METHOD_OVERRIDE_HEADERS } from '../http/header-names.ts';
import { normalizeTarget } from '../http/target.ts';
import type { Assertions } from '../identity/assertion.ts';
import { identityHeaders } from '../identity/headers.ts';
import { stripCookies } from '../proxy/headers.ts';
import type { Sessions } from '../sessions/index.ts';
import type { App, Site } from '../sites/index.ts';
import { type BearerCheck, closedForMaintenance, decide } from './decide.ts';
import { errorPage, maintenancePage, outcome, respondSignIn } from './outcome.ts';
import type { Routes } from './route.ts';

const METHOD = /^[A-Z]{1,20}$/;

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

const OVERRIDES: ReadonlySet<string> = new Set(METHOD_OVERRIDE_HEADERS);

/**
 * The methods the request's method-override headers name, in any spelling ([] when none), or
 * null when one is not a method. The proxy passes them on to the app, which may act on them.
 */
function overrideMethods(h: IncomingHttpHeaders): string[] | null {
  let methods: string[] | undefined;
  for (const name in h) {
    if (!name.includes('method') || !OVERRIDES.has(name.replaceAll('_', '-'))) continue;
    const v = h[name]!;
    for (const value of Array.isArray(v) ? v : v.split(',')) {
      const m = value.trim().toUpperCase();
      if (!METHOD.test(m)) return null;
      (methods ??= []).push(m);
    }
  }
  return methods ?? [];
}

/**
 * The forward-auth entry point of the pipeline (`/.auth/check`): a proxy in front of the app
 * asks "may this request pass?" and Gatehouse answers with the same decision a proxied request
 * would get:
 *
 *   - the original method and URL are read from a trusted proxy only: nginx auth_request (the
 *     example sets X-Original-Method / X-Original-URI), Traefik ForwardAuth, Caddy forward_auth
 *     and the nginx example's error_page (X-Forwarded-Method / X-Forwarded-Uri); the host is
 *     the effective one (X-Forwarded-Host, Forwarded, or Host) and must be a configured site.
 *     A call from any other peer, or one without the original URL, is refused with an
 *     explanation (400), never guessed;
 *   - the URL goes through the same normalization, routing (route.ts), app + rule + session
 *     decision (decide.ts) and outcome (outcome.ts) as a proxied request;
 *   - 200 with the identity headers (identityHeaders: X-User-Id, the app's opted-in X-User-*
 *     and its signed X-Gatehouse-Assertion), 403 when a rule denies; when nobody is signed in,
 *     for auth_request (X-Original-URI) 401, since it can pass on nothing else (the login URL
 *     in X-Gatehouse-Login); asked with X-Forwarded-Uri, the answer goes to the client as it is
 *     (Traefik, Caddy, and the nginx example's second question): the 302 to the login page for
 *     a browser, 401 JSON with WWW-Authenticate for an API client;
 *   - an app closed for maintenance: 503 with its page (403 to auth_request, which asks again).
 *
 * A 200 also carries X-Gatehouse-Cookie: the request's Cookie header without Gatehouse's own
 * cookies, for the proxy to send to the app instead (the examples do), so the app never sees
 * a session id in this mode either.
 */
export class ForwardAuth {
  private readonly sessions: Sessions;
  private readonly diagnosis: Diagnosis;
  private readonly routes: Pick<Routes, 'prefix' | 'route'>;
  private readonly assertions: Assertions;
  /** Gatehouse's own bearer tokens (src/oauth/), decided like a proxied request's. */
  private readonly bearer: (BearerCheck & { challenge(app: App, error?: string, code?: string): string }) | undefined;
  /** With forwardAuth.cacheFor: the Cache-Control and X-Accel-Expires of a cacheable answer. */
  private readonly cacheable: readonly [string, string] | null;

  constructor(o: {
    sessions: Sessions;
    diagnosis: Diagnosis;
    routes: Pick<Routes, 'prefix' | 'route'>;
    assertions: Assertions;
    bearer?: BearerCheck & { challenge(app: App, error?: string, code?: string): string };
    /** forwardAuth.cacheFor in seconds (0: every answer is no-store). */
    cacheForSeconds?: number;
  }) {
    this.sessions = o.sessions;
    this.diagnosis = o.diagnosis;
    this.routes = o.routes;
    this.assertions = o.assertions;
    this.bearer = o.bearer;
    const n = o.cacheForSeconds ?? 0;
    this.cacheable = n > 0 ? [`private, max-age=${n}`, String(n)] : null;
  }

  async handle(ctx: RequestContext<Site>): Promise<void> {
    const { req, res, site } = ctx;
    if (!ctx.viaProxy)
      return this.diagnosis.respond(req, res, site, this.diagnosis.forwardAuth(req, 'untrusted'), ctx.requestId);
    const h = req.headers;
    const nginx = h['x-original-uri'] !== undefined;
    const uri = one(nginx ? h['x-original-uri'] : h['x-forwarded-uri']);
    if (!uri) return this.diagnosis.respond(req, res, site, this.diagnosis.forwardAuth(req, 'no_uri'), ctx.requestId);
    const method = (one(nginx ? h['x-original-method'] : h['x-forwarded-method']) ?? req.method ?? 'GET').toUpperCase();
    if (!METHOD.test(method)) return errorPage(req, res, site, 400, 'bad_request', 'The original method is not valid.');
    const overrides = overrideMethods(h);
    if (!overrides) return errorPage(req, res, site, 400, 'bad_request', 'A method-override header is not valid.');
    const target = normalizeTarget(uri);
    if (!target.ok) return errorPage(req, res, site, 400, 'bad_request', 'This address is not valid.', target.reason);
    // Exact case only for own routes: the proxies' path matches (nginx location, Traefik
    // PathPrefix, Caddy path) are case-sensitive, so /.AUTH/x reaches the app and is decided
    // like any app path.
    const routed = this.routes.route(method, target.path, false);
    if (routed.kind === 'outside_base')
      return errorPage(req, res, site, 404, 'not_found', 'There is no page at this address.');
    // Gatehouse's own pages and documents decide for themselves; a proxy that checks them too
    // (Traefik's middleware on the whole entry point) must let them through.
    if (routed.kind !== 'app') return allow(res, site, req.headers.cookie, [], null, this.cacheable);
    // A WebSocket handshake (the proxies pass Sec-WebSocket-Key and Origin on with the other
    // headers) gets the Origin checks of Gatehouse's own upgrades: cross-site WebSocket hijacking.
    const webSocket = h['sec-websocket-key'] !== undefined;
    if (webSocket && h.origin !== undefined && h.origin !== site.origin)
      return errorPage(req, res, site, 403, 'forbidden', 'A WebSocket from another origin is not accepted.');

    const inner: RequestContext<Site> = { ...ctx, path: target.path, query: target.query };
    let d = await decide(this.sessions, site, req, method, target.path, ctx.ip, this.bearer);
    // The app gets the request as it came, method-override headers included (security.md #69):
    // the rules must admit each method it may act on, or the strictest answer is given.
    for (const m of overrides)
      if (d.kind === 'allow' && m !== method) {
        const other = await decide(this.sessions, site, req, m, target.path, ctx.ip, this.bearer);
        if (other.kind !== 'allow') d = other;
      }
    if (d.kind === 'forbidden') ctx.userId = d.active.user.id;
    // An app closed for maintenance (apps[].maintenance) to whoever asks: auth_request passes on
    // nothing but 2xx, 401 and 403, so nginx is answered 403, which its example's error_page
    // turns into this question asked again with X-Forwarded-Uri, whose answer (as Traefik's and
    // Caddy's) is the 503 page or JSON itself, with Retry-After.
    const closed = closedForMaintenance(d);
    if (closed)
      return nginx
        ? errorPage(req, res, site, 403, 'maintenance', `${closed.app.title} is down for maintenance.`)
        : void maintenancePage(inner, closed.app, this.routes.prefix, closed.signedIn);
    const o = outcome(d, inner, this.routes.prefix, method, nginx);
    switch (o.kind) {
      case 'refuse':
        return errorPage(req, res, site, o.status, o.code, o.message);
      // No verification page here: the proxy passes the 403 on as it is.
      case 'verify_email':
        return errorPage(req, res, site, 403, 'forbidden', 'Your account does not have access to this page.');
      case 'sign_in':
        respondSignIn(inner, o, { sessions: this.sessions, diagnosis: this.diagnosis }, this.bearer?.challenge(o.app));
        return;
      case 'invalid_token':
        res.setHeader(
          'www-authenticate',
          this.bearer!.challenge(o.app, o.description, o.stepUp ? 'insufficient_user_authentication' : 'invalid_token'),
        );
        return errorPage(
          req,
          res,
          site,
          401,
          o.stepUp ? 'insufficient_user_authentication' : 'invalid_token',
          `Sign in again: ${o.description}.`,
        );
      case 'allow': {
        const { app, active } = o;
        if (active) ctx.userId = active.user.id;
        if (webSocket && active && !o.ownToken && h.origin === undefined)
          return errorPage(req, res, site, 403, 'forbidden', 'A signed-in WebSocket handshake must send Origin.');
        const assertion = active && app.signed ? await this.assertions.get(app, active) : undefined;
        // A proxy may keep this answer (forwardAuth.cacheFor) only when it depends on nothing
        // but what the example's cache key holds: host, method, path, Cookie and Authorization.
        // Method overrides, WebSocket handshakes (Origin) and apps with rules by client address
        // (`from`) are asked about every time.
        const cache = overrides.length === 0 && !webSocket && !app.byAddress ? this.cacheable : null;
        return allow(res, site, req.headers.cookie, identityHeaders(app, active, assertion), cache, this.cacheable);
      }
    }
  }
}

/**
 * The 200 answer. `cache` (forwardAuth.cacheFor): a proxy may keep it for that long, for this
 * Cookie and Authorization only (Vary); never when it sets a cookie. Otherwise no-store, and
 * when caching is configured at all, X-Accel-Expires: 0, which nginx obeys even where its
 * config caches 200s regardless of Cache-Control.
 */
function allow(
  res: ServerResponse,
  site: Site,
  cookie: string | undefined,
  identity: readonly string[],
  cache: readonly [string, string] | null = null,
  configured: readonly [string, string] | null = null,
): void {
  res.statusCode = 200;
  if (cache && !res.hasHeader('set-cookie')) {
    res.setHeader('cache-control', cache[0]);
    res.setHeader('x-accel-expires', cache[1]);
    res.setHeader('vary', 'Cookie, Authorization');
  } else {
    res.setHeader('cache-control', 'no-store');
    if (configured) res.setHeader('x-accel-expires', '0');
  }
  res.setHeader('content-length', 0);
  const appCookie = cookie === undefined ? null : stripCookies(cookie, site.ownCookies);
  if (appCookie !== null) res.setHeader('x-gatehouse-cookie', appCookie);
  for (let i = 0; i < identity.length; i += 2) res.setHeader(identity[i]!, identity[i + 1]!);
  res.end();
}
