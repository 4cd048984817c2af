// server/ (composition root): everything made from the configuration file's content, made at start and
// again by each reload (SIGHUP) while the process-wide parts (listener, store, cache, keys) stay.
import type { ServerResponse } from 'node:http';
import { AccountActivity } from '../accounts/activity.ts';
import { AccountPage } from '../accounts/account-page.ts';
import { AccountDeletion } from '../accounts/deletion.ts';
import { EmailChange } from '../accounts/email-change.ts';
import { EmailTokens } from '../accounts/email-tokens.ts';
import { AccountExport } from '../accounts/export.ts';
import { InvitationPage } from '../accounts/invitations.ts';
import { MailedLinks } from '../accounts/mailed-links.ts';
import { Reauthentication } from '../accounts/reauth.ts';
import { PasswordRecovery } from '../accounts/recovery.ts';
import { Accounts } from '../accounts/service.ts';
import { SignInLinks } from '../accounts/sign-in-links.ts';
import { SingleSignOn } from '../accounts/sso.ts';
import { SignInNotices } from '../accounts/sign-in-notices.ts';
import { SignIn } from '../accounts/sign-in.ts';
import { Throttle } from '../accounts/throttle.ts';
import { EmailVerification } from '../accounts/verification.ts';
import type { Audit } from '../audit/index.ts';
import { CacheUnavailableError, type Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import { DiagnosedError, Diagnosis } from '../diagnosis/index.ts';
import { AppEvents } from '../events/index.ts';
import type { DependencyHealth } from '../health/index.ts';
import { TrustedProxies } from '../http/client-ip.ts';
import { Forwarding } from '../http/forwarded.ts';
import { Assertions } from '../identity/assertion.ts';
import { JobRunner, purgeJob } from '../jobs/index.ts';
import type { KeyRing } from '../keys/keys.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { Logger } from '../log/index.ts';
import type { Mailer } from '../mail/mailer.ts';
import type { Metrics } from '../metrics/index.ts';
import { SecondFactorRoutes } from '../mfa/routes.ts';
import { OAuthServer } from '../oauth/server.ts';
import { makeLook } from '../pages/index.ts';
import { FormKit } from '../pages/kit.ts';
import { ForwardAuth } from '../pipeline/forward-auth.ts';
import { HttpEntry, PassedOver } from '../pipeline/request.ts';
import { Routes } from '../pipeline/route.ts';
import { ToApp } from '../pipeline/to-app.ts';
import { UpgradeEntry } from '../pipeline/upgrade.ts';
import type { Tunnels } from '../pipeline/tunnels.ts';
import { SessionRevalidation } from '../providers/revalidation.ts';
import { ProviderRoutes } from '../providers/routes.ts';
import { ProviderService } from '../providers/service.ts';
import { RouteLimiter } from '../policy/rate-limit.ts';
import { Upstreams } from '../proxy/forward.ts';
import { Sessions } from '../sessions/index.ts';
import { type App, basePath, buildSites, type Site } from '../sites/index.ts';
import { StoreUnavailableError, type Store } from '../store/index.ts';
import { accountSections, type Features, routeTable } from './routes.ts';
import type { Services } from './services.ts';

/** What the process makes once and every wiring shares (server/gatehouse.ts owns them). */
export interface NodeParts {
  logger: Logger;
  store: Store;
  cache: Cache;
  secrets: Secrets;
  keys: KeyRing;
  audit: Audit;
  health: DependencyHealth;
  metrics: Metrics | undefined;
  clock: (() => number) | undefined;
  /** The node serves its own TLS (forwarding then trusts its own scheme). */
  ownTls: boolean;
  /** /health and /ready. */
  probes: { health(res: ServerResponse): Promise<void>; ready(res: ServerResponse): Promise<void> };
  /** The node is shutting down: responses close their connection. */
  draining(): boolean;
  /** Open WebSocket tunnels: checked again while open, closed at shutdown. */
  tunnels: Tunnels;
  /** The app of this name in the configuration served now (a reload may have changed or removed it). */
  appNamed(name: string): App | undefined;
  /** HTTP/1 connections whose framing was refused. */
  refused: WeakSet<object>;
}

/** One configuration's parts: the request pipeline's entry points and what they are made of. */
export interface Wiring {
  config: Config;
  /** Own routes' prefix, publicUrl's base path included: /.auth, or /app/.auth. */
  prefix: string;
  sites: Map<string, Site>;
  trusted: TrustedProxies;
  forwarding: Forwarding;
  sessions: Sessions;
  accounts: Accounts;
  providers: ProviderService;
  oauth: OAuthServer;
  mailer: Mailer | undefined;
  events: AppEvents;
  jobs: JobRunner;
  upstreams: Upstreams;
  http: HttpEntry;
  upgrades: UpgradeEntry;
}

/**
 * Makes every part that depends on the configuration. `previous` is the wiring a reload replaces:
 * the app connection pools whose upstream did not change are kept (Upstreams). Throws when a file
 * the configuration names cannot be used: upstreamTls (TlsFileError), a logo (BrandError).
 */
export function wire(config: Config, node: NodeParts, mailer: Mailer | undefined, previous?: Wiring): Wiring {
  const { logger, store, cache, secrets, keys, audit, metrics, clock } = node;
  const base = basePath(config.publicUrl);
  const prefix = base + config.authPrefix;
  const trusted = new TrustedProxies(config.trustedProxies);
  const forwarding = new Forwarding(trusted, config.forwardedHeaders, node.ownTls);
  const diagnosis = new Diagnosis({ logger, forwarding, secrets, prefix });
  const sites = buildSites(config);
  // Each site's look (pages/brand.ts): a logo that cannot be used throws a BrandError naming its key.
  for (const site of sites.values()) site.look = makeLook(site.branding, site.branding?.at ?? '', prefix);
  const sessions = new Sessions(store, {
    idleMs: config.sessions.idleTimeout,
    absoluteMs: config.sessions.absoluteTimeout,
    now: clock,
    maxPerUser: config.sessions.maxPerUser,
  });
  sessions.onLimit = (userId, site, ended) => {
    logger.info(
      { event: 'session_limit', userId, site, ended, maxPerUser: config.sessions.maxPerUser },
      `a sign-in past sessions.maxPerUser ended ${ended} older session${ended === 1 ? '' : 's'}`,
    );
    audit.record({ event: 'sessions_ended', userId, actor: 'sessions.maxPerUser', detail: { ended, site } });
  };
  const throttle = new Throttle(cache, secrets, config.accounts.rateLimits);
  const events = AppEvents.forConfig(config, { store, ring: keys, logger, metrics }, sites);
  const accounts = new Accounts(store, throttle, config.accounts, events);
  const providers = new ProviderService({ config, store, secrets, logger, sessions, prefix, metrics });
  const revalidation = new SessionRevalidation({ config, store, tokens: providers.tokens, audit, logger, metrics });
  if (revalidation.enabled) sessions.guard = (active) => revalidation.check(active);
  const forms = new FormKit({
    prefix,
    secrets,
    csrfCookieMissing: (ctx) => new DiagnosedError(diagnosis.cookieMissing(ctx, 'csrf')),
    singleSignOn: {
      home: new URL(config.publicUrl).origin,
      origins: [...sites.values()].filter((s) => s.sso).map((s) => s.origin),
    },
  });
  // "Confirm it's you" before sensitive actions (accounts/reauth.ts).
  const reauth = new Reauthentication(
    { config, logger, store, sessions, accounts, prefix, now: clock ?? Date.now, audit },
    forms,
  );
  const oauth = new OAuthServer({
    config,
    logger,
    store,
    cache,
    secrets,
    sessions,
    sites,
    keys,
    prefix,
    providers,
    now: clock,
    pages: forms,
    audit,
    metrics,
    reauth,
    loginGuard: revalidation.enabled ? (grant) => revalidation.checkGrant(grant) : undefined,
  });
  const services: Services = {
    config,
    logger,
    store,
    cache,
    secrets,
    keys,
    sessions,
    accounts,
    throttle,
    trusted,
    forwarding,
    diagnosis,
    prefix,
    providers,
    oauth,
    audit,
    metrics,
    notices: new SignInNotices(
      { config, logger, secrets, throttle, prefix, providerName: (id) => providers.get(id)?.name },
      mailer,
    ),
    events,
  };
  // Email verification, password reset and change (accounts/), mail sent by mail/.
  const emailTokens = new EmailTokens(store, { now: clock });
  const links = new MailedLinks(services, forms, emailTokens);
  const account = new AccountPage(services, forms);
  const verification = new EmailVerification(services, forms, account, links, mailer);
  // Second factors (mfa/): the step after a password, enrolment, passkeys.
  const mfa = new SecondFactorRoutes(services, forms, account, reauth).onRegister((ctx, user) =>
    verification.afterRegister(ctx, user),
  );
  const sso = new SingleSignOn(services, forms, sites, config.publicUrl);
  const signIn = new SignIn(services, forms)
    .onRegister((ctx, user) => verification.afterRegister(ctx, user))
    .useSecondFactor(mfa)
    .useSingleSignOn(sso);
  const assertions = new Assertions(keys, secrets, {
    ttlMs: config.tokens.assertionTtl,
    cachedForMs: config.forwardAuth.cacheFor,
    ...(clock ? { now: clock } : {}),
  });
  // The pipeline (src/pipeline/): routes by the table of server/routes.ts, then decides.
  let routes: Routes | undefined;
  const features: Features = {
    signIn,
    account,
    verification,
    recovery: new PasswordRecovery(services, forms, account, links, mailer),
    signInLinks: new SignInLinks(services, forms, links, mailer).useSecondFactor(mfa),
    sso,
    reauth,
    emailChange: new EmailChange(services, forms, account, reauth, links, mailer),
    deletion: new AccountDeletion(services, forms, account, reauth, mailer),
    dataExport: new AccountExport(services, forms, account, reauth),
    invitations: mfa.inviteWith(new InvitationPage(services, forms, links).useSecondFactor(mfa), links),
    providers: new ProviderRoutes(providers, services, forms, account, reauth).useSecondFactor(mfa),
    oauth,
    forwardAuth: new ForwardAuth({
      sessions,
      diagnosis,
      // The routes are made from the table that holds this one: asked for at request time.
      routes: { prefix, route: (method, path, foldCase) => routes!.route(method, path, foldCase) },
      assertions,
      bearer: oauth,
      cacheForSeconds: config.forwardAuth.cacheFor / 1000,
    }),
    keys,
    activity: new AccountActivity(services, forms, account),
    probes: node.probes,
    mfa,
  };
  accountSections(features);
  // "Confirm it's you" by signing in again at a linked provider, after the password.
  reauth.addProof(features.providers.reauthProof());
  // ... and with a second factor (mfa/): a code, or a passkey.
  for (const proof of mfa.reauthProofs()) reauth.addProof(proof);
  routes = new Routes(sites, routeTable(features), { base, prefix });
  const upstreams = new Upstreams(
    [...sites.values()].flatMap((s) => s.apps),
    previous?.upstreams,
  );
  const unavailable = (err: Error) =>
    node.health.failed(
      err instanceof StoreUnavailableError ? 'store' : err instanceof CacheUnavailableError ? 'cache' : 'passwords',
      err,
    );
  const entry = {
    logger,
    routes,
    trusted,
    forwarding,
    diagnosis,
    sessions,
    oauth,
    providers,
    assertions,
    toApp: new ToApp({ forwarding, providers }),
    upstreams,
    verification,
    limits: new RouteLimiter(cache, unavailable, metrics, clock),
    passedOver: new PassedOver(logger, metrics),
    authPrefix: config.authPrefix,
    logRequests: config.log.requests,
    refused: node.refused,
    draining: node.draining,
    tunnels: node.tunnels,
    appNamed: node.appNamed,
    metrics,
    unavailable,
  };
  // Deletes what has expired (sessions, provider sign-in states, the OAuth server's records,
  // mailed links, audit events past audit.retention) in small batches, one node at a time, every
  // jobs.interval (src/jobs/). A feature whose table grows adds its own: purgeJob(name, (now, limit) => deleted).
  const jobs = new JobRunner({ store, logger, intervalMs: config.jobs.interval })
    .add(purgeJob('sessions', (now, limit) => store.sessions.purgeExpired(now, config.sessions.idleTimeout, limit)))
    .add(purgeJob('provider_flows', (now, limit) => providers.flows.purgeExpired(now, limit)))
    .add(purgeJob('oauth', (_now, limit) => oauth.purge(limit)))
    .add(purgeJob('email_tokens', (_now, limit) => emailTokens.purgeExpired(limit)))
    .add(purgeJob('audit', (now, limit) => store.audit.purgeBefore(now - config.audit.retention, limit)))
    .add(purgeJob('mfa_pending', (now, limit) => store.mfa.purgePending(now, limit)));
  return {
    config,
    prefix,
    sites,
    trusted,
    forwarding,
    sessions,
    accounts,
    providers,
    oauth,
    mailer,
    events,
    jobs,
    upstreams,
    http: new HttpEntry(entry),
    upgrades: new UpgradeEntry(entry),
  };
}

/**
 * The keys whose value a reload cannot apply: the listener, the store and cache, the master key,
 * the metrics listener, and what the signing key ring and every cookie and token are made with.
 * A change to any of them needs a restart.
 */
const RESTART_ONLY: readonly (readonly [string, (c: Config) => unknown])[] = [
  ['publicUrl', (c) => c.publicUrl],
  ['authPrefix', (c) => c.authPrefix],
  ['listen', (c) => c.listen],
  ['store', (c) => c.store],
  ['cache', (c) => c.cache],
  ['secrets', (c) => c.secrets],
  ['metrics', (c) => c.metrics],
  ['tokens.algorithm', (c) => c.tokens.algorithm],
  ['tokens.keys', (c) => c.tokens.keys],
  ['tokens.maxLifetime', (c) => c.tokens.maxLifetime],
  ['tokens.clockSkew', (c) => c.tokens.clockSkew],
];

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The restart-only keys (RESTART_ONLY) whose value differs between two configurations. */
export function restartOnly(running: Config, next: Config): string[] {
  return RESTART_ONLY.filter(([, of]) => !same(of(running), of(next))).map(([key]) => key);
}

/** The top-level keys whose value differs between two configurations (for the reload's log line). */
export function changedKeys(running: Config, next: Config): string[] {
  const keys = new Set([...Object.keys(running), ...Object.keys(next)]) as Set<keyof Config>;
  return [...keys].filter((k) => !same(running[k], next[k]));
}

/** Whether two configurations send mail the same way: a reload then keeps the running mailer and its queue. */
export function sameEmail(running: Config, next: Config): boolean {
  return same(running.email, next.email);
}
