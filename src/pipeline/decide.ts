import type { IncomingMessage } from 'node:http';
import type { SessionCookie } from '../http/cookies.ts';
import type { BearerResult, BearerSession } from '../oauth/bearer.ts';
import { allows, matchRule, meetsProviders, meetsStepUp, type Rule } from '../policy/rules.ts';
import type { ActiveSession, Lookup } from '../sessions/index.ts';
import type { User } from '../store/index.ts';
import { appFor, type App, type Site } from '../sites/index.ts';

/**
 * Step 2 of the pipeline, the "authorize" step, shared by proxied requests, WebSocket upgrades
 * and forward-auth (/.auth/check), so all three decide a (site, method, normalized path) alike:
 * the app by longest path prefix, its first matching rule (ruleFor, which `check --explain`
 * shows), then the session, or the bearer token (an OAuth access token from src/oauth/) when
 * the request carries one. Step 3, what the answer is, is outcome.ts.
 */
export type Decision =
  | { kind: 'no_app' }
  | { kind: 'deny'; app: App; rule: Rule }
  /**
   * stepUp: signed in, but the rule's allow.mfa asks for a second factor this session lacks, or
   * (with `providers`) its allow.providers for a sign-in through one of them.
   */
  | { kind: 'unauthenticated'; app: App; rule: Rule; lookup: Lookup; stepUp?: boolean; providers?: readonly string[] }
  /** stepUp: the token is good, but its login had no second factor (RFC 9470). */
  | { kind: 'invalid_token'; app: App; rule: Rule; description: string; stepUp?: boolean }
  | { kind: 'forbidden'; app: App; rule: Rule; active: ActiveSession; reason?: 'email_unverified' }
  /**
   * ownToken: the request carried a Gatehouse token, which must not reach the app: in
   * Authorization ('authorization': dropped), or in tokens.bearerHeader with Authorization left
   * to the app ('header').
   */
  | { kind: 'allow'; app: App; rule: Rule; active: ActiveSession | undefined; ownToken?: OwnToken };

export type OwnToken = 'authorization' | 'header';

/** The bearer-token check (oauth/server.ts), as the authorize step needs it. */
export interface BearerCheck {
  tokenOf(req: IncomingMessage): string | undefined;
  /**
   * The token in tokens.bearerHeader (undefined when none is configured or sent; "" when it is
   * not a token): Gatehouse's to decide whatever it holds.
   */
  headerTokenOf(req: IncomingMessage): string | undefined;
  authenticate(token: string, app: App): Promise<BearerResult>;
  /** Whether what a token admitted still stands, its expiry aside (an open WebSocket's check). */
  recheck(active: BearerSession, app: App): Promise<BearerResult>;
  isOwnToken(token: string): boolean;
}

/** The session lookup (sessions/), as the authorize step needs it. */
export interface SessionLookup {
  lookup(req: IncomingMessage, cookie: SessionCookie, origin: string): Promise<Lookup>;
  /** The same answer, synchronously when it can be had without waiting (sessions/index.ts). */
  lookupNow?(req: IncomingMessage, cookie: SessionCookie, origin: string): Lookup | Promise<Lookup>;
}

const NO_APP: Decision = { kind: 'no_app' };

/**
 * The app of a decision when it is closed for maintenance to whoever asks (apps[].maintenance): to
 * everyone but the signed-in users its allow-list names, who then go on by the app's rules.
 * `signedIn`: someone is (the page then offers no sign-in). null: not closed to them.
 */
export function closedForMaintenance(d: Decision): { app: App; signedIn: boolean } | null {
  if (d.kind === 'no_app' || d.app.maintenance === null) return null;
  const who = d.kind === 'allow' || d.kind === 'forbidden' ? d.active : undefined;
  return throughMaintenance(d.app, who?.user) ? null : { app: d.app, signedIn: who !== undefined };
}

/** Whether a signed-in user is one an app closed for maintenance still lets through (its allow-list names them). */
export function throughMaintenance(app: App, user: User | undefined): boolean {
  const allow = app.maintenance?.allow;
  return user !== undefined && allow != null && allow.lists && allows(allow, user);
}

/** A service client's own token (client_credentials: no grant, no provider): it has no address to verify. */
export function isServiceClient(active: ActiveSession | BearerSession): boolean {
  return 'grant' in active && active.grant === null && active.provider === undefined;
}

/**
 * What a protected route's rule says of a signed-in user: the verified address the site asks for
 * (`service`: a service client, which has none to verify), then its allow-lists. null: admitted.
 */
export function refusal(
  site: Site,
  rule: Rule,
  user: User,
  service = false,
): 'email_unverified' | 'not_allowed' | null {
  if (site.requireVerifiedEmail && !user.emailVerified && !service) return 'email_unverified';
  return allows(rule.allow, user) ? null : 'not_allowed';
}

/**
 * The app serving a path and its first rule matching the method, path and client address
 * (decide()'s first two steps, which it takes inline so that a proxied request allocates nothing
 * for them), or undefined.
 */
export function ruleFor(
  site: Site,
  method: string,
  path: string,
  ip: string | undefined,
): { app: App; rule: Rule } | undefined {
  const app = appFor(site, path);
  return app && { app, rule: matchRule(app.rules, app.fallback, method, path, ip) };
}

/**
 * Throws (or rejects) when the store is unreachable on a protected rule (fail closed); public
 * rules still tell the app who is signed in when they can, but never fail on the store. The
 * answer is synchronous when nothing had to be waited for (a session the store holds in
 * memory): the common request makes no promise here. `app`: the app serving the path, when the
 * caller has looked it up already (appFor).
 */
export function decide(
  sessions: SessionLookup,
  site: Site,
  req: IncomingMessage,
  method: string,
  path: string,
  ip: string,
  bearer?: BearerCheck,
  app: App | undefined = appFor(site, path),
): Decision | Promise<Decision> {
  if (!app) return NO_APP;
  const rule = matchRule(app.rules, app.fallback, method, path, ip);
  if (rule.access === 'deny') return { kind: 'deny', app, rule };
  // A Gatehouse token decides on its own (no fallback to a cookie) and never reaches the app.
  // Any other Authorization is the app's business: passed on, the session cookie decides.
  // tokens.bearerHeader, when sent, is read first and only: whatever it holds is Gatehouse's,
  // and Authorization is then the app's, unless it holds a Gatehouse token too (dropped, never
  // used: security.md #177).
  let token = bearer?.headerTokenOf(req);
  let ownToken: OwnToken = 'header';
  if (token !== undefined) {
    const authorization = req.headers.authorization !== undefined ? bearer!.tokenOf(req) : undefined;
    if (authorization !== undefined && bearer!.isOwnToken(authorization)) ownToken = 'authorization';
  } else {
    token = bearer && req.headers.authorization !== undefined ? bearer.tokenOf(req) : undefined;
    if (token !== undefined && !bearer!.isOwnToken(token)) token = undefined;
    ownToken = 'authorization';
  }
  if (token !== undefined) return decideBearer(bearer!, token, ownToken, site, app, rule);
  if (rule.access === 'authenticated') {
    const lookup = sessions.lookupNow
      ? sessions.lookupNow(req, site.session, site.origin)
      : sessions.lookup(req, site.session, site.origin);
    return lookup instanceof Promise
      ? lookup.then((l) => signedIn(site, app, rule, l))
      : signedIn(site, app, rule, lookup);
  }
  if (!req.headers.cookie?.includes(site.cookies.session)) return { kind: 'allow', app, rule, active: undefined };
  return sessions.lookup(req, site.session, site.origin).then(
    (found) => ({ kind: 'allow', app, rule, active: found.state === 'active' ? found.active : undefined }),
    () => ({ kind: 'allow', app, rule, active: undefined }),
  );
}

function signedIn(site: Site, app: App, rule: Rule, lookup: Lookup): Decision {
  if (lookup.state !== 'active') return { kind: 'unauthenticated', app, rule, lookup };
  const refused = refusal(site, rule, lookup.active.user);
  if (refused === 'email_unverified')
    return { kind: 'forbidden', app, rule, active: lookup.active, reason: 'email_unverified' };
  if (refused) return { kind: 'forbidden', app, rule, active: lookup.active };
  // A sign-in through the provider first: it starts a new session, which a second factor may then follow.
  if (!meetsProviders(rule.allow?.providers, lookup.active.session.amr))
    return { kind: 'unauthenticated', app, rule, lookup, stepUp: true, providers: rule.allow!.providers! };
  if (!meetsStepUp(rule.allow, lookup.active.session.amr))
    return { kind: 'unauthenticated', app, rule, lookup, stepUp: true };
  return { kind: 'allow', app, rule, active: lookup.active };
}

async function decideBearer(
  bearer: BearerCheck,
  token: string,
  ownToken: OwnToken,
  site: Site,
  app: App,
  rule: Rule,
): Promise<Decision> {
  if (rule.access === 'authenticated') {
    const r = await bearer.authenticate(token, app);
    if (!r.ok) return { kind: 'invalid_token', app, rule, description: r.description };
    const refused = refusal(site, rule, r.active.user, isServiceClient(r.active));
    if (refused === 'email_unverified')
      return { kind: 'forbidden', app, rule, active: r.active, reason: 'email_unverified' };
    if (refused) return { kind: 'forbidden', app, rule, active: r.active };
    if (!meetsProviders(rule.allow?.providers, r.active.session.amr))
      return {
        kind: 'invalid_token',
        app,
        rule,
        description: `this resource needs a login approved from a sign-in through ${rule.allow!.providers!.join(' or ')}`,
        stepUp: true,
      };
    if (!meetsStepUp(rule.allow, r.active.session.amr))
      return {
        kind: 'invalid_token',
        app,
        rule,
        description: 'this resource needs a sign-in with a second factor',
        stepUp: true,
      };
    return { kind: 'allow', app, rule, active: r.active, ownToken };
  }
  const r = await bearer.authenticate(token, app).catch(() => undefined);
  return { kind: 'allow', app, rule, active: r?.ok ? r.active : undefined, ownToken };
}
