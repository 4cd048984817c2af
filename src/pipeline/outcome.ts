import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import type { SessionCookie } from '../http/cookies.ts';
import { redirect, sendHtml, sendJson, wantsHtml } from '../http/respond.ts';
import { CSP, lookPage, messagePage } from '../pages/index.ts';
import type { ActiveSession, Lookup } from '../sessions/index.ts';
import type { App, Site } from '../sites/index.ts';
import type { Decision } from './decide.ts';

/**
 * Step 3 of the pipeline: what the answer to a Decision is, as data. Each entry point renders
 * it its way: an HTTP response (request.ts), a refusal line (upgrade.ts), forward-auth's answer
 * (forward-auth.ts). An allowed request's outcome is its Decision itself, so a proxied request
 * allocates nothing here.
 */
export type Outcome =
  | Extract<Decision, { kind: 'allow' }>
  /** An error page (HTML for browsers, JSON for the rest). */
  | { kind: 'refuse'; status: 403 | 404; code: 'not_found' | 'forbidden'; message: string }
  /** A signed-in user whose address is not verified, where the site requires it (403). */
  | { kind: 'verify_email'; status: 403; active: ActiveSession }
  /**
   * Nobody is signed in: `redirect` sends a browser to `login` (302), otherwise 401 with
   * `login` in the body, and in X-Gatehouse-Login when a redirect was meant but cannot be
   * relayed (nginx auth_request). `login` is on the request's own site, always.
   */
  | {
      kind: 'sign_in';
      status: 302 | 401;
      redirect: boolean;
      /** A redirect was meant but cannot be passed on: X-Gatehouse-Login carries `login`. */
      loginHeader: boolean;
      login: string;
      lookup: Lookup;
      app: App;
      /** Signed in, but the route asks for a second factor: `login` is the second-factor step (RFC 9470 for APIs). */
      stepUp?: boolean;
      /** ... or for a sign-in through one of these providers (allow.providers): `login` is its sign-in. */
      providers?: readonly string[];
    }
  /** A Gatehouse bearer token that is not good for this app (401, RFC 6750). */
  | Extract<Decision, { kind: 'invalid_token' }>;

const NO_APP: Outcome = { kind: 'refuse', status: 404, code: 'not_found', message: 'There is no app at this address.' };
const DENIED: Outcome = {
  kind: 'refuse',
  status: 403,
  code: 'forbidden',
  message: 'Access to this page is not allowed.',
};
const FORBIDDEN: Outcome = {
  kind: 'refuse',
  status: 403,
  code: 'forbidden',
  message: 'Your account does not have access to this page.',
};

/**
 * The outcome of decision `d` for the request in `ctx` (its path and query are the target the
 * decision was about). `method`: the request's (forward-auth: the original request's).
 * `noRedirect`: the asker cannot pass a redirect on (nginx auth_request): a browser that would
 * be sent to the login page gets 401 and the login URL in a header instead.
 */
export function outcome(
  d: Decision,
  ctx: Pick<RequestContext, 'req' | 'site' | 'path' | 'query'>,
  prefix: string,
  method: string,
  noRedirect = false,
): Outcome {
  switch (d.kind) {
    case 'allow':
    case 'invalid_token':
      return d;
    case 'no_app':
      return NO_APP;
    case 'deny':
      return DENIED;
    case 'forbidden':
      return d.reason === 'email_unverified' ? { kind: 'verify_email', status: 403, active: d.active } : FORBIDDEN;
    case 'unauthenticated': {
      const mode =
        d.rule.unauthenticated ?? ((method === 'GET' || method === 'HEAD') && wantsHtml(ctx.req) ? 'redirect' : '401');
      const redirect = mode === 'redirect' && !noRedirect;
      const rd = encodeURIComponent(ctx.path + ctx.query);
      // allow.providers: that provider's sign-in, or for several the sign-in page with their buttons alone.
      const login = d.providers
        ? d.providers.length === 1
          ? `${ctx.site.origin}${prefix}/login/${d.providers[0]}?rd=${rd}`
          : `${loginUrl(ctx.site, prefix, ctx.path + ctx.query)}&via=${encodeURIComponent(d.providers.join(','))}`
        : d.stepUp
          ? `${ctx.site.origin}${prefix}/second-factor?rd=${rd}`
          : loginUrl(ctx.site, prefix, ctx.path + ctx.query);
      return {
        kind: 'sign_in',
        status: redirect ? 302 : 401,
        redirect,
        loginHeader: mode === 'redirect' && noRedirect,
        login,
        lookup: d.lookup,
        app: d.app,
        stepUp: d.stepUp,
        providers: d.providers,
      };
    }
  }
}

/** The login page with `target` (a path below the base) as the return target. */
export function loginUrl(site: SiteInfo, prefix: string, target: string): string {
  return `${site.origin}${prefix}/login?rd=${encodeURIComponent(target)}`;
}

/**
 * The 302 of a protected request to Gatehouse's login page `url`, or, where no redirect to
 * publicUrl can work from this listener (Diagnosis.unreachable), the explanation. Returns the
 * status sent. (Gatehouse's own pages that send a browser to the login page need not: the
 * stricter Diagnosis.check runs before them, request.ts.)
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
 * Renders a sign_in outcome: a browser is redirected to the login page, anything else gets
 * 401 JSON. A browser that signed in a moment ago gets the loop-breaker's explanation instead,
 * as does one whose redirect could not work (redirectToLogin). Under nginx auth_request the
 * answer must stay a 401; the login page explains there. `challenge`: the WWW-Authenticate
 * value (the OAuth server's, naming the app's protected-resource metadata). Returns the status sent.
 */
export function respondSignIn(
  ctx: RequestContext,
  o: Extract<Outcome, { kind: 'sign_in' }>,
  deps: { sessions: { clear(cookie: SessionCookie): string }; diagnosis: Diagnosis },
  challenge?: string,
): number {
  const { req, res, site } = ctx;
  // A browser about to be sent to the login page again right after signing in gets the
  // explanation instead (APIs get their 401: they do not loop).
  const cookies = o.lookup.state === 'invalid' ? [deps.sessions.clear(site.session)] : [];
  const cause = o.redirect ? deps.diagnosis.afterSignIn(ctx, o.lookup, cookies) : undefined;
  if (cause) {
    deps.diagnosis.respond(req, res, site, cause, ctx.requestId, [deps.diagnosis.clearSignedIn(site)]);
    return cause.status;
  }
  if (o.redirect) return redirectToLogin(ctx, deps.diagnosis, o.login, cookies);
  if (o.stepUp) {
    // RFC 9470: the caller is known, the authentication is not strong enough.
    const [needed, message] = o.providers
      ? [
          `A sign-in through ${o.providers.join(' or ')} is required`,
          `This resource needs a sign-in through ${o.providers.join(' or ')} in this session.`,
        ]
      : ['A second factor is required', 'This resource needs a second factor in this session.'];
    const headers: Record<string, string> = {
      'www-authenticate': `${challenge ?? `Bearer realm="${site.origin}"`}, error="insufficient_user_authentication", error_description="${needed}"`,
    };
    if (o.loginHeader) headers['x-gatehouse-login'] = o.login;
    sendJson(res, 401, { error: 'insufficient_user_authentication', message, login: o.login }, headers);
    return 401;
  }
  const headers: Record<string, string> = { 'www-authenticate': challenge ?? `Bearer realm="${site.origin}"` };
  if (o.loginHeader) headers['x-gatehouse-login'] = o.login;
  sendJson(
    res,
    401,
    { error: 'unauthenticated', message: 'Sign in to use this resource.', login: o.login },
    headers,
    cookies,
  );
  return 401;
}

/**
 * An app closed for maintenance (apps[].maintenance): 503 with Retry-After when set, a page that
 * says so (with a way to sign in for those the allow-list would let through, when nobody is
 * signed in), or JSON for anything but a browser. Returns the status sent.
 */
export function maintenancePage(ctx: RequestContext<Site>, app: App, prefix: string, signedIn: boolean): number {
  const { req, res, site } = ctx;
  const m = app.maintenance!;
  if (m.retryAfterSeconds > 0) res.setHeader('retry-after', String(m.retryAfterSeconds));
  const message = `${app.title} is down for maintenance.`;
  if (wantsHtml(req)) {
    const page = messagePage({
      appTitle: site.title,
      heading: 'Down for maintenance',
      message,
      hint: m.message ?? undefined,
      link:
        m.allow?.lists && !signedIn
          ? { href: loginUrl(site, prefix, ctx.path + ctx.query), text: 'Sign in to check it' }
          : undefined,
    });
    const looked = lookPage(site.look, page, CSP);
    sendHtml(res, 503, looked.page, { 'content-security-policy': looked.csp });
  } else sendJson(res, 503, { error: 'maintenance', message: m.message ? `${message} ${m.message}` : message });
  return 503;
}

/** An error page: HTML for a browser, JSON for the rest. Destroys a response already under way. */
export function errorPage(
  req: IncomingMessage,
  res: ServerResponse,
  site: Site | SiteInfo | undefined,
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
    const looked = site ? lookPage(site.look, page, CSP) : { page, csp: CSP };
    sendHtml(res, status, looked.page, { 'content-security-policy': looked.csp });
  } else {
    sendJson(res, status, { error: code, message, ...(detail ? { detail } : {}) });
  }
}
