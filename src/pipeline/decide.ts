import type { IncomingMessage } from 'node:http';
import type { Diagnosis } from '../diagnosis/index.ts';
import { redirect, sendJson, wantsHtml } from '../http/respond.ts';
import { allows, matchRule, type Rule } from '../policy/rules.ts';
import type { BearerResult } from '../oauth/bearer.ts';
import type { ActiveSession, Lookup, Sessions } from '../sessions/index.ts';
import type { RequestContext } from '../http/context.ts';
import { appFor, startsWithFolded, type App, type Site } from '../sites/index.ts';

/**
 * The "authorize" step, shared by proxied requests, WebSocket upgrades and forward-auth
 * (/.auth/check), so all three decide a (site, method, normalized path) alike: the app by
 * longest path prefix, its first matching rule, then the session, or the bearer token
 * (an OAuth access token from src/oauth/) when the request carries one.
 */
export type Decision =
  | { kind: 'no_app' }
  | { kind: 'deny'; app: App; rule: Rule }
  | { kind: 'unauthenticated'; app: App; rule: Rule; lookup: Lookup }
  | { kind: 'invalid_token'; app: App; rule: Rule; description: string }
  | { kind: 'forbidden'; app: App; rule: Rule; active: ActiveSession; reason?: 'email_unverified' }
  /** ownToken: the Authorization header carried a Gatehouse token: it must not reach the app. */
  | { kind: 'allow'; app: App; rule: Rule; active: ActiveSession | undefined; ownToken?: boolean };

/** The bearer-token check (oauth/server.ts), as the authorize step needs it. */
export interface BearerCheck {
  tokenOf(req: IncomingMessage): string | undefined;
  authenticate(token: string, app: App): Promise<BearerResult>;
  isOwnToken(token: string): boolean;
}

const NO_APP: Decision = { kind: 'no_app' };

/**
 * Throws when the store is unreachable on a protected rule (fail closed); public rules still
 * tell the app who is signed in when they can, but never fail on the store.
 */
export async function decide(
  sessions: Sessions,
  site: Site,
  req: IncomingMessage,
  method: string,
  path: string,
  bearer?: BearerCheck,
): Promise<Decision> {
  const app = appFor(site, path);
  if (!app) return NO_APP;
  const rule = matchRule(app.rules, app.fallback, method, path);
  if (rule.access === 'deny') return { kind: 'deny', app, rule };
  // A Gatehouse token decides on its own (no fallback to a cookie) and never reaches the app.
  // Any other Authorization is the app's business: passed on, the session cookie decides.
  const token = bearer && req.headers.authorization !== undefined ? bearer.tokenOf(req) : undefined;
  if (token !== undefined && bearer!.isOwnToken(token)) {
    if (rule.access === 'authenticated') {
      const r = await bearer!.authenticate(token, app);
      if (!r.ok) return { kind: 'invalid_token', app, rule, description: r.description };
      if (site.requireVerifiedEmail && !r.active.user.emailVerified)
        return { kind: 'forbidden', app, rule, active: r.active, reason: 'email_unverified' };
      if (!allows(rule.allow, r.active.user)) return { kind: 'forbidden', app, rule, active: r.active };
      return { kind: 'allow', app, rule, active: r.active, ownToken: true };
    }
    const r = await bearer!.authenticate(token, app).catch(() => undefined);
    return { kind: 'allow', app, rule, active: r?.ok ? r.active : undefined, ownToken: true };
  }
  if (rule.access === 'authenticated') {
    const lookup = await sessions.lookup(req, site.session, site.origin);
    if (lookup.state !== 'active') return { kind: 'unauthenticated', app, rule, lookup };
    if (site.requireVerifiedEmail && !lookup.active.user.emailVerified)
      return { kind: 'forbidden', app, rule, active: lookup.active, reason: 'email_unverified' };
    if (!allows(rule.allow, lookup.active.user)) return { kind: 'forbidden', app, rule, active: lookup.active };
    return { kind: 'allow', app, rule, active: lookup.active };
  }
  let active: ActiveSession | undefined;
  if (req.headers.cookie?.includes(site.cookies.session)) {
    const found = await sessions.lookup(req, site.session, site.origin).catch(() => undefined);
    if (found?.state === 'active') active = found.active;
  }
  return { kind: 'allow', app, rule, active };
}

/** `path` (normalized) is `prefix` or below it (on a segment boundary). Builds no string when `prefix` is lower-case already. */
export function isBelow(path: string, prefix: string, ignoreCase: boolean): boolean {
  if (ignoreCase ? !startsWithFolded(path, prefix.toLowerCase()) : !path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 47;
}

/** The login page with `target` (a path below the base) as the return target. */
export function loginUrl(site: Site, prefix: string, target: string): string {
  return `${site.origin}${prefix}/login?rd=${encodeURIComponent(target)}`;
}

/**
 * The 302 of a protected request to Gatehouse's login page `url`, or, where no redirect to
 * publicUrl can work from this listener (Diagnosis.unreachable), the explanation. Returns the
 * status sent. (Gatehouse's own pages that send a browser to the login page need not: the
 * stricter Diagnosis.check runs before them, Gatehouse.own.)
 */
export function redirectToLogin(ctx: RequestContext, diagnosis: Diagnosis, url: string, cookies?: string[]): number {
  const cause = diagnosis.unreachable(ctx);
  if (cause) {
    diagnosis.respond(ctx.req, ctx.res, ctx.site, cause, ctx.requestId, cookies);
    return cause.status;
  }
  redirect(ctx.res, 302, url, cookies);
  return 302;
}

/**
 * What an anonymous request gets: a browser (GET/HEAD asking for HTML) is redirected to the
 * login page, anything else gets 401 JSON; a rule's `unauthenticated` forces one of the two.
 * A browser that signed in a moment ago gets the loop-breaker's explanation instead, as does
 * one whose redirect could not work (redirectToLogin).
 * `noRedirect` (nginx auth_request, which cannot relay a redirect): 401 always, with the login
 * URL in X-Gatehouse-Login when a redirect was meant. `challenge`: the WWW-Authenticate value
 * (the OAuth server's, naming the app's protected-resource metadata). Returns the status sent.
 */
export function unauthenticated(
  ctx: RequestContext,
  rule: Rule,
  lookup: Lookup,
  deps: { prefix: string; sessions: Sessions; diagnosis: Diagnosis },
  o: { method?: string; noRedirect?: boolean; challenge?: string } = {},
): number {
  const { req, res, site } = ctx;
  const method = o.method ?? req.method;
  const mode = rule.unauthenticated ?? ((method === 'GET' || method === 'HEAD') && wantsHtml(req) ? 'redirect' : '401');
  // A browser about to be sent to the login page again right after signing in gets the
  // explanation instead (APIs get their 401: they do not loop). Under nginx auth_request the
  // answer must stay a 401; the login page explains there.
  const cause = mode === 'redirect' && !o.noRedirect ? deps.diagnosis.afterSignIn(ctx, lookup) : undefined;
  if (cause) {
    deps.diagnosis.respond(req, res, site, cause, ctx.requestId, [deps.diagnosis.clearSignedIn(site)]);
    return cause.status;
  }
  const cookies = lookup.state === 'invalid' ? [deps.sessions.clear(site.session)] : undefined;
  const login = loginUrl(site, deps.prefix, ctx.path + ctx.query);
  if (mode === 'redirect' && !o.noRedirect) return redirectToLogin(ctx, deps.diagnosis, login, cookies);
  const headers: Record<string, string> = { 'www-authenticate': o.challenge ?? `Bearer realm="${site.origin}"` };
  if (mode === 'redirect') headers['x-gatehouse-login'] = login;
  sendJson(res, 401, { error: 'unauthenticated', message: 'Sign in to use this resource.', login }, headers, cookies);
  return 401;
}
