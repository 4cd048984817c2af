import type { AuditLog } from '../audit/index.ts';
import { field, type Input } from '../http/body.ts';
import { readCookie } from '../http/cookies.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { Mailer } from '../mail/mailer.ts';
import { humanDuration, passwordChangedMail } from '../mail/messages.ts';
import { messagePage } from '../pages/index.ts';
import type { SessionGate } from './account-page.ts';
import type { Accounts } from './service.ts';
import type { Throttle } from './throttle.ts';
import type { Config } from '../config/schema.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { Logger } from '../log/index.ts';
import type { AccountSectionView } from '../pages/index.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import type { Store, User } from '../store/index.ts';
import { type MailedLinks, sendErrors } from './mailed-links.ts';
import { changePasswordForm, changePasswordPage, linkRequestPage, linkSentPage, resetPasswordPage } from './pages.ts';
import { hashPassword, passwordProblem } from './passwords.ts';

/** What forgot-password answers, for every address alike (security.md #41). */
const SENT = 'If there is an account for this address, a message with a link to choose a new password is on its way.';

/** What password reset and change use (the composition root's Services satisfies it). */
export interface RecoveryDeps {
  config: Config;
  logger: Logger;
  store: Store;
  sessions: Sessions;
  accounts: Accounts;
  throttle: Throttle;
  diagnosis: Diagnosis;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  audit: AuditLog;
}

/**
 * Passwords a user changes themselves:
 *   GET/POST /forgot-password   asks for a reset link; the answer is the same for every address
 *   GET  /reset-password?token= the mailed link (mailed-links.ts: nothing changes on GET)
 *   GET  /reset-password        the new-password form for the link
 *   POST /reset-password        sets it (form, or JSON {token, password}); every session ends,
 *                               nobody is signed in: they sign in with the new password
 *   GET/POST /account/password  a signed-in user changes theirs (current password required);
 *                               their other sessions end, this one stays
 */
export class PasswordRecovery {
  private readonly s: RecoveryDeps;
  private readonly tools: FormTools;
  private readonly account: SessionGate;
  private readonly links: MailedLinks;
  private readonly mailer: Mailer | undefined;

  constructor(
    deps: RecoveryDeps,
    tools: FormTools,
    account: SessionGate,
    links: MailedLinks,
    mailer: Mailer | undefined,
  ) {
    this.s = deps;
    this.tools = tools;
    this.account = account;
    this.links = links;
    this.mailer = mailer;
  }

  /** The "Password" section of the account page (for users who have one). */
  async accountSection(
    ctx: RequestContext,
    active: ActiveSession,
    csrf: string,
  ): Promise<AccountSectionView | undefined> {
    if (!active.user.passwordHash) return undefined;
    const changed = this.tools.queryParam(ctx, 'password') === 'changed';
    return {
      id: 'password',
      heading: 'Password',
      body: changePasswordForm({
        appTitle: ctx.site.title,
        csrf,
        action: `${this.s.prefix}/account/password`,
        email: active.user.email,
        minPasswordLength: this.s.config.accounts.minPasswordLength,
        focus: false,
      }),
      notice: changed ? 'Your password was changed. Every other session was signed out.' : undefined,
    };
  }

  private get resetTtl(): number {
    return this.s.config.email?.resetLinkTtl ?? 30 * 60_000;
  }

  // ---- forgot-password --------------------------------------------------------------

  /** Without `email:` there is no way to mail a link: the page says whom to ask. */
  private notConfigured(ctx: RequestContext, status: number, input?: Input): void {
    const message = `Password reset by email is not set up for ${ctx.site.title}.`;
    const hint = 'Ask an administrator to set a new password for you.';
    if (input?.kind === 'json')
      return sendJson(ctx.res, status, { error: 'email_not_configured', message: `${message} ${hint}` });
    this.tools.html(
      ctx,
      status,
      messagePage({
        appTitle: ctx.site.title,
        heading: 'Reset your password',
        message,
        hint,
        link: { href: `${this.s.prefix}/login`, text: 'Back to sign in' },
      }),
    );
  }

  private renderForgot(
    ctx: RequestContext,
    csrf: string,
    errors: Record<string, string | undefined> = {},
    email?: string,
  ): string {
    return linkRequestPage({
      appTitle: ctx.site.title,
      csrf,
      heading: 'Reset your password',
      intro: `Enter the email address of your account. We will send you a link to choose a new password; it works for ${humanDuration(this.resetTtl)}.`,
      button: 'Send the link',
      action: `${this.s.prefix}/forgot-password`,
      loginUrl: `${this.s.prefix}/login`,
      email,
      errors,
    });
  }

  async forgotForm(ctx: RequestContext): Promise<void> {
    if (!this.mailer) return this.notConfigured(ctx, 200);
    if (this.tools.queryParam(ctx, 'sent') === '1') {
      return this.tools.html(
        ctx,
        200,
        linkSentPage({
          appTitle: ctx.site.title,
          loginUrl: `${this.s.prefix}/login`,
          againUrl: `${this.s.prefix}/forgot-password`,
          what: 'to choose a new password',
          works: humanDuration(this.resetTtl),
        }),
      );
    }
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(ctx, 200, this.renderForgot(ctx, token), cookies);
  }

  /**
   * The same status, body and headers for every well-formed address, after the same work: the
   * throttle (keyed by the address, not the account) and one message queued. Whether there is
   * an account is not even looked up before answering: the queued task does that in the
   * background (mail/mailer.ts starts it a few milliseconds later, at a random moment), and
   * only then makes and mails a link, or nothing. So nothing the answer waits for, nor its
   * timing, depends on the account (security.md #41).
   */
  async forgot(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    if (!this.mailer) return this.notConfigured(ctx, 501, input);
    await this.links.answerRequest(ctx, input, {
      kind: 'reset',
      mailer: this.mailer,
      ttlMs: this.resetTtl,
      limit: (ip, email) => this.s.throttle.checkPasswordReset(ip, email),
      tooMany: 'Too many requests for a new password. Wait a while and try again.',
      sent: SENT,
      form: (csrf, errors, given) => this.renderForgot(ctx, csrf, errors, given),
    });
  }

  // ---- reset-password ---------------------------------------------------------------

  private renderReset(
    ctx: RequestContext,
    csrf: string,
    email: string,
    errors: Record<string, string | undefined> = {},
  ): string {
    return resetPasswordPage({
      appTitle: ctx.site.title,
      csrf,
      action: `${this.s.prefix}/reset-password`,
      email,
      errors,
      minPasswordLength: this.s.config.accounts.minPasswordLength,
    });
  }

  async resetForm(ctx: RequestContext): Promise<void> {
    const checked = await this.links.opened(ctx, 'reset');
    if (!checked) return;
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(ctx, 200, this.renderReset(ctx, token, checked.user.email), cookies);
  }

  async reset(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const password = field(input, 'password', 8192) ?? '';
    const checked = await this.links.check(ctx, 'reset', input);
    if (!checked.ok) return this.links.problem(ctx, 'reset', checked.problem, false, input);
    const problem = passwordProblem(password, {
      minLength: this.s.config.accounts.minPasswordLength,
      email: checked.user.email,
    });
    if (problem) {
      if (input.kind === 'json') return sendErrors(ctx, 400, 'invalid_request', { password: problem });
      return this.tools.html(
        ctx,
        400,
        this.renderReset(ctx, this.tools.csrf(ctx).token, checked.user.email, { password: problem }),
      );
    }
    // Hashed before the link is used up: a busy hasher (503) leaves the link working.
    const passwordHash = await hashPassword(password);
    const used = await this.links.consume(ctx, 'reset', input);
    if (!used.ok) return this.links.problem(ctx, 'reset', used.problem, false, input);
    const user = used.user;
    // Every session ends, the one of this browser too (security.md #27), and none starts (security.md #44).
    await this.s.accounts.replacePassword(
      user.id,
      passwordHash,
      undefined,
      user.emailVerified ? {} : { emailVerified: true },
    );
    ctx.userId = user.id;
    this.s.audit.record({ event: 'password_reset', userId: user.id, ctx });
    this.s.logger.info(
      { event: 'password_reset', userId: user.id, requestId: ctx.requestId },
      'password reset with a mailed link; every session ended',
    );
    this.notifyChanged(ctx.site, user, 'reset');
    const cookies = [this.links.clear(ctx, 'reset')];
    // This browser's session is gone too; so is the sign-in marker, which would otherwise
    // make the login page explain a session that "did not stick" (diagnosis/).
    if (readCookie(ctx.req.headers.cookie, ctx.site.session.name) !== undefined)
      cookies.push(this.s.sessions.clear(ctx.site.session), this.s.diagnosis.clearSignedIn(ctx.site));
    const login = `${ctx.site.origin}${this.s.prefix}/login?reset=1`;
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true, login }, {}, cookies);
    redirect(ctx.res, 303, login, cookies);
  }

  /** "Your password was changed": so an owner learns of a change they did not make. */
  private notifyChanged(site: SiteInfo, user: User, how: 'reset' | 'changed'): void {
    this.mailer?.send({
      kind: 'password_changed',
      userId: user.id,
      prepare: async () => ({
        to: user.email,
        fromName: site.title,
        ...passwordChangedMail({
          appTitle: site.title,
          email: user.email,
          at: Date.now(),
          how,
          forgotUrl: `${site.origin}${this.s.prefix}/forgot-password`,
        }),
      }),
    });
  }

  // ---- change password (signed in) --------------------------------------------------

  async changeForm(ctx: RequestContext): Promise<void> {
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    if (!active.user.passwordHash) return redirect(ctx.res, 302, `${ctx.site.origin}${this.s.prefix}/account`);
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(
      ctx,
      200,
      changePasswordPage({
        appTitle: ctx.site.title,
        csrf: token,
        action: `${this.s.prefix}/account/password`,
        email: active.user.email,
        errors: {},
        minPasswordLength: this.s.config.accounts.minPasswordLength,
        accountUrl: `${this.s.prefix}/account`,
      }),
      cookies,
    );
  }

  async change(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    const { user, session } = active;
    const device = readCookie(ctx.req.headers.cookie, ctx.site.cookies.device);
    const result = await this.s.accounts.changePassword(
      user,
      { currentPassword: field(input, 'currentPassword', 8192), password: field(input, 'password', 8192) },
      ctx.ip,
      device,
      session.idHash,
    );
    if (!result.ok && result.status !== 400)
      this.s.audit.record({
        event: 'password_changed',
        outcome: result.status === 429 ? 'throttled' : 'failure',
        userId: user.id,
        ctx,
      });
    if (!result.ok) {
      const headers: Record<string, string> = result.retryAfterSeconds
        ? { 'retry-after': String(result.retryAfterSeconds) }
        : {};
      if (input.kind === 'json') {
        const code =
          result.status === 429
            ? 'too_many_attempts'
            : result.status === 401
              ? 'invalid_credentials'
              : result.status === 409
                ? 'no_password'
                : 'invalid_request';
        return sendErrors(ctx, result.status, code, result.errors, headers);
      }
      const page = changePasswordPage({
        appTitle: ctx.site.title,
        csrf: this.tools.csrf(ctx).token,
        action: `${this.s.prefix}/account/password`,
        email: user.email,
        errors: result.errors,
        minPasswordLength: this.s.config.accounts.minPasswordLength,
        accountUrl: `${this.s.prefix}/account`,
      });
      return this.tools.html(ctx, result.status, page, [], headers);
    }
    this.s.audit.record({ event: 'password_changed', userId: user.id, ctx });
    this.s.logger.info(
      { event: 'password_changed', userId: user.id, requestId: ctx.requestId },
      'password changed; other sessions ended',
    );
    this.notifyChanged(ctx.site, user, 'changed');
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true });
    redirect(ctx.res, 303, `${ctx.site.origin}${this.s.prefix}/account?password=changed`);
  }
}
