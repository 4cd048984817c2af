// server/ (composition root): Gatehouse makes the process's parts once and owns the listener, reloads and
// shutdown (this file); what the configuration makes is wired by wiring.ts, with the route table (routes.ts),
// the Services bag, own TLS. Only cli/ imports it.
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AppEvents } from '../events/index.ts';
import { dummyHash, PasswordBusyError, passwordsBusy } from '../accounts/passwords.ts';
import type { Accounts } from '../accounts/service.ts';
import { Audit } from '../audit/index.ts';
import { FallbackCache, openCache, type Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import { otherMajorVersion, h2Stream } from '../http/protocol.ts';
import { sendJson } from '../http/respond.ts';
import { DependencyHealth } from '../health/index.ts';
import type { JobResult, JobRunner } from '../jobs/index.ts';
import { issuerOf, KeyRing, keyPolicy } from '../keys/keys.ts';
import { loadSecrets, type Secrets } from '../keys/secrets.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { Mailer } from '../mail/mailer.ts';
import { answerMetricsRequests } from '../metrics/cluster.ts';
import { Metrics, MetricsListener, timeCache, timeStore } from '../metrics/index.ts';
import type { OAuthServer } from '../oauth/server.ts';
import { requestIdOf } from '../pipeline/request.ts';
import { Tunnels } from '../pipeline/tunnels.ts';
import type { ProviderService } from '../providers/service.ts';
import { makeLook } from '../pages/index.ts';
import { rejectUpgrade } from '../proxy/upgrade.ts';
import type { Sessions } from '../sessions/index.ts';
import type { App, Site } from '../sites/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { describe as describeCert, loadTls, type TlsPair } from './tls.ts';
import { type Peers, runsHealthChecks, workerId } from './workers.ts';
import { changedKeys, type NodeParts, restartOnly, sameEmail, type Wiring, wire } from './wiring.ts';

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

/**
 * What reload() did, as its `config_reload` log line says: `changed` names the top-level keys that
 * differ, `restart` the restart-only ones among them, `reason` why a file the configuration names
 * could not be used.
 */
export interface ReloadResult {
  outcome: 'ok' | 'unchanged' | 'restart_required' | 'failed' | 'skipped';
  changed: string[];
  restart?: string[];
  reason?: string;
}

/**
 * One Gatehouse node, the composition root: it makes the process's parts once (store, cache,
 * keys, the listener), has what the configuration makes wired (wiring.ts; the route table is
 * server/routes.ts, the request path src/pipeline/), and owns the listener, the background jobs'
 * start (src/jobs/), reload() and shutdown.
 */
export class Gatehouse {
  readonly logger: Logger;
  readonly store: Store;
  readonly cache: Cache;
  readonly secrets: Secrets;
  readonly keys: KeyRing;
  readonly server: Listener;
  /** Prometheus metrics (metrics/); undefined without `metrics:` in the config. */
  readonly metrics: Metrics | undefined;
  /** The audit trail (audit/): flushed on close(). */
  readonly audit: Audit;
  /** What the store, the cache and the password hasher are doing (src/health/): /ready and the outage log. */
  readonly dependencies: DependencyHealth;
  /** The listener of `metrics.listen`, started by listen(). */
  private readonly metricsListener: MetricsListener | undefined;
  /** What every wiring shares: made once per process. */
  private readonly node: NodeParts;
  /** Everything made from the configuration (server/wiring.ts): replaced by reload(). */
  private current: Wiring;
  /** Wirings replaced by reload() whose requests have not all ended: closed with the node. */
  private readonly retiring = new Set<Promise<void>>();
  /** Mailers of replaced wirings that still have mail to send. */
  private readonly oldMailers = new Set<Mailer>();
  /** listen.workers: the other workers of this node (joinPeers). */
  private peers: Peers | undefined;
  private jobsStarted = false;
  /** The certificate being served (own TLS), swapped by reloadTls(). */
  private tls: TlsPair | undefined;
  /** Open HTTP/2 sessions, closed (GOAWAY) on shutdown. */
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  /** HTTP/1 connections whose framing was refused: what else the parser finds on them is not served. */
  private readonly refused = new WeakSet<object>();
  /** Open WebSocket tunnels, checked again every sessions.webSocketRecheck and closed at shutdown. */
  private readonly tunnels: Tunnels;
  private closing: Promise<void> | null = null;

  /** The configuration being served (the last one reload() accepted). */
  get config(): Config {
    return this.current.config;
  }
  get sites(): Map<string, Site> {
    return this.current.sites;
  }
  get sessions(): Sessions {
    return this.current.sessions;
  }
  get accounts(): Accounts {
    return this.current.accounts;
  }
  get providers(): ProviderService {
    return this.current.providers;
  }
  /** The OAuth server for CLIs and MCP clients (src/oauth/). */
  get oauth(): OAuthServer {
    return this.current.oauth;
  }
  /** Sends the verification and reset mail; undefined without `email:` in the config. */
  get mailer(): Mailer | undefined {
    return this.current.mailer;
  }
  /** The background jobs: purges of what expired, one node at a time (src/jobs/). */
  get jobs(): JobRunner {
    return this.current.jobs;
  }
  /** The outbox of events for apps and its courier (src/events/). */
  get events(): AppEvents {
    return this.current.events;
  }

  /** `own`: the parts create() opened for this process, which every configuration it serves shares. */
  private constructor(
    config: Config,
    own: Pick<NodeParts, 'logger' | 'store' | 'cache' | 'secrets' | 'keys' | 'health' | 'metrics' | 'clock'>,
    tls: TlsPair | undefined,
    mailer: Mailer | undefined,
  ) {
    const { logger, store, metrics, health } = own;
    this.metrics = metrics;
    this.audit = new Audit({ store: store.audit, logger, metrics });
    this.dependencies = health;
    this.logger = logger;
    this.store = store;
    this.cache = own.cache;
    this.secrets = own.secrets;
    this.keys = own.keys;
    this.tls = tls;
    this.tunnels = new Tunnels(logger, () => this.config.sessions.webSocketRecheck);
    this.node = {
      ...own,
      audit: this.audit,
      ownTls: tls !== undefined,
      probes: this,
      appNamed: (name) => {
        for (const site of this.current.sites.values()) for (const app of site.apps) if (app.name === name) return app;
        return undefined;
      },
      draining: () => this.closing !== null,
      tunnels: this.tunnels,
      refused: this.refused,
    };
    this.current = wire(config, this.node, mailer);

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
    const onRequest = (req: IncomingMessage, res: ServerResponse) => void this.current.http.handle(req, res);
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
      const onSecureRequest = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
        h2Stream(req as unknown as IncomingMessage)?.setTimeout(t.idle);
        onRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse);
      };
      secure.on('request', onSecureRequest);
      // Expect: 100-continue is answered by the pipeline (request.ts), not at once by Node.
      secure.on('checkContinue', onSecureRequest);
      secure.on('session', (session: http2.ServerHttp2Session) => {
        this.h2Sessions.add(session);
        session.once('close', () => this.h2Sessions.delete(session));
      });
      secure.setTimeout(t.idle);
      this.server = secure as Listener;
    } else {
      this.server = http.createServer({ ...options, shouldUpgradeCallback: shouldUpgrade }, onRequest);
      // Expect: 100-continue is answered by the pipeline (request.ts), not at once by Node.
      this.server.on('checkContinue', onRequest);
      this.server.timeout = t.idle;
    }
    this.server.on(
      'upgrade',
      (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.current.upgrades.handle(req, socket, head),
    );
    // CONNECT: Gatehouse is no forward proxy. Over HTTP/1 Node hands over the raw socket (and
    // would just drop it without a listener), over HTTP/2 a response.
    this.server.on('connect', (req: IncomingMessage, out: Duplex | http2.Http2ServerResponse) => {
      this.logger.info(
        { req: { id: requestIdOf(req, this.current.trusted), method: 'CONNECT' }, status: 405 },
        'request',
      );
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
        sessionsActive: () => store.sessions.countActive(Date.now(), this.config.sessions.idleTimeout),
        mailQueueDepth: () => [this.mailer, ...this.oldMailers].reduce((n, m) => n + (m?.depth ?? 0), 0),
        signingKeyCreatedAt: () => this.keys.currentCreatedAt,
      });
      this.metricsListener = new MetricsListener(metrics);
    }
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
        { logger, store, cache, secrets, keys, health, metrics, clock: options.clock },
        tls,
        mailer,
      );
    } catch (err) {
      keys.close();
      await mailer?.close(0);
      await Promise.allSettled([options.store ? undefined : store.close(), options.cache ? undefined : cache.close()]);
      throw err;
    }
    if (options.startJobs !== false) gatehouse.startBackground();
    return gatehouse;
  }

  /** The background jobs' timer and the events' courier, of the wiring being served. */
  private startBackground(): void {
    this.jobsStarted = true;
    this.current.jobs.start();
    this.current.events.start();
  }

  /**
   * Serves `next` from the next request on, without a restart (SIGHUP, once the CLI has read the
   * file and `gatehouse check` would pass it): routes, apps, upstreams, providers, accounts, mail,
   * tokens' lifetimes and clients, log.level. Connections, sessions and logins are kept; requests
   * under way finish with the configuration they started with, whose parts are closed once they
   * have. A change to a restart-only key (restartOnly()), or a file it names that cannot be used,
   * changes nothing: it is logged with the key to fix and the running configuration stays.
   */
  async reload(next: Config): Promise<ReloadResult> {
    const running = this.current;
    const changed = changedKeys(running.config, next);
    if (this.closing)
      return this.reloaded('info', { outcome: 'skipped', changed }, 'shutting down: configuration not reloaded');
    if (changed.length === 0) {
      this.reloadLogos();
      return this.reloaded('info', { outcome: 'unchanged', changed }, 'configuration unchanged: nothing to reload');
    }
    const restart = restartOnly(running.config, next);
    if (restart.length)
      return this.reloaded(
        'error',
        { outcome: 'restart_required', changed, restart },
        `configuration not reloaded: ${restart.join(', ')} can only change with a restart; still serving the previous configuration`,
      );
    const mailer = sameEmail(running.config, next)
      ? running.mailer
      : next.email
        ? new Mailer(next.email, { logger: this.logger, publicUrl: next.publicUrl })
        : undefined;
    let wiring: Wiring;
    try {
      wiring = wire(next, this.node, mailer, running);
    } catch (err) {
      if (mailer !== running.mailer) await mailer?.close(0);
      return this.reloaded(
        'error',
        { outcome: 'failed', changed, reason: (err as Error).message },
        `configuration not reloaded: ${(err as Error).message}; still serving the previous configuration`,
      );
    }
    this.current = wiring;
    // Open WebSockets are checked against the new configuration at once (an app closed, a rule changed).
    void this.tunnels.recheck();
    this.checkHealth(wiring, running.upstreams);
    if (this.peers) this.tellPeers(wiring);
    wiring.providers.warm();
    if (this.jobsStarted) {
      await Promise.all([running.jobs.stop(), running.events.close()]);
      if (this.current === wiring && !this.closing) this.startBackground();
    }
    const retired = this.retire(running, wiring);
    this.retiring.add(retired);
    void retired.finally(() => this.retiring.delete(retired));
    // The line is written at the more verbose of the two levels: an operator turning logs down sees it too.
    const level = next.log.level;
    if (this.logger.levels.values[level]! < this.logger.levelVal) this.logger.level = level;
    const result = this.reloaded('info', { outcome: 'ok', changed }, `configuration reloaded (${changed.join(', ')})`);
    this.logger.level = level;
    return result;
  }

  /**
   * The sites' logos read again when the configuration did not change (a new logo under the same
   * file name): a new one is served from the next page on; one that cannot be used is logged and
   * the old one kept. (A changed configuration reads them all in wire().)
   */
  private reloadLogos(): void {
    const { prefix } = this.current;
    for (const site of this.current.sites.values()) {
      const branding = site.branding;
      if (!branding?.logo) continue;
      try {
        const look = makeLook(branding, branding.at, prefix);
        if (look.logo?.file === site.look.logo?.file) continue;
        site.look = look;
        this.logger.info(
          { event: 'logo_reload', outcome: 'ok', site: site.origin, file: look.logo?.file },
          `${branding.at}.logo reloaded`,
        );
      } catch (err) {
        this.logger.error(
          { event: 'logo_reload', outcome: 'failed', site: site.origin, err: { message: (err as Error).message } },
          `${branding.at}.logo not reloaded; the previous logo is still shown`,
        );
      }
    }
  }

  /**
   * A reload refused before it got here, by what reads the file (cli/serve.ts): a file that does
   * not parse or validate, or that `gatehouse check` fails. Logged and counted as reload()'s own.
   */
  reloadRefused(reason: string): ReloadResult {
    return this.reloaded(
      'error',
      { outcome: 'failed', changed: [], reason },
      `configuration not reloaded: ${reason}; still serving the previous configuration`,
    );
  }

  /** The `config_reload` line and the reload metrics. */
  private reloaded(level: 'info' | 'error', result: ReloadResult, msg: string): ReloadResult {
    this.logger[level]({ event: 'config_reload', ...result }, msg);
    if (result.outcome !== 'skipped') this.metrics?.configReloaded(result.outcome);
    return result;
  }

  /**
   * Closes what a replaced wiring used and the new one does not, once its last request has ended.
   * Mail it queued is sent by its mailer, retries included, which then closes (close() takes what
   * is still left at shutdown).
   */
  private async retire(old: Wiring, next: Wiring): Promise<void> {
    const mailer = old.mailer !== next.mailer ? old.mailer : undefined;
    if (mailer) this.oldMailers.add(mailer);
    await old.http.whenIdle();
    await Promise.allSettled([old.upstreams.retire(next.upstreams), old.oauth.close()]);
    if (!mailer) return;
    await mailer.idle();
    this.oldMailers.delete(mailer);
    await mailer.close(0);
  }

  /**
   * Called on SIGHUP. Re-reads listen.tls and serves the new pair to new connections; open
   * connections keep theirs, nothing is dropped. Re-reads each app's upstreamTls: new connections
   * to the app present the new client certificate and trust the new CA. Files that cannot be
   * used are logged and the old ones kept. Returns whether a new listen.tls pair is in use.
   */
  reloadTls(): boolean {
    for (const [app, upstream] of this.current.upstreams.all()) {
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
    this.peers = peers;
    this.tellPeers(this.current);
    peers.subscribe((e) => {
      if (e.kind === 'provider-tokens-forgotten') this.current.providers.tokens.forgetCached(e.userId, e.provider);
      else this.current.upstreams.applyHealth(e.app, e.replicas, e.healthy);
    });
  }

  /**
   * The apps' health checks (healthCheck) of `wiring`: run here, or with listen.workers by one
   * worker of the node, which shares each round's results with the others (they follow).
   */
  private checkHealth(wiring: Wiring, previous?: Wiring['upstreams']): void {
    const peers = this.peers;
    const runs = runsHealthChecks();
    wiring.upstreams.checkHealth(
      {
        logger: this.logger,
        metrics: this.metrics,
        ...(peers && runs
          ? { share: (app, replicas, healthy) => peers.publish({ kind: 'upstream-health', app, replicas, healthy }) }
          : {}),
      },
      previous,
      !runs,
    );
  }

  private tellPeers(wiring: Wiring): void {
    const peers = this.peers!;
    wiring.providers.tokens.onForgetUser = (userId, provider) =>
      peers.publish({ kind: 'provider-tokens-forgotten', userId, provider });
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
    // The replicas' health checks run while the node serves (not in the primary's start-up check).
    this.checkHealth(this.current);
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
          apps: site.apps.map((a) => ({ name: a.name, prefix: a.pathPrefix || '/', upstream: origins(a) })),
          store: this.store.kind,
          cache: this.cache.kind,
        },
        `Gatehouse serving ${site.origin} → ${site.apps.map((a) => `${a.pathPrefix || '/'} ${origins(a)}`).join(', ')}`,
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
      const stopped = Promise.all([this.current.jobs.stop(), this.current.events.close()]);
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
      this.tunnels.stop();
      this.tunnels.closeAll();
      // HTTP/1.1 connections (Http2SecureServer tracks its HTTP/1.1 ones the same way), then
      // HTTP/2 sessions that are still busy.
      http.Server.prototype.closeAllConnections.call(this.server as http.Server);
      for (const session of this.h2Sessions) session.destroy();
      // A configuration replaced by reload() closes its parts once its requests have ended, as
      // they all have now (a moment for the last to settle).
      await Promise.race([
        Promise.allSettled(this.retiring),
        new Promise((resolve) => setTimeout(resolve, 1000).unref()),
      ]);
      await this.current.upstreams.close();
      await this.metricsListener?.close();
      // Messages under way get a moment (their links are in the store already).
      const grace = Math.min(5000, this.config.listen.timeouts.drain);
      await Promise.all([this.mailer, ...this.oldMailers].map((m) => m?.close(grace)));
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

/** An app's upstream for the start line: its origin, or its replicas' joined by " | ". */
function origins(app: App): string {
  return app.upstream.urls.map((u) => u.origin).join(' | ');
}

function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket' && req.method === 'GET';
}
