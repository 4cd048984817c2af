import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { EmailTokens } from '../accounts/email-tokens.ts';
import { MailedLinks } from '../accounts/mailed-links.ts';
import { PasswordRecovery } from '../accounts/recovery.ts';
import { Accounts } from '../accounts/service.ts';
import { EmailVerification } from '../accounts/verification.ts';
import { dummyHash, PasswordBusyError } from '../accounts/passwords.ts';
import { Throttle } from '../accounts/throttle.ts';
import { CacheUnavailableError, openCache, type Cache } from '../cache/index.ts';
import { METHODS, type Config } from '../config/schema.ts';
import { DiagnosedError, Diagnosis } from '../diagnosis/index.ts';
import { ForwardAuth } from '../pipeline/forward-auth.ts';
import { describe as describeCert, loadTls, type TlsPair } from './tls.ts';
import { TrustedProxies } from '../http/client-ip.ts';
import { Forwarding } from '../http/forwarded.ts';
import { HttpError } from '../http/errors.ts';
import { sendHtml, sendJson, wantsHtml } from '../http/respond.ts';
import { h2Stream, otherMajorVersion, protocolError } from '../http/protocol.ts';
import { normalizeTarget } from '../http/target.ts';
import { createLogger, type Logger } from '../log/index.ts';
import type { BearerSession } from '../oauth/bearer.ts';
import { grantOwner } from '../oauth/deps.ts';
import { OAuthServer } from '../oauth/server.ts';
import { Mailer } from '../mail/mailer.ts';
import { CSP, messagePage } from '../pages/index.ts';
import type { Rule } from '../policy/rules.ts';
import { ProviderRoutes } from '../providers/routes.ts';
import { ProviderService, sessionProvider } from '../providers/service.ts';
import type { AccessToken } from '../providers/token-vault.ts';
import { forward } from '../proxy/forward.ts';
import { upstreamRequestHeaders } from '../proxy/headers.ts';
import { identityHeaders } from '../identity/headers.ts';
import { rejectUpgrade, tunnelWebSocket } from '../proxy/upgrade.ts';
import { Sessions, type ActiveSession } from '../sessions/index.ts';
import { openStore, StoreUnavailableError, type Store } from '../store/index.ts';
import { Assertions } from '../identity/assertion.ts';
import { issuerOf, KeyRing, keyPolicy } from '../keys/keys.ts';
import { loadSecrets, type Secrets } from '../keys/secrets.ts';
import { AccountRoutes } from '../accounts/account-page.ts';
import { AuthRoutes } from '../accounts/sign-in.ts';
import { decide, isBelow, redirectToLogin, unauthenticated } from '../pipeline/decide.ts';
import type { RequestContext, Services } from '../http/context.ts';
import { basePath, buildSites, hostKey, type App, type Site } from '../sites/index.ts';
import { JWKS_PATH, jwksRoute, WellKnown } from '../pipeline/route.ts';

export interface GatehouseOptions {
  logger?: Logger;
  /** Use this store instead of opening the configured one (tests, embedding). */
  store?: Store;
  cache?: Cache;
  /** The clock of the OAuth server's decisions and the key ring (tests move it by hand). */
  clock?: () => number;
}

/**
 * Node's HTTP/2 server with HTTP/1.1 fallback (own TLS), or the plain HTTP/1.1 server. With
 * allowHTTP1, Http2SecureServer runs its HTTP/1.1 connections through node:http's own
 * connection handling (parser limits, timeouts, upgrades, closeIdleConnections), which its
 * type declarations do not show.
 */
export type Listener = (http.Server | http2.Http2SecureServer) & { closeIdleConnections(): void };

type RelayFailure = Extract<AccessToken, { ok: false }>['reason'];
type Relay = { bearer: string | null | undefined } | { provider: string; reason: RelayFailure };

/** tokenRelay's answers that need no provider token (shared: read-only). */
const NO_RELAY: Relay = { bearer: undefined };
const NOBODY_TO_RELAY: Relay = { bearer: null };

const WS_CLOSE_GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9]);

/**
 * One Gatehouse node: an HTTP server that answers its own routes (authenticate), decides
 * each request against the app's rules (authorize), and streams allowed requests to the app
 * with identity headers (proxy).
 */
export class Gatehouse {
  readonly config: Config;
  readonly logger: Logger;
  readonly store: Store;
  readonly cache: Cache;
  readonly secrets: Secrets;
  readonly keys: KeyRing;
  readonly sessions: Sessions;
  readonly accounts: Accounts;
  readonly providers: ProviderService;
  /** The OAuth server for CLIs and MCP clients (src/oauth/). */
  readonly oauth: OAuthServer;
  /** Sends the verification and reset mail; undefined without `email:` in the config. */
  readonly mailer: Mailer | undefined;
  readonly server: Listener;
  readonly sites: Map<string, Site>;
  private readonly services: Services;
  private readonly auth: AuthRoutes;
  private readonly verification: EmailVerification;
  private readonly emailTokens: EmailTokens;
  private readonly assertions: Assertions;
  /** Gatehouse's exact paths under /.well-known/ (below the base path); see well-known.ts. */
  private readonly wellKnown = new WellKnown();
  /** Own routes' prefix with publicUrl's base path: /.auth or /app/.auth. */
  private readonly prefix: string;
  private readonly prefixLower: string;
  /** publicUrl's base path: "" or /app. */
  private readonly base: string;
  private readonly trusted: TrustedProxies;
  private readonly forwarding: Forwarding;
  private readonly diagnosis: Diagnosis;
  /** The certificate being served (own TLS), swapped by reloadTls(). */
  private tls: TlsPair | undefined;
  /** Open HTTP/2 sessions, closed (GOAWAY) on shutdown. */
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  /** HTTP/1 connections whose framing was refused: what else the parser finds on them is not served. */
  private readonly refused = new WeakSet<object>();
  /** Open WebSocket tunnels: client socket → app socket. */
  private readonly tunnels = new Map<Duplex, Duplex>();
  private readonly purgeTimer: NodeJS.Timeout;
  private closing: Promise<void> | null = null;

  private constructor(
    config: Config,
    logger: Logger,
    store: Store,
    cache: Cache,
    secrets: Secrets,
    keys: KeyRing,
    tls: TlsPair | undefined,
    mailer: Mailer | undefined,
    clock?: () => number,
  ) {
    this.config = config;
    this.logger = logger;
    this.store = store;
    this.cache = cache;
    this.secrets = secrets;
    this.keys = keys;
    this.tls = tls;
    this.base = basePath(config.publicUrl);
    this.prefix = this.base + config.authPrefix;
    this.prefixLower = this.prefix.toLowerCase();
    this.trusted = new TrustedProxies(config.trustedProxies);
    this.forwarding = new Forwarding(this.trusted, config.forwardedHeaders, tls !== undefined);
    this.diagnosis = new Diagnosis({ logger, forwarding: this.forwarding, secrets, prefix: this.prefix });
    this.sites = buildSites(config);
    this.sessions = new Sessions(store, {
      idleMs: config.sessions.idleTimeout,
      absoluteMs: config.sessions.absoluteTimeout,
    });
    const throttle = new Throttle(cache, secrets, config.accounts.rateLimits);
    this.accounts = new Accounts(store, throttle, config.accounts);
    this.providers = new ProviderService({
      config,
      store,
      secrets,
      logger,
      sessions: this.sessions,
      prefix: this.prefix,
    });
    this.oauth = new OAuthServer({
      config,
      logger,
      store,
      cache,
      secrets,
      sessions: this.sessions,
      sites: this.sites,
      keys,
      prefix: this.prefix,
      providers: this.providers,
      now: clock,
    });
    this.services = {
      config,
      logger,
      store,
      cache,
      secrets,
      keys,
      sessions: this.sessions,
      accounts: this.accounts,
      throttle,
      trusted: this.trusted,
      forwarding: this.forwarding,
      diagnosis: this.diagnosis,
      prefix: this.prefix,
      providers: this.providers,
      oauth: this.oauth,
    };
    this.auth = new AuthRoutes(this.services);
    const account = new AccountRoutes(this.services, this.auth);
    new ProviderRoutes(this.providers, this.services, this.auth, account).register(this.auth.router);
    account.addSection(20, (ctx, active, csrf) => this.oauth.accountSection(ctx, active, csrf, this.auth));
    // Email verification, password reset and change (accounts/), mail sent by mail/.
    this.mailer = mailer;
    this.emailTokens = new EmailTokens(store);
    const links = new MailedLinks(this.services, this.auth, this.emailTokens);
    this.verification = new EmailVerification(this.services, this.auth, links, this.mailer);
    this.verification.register(this.auth.router, account);
    this.auth.onRegister((ctx, user) => this.verification.afterRegister(ctx, user));
    new PasswordRecovery(this.services, this.auth, links, this.mailer).register(this.auth.router, account);
    account.register(this.auth.router);
    this.assertions = new Assertions(keys, secrets, { ttlMs: config.tokens.assertionTtl });
    this.wellKnown.add(JWKS_PATH, jwksRoute(keys));
    this.oauth.addWellKnown(this.wellKnown);
    const forwardAuth = new ForwardAuth({
      sessions: this.sessions,
      diagnosis: this.diagnosis,
      prefix: this.prefix,
      assertions: this.assertions,
      error: (...a) => this.error(...a),
      wellKnown: (path) => this.isWellKnown(path),
      bearer: this.oauth,
    });
    this.auth.router.add([...METHODS], '/check', (c) => forwardAuth.handle(c));
    // The probes: answered for any Host too (probeFor).
    this.auth.router.add('GET', '/health', (c) => this.health(c.res));
    this.auth.router.add('GET', '/ready', (c) => this.ready(c.res));

    const t = config.listen.timeouts;
    const options = {
      maxHeaderSize: 16 * 1024,
      headersTimeout: t.headers,
      requestTimeout: t.request,
      keepAliveTimeout: t.keepAlive,
      // How often the header and request deadlines are checked (Node's default is 30 s).
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(t.headers / 4))),
      requireHostHeader: true,
    };
    // Only WebSocket upgrades are tunnelled; h2c and the rest are served as plain requests.
    const shouldUpgrade = (req: IncomingMessage) => isWebSocketUpgrade(req);
    const onRequest = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    if (tls) {
      // Own TLS: HTTP/2 for browsers that offer it (ALPN), HTTP/1.1 on the same port for the
      // rest and for WebSocket upgrades. HTTP/1.1 connections get the same parser limits and
      // timeouts as the plain server; HTTP/2 streams are bounded by the settings below.
      const secure = http2.createSecureServer({
        ...options,
        allowHTTP1: true,
        cert: tls.cert,
        key: tls.key,
        settings: { maxConcurrentStreams: 128, maxHeaderListSize: 16 * 1024 + 4096 },
      });
      (secure as unknown as { shouldUpgradeCallback: typeof shouldUpgrade }).shouldUpgradeCallback = shouldUpgrade;
      secure.on('request', (req, res) => {
        h2Stream(req as unknown as IncomingMessage)?.setTimeout(t.idle);
        onRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse);
      });
      secure.on('session', (session: http2.ServerHttp2Session) => {
        this.h2Sessions.add(session);
        session.once('close', () => this.h2Sessions.delete(session));
      });
      secure.setTimeout(t.idle);
      this.server = secure as Listener;
    } else {
      this.server = http.createServer({ ...options, shouldUpgradeCallback: shouldUpgrade }, onRequest);
      this.server.timeout = t.idle;
    }
    this.server.on(
      'upgrade',
      (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.handleUpgrade(req, socket, head),
    );
    // CONNECT: Gatehouse is no forward proxy. Over HTTP/1 Node hands over the raw socket (and
    // would just drop it without a listener), over HTTP/2 a response.
    this.server.on('connect', (req: IncomingMessage, out: Duplex | http2.Http2ServerResponse) => {
      this.logger.info({ req: { id: this.requestId(req), method: 'CONNECT' }, status: 405 }, 'request');
      if (out instanceof http2.Http2ServerResponse) return void out.writeHead(405).end();
      out.on('error', () => out.destroy());
      rejectUpgrade(out, 405, 'Method Not Allowed', 'Gatehouse is not a forward proxy.\n');
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // Only HTTP parse errors get an HTTP answer; a failed TLS handshake is just closed.
      const parseError = err.code?.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      if (!parseError || !socket.writable) return void socket.destroy();
      const status =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? 431
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 408
            : err.code === 'HPE_INVALID_VERSION' && otherMajorVersion((err as { rawPacket?: Buffer }).rawPacket)
              ? 505
              : 400;
      this.logger.debug({ event: 'client_error', code: err.code, status }, 'malformed request refused');
      rejectUpgrade(socket, status, http.STATUS_CODES[status]!, `${http.STATUS_CODES[status]}\n`);
    });
    this.purgeTimer = setInterval(() => void this.purge(), 10 * 60_000);
    this.purgeTimer.unref();
  }

  /**
   * Deletes what has expired: sessions, provider sign-in states, the OAuth server's records,
   * mailed links. Runs every 10 minutes; a purge that fails is logged (`purge_failed`: which
   * one, and the error's name and message) and tried again at the next round.
   */
  async purge(): Promise<void> {
    const purges: [string, () => Promise<unknown>][] = [
      ['sessions', () => this.store.sessions.purgeExpired(Date.now(), this.config.sessions.idleTimeout)],
      ['provider_flows', () => this.providers.flows.purgeExpired()],
      ['oauth', () => this.oauth.purge()],
      ['email_tokens', () => this.emailTokens.purgeExpired()],
    ];
    await Promise.all(
      purges.map(([purge, run]) =>
        Promise.resolve()
          .then(run)
          .catch((err: Error) =>
            this.logger.warn(
              { event: 'purge_failed', purge, err: { name: err.name, message: err.message } },
              'could not delete expired records; the next purge tries again',
            ),
          ),
      ),
    );
  }

  static async create(config: Config, options: GatehouseOptions = {}): Promise<Gatehouse> {
    const logger = options.logger ?? createLogger(config.log.level);
    const store = options.store ?? (await openStore(config.store));
    const cache =
      options.cache ??
      (await openCache(config.cache).catch(async (err) => {
        if (!options.store) await store.close();
        throw err;
      }));
    let secrets: Secrets;
    let keys: KeyRing;
    let tls: TlsPair | undefined;
    let mailer: Mailer | undefined;
    try {
      tls = config.listen.tls ? loadTls(config.listen.tls) : undefined;
      mailer = config.email ? new Mailer(config.email, { logger, publicUrl: config.publicUrl }) : undefined;
      secrets = await loadSecrets(config.secrets, store.kv);
      keys = await KeyRing.open(store, secrets, keyPolicy(config), {
        issuer: issuerOf(config),
        logger,
        now: options.clock,
      });
    } catch (err) {
      await Promise.allSettled([options.store ? undefined : store.close(), options.cache ? undefined : cache.close()]);
      throw err;
    }
    void dummyHash();
    return new Gatehouse(config, logger, store, cache, secrets, keys, tls, mailer, options.clock);
  }

  /**
   * Re-reads listen.tls and serves the new pair to new connections; open connections keep
   * theirs, nothing is dropped. A pair that cannot be used is logged and the old one kept.
   * Called on SIGHUP. Returns whether the new pair is in use.
   */
  reloadTls(): boolean {
    const files = this.config.listen.tls;
    if (!files || !this.tls) {
      this.logger.info({ event: 'tls_reload', outcome: 'skipped' }, 'no listen.tls configured: nothing to reload');
      return false;
    }
    try {
      const pair = loadTls(files);
      (this.server as http2.Http2SecureServer).setSecureContext({ cert: pair.cert, key: pair.key });
      this.tls = pair;
      this.logger.info({ event: 'tls_reload', outcome: 'ok', ...describeCert(pair.leaf) }, 'certificate reloaded');
      return true;
    } catch (err) {
      this.logger.error(
        { event: 'tls_reload', outcome: 'failed', err: { message: (err as Error).message } },
        'certificate not reloaded; still serving the previous one',
      );
      return false;
    }
  }

  async listen(port = this.config.listen.port, host = this.config.listen.host): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.providers.warm();
    for (const site of this.sites.values()) {
      this.logger.info(
        {
          event: 'start',
          listen: `${this.tls ? 'https' : 'http'}://${address.address}:${address.port}`,
          ...(this.tls ? { tls: describeCert(this.tls.leaf) } : {}),
          site: `${site.origin}${site.home}`,
          apps: site.apps.map((a) => ({ name: a.name, prefix: a.pathPrefix || '/', upstream: a.upstream.url.origin })),
          store: this.store.kind,
          cache: this.cache.kind,
        },
        `Gatehouse serving ${site.origin} → ${site.apps.map((a) => `${a.pathPrefix || '/'} ${a.upstream.url.origin}`).join(', ')}`,
      );
    }
    return address;
  }

  // ---- request path -----------------------------------------------------------------

  /** A trusted proxy's X-Request-Id is kept, so one id follows the request end to end. */
  private requestId(req: IncomingMessage): string {
    const given = req.headers['x-request-id'];
    if (
      typeof given === 'string' &&
      !this.trusted.empty &&
      /^[A-Za-z0-9._:-]{1,128}$/.test(given) &&
      this.trusted.has(req.socket.remoteAddress)
    )
      return given;
    return randomUUID();
  }

  /** The site for a Host value (as the client sent it, default port or not). */
  private siteFor(host: string | undefined): Site | undefined {
    if (!host) return undefined;
    const h = host.toLowerCase();
    const site = this.sites.get(h);
    if (site || !(h.endsWith(':443') || h.endsWith(':80'))) return site;
    const s = this.sites.values().next().value!;
    return this.sites.get(hostKey(h, s.secure));
  }

  private isOwnPath(path: string): boolean {
    return isBelow(path, this.prefixLower, true);
  }

  /** One of Gatehouse's documents under <base>/.well-known/ (the path is below the base). */
  private isWellKnown(path: string): boolean {
    return this.wellKnown.has(this.base ? path.slice(this.base.length) : path);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Pipelined behind a refused request: its framing may hide this one. Its connection closes
    // after the refusal is sent.
    if (this.refused.has(req.socket)) return;
    const started = performance.now();
    const requestId = this.requestId(req);
    if (this.closing && !h2Stream(req)) res.setHeader('connection', 'close');
    let ctx: RequestContext | undefined;
    let status = 0;
    try {
      const bad = protocolError(req);
      if (bad) {
        status = bad.status;
        // The client may frame the rest otherwise: nothing more is read on this connection.
        if (!h2Stream(req)) {
          res.setHeader('connection', 'close');
          this.refused.add(req.socket);
        }
        return this.error(req, res, undefined, bad.status, bad.code, bad.message);
      }
      const via = this.forwarding.resolve(req);
      const site = this.siteFor(via.host);
      if (!site) {
        // Load balancers and kubelets probe by address (Host: 10.0.0.7:8080): the health and
        // readiness routes answer whatever the Host; every other route needs a known site.
        const probe = this.probeFor(req);
        if (probe) {
          await probe(res);
          status = res.statusCode;
          return;
        }
        status = 421;
        return this.misdirected(req, res, requestId);
      }
      const target = normalizeTarget(req.url ?? '');
      if (!target.ok) {
        status = 400;
        return this.error(req, res, site, 400, 'bad_request', 'This address is not valid.', target.reason);
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
      };
      if (this.base && !isBelow(target.path, this.base, false)) {
        status = 404;
        const cause = this.diagnosis.outsideBase(ctx, this.config.authPrefix);
        if (cause) return this.diagnosis.respond(req, res, site, cause, requestId);
        return this.error(
          req,
          res,
          site,
          404,
          'not_found',
          'There is no page at this address.',
          `This server serves ${site.origin}${site.home}`,
        );
      }
      if (this.isOwnPath(target.path)) {
        await this.own(ctx);
        status = res.statusCode;
        return;
      }
      const wellKnown = this.base ? target.path.slice(this.base.length) : target.path;
      if (this.wellKnown.has(wellKnown)) {
        await this.wellKnown.handle(this.base ? { ...ctx, path: wellKnown } : ctx);
        status = res.statusCode;
        return;
      }
      status = await this.proxy(ctx);
    } catch (err) {
      status = this.failure(req, res, ctx?.site, err, requestId);
    } finally {
      this.logger.info(
        {
          req: { id: requestId, method: req.method, path: ctx?.path ?? '(invalid)' },
          status,
          ms: Math.round((performance.now() - started) * 10) / 10,
          user: ctx?.userId,
        },
        'request',
      );
    }
  }

  /** The health or readiness route for a request that names no known host, if it is one. */
  private probeFor(req: IncomingMessage): ((res: ServerResponse) => Promise<void>) | undefined {
    if (req.method !== 'GET' && req.method !== 'HEAD') return undefined;
    const target = normalizeTarget(req.url ?? '');
    if (!target.ok || !isBelow(target.path, this.prefixLower, true)) return undefined;
    const sub = target.path.slice(this.prefix.length);
    if (sub === '/health') return (res) => this.health(res);
    if (sub === '/ready') return (res) => this.ready(res);
    return undefined;
  }

  /** /health: the process answers. */
  async health(res: ServerResponse): Promise<void> {
    sendJson(res, 200, { status: 'ok' });
  }

  /** /ready: 503 while draining or when the store or cache cannot be reached. */
  async ready(res: ServerResponse): Promise<void> {
    if (this.closing) return sendJson(res, 503, { status: 'shutting down' });
    const checks = await Promise.allSettled([this.store.ping(), this.cache.ping()]);
    const [store, cache] = checks.map((c) => (c.status === 'fulfilled' ? 'ok' : 'unavailable'));
    const ok = store === 'ok' && cache === 'ok';
    sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', store, cache });
  }

  private async own(ctx: RequestContext): Promise<void> {
    const sub = ctx.path.slice(this.prefix.length) || '/';
    const match = this.auth.router.match(ctx.req.method ?? 'GET', sub);
    if (!match) return this.error(ctx.req, ctx.res, ctx.site, 404, 'not_found', 'There is no page at this address.');
    if ('allowed' in match) {
      ctx.res.setHeader('allow', match.allowed.join(', '));
      return this.error(ctx.req, ctx.res, ctx.site, 405, 'method_not_allowed', 'This method is not allowed here.');
    }
    // A sign-in that cannot work (wrong scheme, untrusted proxy) is explained, not looped.
    if (this.diagnosis.guards(sub)) {
      const cause = this.diagnosis.check(ctx);
      if (cause) return this.diagnosis.respond(ctx.req, ctx.res, ctx.site, cause, ctx.requestId);
    }
    await match.handler(ctx, match.params);
  }

  /** Decides and, when allowed, forwards. Returns the status the client got. */
  private async proxy(ctx: RequestContext): Promise<number> {
    const { req, res, site } = ctx;
    const d = await decide(this.sessions, site, req, req.method ?? 'GET', ctx.path, this.oauth);
    switch (d.kind) {
      case 'no_app':
        return (this.error(req, res, site, 404, 'not_found', 'There is no app at this address.'), 404);
      case 'deny':
        return (this.error(req, res, site, 403, 'forbidden', 'Access to this page is not allowed.'), 403);
      case 'unauthenticated':
        return unauthenticated(ctx, d.rule, d.lookup, this.services, { challenge: this.oauth.challenge(d.app) });
      case 'invalid_token':
        return this.bearerRefused(ctx, d.app, d.description);
      case 'forbidden':
        ctx.userId = d.active.user.id;
        if (d.reason === 'email_unverified') return this.verification.blocked(ctx, d.active);
        return (this.error(req, res, site, 403, 'forbidden', 'Your account does not have access to this page.'), 403);
    }
    const { app, active, rule } = d;
    if (active) ctx.userId = active.user.id;

    let relay = this.tokenRelay(rule, app, active);
    if (relay instanceof Promise) relay = await relay;
    if ('reason' in relay) return this.relayFailed(ctx, rule, active!, relay.provider, relay.reason);
    const { bearer } = relay;

    let assertion: string | Promise<string> | undefined;
    if (active && app.headers.assertion) assertion = this.assertions.get(app, active);
    if (typeof assertion === 'object') assertion = await assertion;
    const headers = this.upstreamHeaders(ctx, app, active, assertion, bearer, d.ownToken);
    const outcome = await forward(req, res, app.upstream, ctx.path + ctx.query, headers);
    if (outcome.error) {
      this.logger.warn(
        { event: 'upstream_error', app: app.name, cause: outcome.cause, requestId: ctx.requestId },
        'upstream failed',
      );
      const message =
        outcome.error === 'gateway_timeout' ? 'The app took too long to answer.' : 'The app could not be reached.';
      return (this.error(req, res, site, outcome.status, outcome.error, message), outcome.status);
    }
    return outcome.status;
  }

  /**
   * `bearer`: undefined without tokenRelay; else the token to send (null: none, and the
   * client's is dropped). `ownToken`: the client's Authorization carried a Gatehouse token,
   * which never reaches an app.
   */
  private upstreamHeaders(
    ctx: RequestContext,
    app: App,
    active: ActiveSession | undefined,
    assertion: string | undefined,
    bearer?: string | null,
    ownToken = false,
  ): string[] {
    const { req, site } = ctx;
    return upstreamRequestHeaders(
      req.rawHeaders,
      req.headers.connection,
      {
        clientIp: ctx.ip,
        // The chain is passed on only when it came through a trusted proxy; otherwise the
        // app learns the peer alone, whatever the client wrote.
        forwardedFor: this.forwarding.chainFor(req, ctx),
        proto: site.secure ? 'https' : 'http',
        host: site.host,
        requestId: ctx.requestId,
        upstreamHost: app.preserveHost ? site.host : app.upstream.host,
        ownCookies: site.ownCookies,
      },
      bearer
        ? [...identityHeaders(app, active, assertion), 'authorization', `Bearer ${bearer}`]
        : identityHeaders(app, active, assertion),
      bearer === undefined && !ownToken ? undefined : 'authorization',
      app.ownIdentityHeaders,
    );
  }

  /** A bearer token that is not good for this app: 401 with the RFC 6750 error, always JSON. */
  private bearerRefused(ctx: RequestContext, app: App, description: string): number {
    this.logger.info(
      { event: 'bearer_refused', app: app.name, reason: description, requestId: ctx.requestId },
      'bearer token refused',
    );
    sendJson(
      ctx.res,
      401,
      { error: 'invalid_token', message: `Sign in again: ${description}.` },
      { 'www-authenticate': this.oauth.challenge(app, description) },
    );
    return 401;
  }

  /**
   * tokenRelay of the app or rule: no relay (bearer undefined), relay but nobody signed in
   * (null: the client's Authorization is still dropped), the user's provider access token, or
   * why there is none. Synchronous without a relay (the common request awaits nothing);
   * once cached, a map lookup.
   */
  private tokenRelay(rule: Rule, app: App, active: ActiveSession | undefined): Relay | Promise<Relay> {
    const provider = rule.tokenRelay === null ? app.tokenRelay : rule.tokenRelay || null;
    if (!provider) return NO_RELAY;
    if (!active) return NOBODY_TO_RELAY;
    return this.relayToken(active, provider);
  }

  private async relayToken(active: ActiveSession, provider: string): Promise<Relay> {
    // A CLI or MCP login relays the provider tokens it was given when the user approved it.
    const token =
      'grant' in active
        ? await this.providers.relayTokenFor(grantOwner((active as BearerSession).grant), provider)
        : await this.providers.relayToken(active.session, provider);
    return token.ok ? { bearer: token.token } : { provider, reason: token.reason };
  }

  /**
   * tokenRelay without a usable provider token (none for this session, or the refresh
   * failed): a browser signs in with that provider again, landing back here; an API call
   * gets 401. Right after a sign-in with that very provider it is an error page instead,
   * so a provider that hands out unusable tokens cannot make the browser loop.
   */
  private relayFailed(
    ctx: RequestContext,
    rule: Rule,
    active: ActiveSession,
    provider: string,
    reason: RelayFailure,
  ): number {
    const { req, res, site } = ctx;
    const name = this.providers.get(provider)?.name ?? provider;
    this.logger.info(
      { event: 'token_relay_unavailable', provider, reason, userId: active.user.id, requestId: ctx.requestId },
      `no usable ${provider} access token`,
    );
    if (reason === 'unavailable') {
      res.setHeader('retry-after', '5');
      return (
        this.error(
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
    const login = `${site.origin}${this.prefix}/login/${provider}?rd=${encodeURIComponent(ctx.path + ctx.query)}`;
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
          this.error(
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
      return redirectToLogin(ctx, this.diagnosis, login);
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
    this.diagnosis.respond(
      req,
      res,
      undefined,
      this.diagnosis.misdirected(req, this.sites, (h) => this.siteFor(h)),
      requestId,
    );
  }

  error(
    req: IncomingMessage,
    res: ServerResponse,
    site: Site | undefined,
    status: number,
    code: string,
    message: string,
    detail?: string,
  ): void {
    if (res.headersSent) return void res.destroy();
    if (wantsHtml(req)) {
      const page = messagePage({
        appTitle: site?.title ?? 'Gatehouse',
        heading: http.STATUS_CODES[status] ?? 'Error',
        message,
        hint: detail,
        link: site ? { href: `${site.origin}${site.home}`, text: 'Go to the start page' } : undefined,
      });
      sendHtml(res, status, page, { 'content-security-policy': CSP });
    } else {
      sendJson(res, status, { error: code, message, ...(detail ? { detail } : {}) });
    }
  }

  private failure(
    req: IncomingMessage,
    res: ServerResponse,
    site: Site | undefined,
    err: unknown,
    requestId: string,
  ): number {
    if (err instanceof DiagnosedError) {
      this.diagnosis.respond(req, res, site, err.diagnosis, requestId);
      return err.diagnosis.status;
    }
    if (err instanceof HttpError) {
      // HTTP/2 has no Connection header (and no per-request close).
      for (const [k, v] of Object.entries(err.headers ?? {}))
        if (!res.headersSent && !(k === 'connection' && h2Stream(req))) res.setHeader(k, v);
      this.error(req, res, site, err.status, err.code, err.message);
      return err.status;
    }
    if (
      err instanceof StoreUnavailableError ||
      err instanceof CacheUnavailableError ||
      err instanceof PasswordBusyError
    ) {
      this.logger.error(
        { event: 'dependency_unavailable', err: { name: (err as Error).name, message: (err as Error).message } },
        'failing closed',
      );
      if (!res.headersSent) res.setHeader('retry-after', '5');
      this.error(req, res, site, 503, 'unavailable', 'Sign-in is temporarily unavailable. Try again in a moment.');
      return 503;
    }
    this.logger.error({ event: 'internal_error', err }, 'request failed');
    this.error(req, res, site, 500, 'internal_error', 'Something went wrong on our side.');
    return 500;
  }

  // ---- WebSocket upgrades -------------------------------------------------------------

  private async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const started = performance.now();
    const requestId = this.requestId(req);
    let status = 0;
    let userId: string | undefined;
    socket.on('error', () => socket.destroy());
    if (this.refused.has(req.socket)) return void socket.end();
    try {
      const bad = protocolError(req);
      if (bad) return rejectUpgrade(socket, (status = bad.status), http.STATUS_CODES[bad.status]!, `${bad.message}\n`);
      if (req.httpVersionMinor === 0)
        return rejectUpgrade(socket, (status = 400), 'Bad Request', 'A WebSocket handshake needs HTTP/1.1.\n');
      const via = this.forwarding.resolve(req);
      const site = this.siteFor(via.host);
      const target = normalizeTarget(req.url ?? '');
      if (!site || !target.ok || this.closing)
        return rejectUpgrade(
          socket,
          (status = site && target.ok ? 503 : 400),
          site && target.ok ? 'Service Unavailable' : 'Bad Request',
        );
      const outside = this.base && !isBelow(target.path, this.base, false);
      if (outside || this.isOwnPath(target.path) || this.isWellKnown(target.path))
        return rejectUpgrade(socket, (status = 404), 'Not Found');
      // Cross-site WebSocket hijacking: the browser sends cookies with a cross-origin upgrade.
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== site.origin) return rejectUpgrade(socket, (status = 403), 'Forbidden');
      const d = await decide(this.sessions, site, req, 'GET', target.path, this.oauth);
      if (d.kind === 'no_app') return rejectUpgrade(socket, (status = 404), 'Not Found');
      if (d.kind === 'unauthenticated' || d.kind === 'invalid_token')
        return rejectUpgrade(socket, (status = 401), 'Unauthorized');
      if (d.kind !== 'allow') return rejectUpgrade(socket, (status = 403), 'Forbidden');
      const { app, active } = d;
      userId = active?.user.id;
      // Browsers always send Origin with an upgrade: one the session cookie signs in without it
      // did not come from a page of this site. A bearer token is a program's own and needs none.
      if (active && !d.ownToken && origin === undefined)
        return rejectUpgrade(
          socket,
          (status = 403),
          'Forbidden',
          'A signed-in WebSocket handshake must send Origin.\n',
        );
      const relay = await this.tokenRelay(d.rule, app, active);
      if ('reason' in relay)
        return rejectUpgrade(
          socket,
          (status = relay.reason === 'unavailable' ? 503 : 401),
          relay.reason === 'unavailable' ? 'Service Unavailable' : 'Unauthorized',
        );
      const { bearer } = relay;
      const ctx: RequestContext = {
        req,
        res: undefined as unknown as ServerResponse,
        site,
        path: target.path,
        query: target.query,
        ip: via.ip,
        scheme: via.scheme,
        viaProxy: via.viaProxy,
        requestId,
      };
      const assertion = active && app.headers.assertion ? await this.assertions.get(app, active) : undefined;
      const headers = this.upstreamHeaders(ctx, app, active, assertion, bearer, d.ownToken);
      (socket as Socket).setTimeout?.(0);
      status = await tunnelWebSocket(
        req,
        socket,
        head,
        app.upstream,
        target.path + target.query,
        headers,
        ([client, upstream]) => {
          this.tunnels.set(client!, upstream!);
          client!.once('close', () => this.tunnels.delete(client!));
        },
      );
    } catch (err) {
      const unavailable = err instanceof StoreUnavailableError || err instanceof CacheUnavailableError;
      if (!unavailable) this.logger.error({ event: 'internal_error', err }, 'upgrade failed');
      rejectUpgrade(
        socket,
        (status = unavailable ? 503 : 500),
        unavailable ? 'Service Unavailable' : 'Internal Server Error',
      );
    } finally {
      this.logger.info(
        {
          req: { id: requestId, method: 'GET', path: req.url?.split('?')[0], upgrade: 'websocket' },
          status,
          ms: Math.round((performance.now() - started) * 10) / 10,
          user: userId,
        },
        'request',
      );
    }
  }

  // ---- shutdown -----------------------------------------------------------------------

  /**
   * Graceful stop: refuse new connections, let in-flight requests and WebSockets finish for
   * up to listen.timeouts.drain, then close what is left and release the store and cache.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.purgeTimer);
      this.keys.close();
      // HTTP/2 sessions get a GOAWAY from close(): no new streams, open ones finish.
      const drained = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      const idleSweep = setInterval(() => this.server.closeIdleConnections(), 100);
      let timer: NodeJS.Timeout | undefined;
      const tunnelsDone = new Promise<void>((resolve) => {
        const check = () => (this.tunnels.size === 0 ? resolve() : setTimeout(check, 50).unref());
        check();
      });
      await Promise.race([
        Promise.all([drained, tunnelsDone]),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, this.config.listen.timeouts.drain))),
      ]);
      clearTimeout(timer);
      clearInterval(idleSweep);
      for (const [client, upstream] of this.tunnels) {
        if (client.writable) client.end(WS_CLOSE_GOING_AWAY);
        upstream.destroy();
      }
      // HTTP/1.1 connections (Http2SecureServer tracks its HTTP/1.1 ones the same way), then
      // HTTP/2 sessions that are still busy.
      http.Server.prototype.closeAllConnections.call(this.server as http.Server);
      for (const session of this.h2Sessions) session.destroy();
      await Promise.allSettled([...this.sites.values()].flatMap((s) => s.apps.map((a) => a.upstream.close())));
      // Messages under way get a moment (their links are in the store already).
      await this.mailer?.close(Math.min(5000, this.config.listen.timeouts.drain));
      await Promise.allSettled([this.store.close(), this.cache.close(), this.oauth.close()]);
      await new Promise<void>((resolve) => this.logger.flush(() => resolve()));
    })();
    return this.closing;
  }
}

function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket' && req.method === 'GET';
}
