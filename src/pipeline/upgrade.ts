import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { CacheUnavailableError } from '../cache/index.ts';
import type { TrustedProxies } from '../http/client-ip.ts';
import type { Forwarding } from '../http/forwarded.ts';
import { protocolError, toOriginForm } from '../http/protocol.ts';
import { traceOf } from '../http/trace.ts';
import { normalizeTarget } from '../http/target.ts';
import type { Assertions } from '../identity/assertion.ts';
import { type Logger, lowestLogged, type RequestLines } from '../log/index.ts';
import { type Metrics, NO_APP } from '../metrics/index.ts';
import { type Upstreams } from '../proxy/forward.ts';
import { rejectUpgrade, tunnelWebSocket } from '../proxy/upgrade.ts';
import { type RouteLimiter, rateLimitFields } from '../policy/rate-limit.ts';
import type { ActiveSession, InvalidReason, Sessions } from '../sessions/index.ts';
import type { BearerSession } from '../oauth/bearer.ts';
import { matchRule } from '../policy/rules.ts';
import type { User } from '../store/index.ts';
import { type App, appPath } from '../sites/index.ts';
import { StoreUnavailableError } from '../store/index.ts';
import {
  type BearerCheck,
  closedForMaintenance,
  decide,
  isServiceClient,
  refusal,
  throughMaintenance,
} from './decide.ts';
import { outcome } from './outcome.ts';
import { affinityKey, type PassedOver, requestIdOf } from './request.ts';
import type { Routes } from './route.ts';
import type { ToApp, UpgradeContext } from './to-app.ts';
import type { TunnelCheck, Tunnels } from './tunnels.ts';

/** What a tunnel's user is told when a session it was opened with is found ended. */
const ENDED: Partial<Record<InvalidReason, string>> = {
  disabled: 'the account is disabled',
  expired: 'the session expired',
};

/** What the WebSocket entry point uses (the composition root makes it). */
export interface UpgradeEntryDeps {
  logger: Logger;
  routes: Routes;
  trusted: TrustedProxies;
  forwarding: Forwarding;
  sessions: Sessions;
  oauth: BearerCheck;
  assertions: Assertions;
  toApp: ToApp;
  upstreams: Upstreams;
  /** HTTP/1 connections whose framing was refused (request.ts). */
  refused: WeakSet<object>;
  /** Open tunnels: checked again while open, closed at shutdown. */
  tunnels: Tunnels;
  /** The app of this name as the configuration served now has it (a tunnel's check reads it). */
  appNamed(name: string): App | undefined;
  /** routes[].rateLimit: an upgrade counts as a request (policy/rate-limit.ts). */
  limits: RouteLimiter;
  /** Replicas passed over (request.ts). */
  passedOver: PassedOver;
  /** log.requests: which upgrades get their request line. */
  logRequests: RequestLines;
  /** The node is shutting down: new upgrades get 503. */
  draining(): boolean;
  /** Prometheus metrics, when `metrics:` is configured. */
  metrics?: Metrics;
  /** An upgrade refused because the store or cache could not serve it (request.ts). */
  unavailable(err: Error): void;
}

/**
 * The WebSocket entry point of the pipeline: an upgrade is routed (route.ts: only an app's
 * paths), decided (decide.ts) as a GET of its path, and mapped (outcome.ts) to a refusal line
 * or a tunnel to the app (proxy/upgrade.ts), with the Origin checks of cross-site WebSocket
 * hijacking.
 */
export class UpgradeEntry {
  private readonly d: UpgradeEntryDeps;

  constructor(deps: UpgradeEntryDeps) {
    this.d = deps;
  }

  /**
   * How an open tunnel is checked again (tunnels.ts): as its handshake would be decided now, by the
   * configuration served now (a reload may have closed the app for maintenance, changed its rules or
   * removed it) and, for a signed-in one, the session or login found afresh: still there (not signed
   * out, revoked, expired or disabled) and still admitted by the rule (the verified address it asks
   * for, the allow-list, read from the user now). A token's own expiry does not end a tunnel.
   */
  private recheck(
    active: ActiveSession | BearerSession | undefined,
    opened: App,
    path: string,
    ip: string,
  ): TunnelCheck {
    const { sessions, oauth, appNamed } = this.d;
    return async () => {
      const app = appNamed(opened.name);
      if (!app) return 'the app is no longer served here';
      let user: User | undefined;
      if (active && 'grant' in active) {
        const r = await oauth.recheck(active, app);
        if (!r.ok) return r.description;
        user = r.active.user;
      } else if (active) {
        const found = await sessions.recheck(active.session.idHash, app.site.origin);
        if (found.state !== 'active')
          return ENDED[found.state === 'invalid' ? found.reason : 'unknown'] ?? 'signed out';
        user = found.active.user;
      }
      if (app.maintenance && !throughMaintenance(app, user)) return 'the app is closed for maintenance';
      const rule = matchRule(app.rules, app.fallback, 'GET', path, ip);
      if (rule.access === 'deny') return 'no longer allowed here';
      if (rule.access !== 'authenticated') return null;
      if (!user || !active) return 'this page now needs a sign-in';
      const refused = refusal(app.site, rule, user, isServiceClient(active));
      if (refused === 'email_unverified') return 'the email address is no longer verified';
      return refused ? 'no longer allowed here' : null;
    };
  }

  async handle(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const started = performance.now();
    const requestId = requestIdOf(req, this.d.trusted);
    const trace = traceOf(req);
    let status = 0;
    let userId: string | undefined;
    let appName = NO_APP;
    /** The normalized path, once there is one: what the log line names, like request.ts's. */
    let path: string | undefined;
    socket.on('error', () => socket.destroy());
    if (this.d.refused.has(req.socket)) return void socket.end();
    try {
      const bad = protocolError(req) ?? toOriginForm(req);
      if (bad) return rejectUpgrade(socket, (status = bad.status), http.STATUS_CODES[bad.status]!, `${bad.message}\n`);
      if (req.httpVersionMinor === 0)
        return rejectUpgrade(socket, (status = 400), 'Bad Request', 'A WebSocket handshake needs HTTP/1.1.\n');
      const via = this.d.forwarding.resolve(req);
      const site = this.d.routes.siteFor(via.host);
      const target = normalizeTarget(req.url ?? '');
      if (target.ok) path = target.path;
      if (!site || !target.ok || this.d.draining())
        return rejectUpgrade(
          socket,
          (status = site && target.ok ? 503 : 400),
          site && target.ok ? 'Service Unavailable' : 'Bad Request',
        );
      // Only an app's paths are tunnelled: outside the base path, own routes, well-known documents: 404.
      if (this.d.routes.route('GET', target.path).kind !== 'app')
        return rejectUpgrade(socket, (status = 404), 'Not Found');
      // Cross-site WebSocket hijacking: the browser sends cookies with a cross-origin upgrade.
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== site.origin) return rejectUpgrade(socket, (status = 403), 'Forbidden');
      const ctx: UpgradeContext = {
        req,
        site,
        path: target.path,
        query: target.query,
        ip: via.ip,
        scheme: via.scheme,
        viaProxy: via.viaProxy,
        requestId,
        trace,
      };
      const d = await decide(this.d.sessions, site, req, 'GET', target.path, ctx.ip, this.d.oauth);
      if (d.kind !== 'no_app') appName = d.app.name;
      if (closedForMaintenance(d)) return rejectUpgrade(socket, (status = 503), 'Service Unavailable');
      const o = outcome(d, ctx, this.d.routes.prefix, 'GET');
      switch (o.kind) {
        case 'sign_in':
        case 'invalid_token':
          return rejectUpgrade(socket, (status = 401), 'Unauthorized');
        case 'refuse':
        case 'verify_email':
          return rejectUpgrade(socket, (status = o.status), o.status === 404 ? 'Not Found' : 'Forbidden');
      }
      const { app, active } = o;
      userId = active?.user.id;
      if (o.rule.rateLimit) {
        const verdict = await this.d.limits.take(app.name, o.rule, userId, ctx.ip);
        if (!verdict.ok) {
          const fields = rateLimitFields(o.rule.rateLimit, verdict);
          return rejectUpgrade(socket, (status = 429), 'Too Many Requests', `${verdict.message}\n`, {
            'retry-after': String(verdict.retryAfterSeconds),
            ...(fields && { 'ratelimit-policy': fields[0], ratelimit: fields[1] }),
          });
        }
      }
      // Browsers always send Origin with an upgrade: one the session cookie signs in without it
      // did not come from a page of this site. A bearer token is a program's own and needs none.
      if (active && !o.ownToken && origin === undefined)
        return rejectUpgrade(
          socket,
          (status = 403),
          'Forbidden',
          'A signed-in WebSocket handshake must send Origin.\n',
        );
      const relay = await this.d.toApp.tokenRelay(o.rule, app, active);
      if ('reason' in relay)
        return rejectUpgrade(
          socket,
          (status = relay.reason === 'unavailable' ? 503 : 401),
          relay.reason === 'unavailable' ? 'Service Unavailable' : 'Unauthorized',
        );
      const { bearer } = relay;
      const assertion = active && app.signed ? await this.d.assertions.get(app, active) : undefined;
      const headers = this.d.toApp.headers(ctx, app, active, assertion, bearer, o.ownToken);
      (socket as Socket).setTimeout?.(0);
      status = await tunnelWebSocket(
        req,
        socket,
        head,
        this.d.upstreams.of(app),
        appPath(app, target.path) + target.query,
        headers,
        (tunnel) =>
          this.d.tunnels.add(tunnel, {
            check: this.recheck(active, app, target.path, ctx.ip),
            user: active?.user.id,
            app: app.name,
          }),
        (cause, at) => this.d.passedOver.note(app, requestId, cause, at),
        affinityKey(app, userId, ctx.ip),
      );
    } catch (err) {
      const unavailable = err instanceof StoreUnavailableError || err instanceof CacheUnavailableError;
      if (unavailable) this.d.unavailable(err as Error);
      else this.d.logger.error({ event: 'internal_error', err }, 'upgrade failed');
      rejectUpgrade(
        socket,
        (status = unavailable ? 503 : 500),
        unavailable ? 'Service Unavailable' : 'Internal Server Error',
      );
    } finally {
      const ms = performance.now() - started;
      this.d.metrics?.request(appName, 'proxied').done(status, ms / 1000);
      if (status >= lowestLogged(this.d.logRequests))
        this.d.logger.info(
          {
            req: { id: requestId, method: 'GET', path: path ?? '(invalid)', upgrade: 'websocket' },
            status,
            ms: Math.round(ms * 10) / 10,
            user: userId,
            trace: trace.id,
          },
          'request',
        );
    }
  }
}
