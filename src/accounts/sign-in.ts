import { meetsProviders } from '../policy/rules.ts';
import type { Config } from '../config/schema.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import { field, type Input } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import { readCookie, serializeCookie } from '../http/cookies.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Logger } from '../log/index.ts';
import { cspWithFormAction, loginPage, logoutPage, messagePage, registerPage } from '../pages/index.ts';
import type { SafeHtml } from '../pages/html.ts';
import type { FormTools } from '../pages/kit.ts';
import type { ProviderService } from '../providers/service.ts';
import type { Sessions } from '../sessions/index.ts';
import type { User } from '../store/index.ts';
import type { Accounts, FieldErrors } from './service.ts';
import type { SignInNotices } from './sign-in-notices.ts';
import type { SingleSignOn } from './sso.ts';

const DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600;

/**
 * The device cookie (security.md #42) of a browser that proved it is the account's: it knew the
 * password, or followed an invitation or a sign-in link mailed to the address.
 */
export function deviceCookie(ctx: RequestContext, value: string): string {
  return serializeCookie(ctx.site.cookies.device, value, {
    secure: ctx.site.secure,
    path: ctx.site.cookiePath,
    maxAgeSeconds: DEVICE_COOKIE_MAX_AGE,
  });
}

/** What the sign-in pages use (the composition root's Services satisfies it). */
export interface SignInDeps {
  config: Config;
  logger: Logger;
  /** New-browser sign-in notices (sign-in-notices.ts). */
  notices: SignInNotices;
  sessions: Sessions;
  accounts: Accounts;
  diagnosis: Diagnosis;
  /** Own routes' prefix, publicUrl's base path included: /.auth, or /app/.auth. */
  prefix: string;
  providers: Pick<ProviderService, 'get' | 'loginButtons' | 'logoutFormActions' | 'beforeLogout' | 'identitiesOf'>;
  /** What the sign-in page says a page waiting behind it is (oauth/server.ts). */
  oauth: { signInPurpose(rd: string): string | undefined };
  audit: AuditLog;
}

/**
 * The second factor after a first one (mfa/routes.ts implements it): `intercept` answers with the
 * second-factor step and returns true when one is needed, so no session is made yet.
 */
export interface SecondFactorGate {
  intercept(
    ctx: RequestContext,
    input: Input,
    user: User,
    amr: string[],
    rd: string,
    cookies: string[],
    require?: boolean,
    /** What the sign-in must still do once a session exists (continueWith names the handler). */
    carry?: { kind: string; data: string },
  ): Promise<boolean>;
  /** The handler of a carry `kind`, run with the new session after the second factor. */
  continueWith(
    kind: string,
    fn: (user: User, session: { idHash: string; userId: string }, data: string) => Promise<void>,
  ): void;
  /** The sign-in page's passkey button and the CSP it needs; undefined while second factors are off. */
  loginExtras(rd: string | undefined): { html: SafeHtml; csp: string } | undefined;
  /** The registration page's "create it with a passkey" button, likewise. */
  registerExtras(rd: string | undefined): { html: SafeHtml; csp: string } | undefined;
  /** The enrolled factor types of a user, for /.auth/me. */
  typesOf(userId: string): Promise<string[]>;
}

/**
 * The "authenticate" part: sign-in, registration, sign-out and /me under the prefix (their
 * routes are in server/routes.ts). Every POST passes pages/kit.ts's checks before it is read.
 */
export class SignIn {
  private readonly s: SignInDeps;
  private readonly forms: FormTools;
  private readonly registered: ((ctx: RequestContext, user: User) => void)[] = [];
  private secondFactor: SecondFactorGate | undefined;
  private sso: SingleSignOn | undefined;

  constructor(deps: SignInDeps, forms: FormTools) {
    this.s = deps;
    this.forms = forms;
  }

  /** Second factors (mfa/): asked after a right password when the user or the policy calls for one. */
  useSecondFactor(gate: SecondFactorGate): this {
    this.secondFactor = gate;
    return this;
  }

  /** Single sign-on (apps[].sso): on such a site the login page sends the browser to publicUrl's. */
  useSingleSignOn(sso: SingleSignOn): this {
    this.sso = sso;
    return this;
  }

  /** Runs after each registration with a password (the verification mail); must neither throw nor wait. */
  onRegister(fn: (ctx: RequestContext, user: User) => void): this {
    this.registered.push(fn);
    return this;
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
      const extras = this.secondFactor?.loginExtras(undefined);
      this.forms.html(
        ctx,
        status,
        render(),
        [],
        extras ? { ...headers, 'content-security-policy': extras.csp } : headers,
      );
    }
  }

  // ---- login ------------------------------------------------------------------------

  async loginForm(ctx: RequestContext): Promise<void> {
    const rd = this.forms.returnPath(ctx, this.forms.queryParam(ctx, 'rd'));
    // ?via=a,b: a route's allow.providers sent the user here to sign in through one of these.
    const via = this.forms
      .queryParam(ctx, 'via')
      ?.split(',')
      .filter((id) => this.s.providers.get(id) !== undefined);
    const current = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin).catch(() => undefined);
    if (current?.state === 'active' && meetsProviders(via, current.active.session.amr))
      return redirect(ctx.res, 302, ctx.site.origin + rd);
    // A cookie of no use (an ended session, say) is cleared.
    const cleared = current?.state === 'invalid' ? [this.s.sessions.clear(ctx.site.session)] : [];
    // Back at the login page right after signing in: the session did not stick. Say why.
    const cause = this.s.diagnosis.afterSignIn(ctx, current, cleared);
    if (cause)
      return this.s.diagnosis.respond(ctx.req, ctx.res, ctx.site, cause, ctx.requestId, [
        this.s.diagnosis.clearSignedIn(ctx.site),
      ]);
    if (ctx.site.sso && this.sso && !via?.length) return this.sso.start(ctx, rd);
    const { token, cookies } = this.forms.csrf(ctx);
    cookies.push(...cleared);
    const notice = this.forms.queryParam(ctx, 'signed_out')
      ? 'You have signed out.'
      : this.forms.queryParam(ctx, 'reset')
        ? 'Your password was changed, and every session signed out. Sign in with the new password.'
        : undefined;
    if (via?.length) {
      const names = via.map((id) => this.s.providers.get(id)!.name).join(' or ');
      return this.forms.html(
        ctx,
        200,
        loginPage({
          appTitle: ctx.site.title,
          action: this.forms.url(ctx, paths.login),
          csrf: token,
          notice: `This page needs a sign-in through ${names}.`,
          providers: this.s.providers.loginButtons(rd, via),
          providersOnly: true,
        }),
        cookies,
      );
    }
    const extras = this.secondFactor?.loginExtras(rd === ctx.site.home ? undefined : rd);
    this.forms.html(
      ctx,
      200,
      this.renderLogin(ctx, token, rd, {}, undefined, notice),
      cookies,
      extras ? { 'content-security-policy': extras.csp } : {},
    );
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
      action: this.forms.url(ctx, paths.login),
      csrf: token,
      rd: rd === ctx.site.home ? undefined : rd,
      email,
      errors,
      // Sent here by a page that waits on the other side (the device page, consent): say so.
      notice: notice ?? this.s.oauth.signInPurpose(rd),
      registerUrl:
        this.s.config.accounts.registration === 'open'
          ? this.forms.url(ctx, paths.register, { rd: rd === ctx.site.home ? undefined : rd })
          : undefined,
      forgotUrl: this.forms.url(ctx, paths.forgotPassword),
      signInLinkUrl: this.s.config.accounts.signInLinks
        ? this.forms.url(ctx, paths.signInLink, { rd: rd === ctx.site.home ? undefined : rd })
        : undefined,
      providers: this.s.providers.loginButtons(rd),
      passkey: this.secondFactor?.loginExtras(rd === ctx.site.home ? undefined : rd)?.html,
    });
  }

  async login(ctx: RequestContext): Promise<void> {
    const input = await this.forms.readPost(ctx);
    const email = field(input, 'email', 512);
    const password = field(input, 'password', 8192);
    const rd = this.forms.returnPath(ctx, field(input, 'rd', 4096));
    const cookie = ctx.site.session;
    const deviceIn = readCookie(ctx.req.headers.cookie, ctx.site.cookies.device);
    const result = await this.s.accounts.login({ email, password }, ctx.ip, deviceIn);
    if (!result.ok) {
      const code =
        result.status === 429
          ? 'too_many_attempts'
          : result.status === 401
            ? 'invalid_credentials'
            : result.status === 403
              ? 'account_disabled'
              : 'invalid_request';
      if (result.status !== 400)
        this.s.audit.record({
          event: 'login',
          outcome: result.status === 429 ? 'throttled' : result.status === 403 ? 'disabled' : 'failure',
          userId: result.userId,
          ctx,
          detail: { method: 'password', email: result.email },
        });
      return this.fail(
        ctx,
        input,
        result.status,
        code,
        result.errors,
        () => this.renderLogin(ctx, this.forms.csrf(ctx).token, rd, result.errors, email),
        result.retryAfterSeconds,
      );
    }
    ctx.userId = result.user.id;
    const device = deviceCookie(ctx, result.deviceCookie);
    if (await this.secondFactor?.intercept(ctx, input, result.user, ['pwd'], rd, [device])) return;
    const { setCookie } = await this.s.sessions.create(result.user, ctx.site.origin, cookie, {
      amr: ['pwd'],
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, cookie),
    });
    const cookies = [
      setCookie,
      device,
      this.s.diagnosis.signedIn(ctx.site, ctx.req),
      this.s.notices.seen(ctx, result.user, ['pwd'], { deviceCookie: true }),
    ];
    this.s.audit.record({ event: 'login', userId: result.user.id, ctx, detail: { method: 'password' } });
    this.s.logger.info(
      { event: 'login', userId: result.user.id, method: 'password', requestId: ctx.requestId },
      'user signed in',
    );
    if (input.kind === 'json')
      return sendJson(ctx.res, 200, { user: publicUser(result.user), redirect: rd }, {}, cookies);
    redirect(ctx.res, 303, ctx.site.origin + rd, cookies);
  }

  // ---- registration -----------------------------------------------------------------

  async registerForm(ctx: RequestContext): Promise<void> {
    const rd = this.forms.returnPath(ctx, this.forms.queryParam(ctx, 'rd'));
    const mode = this.s.config.accounts.registration;
    if (mode !== 'open') {
      return this.forms.html(
        ctx,
        403,
        messagePage({
          appTitle: ctx.site.title,
          heading: mode === 'invite' ? 'Accounts are by invitation' : 'Registration is closed',
          message:
            mode === 'invite'
              ? `Accounts for ${ctx.site.title} are by invitation only. Ask an administrator to invite you: the invitation comes by email, with a link to choose your password.`
              : 'Ask an administrator to create an account for you.',
          link: { href: this.forms.url(ctx, paths.login), text: 'Sign in' },
        }),
      );
    }
    const { token, cookies } = this.forms.csrf(ctx);
    const extras = this.secondFactor?.registerExtras(rd === ctx.site.home ? undefined : rd);
    this.forms.html(
      ctx,
      200,
      this.renderRegister(ctx, token, rd, {}),
      cookies,
      extras ? { 'content-security-policy': extras.csp } : {},
    );
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
      action: this.forms.url(ctx, paths.register),
      loginUrl: this.forms.url(ctx, paths.login, { rd: rd === ctx.site.home ? undefined : rd }),
      csrf: token,
      rd: rd === ctx.site.home ? undefined : rd,
      email,
      name,
      errors,
      minPasswordLength: this.s.config.accounts.minPasswordLength,
      passkey: this.secondFactor?.registerExtras(rd === ctx.site.home ? undefined : rd)?.html,
    });
  }

  async register(ctx: RequestContext): Promise<void> {
    const input = await this.forms.readPost(ctx);
    const email = field(input, 'email', 512);
    const name = field(input, 'name', 512);
    const password = field(input, 'password', 8192);
    const rd = this.forms.returnPath(ctx, field(input, 'rd', 4096));
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
        () => this.renderRegister(ctx, this.forms.csrf(ctx).token, rd, result.errors, email, name),
        result.retryAfterSeconds,
      );
    }
    ctx.userId = result.user.id;
    const cookie = ctx.site.session;
    this.s.audit.record({ event: 'register', userId: result.user.id, ctx, detail: { method: 'password' } });
    this.s.logger.info({ event: 'register', userId: result.user.id, requestId: ctx.requestId }, 'user registered');
    for (const fn of this.registered) fn(ctx, result.user);
    // accounts.mfa: required: the new user enrols a second factor before any session.
    const device = deviceCookie(ctx, result.deviceCookie);
    // The browser that registered is the account's first: no notice, now or after a second factor.
    const known = this.s.notices.seen(ctx, result.user, ['pwd'], { first: true });
    if (await this.secondFactor?.intercept(ctx, input, result.user, ['pwd'], rd, [device, known])) return;
    const { setCookie } = await this.s.sessions.create(result.user, ctx.site.origin, cookie, {
      amr: ['pwd'],
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, cookie),
    });
    const cookies = [setCookie, device, this.s.diagnosis.signedIn(ctx.site, ctx.req), known];
    if (input.kind === 'json')
      return sendJson(ctx.res, 201, { user: publicUser(result.user), redirect: rd }, {}, cookies);
    redirect(ctx.res, 303, ctx.site.origin + rd, cookies);
  }

  // ---- logout -----------------------------------------------------------------------

  async logoutForm(ctx: RequestContext): Promise<void> {
    // GET never signs anyone out (security.md #29): it shows a button that POSTs.
    const rd = this.forms.returnTarget(ctx, this.forms.queryParam(ctx, 'rd'));
    const current = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin).catch(() => undefined);
    const { token, cookies } = this.forms.csrf(ctx);
    this.forms.html(
      ctx,
      200,
      logoutPage({
        appTitle: ctx.site.title,
        action: this.forms.url(ctx, paths.logout),
        loginUrl: this.forms.url(ctx, paths.login, { rd }),
        csrf: token,
        rd,
        email: current?.state === 'active' ? current.active.user.email : undefined,
      }),
      cookies,
      // The POST may be redirected on to a provider's logout (RP-initiated): the CSP allows it.
      { 'content-security-policy': cspWithFormAction(this.s.providers.logoutFormActions()) },
    );
  }

  async logout(ctx: RequestContext): Promise<void> {
    const input = await this.forms.readPost(ctx, { bodiless: true });
    const rd = this.forms.returnTarget(ctx, field(input, 'rd', 4096));
    // Before the session goes (its provider tokens go with it): the provider's logout URL, if any.
    const endSession = await this.s.providers.beforeLogout(ctx);
    const leaving = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin).catch(() => undefined);
    if (leaving?.state === 'active') this.s.audit.record({ event: 'logout', userId: leaving.active.user.id, ctx });
    // A session single sign-on made: the one on publicUrl's site ends too, and every other it made
    // (else the next visit would sign the browser in again at once).
    const parent = leaving?.state === 'active' ? leaving.active.session.parentHash : undefined;
    if (parent) await this.s.sessions.end(parent);
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
      endSession?.url ?? ctx.site.origin + (rd ?? this.forms.url(ctx, paths.login, { signed_out: '1' })),
      cleared,
    );
  }

  // ---- JSON and probes --------------------------------------------------------------

  async me(ctx: RequestContext): Promise<void> {
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
    const [identities, factors] = await Promise.all([
      this.s.providers.identitiesOf(user.id),
      this.secondFactor?.typesOf(user.id) ?? [],
    ]);
    sendJson(ctx.res, 200, {
      ...publicUser(user),
      identities,
      factors,
      session: {
        createdAt: new Date(session.createdAt).toISOString(),
        expiresAt: new Date(session.expiresAt).toISOString(),
        /** When the user last proved who they are (accounts/reauth.ts). */
        authTime: new Date(session.authTime).toISOString(),
        amr: session.amr,
      },
    });
  }
}

/** The user as Gatehouse's JSON endpoints show it. Never the password hash. */
export function publicUser(user: User): {
  id: string;
  email: string;
  emailVerified: boolean;
  name: string | null;
  groups: string[];
} {
  return { id: user.id, email: user.email, emailVerified: user.emailVerified, name: user.name, groups: user.groups };
}
