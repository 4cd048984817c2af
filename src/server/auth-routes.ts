import { randomBytes } from 'node:crypto';
import type { FieldErrors } from '../accounts/service.ts';
import { DiagnosedError } from '../edge/diagnose.ts';
import { field, readInput, type Input } from '../http/body.ts';
import { readCookie, serializeCookie } from '../http/cookies.ts';
import { fromOwnPage, sameOriginRequest } from '../http/csrf.ts';
import { HttpError } from '../http/errors.ts';
import { hasBody } from '../http/protocol.ts';
import { redirect, sendHtml, sendJson } from '../http/respond.ts';
import { safeReturnPath } from '../http/target.ts';
import { CSP, cspWithFormAction, loginPage, logoutPage, messagePage, registerPage } from '../pages/index.ts';
import type { User } from '../store/index.ts';
import { publicUser, type RequestContext, type Services } from './context.ts';
import { Router, type Params } from './router.ts';
import { insideBase } from './sites.ts';

type Handler = (ctx: RequestContext, params: Params) => Promise<void>;

/** What other route modules (providers, account) share with these pages: CSRF and page helpers. */
export interface FormTools {
  csrf(ctx: RequestContext): { token: string; cookies: string[] };
  readPost(ctx: RequestContext, o?: { bodiless?: boolean }): Promise<Input>;
  returnPath(ctx: RequestContext, value: unknown): string;
  queryParam(ctx: RequestContext, name: string): string | undefined;
  html(ctx: RequestContext, status: number, page: string, cookies?: string[], headers?: Record<string, string>): void;
}

const DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600;

/**
 * The "authenticate" part: Gatehouse's own pages and JSON endpoints under the prefix.
 * Every POST here passes two checks before it is read: the browser must say the request
 * is same-origin (Sec-Fetch-Site / Origin), and an HTML form must carry the token bound to
 * the CSRF cookie. JSON bodies need no token: a cross-site page cannot send
 * application/json without a CORS preflight, which Gatehouse never grants.
 */
export class AuthRoutes implements FormTools {
  readonly router = new Router<Handler>();
  private readonly s: Services;
  private readonly registered: ((ctx: RequestContext, user: User) => void)[] = [];

  constructor(services: Services) {
    this.s = services;
    this.router
      .add('GET', '/login', (c) => this.loginForm(c))
      .add('POST', '/login', (c) => this.login(c))
      .add('GET', '/register', (c) => this.registerForm(c))
      .add('POST', '/register', (c) => this.register(c))
      .add('GET', '/logout', (c) => this.logoutForm(c))
      .add('POST', '/logout', (c) => this.logout(c))
      .add('GET', '/me', (c) => this.me(c));
    this.s.oauth.addRoutes(this.router, this);
  }

  /** Runs after each registration with a password (the verification mail); must neither throw nor wait. */
  onRegister(fn: (ctx: RequestContext, user: User) => void): this {
    this.registered.push(fn);
    return this;
  }

  url(ctx: RequestContext, route: string, query?: Record<string, string | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v) q.set(k, v);
    const qs = q.toString();
    return `${this.s.prefix}${route}${qs ? `?${qs}` : ''}`;
  }

  // ---- CSRF -------------------------------------------------------------------------

  /** The form token for this browser, and the cookie to set when it has none yet. */
  csrf(ctx: RequestContext): { token: string; cookies: string[] } {
    const name = ctx.site.cookies.csrf;
    let value = readCookie(ctx.req.headers.cookie, name);
    const cookies: string[] = [];
    if (!value || !/^[A-Za-z0-9_-]{22}$/.test(value)) {
      value = randomBytes(16).toString('base64url');
      cookies.push(serializeCookie(name, value, { secure: ctx.site.secure, path: ctx.site.cookiePath }));
    }
    return { token: this.s.secrets.mac('csrf', value), cookies };
  }

  /**
   * Refuses cross-site requests; for forms also checks the token. `bodiless`: the route needs
   * no fields, so a POST with no body and no Content-Type (what `fetch(url, {method: 'POST'})`
   * sends) is read as an empty JSON object, and answered as JSON. It carries no token and
   * needs no preflight, so the browser must say it comes from this origin.
   */
  async readPost(ctx: RequestContext, o: { bodiless?: boolean } = {}): Promise<Input> {
    if (!sameOriginRequest(ctx.req, ctx.site.origin))
      throw new HttpError(403, 'cross_site', 'Cross-site requests are not accepted here.');
    if (o.bodiless && ctx.req.headers['content-type'] === undefined && !hasBody(ctx.req)) {
      if (!fromOwnPage(ctx.req, ctx.site.origin))
        throw new HttpError(403, 'cross_site', 'A POST without a body must come from a page of this site.');
      return { kind: 'json', data: Object.create(null) };
    }
    const input = await readInput(ctx.req);
    if (input.kind === 'form') {
      const cookie = readCookie(ctx.req.headers.cookie, ctx.site.cookies.csrf);
      const token = field(input, 'csrf', 128);
      // The form came, its cookie did not: explain why instead of "expired" over and over.
      if (cookie === undefined && token) throw new DiagnosedError(this.s.diagnosis.cookieMissing(ctx, 'csrf'));
      if (!cookie || !token || !this.s.secrets.verifyMac('csrf', cookie, token)) {
        throw new HttpError(403, 'csrf', 'This form has expired. Go back, reload the page and try again.');
      }
    }
    return input;
  }

  /** A same-origin return target below publicUrl's base path, or undefined. */
  private returnTarget(ctx: RequestContext, value: unknown): string | undefined {
    const path = safeReturnPath(value, [ctx.site.origin]);
    return path !== undefined && insideBase(ctx.site, path) ? path : undefined;
  }

  returnPath(ctx: RequestContext, value: unknown): string {
    return this.returnTarget(ctx, value) ?? ctx.site.home;
  }

  queryParam(ctx: RequestContext, name: string): string | undefined {
    return ctx.query ? (new URLSearchParams(ctx.query.slice(1)).get(name) ?? undefined) : undefined;
  }

  html(
    ctx: RequestContext,
    status: number,
    page: string,
    cookies: string[] = [],
    headers: Record<string, string> = {},
  ): void {
    // The page's <meta name="referrer"> narrows this to no-referrer where it must (layout.ts).
    sendHtml(
      ctx.res,
      status,
      page,
      { 'content-security-policy': CSP, 'referrer-policy': 'same-origin', ...headers },
      cookies,
    );
  }

  private fail(
    ctx: RequestContext,
    input: Input,
    status: number,
    code: string,
    errors: FieldErrors,
    render: () => string,
    retryAfter?: number,
  ): void {
    const headers: Record<string, string> = retryAfter ? { 'retry-after': String(retryAfter) } : {};
    if (input.kind === 'json') {
      const { form, ...fields } = errors;
      sendJson(
        ctx.res,
        status,
        {
          error: code,
          message: form ?? Object.values(fields)[0] ?? 'Invalid request',
          ...(Object.keys(fields).length ? { fields } : {}),
        },
        headers,
      );
    } else {
      this.html(ctx, status, render(), [], headers);
    }
  }

  // ---- login ------------------------------------------------------------------------

  private async loginForm(ctx: RequestContext): Promise<void> {
    const rd = this.returnPath(ctx, this.queryParam(ctx, 'rd'));
    const current = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin).catch(() => undefined);
    if (current?.state === 'active') return redirect(ctx.res, 302, ctx.site.origin + rd);
    // Back at the login page right after signing in: the session did not stick. Say why.
    const cause = this.s.diagnosis.afterSignIn(ctx, current);
    if (cause)
      return this.s.diagnosis.respond(ctx.req, ctx.res, ctx.site, cause, ctx.requestId, [
        this.s.diagnosis.clearSignedIn(ctx.site),
      ]);
    const { token, cookies } = this.csrf(ctx);
    const notice = this.queryParam(ctx, 'signed_out')
      ? 'You have signed out.'
      : this.queryParam(ctx, 'reset')
        ? 'Your password was changed, and every session signed out. Sign in with the new password.'
        : undefined;
    this.html(ctx, 200, this.renderLogin(ctx, token, rd, {}, undefined, notice), cookies);
  }

  private renderLogin(
    ctx: RequestContext,
    token: string,
    rd: string,
    errors: FieldErrors,
    email?: string,
    notice?: string,
  ): string {
    return loginPage({
      appTitle: ctx.site.title,
      action: this.url(ctx, '/login'),
      csrf: token,
      rd: rd === ctx.site.home ? undefined : rd,
      email,
      errors,
      // Sent here by a page that waits on the other side (the device page, consent): say so.
      notice: notice ?? this.s.oauth.signInPurpose(rd),
      registerUrl:
        this.s.config.accounts.registration === 'open'
          ? this.url(ctx, '/register', { rd: rd === ctx.site.home ? undefined : rd })
          : undefined,
      forgotUrl: this.url(ctx, '/forgot-password'),
      providers: this.s.providers.loginButtons(rd),
    });
  }

  private async login(ctx: RequestContext): Promise<void> {
    const input = await this.readPost(ctx);
    const email = field(input, 'email', 512);
    const password = field(input, 'password', 8192);
    const rd = this.returnPath(ctx, field(input, 'rd', 4096));
    const cookie = ctx.site.session;
    const device = readCookie(ctx.req.headers.cookie, ctx.site.cookies.device);
    const result = await this.s.accounts.login({ email, password }, ctx.ip, device);
    if (!result.ok) {
      const code =
        result.status === 429
          ? 'too_many_attempts'
          : result.status === 401
            ? 'invalid_credentials'
            : result.status === 403
              ? 'account_disabled'
              : 'invalid_request';
      return this.fail(
        ctx,
        input,
        result.status,
        code,
        result.errors,
        () => this.renderLogin(ctx, this.csrf(ctx).token, rd, result.errors, email),
        result.retryAfterSeconds,
      );
    }
    ctx.userId = result.user.id;
    const { setCookie } = await this.s.sessions.create(result.user, ctx.site.origin, cookie, {
      amr: ['pwd'],
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, cookie),
    });
    const cookies = [setCookie, this.deviceCookie(ctx, result.deviceCookie), this.s.diagnosis.signedIn(ctx.site)];
    this.s.logger.info(
      { event: 'login', userId: result.user.id, method: 'password', requestId: ctx.requestId },
      'user signed in',
    );
    if (input.kind === 'json')
      return sendJson(ctx.res, 200, { user: publicUser(result.user), redirect: rd }, {}, cookies);
    redirect(ctx.res, 303, ctx.site.origin + rd, cookies);
  }

  /** The device cookie (security.md #42) of a browser that proved it knows the password. */
  private deviceCookie(ctx: RequestContext, value: string): string {
    return serializeCookie(ctx.site.cookies.device, value, {
      secure: ctx.site.secure,
      path: ctx.site.cookiePath,
      maxAgeSeconds: DEVICE_COOKIE_MAX_AGE,
    });
  }

  // ---- registration -----------------------------------------------------------------

  private async registerForm(ctx: RequestContext): Promise<void> {
    const rd = this.returnPath(ctx, this.queryParam(ctx, 'rd'));
    if (this.s.config.accounts.registration === 'closed') {
      return this.html(
        ctx,
        403,
        messagePage({
          appTitle: ctx.site.title,
          heading: 'Registration is closed',
          message: 'Ask an administrator to create an account for you.',
          link: { href: this.url(ctx, '/login'), text: 'Sign in' },
        }),
      );
    }
    const { token, cookies } = this.csrf(ctx);
    this.html(ctx, 200, this.renderRegister(ctx, token, rd, {}), cookies);
  }

  private renderRegister(
    ctx: RequestContext,
    token: string,
    rd: string,
    errors: FieldErrors,
    email?: string,
    name?: string,
  ): string {
    return registerPage({
      appTitle: ctx.site.title,
      action: this.url(ctx, '/register'),
      loginUrl: this.url(ctx, '/login', { rd: rd === ctx.site.home ? undefined : rd }),
      csrf: token,
      rd: rd === ctx.site.home ? undefined : rd,
      email,
      name,
      errors,
      minPasswordLength: this.s.config.accounts.minPasswordLength,
    });
  }

  private async register(ctx: RequestContext): Promise<void> {
    const input = await this.readPost(ctx);
    const email = field(input, 'email', 512);
    const name = field(input, 'name', 512);
    const password = field(input, 'password', 8192);
    const rd = this.returnPath(ctx, field(input, 'rd', 4096));
    const result = await this.s.accounts.register({ email, password, name }, ctx.ip);
    if (!result.ok) {
      const code =
        result.status === 429
          ? 'too_many_attempts'
          : result.status === 403
            ? 'registration_closed'
            : result.status === 409
              ? 'email_unavailable'
              : 'invalid_request';
      return this.fail(
        ctx,
        input,
        result.status,
        code,
        result.errors,
        () => this.renderRegister(ctx, this.csrf(ctx).token, rd, result.errors, email, name),
        result.retryAfterSeconds,
      );
    }
    ctx.userId = result.user.id;
    const cookie = ctx.site.session;
    const { setCookie } = await this.s.sessions.create(result.user, ctx.site.origin, cookie, {
      amr: ['pwd'],
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, cookie),
    });
    this.s.logger.info({ event: 'register', userId: result.user.id, requestId: ctx.requestId }, 'user registered');
    for (const fn of this.registered) fn(ctx, result.user);
    const cookies = [setCookie, this.deviceCookie(ctx, result.deviceCookie), this.s.diagnosis.signedIn(ctx.site)];
    if (input.kind === 'json')
      return sendJson(ctx.res, 201, { user: publicUser(result.user), redirect: rd }, {}, cookies);
    redirect(ctx.res, 303, ctx.site.origin + rd, cookies);
  }

  // ---- logout -----------------------------------------------------------------------

  private async logoutForm(ctx: RequestContext): Promise<void> {
    // GET never signs anyone out (security.md #29): it shows a button that POSTs.
    const rd = this.returnTarget(ctx, this.queryParam(ctx, 'rd'));
    const current = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin).catch(() => undefined);
    const { token, cookies } = this.csrf(ctx);
    this.html(
      ctx,
      200,
      logoutPage({
        appTitle: ctx.site.title,
        action: this.url(ctx, '/logout'),
        loginUrl: this.url(ctx, '/login', { rd }),
        csrf: token,
        rd,
        email: current?.state === 'active' ? current.active.user.email : undefined,
      }),
      cookies,
      // The POST may be redirected on to a provider's logout (RP-initiated): the CSP allows it.
      { 'content-security-policy': cspWithFormAction(this.s.providers.logoutFormActions()) },
    );
  }

  private async logout(ctx: RequestContext): Promise<void> {
    const input = await this.readPost(ctx, { bodiless: true });
    const rd = this.returnTarget(ctx, field(input, 'rd', 4096));
    // Before the session goes (its provider tokens go with it): the provider's logout URL, if any.
    const endSession = await this.s.providers.beforeLogout(ctx);
    const cleared = [
      await this.s.sessions.destroy(ctx.req, ctx.site.session),
      this.s.diagnosis.clearSignedIn(ctx.site),
    ];
    this.s.logger.info(
      { event: 'logout', requestId: ctx.requestId, endSession: endSession ? endSession.provider : undefined },
      'session ended',
    );
    if (input.kind === 'json')
      return sendJson(ctx.res, 200, endSession ? { ok: true, redirect: endSession.url } : { ok: true }, {}, cleared);
    redirect(
      ctx.res,
      303,
      endSession?.url ?? ctx.site.origin + (rd ?? this.url(ctx, '/login', { signed_out: '1' })),
      cleared,
    );
  }

  // ---- JSON and probes --------------------------------------------------------------

  private async me(ctx: RequestContext): Promise<void> {
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (found.state !== 'active') {
      return sendJson(
        ctx.res,
        401,
        { error: 'unauthenticated', message: 'Not signed in' },
        { 'www-authenticate': `Bearer realm="${ctx.site.origin}"` },
      );
    }
    const { user, session } = found.active;
    ctx.userId = user.id;
    const identities = await this.s.providers.identitiesOf(user.id);
    sendJson(ctx.res, 200, {
      ...publicUser(user),
      identities,
      session: {
        createdAt: new Date(session.createdAt).toISOString(),
        expiresAt: new Date(session.expiresAt).toISOString(),
        amr: session.amr,
      },
    });
  }
}
