// server/ (composition root): Gatehouse makes every part once and wires them (this file), with the route
// table (routes.ts), the Services bag, own TLS; it owns the listener and shutdown. Only cli/ imports it.
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { AccountActivity } from '../accounts/activity.ts';
import { AccountPage } from '../accounts/account-page.ts';
import { AccountDeletion } from '../accounts/deletion.ts';
import { AppEvents } from '../events/index.ts';
import { AccountExport } from '../accounts/export.ts';
import { SignInNotices } from '../accounts/sign-in-notices.ts';
import { SignInLinks } from '../accounts/sign-in-links.ts';
import { EmailChange } from '../accounts/email-change.ts';
import { EmailTokens } from '../accounts/email-tokens.ts';
import { InvitationPage } from '../accounts/invitations.ts';
import { MailedLinks } from '../accounts/mailed-links.ts';
import { dummyHash, PasswordBusyError, passwordsBusy } from '../accounts/passwords.ts';
import { Reauthentication } from '../accounts/reauth.ts';
import { PasswordRecovery } from '../accounts/recovery.ts';
import { Accounts } from '../accounts/service.ts';
import { SignIn } from '../accounts/sign-in.ts';
import { Throttle } from '../accounts/throttle.ts';
import { EmailVerification } from '../accounts/verification.ts';
import { Audit } from '../audit/index.ts';
import { CacheUnavailableError, FallbackCache, openCache, type Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import { DiagnosedError, Diagnosis } from '../diagnosis/index.ts';
import { TrustedProxies } from '../http/client-ip.ts';
import { Forwarding } from '../http/forwarded.ts';
import { otherMajorVersion, h2Stream } from '../http/protocol.ts';
import { sendJson } from '../http/respond.ts';
import { DependencyHealth } from '../health/index.ts';
import { JobRunner, type JobResult, purgeJob } from '../jobs/index.ts';
import { Assertions } from '../identity/assertion.ts';
import { issuerOf, KeyRing, keyPolicy } from '../keys/keys.ts';
import { loadSecrets, type Secrets } from '../keys/secrets.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { Mailer } from '../mail/mailer.ts';
import { answerMetricsRequests } from '../metrics/cluster.ts';
import { Metrics, MetricsListener, timeCache, timeStore } from '../metrics/index.ts';
import { SecondFactorRoutes } from '../mfa/routes.ts';
import { OAuthServer } from '../oauth/server.ts';
import { FormKit } from '../pages/kit.ts';
import { ForwardAuth } from '../pipeline/forward-auth.ts';
import { HttpEntry, requestIdOf } from '../pipeline/request.ts';
import { Routes } from '../pipeline/route.ts';
import { ToApp } from '../pipeline/to-app.ts';
import { UpgradeEntry } from '../pipeline/upgrade.ts';
import { ProviderRoutes } from '../providers/routes.ts';
import { makeLook } from '../pages/index.ts';
import { SessionRevalidation } from '../providers/revalidation.ts';
import { ProviderService } from '../providers/service.ts';
import { Upstreams } from '../proxy/forward.ts';
import { rejectUpgrade } from '../proxy/upgrade.ts';
import { Sessions } from '../sessions/index.ts';
import { basePath, buildSites, type Site } from '../sites/index.ts';
import { openStore, StoreUnavailableError, type Store } from '../store/index.ts';
import { accountSections, type Features, routeTable } from './routes.ts';
import type { Services } from './services.ts';
import { describe as describeCert, loadTls, type TlsPair } from './tls.ts';
import { type Peers, workerId } from './workers.ts';

export interface GatehouseOptions {
  logger?: Logger;
  /** Use this store instead of opening the configured one (tests, embedding). */
  store?: Store;
  cache?: Cache;
  /** The clock of the OAuth server's decisions and the key ring (tests move it by hand). */
  clock?: () => number;
  /** Start the background jobs' timer (default true); tests run them with runJobs(). */
  startJobs?: boolean;
  /** How often a dependency that is down is logged as still down (default 30 s). */
  outageLogEveryMs?: number;
}

/**
 * Node's HTTP/2 server with HTTP/1.1 fallback (own TLS), or the plain HTTP/1.1 server. With
 * allowHTTP1, Http2SecureServer runs its HTTP/1.1 connections through node:http's own
 * connection handling (parser limits, timeouts, upgrades, closeIdleConnections), which its
 * type declarations do not show.
 */
export type Listener = (http.Server | http2.Http2SecureServer) & { closeIdleConnections(): void };

const WS_CLOSE_GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9]);

/**
 * One Gatehouse node, the composition root: it makes every part once, wires them (the route
 * table is server/routes.ts, the request path src/pipeline/), and owns the listener, the
 * background jobs (src/jobs/) and shutdown.
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
  /** Prometheus metrics (metrics/); undefined without `metrics:` in the config. */
  readonly metrics: Metrics | undefined;
  /** The audit trail (audit/): flushed on close(). */
  readonly audit: Audit;
  /** The listener of `metrics.listen`, started by listen(). */
  private readonly metricsListener: MetricsListener | undefined;
  private readonly emailTokens: EmailTokens;
  private readonly trusted: TrustedProxies;
  private readonly forwarding: Forwarding;
  /** Each app's undici pool: made here only, so `check` and lint never open one. */
  private readonly upstreams: Upstreams;
  /** Where a request goes: site, own route, well-known document or app (pipeline/route.ts). */
  private readonly routes: Routes;
  /** The pipeline's entry points (src/pipeline/) for requests and WebSocket upgrades. */
  private readonly http: HttpEntry;
  private readonly upgrades: UpgradeEntry;
  /** The certificate being served (own TLS), swapped by reloadTls(). */
  private tls: TlsPair | undefined;
  /** Open HTTP/2 sessions, closed (GOAWAY) on shutdown. */
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  /** HTTP/1 connections whose framing was refused: what else the parser finds on them is not served. */
  private readonly refused = new WeakSet<object>();
  /** Open WebSocket tunnels: client socket → app socket. */
  private readonly tunnels = new Map<Duplex, Duplex>();
  /** The background jobs: purges of what expired, one node at a time (src/jobs/). */
  readonly jobs: JobRunner;
  /** The outbox of events for apps and its courier (src/events/). */
  readonly events: AppEvents;
  /** What the store, the cache and the password hasher are doing (src/health/): /ready and the outage log. */
  readonly dependencies: DependencyHealth;
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
    health: DependencyHealth,
    clock?: () => number,
    metrics?: Metrics,
  ) {
    this.config = config;
    this.metrics = metrics;
    this.audit = new Audit({ store: store.audit, logger, metrics });
    this.dependencies = health;
    this.logger = logger;
    this.store = store;
    this.cache = cache;
    this.secrets = secrets;
    this.keys = keys;
    this.tls = tls;
    const base = basePath(config.publicUrl);
    const prefix = base + config.authPrefix;
    this.trusted = new TrustedProxies(config.trustedProxies);
    this.forwarding = new Forwarding(this.trusted, config.forwardedHeaders, tls !== undefined);
    const diagnosis = new Diagnosis({ logger, forwarding: this.forwarding, secrets, prefix });
    this.sites = buildSites(config);
    this.sessions = new Sessions(store, {
      idleMs: config.sessions.idleTimeout,
      absoluteMs: config.sessions.absoluteTimeout,
      now: clock,
    });
    const throttle = new Throttle(cache, secrets, config.accounts.rateLimits);
    this.events = AppEvents.forConfig(config, { store, ring: keys, logger, metrics }, this.sites);
    this.accounts = new Accounts(store, throttle, config.accounts, this.events);
    this.providers = new ProviderService({ config, store, secrets, logger, sessions: this.sessions, prefix });
    const revalidation = new SessionRevalidation({
      config,
      store,
      tokens: this.providers.tokens,
      audit: this.audit,
      logger,
      metrics,
    });
    if (revalidation.enabled) this.sessions.guard = (active) => revalidation.check(active);
    const forms = new FormKit({
      prefix,
      secrets,
      csrfCookieMissing: (ctx) => new DiagnosedError(diagnosis.cookieMissing(ctx, 'csrf')),
    });
    // "Confirm it's you" before sensitive actions (accounts/reauth.ts).
    const reauth = new Reauthentication(
      {
        config,
        logger,
        store,
        sessions: this.sessions,
        accounts: this.accounts,
        prefix,
        now: clock ?? Date.now,
        audit: this.audit,
      },
      forms,
    );
    this.oauth = new OAuthServer({
      config,
      logger,
      store,
      cache,
      secrets,
      sessions: this.sessions,
      sites: this.sites,
      keys,
      prefix,
      providers: this.providers,
      now: clock,
      pages: forms,
      audit: this.audit,
      metrics,
      reauth,
    });
    const services: Services = {
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
      diagnosis,
      prefix,
      providers: this.providers,
      oauth: this.oauth,
      audit: this.audit,
      metrics,
      notices: new SignInNotices(
        { config, logger, secrets, throttle, prefix, providerName: (id) => this.providers.get(id)?.name },
        mailer,
      ),
      events: this.events,
    };
    // Email verification, password reset and change (accounts/), mail sent by mail/.
    this.mailer = mailer;
    this.emailTokens = new EmailTokens(store, { now: clock });
    const links = new MailedLinks(services, forms, this.emailTokens);
    const account = new AccountPage(services, forms);
    const verification = new EmailVerification(services, forms, account, links, mailer);
    // Second factors (mfa/): the step after a password, enrolment, passkeys.
    const mfa = new SecondFactorRoutes(services, forms, account, reauth).onRegister((ctx, user) =>
      verification.afterRegister(ctx, user),
    );
    const signIn = new SignIn(services, forms)
      .onRegister((ctx, user) => verification.afterRegister(ctx, user))
      .useSecondFactor(mfa);
    const assertions = new Assertions(keys, secrets, {
      ttlMs: config.tokens.assertionTtl,
      cachedForMs: config.forwardAuth.cacheFor,
      ...(clock ? { now: clock } : {}),
    });
    // The pipeline (src/pipeline/): routes by the table of server/routes.ts, then decides.
    const features: Features = {
      signIn,
      account,
      verification,
      recovery: new PasswordRecovery(services, forms, account, links, mailer),
      signInLinks: new SignInLinks(services, forms, links, mailer).useSecondFactor(mfa),
      reauth,
      emailChange: new EmailChange(services, forms, account, reauth, links, mailer),
      deletion: new AccountDeletion(services, forms, account, reauth, mailer),
      dataExport: new AccountExport(services, forms, account, reauth),
      invitations: mfa.inviteWith(new InvitationPage(services, forms, links).useSecondFactor(mfa), links),
      providers: new ProviderRoutes(this.providers, services, forms, account, reauth).useSecondFactor(mfa),
      oauth: this.oauth,
      forwardAuth: new ForwardAuth({
        sessions: this.sessions,
        diagnosis,
        // The routes are made from the table that holds this one: asked for at request time.
        routes: { prefix, route: (method, path, foldCase) => this.routes.route(method, path, foldCase) },
        assertions,
        bearer: this.oauth,
        cacheForSeconds: config.forwardAuth.cacheFor / 1000,
      }),
      keys,
      activity: new AccountActivity(services, forms, account),
      probes: this,
      mfa,
    };
    accountSections(features);
    // "Confirm it's you" by signing in again at a linked provider, after the password.
    reauth.addProof(features.providers.reauthProof());
    // ... and with a second factor (mfa/): a code, or a passkey.
    for (const proof of mfa.reauthProofs()) reauth.addProof(proof);
    this.routes = new Routes(this.sites, routeTable(features), { base, prefix });
    // Each site's look (pages/brand.ts): a logo that cannot be used throws a BrandError naming its key.
    for (const site of this.sites.values()) site.look = makeLook(site.branding, site.branding?.at ?? '', prefix);
    this.upstreams = new Upstreams([...this.sites.values()].flatMap((s) => s.apps));
    const toApp = new ToApp({ forwarding: this.forwarding, providers: this.providers });
    const entry = {
      logger,
      routes: this.routes,
      trusted: this.trusted,
      forwarding: this.forwarding,
      diagnosis,
      sessions: this.sessions,
      oauth: this.oauth,
      providers: this.providers,
      assertions,
      toApp,
      upstreams: this.upstreams,
      verification,
      authPrefix: config.authPrefix,
      refused: this.refused,
      draining: () => this.closing !== null,
      tunnels: this.tunnels,
      metrics,
      unavailable: (err: Error) =>
        this.dependencies.failed(
          err instanceof StoreUnavailableError ? 'store' : err instanceof CacheUnavailableError ? 'cache' : 'passwords',
          err,
        ),
    };
    this.http = new HttpEntry(entry);
    this.upgrades = new UpgradeEntry(entry);

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
    const onRequest = (req: IncomingMessage, res: ServerResponse) => void this.http.handle(req, res);
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
      (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.upgrades.handle(req, socket, head),
    );
    // CONNECT: Gatehouse is no forward proxy. Over HTTP/1 Node hands over the raw socket (and
    // would just drop it without a listener), over HTTP/2 a response.
    this.server.on('connect', (req: IncomingMessage, out: Duplex | http2.Http2ServerResponse) => {
      this.logger.info({ req: { id: requestIdOf(req, this.trusted), method: 'CONNECT' }, status: 405 }, 'request');
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
    if (metrics) {
      metrics.collect({
        sessionsActive: () => store.sessions.countActive(Date.now(), config.sessions.idleTimeout),
        mailQueueDepth: () => mailer?.depth ?? 0,
        signingKeyCreatedAt: () => keys.currentCreatedAt,
      });
      this.metricsListener = new MetricsListener(metrics);
    }
    // Deletes what has expired (sessions, provider sign-in states, the OAuth server's records,
    // mailed links, audit events past audit.retention) in small batches, one node at a time, every
    // jobs.interval (src/jobs/). A feature whose table grows adds its own: purgeJob(name, (now, limit) => deleted).
    this.jobs = new JobRunner({ store, logger, intervalMs: config.jobs.interval })
      .add(purgeJob('sessions', (now, limit) => store.sessions.purgeExpired(now, config.sessions.idleTimeout, limit)))
      .add(purgeJob('provider_flows', (now, limit) => this.providers.flows.purgeExpired(now, limit)))
      .add(purgeJob('oauth', (_now, limit) => this.oauth.purge(limit)))
      .add(purgeJob('email_tokens', (_now, limit) => this.emailTokens.purgeExpired(limit)))
      .add(purgeJob('audit', (now, limit) => store.audit.purgeBefore(now - config.audit.retention, limit)))
      .add(purgeJob('mfa_pending', (now, limit) => store.mfa.purgePending(now, limit)));
  }

  /**
   * Runs every background job now, each under its lease (a job another node holds is skipped),
   * as the timer does: for tests and embedding. Failures are logged (`job_failed`) and reported.
   */
  runJobs(): Promise<JobResult[]> {
    return this.jobs.runAll();
  }

  static async create(config: Config, options: GatehouseOptions = {}): Promise<Gatehouse> {
    const logger = options.logger ?? createLogger(config.log.level);
    const metrics = config.metrics ? new Metrics({ version: packageVersion() }) : undefined;
    const health = new DependencyHealth(logger, { repeatMs: options.outageLogEveryMs });
    const openedStore = options.store ?? (await openStore(config.store));
    // Redis unreachable at start-up is an outage like any other (cache.whenDown): the node starts
    // and serves, says so, and picks Redis up when it answers.
    let cacheUnreachable: Error | undefined;
    const openedCache =
      options.cache ??
      (await openCache(config.cache, { unreachable: (err) => (cacheUnreachable = err) }).catch(async (err) => {
        if (!options.store) await openedStore.close();
        throw err;
      }));
    // Timed at the boundary (metrics/): every call of every part, no caller changed.
    const store = metrics ? timeStore(openedStore, metrics) : openedStore;
    // Redis behind a fallback for its outages (cache.whenDown), reported to the health tracker.
    const fallback =
      openedCache.kind === 'redis' && !(openedCache instanceof FallbackCache)
        ? new FallbackCache(openedCache, config.cache.type === 'redis' ? config.cache.whenDown : 'local', {
            failed: (err) => health.failed('cache', err),
            isDown: () => health.isDown('cache'),
            succeeded: () => health.succeeded('cache'),
          })
        : openedCache;
    const cache = metrics ? timeCache(fallback, metrics) : fallback;
    health
      .register('store', { critical: true, ping: () => store.ping() })
      .register('cache', { critical: false, ping: () => cache.ping() })
      .register('passwords', {
        critical: false,
        settleMs: 5000,
        ping: async () => {
          if (passwordsBusy()) throw new PasswordBusyError('too many password checks in progress');
        },
      });
    if (cacheUnreachable && config.cache.type === 'redis') {
      const counted =
        config.cache.whenDown === 'local' ? 'counting rate limits in this node' : 'refusing rate-limited forms (503)';
      logger.warn(
        { event: 'cache_unreachable_at_start', whenDown: config.cache.whenDown, err: cacheUnreachable.message },
        `starting without Redis, ${counted} until it answers; check cache.url if it never does`,
      );
      health.failed('cache', cacheUnreachable);
    }
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
    let gatehouse: Gatehouse;
    try {
      // Throws when a file the config names cannot be used: upstreamTls (TlsFileError), a logo (BrandError).
      gatehouse = new Gatehouse(
        config,
        logger,
        store,
        cache,
        secrets,
        keys,
        tls,
        mailer,
        health,
        options.clock,
        metrics,
      );
    } catch (err) {
      keys.close();
      await mailer?.close(0);
      await Promise.allSettled([options.store ? undefined : store.close(), options.cache ? undefined : cache.close()]);
      throw err;
    }
    if (options.startJobs !== false) {
      gatehouse.jobs.start();
      gatehouse.events.start();
    }
    return gatehouse;
  }

  /**
   * Called on SIGHUP. Re-reads listen.tls and serves the new pair to new connections; open
   * connections keep theirs, nothing is dropped. Re-reads each app's upstreamTls: new connections
   * to the app present the new client certificate and trust the new CA. Files that cannot be
   * used are logged and the old ones kept. Returns whether a new listen.tls pair is in use.
   */
  reloadTls(): boolean {
    for (const [app, upstream] of this.upstreams.all()) {
      try {
        const tls = upstream.reloadTls();
        if (tls)
          this.logger.info(
            {
              event: 'upstream_tls_reload',
              outcome: 'ok',
              app: app.name,
              ...(tls.client ? { client: describeCert(tls.client) } : {}),
            },
            `upstreamTls of app "${app.name}" reloaded`,
          );
      } catch (err) {
        this.logger.error(
          { event: 'upstream_tls_reload', outcome: 'failed', app: app.name, err: { message: (err as Error).message } },
          `upstreamTls of app "${app.name}" not reloaded; new connections to it still use the previous files`,
        );
      }
    }
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

  /**
   * listen.workers: this worker and the others of its node (server/workers.ts) tell each other
   * when a copy kept in memory goes stale: an unlinked provider's tokens leave every worker at
   * once, not within the cache's 60 s.
   */
  joinPeers(peers: Peers): void {
    const tokens = this.providers.tokens;
    tokens.onForgetUser = (userId, provider) => peers.publish({ kind: 'provider-tokens-forgotten', userId, provider });
    peers.subscribe((e) => tokens.forgetCached(e.userId, e.provider));
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
    if (this.metricsListener && this.config.metrics && this.metrics) {
      // A worker of listen.workers binds nothing: the primary serves metrics.listen and asks it at each scrape.
      if (workerId() !== undefined) answerMetricsRequests(this.metrics.registry);
      else {
        const at = await this.metricsListener.listen(this.config.metrics.listen);
        this.logger.info({ event: 'metrics_listening', listen: `http://${at.address}:${at.port}/metrics` }, 'metrics');
      }
    }
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

  /** Where /metrics is served (after listen()), undefined without `metrics:`. */
  metricsAddress(): AddressInfo | undefined {
    return this.metricsListener?.address();
  }

  // ---- probes -----------------------------------------------------------------------

  /** /health: the process answers. */
  async health(res: ServerResponse): Promise<void> {
    sendJson(res, 200, { status: 'ok' });
  }

  /**
   * /ready: can this node serve its traffic? 503 from the start of a drain and while the store
   * does not answer (within 2 s); 200 otherwise, with `status: degraded` and the names of what is
   * down (`unavailable`) when the node serves without it (Redis: sessions work off the store, the
   * rate limits per cache.whenDown). Names only: no addresses, errors or counts (those are logged).
   */
  async ready(res: ServerResponse): Promise<void> {
    if (this.closing) return sendJson(res, 503, { status: 'shutting down' });
    const { ready, states } = await this.dependencies.check(2000);
    const down = (name: string) => states.some((s) => s.name === name && !s.up);
    const degraded = states.filter((s) => !s.up).map((s) => s.name);
    sendJson(res, ready ? 200 : 503, {
      status: !ready ? 'unavailable' : degraded.length ? 'degraded' : 'ready',
      store: down('store') ? 'unavailable' : 'ok',
      cache: down('cache') ? 'unavailable' : 'ok',
      ...(degraded.length ? { unavailable: degraded } : {}),
    });
  }

  // ---- shutdown -----------------------------------------------------------------------

  /**
   * Graceful stop: refuse new connections, let in-flight requests and WebSockets finish for
   * up to listen.timeouts.drain, then close what is left and release the store and cache.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // /ready answers 503 from now on; the listener keeps serving for drainDelay (responses
      // close their connections), so a balancer that probes it stops sending before it closes.
      const stopped = Promise.all([this.jobs.stop(), this.events.close()]);
      if (this.config.listen.timeouts.drainDelay > 0)
        await new Promise((resolve) => setTimeout(resolve, this.config.listen.timeouts.drainDelay));
      await stopped;
      this.dependencies.close();
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
      await this.upstreams.close();
      await this.metricsListener?.close();
      // Messages under way get a moment (their links are in the store already).
      await this.mailer?.close(Math.min(5000, this.config.listen.timeouts.drain));
      // The audit trail's last batch goes before the store closes (never lost on a clean stop).
      await this.audit.close();
      await Promise.allSettled([this.store.close(), this.cache.close(), this.oauth.close()]);
      await new Promise<void>((resolve) => this.logger.flush(() => resolve()));
    })();
    return this.closing;
  }
}

let version: string | undefined;

/** package.json's version (gatehouse_build_info), read once. */
function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
    .version;
  return version;
}

function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket' && req.method === 'GET';
}
