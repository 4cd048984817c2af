import type { AuditLog } from '../audit/index.ts';
import { redirect, sendJson, wantsHtml } from '../http/respond.ts';
import { HttpError } from '../http/errors.ts';
import type { Mailer } from '../mail/mailer.ts';
import { verificationMail } from '../mail/messages.ts';
import type { SessionGate } from './account-page.ts';
import type { Throttle } from './throttle.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { AccountSectionView } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { Store, User } from '../store/index.ts';
import type { MailedLinks } from './mailed-links.ts';
import { confirmEmailPage, emailSection, verifyStatusPage } from './pages.ts';

/** What email verification uses (the composition root's Services satisfies it). */
export interface VerificationDeps {
  config: Config;
  logger: Logger;
  store: Store;
  sessions: Sessions;
  throttle: Throttle;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  audit: AuditLog;
}

/**
 * Email verification:
 *   GET  /verify-email?token=  the mailed link (see mailed-links.ts: nothing changes on GET)
 *   GET  /verify-email         a confirm button for the link; else, signed in, the address's
 *                              status with "Send a new link"
 *   POST /verify-email         confirms: the user's address is verified (form or JSON {token})
 *   POST /verify-email/resend  a signed-in user asks for a new link
 * A link is mailed after registration with a password, and on request. A verified address is
 * what provider sign-ins may link by (linkByEmail), and, with accounts.requireVerifiedEmail,
 * what protected routes require.
 */
export class EmailVerification {
  private readonly s: VerificationDeps;
  private readonly tools: FormTools;
  private readonly account: SessionGate;
  private readonly links: MailedLinks;
  private readonly mailer: Mailer | undefined;

  constructor(
    deps: VerificationDeps,
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

  /** The "Email address" section of the account page. */
  async accountSection(_ctx: RequestContext, active: ActiveSession, csrf: string): Promise<AccountSectionView> {
    return {
      id: 'email-address',
      heading: 'Email address',
      body: emailSection({
        email: active.user.email,
        verified: active.user.emailVerified,
        csrf,
        resendAction: this.mailer ? `${this.s.prefix}/verify-email/resend` : undefined,
      }),
    };
  }

  /**
   * Queues the verification message for `user`, after registration with a password. The link
   * is made in the background; it is not sent when the address has had its share this hour
   * (accounts.rateLimits.emailsPerAddress). False without a mailer.
   */
  afterRegister(ctx: RequestContext, user: User): boolean {
    return this.queueLink(ctx.site, user, false);
  }

  private queueLink(site: SiteInfo, user: User, quotaTaken: boolean): boolean {
    const mailer = this.mailer;
    if (!mailer || user.emailVerified) return false;
    const ttlMs = this.s.config.email!.verifyLinkTtl;
    return mailer.send({
      kind: 'verify_email',
      userId: user.id,
      prepare: async () => {
        if (!quotaTaken && !(await this.s.throttle.takeMail(user.email)).ok) {
          this.s.logger.warn(
            { event: 'mail_suppressed', kind: 'verify_email', userId: user.id, reason: 'address_rate_limited' },
            'too many messages to this address this hour',
          );
          return undefined;
        }
        const token = await this.links.tokens.issue(user, 'verify_email', ttlMs);
        return {
          to: user.email,
          fromName: site.title,
          ...verificationMail({
            appTitle: site.title,
            email: user.email,
            link: this.links.url(site, 'verify', token),
            ttlMs,
          }),
        };
      },
    });
  }

  async page(ctx: RequestContext): Promise<void> {
    if (await this.links.landing(ctx, 'verify')) return;
    const { token: csrf, cookies } = this.tools.csrf(ctx);
    const cookie = this.links.tokenOf(ctx, 'verify');
    if (cookie !== undefined) {
      const checked = await this.links.check(ctx, 'verify');
      if (!checked.ok) return this.links.problem(ctx, 'verify', checked.problem, false);
      return this.tools.html(
        ctx,
        200,
        confirmEmailPage({
          appTitle: ctx.site.title,
          csrf,
          action: `${this.s.prefix}/verify-email`,
          email: checked.token.email,
        }),
        cookies,
      );
    }
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    const user = found.state === 'active' ? found.active.user : undefined;
    if (user) ctx.userId = user.id;
    // After the confirm POST (which needs no session) this is ?verified=1; a signed-in user's
    // own state wins over the query, so the page never claims what is not so.
    const verifiedNow = this.tools.queryParam(ctx, 'verified') === '1';
    const verified = user ? user.emailVerified : verifiedNow;
    const notice =
      verified && verifiedNow
        ? 'Thank you: your email address is verified.'
        : this.tools.queryParam(ctx, 'sent') === '1' && user && !verified
          ? `We sent a new link to ${user.email}.`
          : undefined;
    this.tools.html(
      ctx,
      200,
      verifyStatusPage({
        appTitle: ctx.site.title,
        csrf,
        heading: verified ? 'Email address verified' : 'Verify your email address',
        email: user?.email,
        verified,
        notice,
        resendAction: this.mailer ? `${this.s.prefix}/verify-email/resend` : undefined,
        continueUrl:
          user || verified
            ? ctx.site.home
            : `${this.s.prefix}/login?rd=${encodeURIComponent(`${this.s.prefix}/verify-email`)}`,
        accountUrl: `${this.s.prefix}/account`,
        signOutUrl: `${this.s.prefix}/logout`,
      }),
      cookies,
    );
  }

  async confirm(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const used = await this.links.consume(ctx, 'verify', input);
    if (!used.ok) return this.links.problem(ctx, 'verify', used.problem, false, input);
    const user = used.user;
    if (!user.emailVerified) await this.s.store.users.update(user.id, { emailVerified: true });
    this.s.audit.record({ event: 'email_verified', userId: user.id, ctx, detail: { email: user.email } });
    this.s.logger.info(
      { event: 'email_verified', userId: user.id, requestId: ctx.requestId },
      'email address verified',
    );
    const clear = [this.links.clear(ctx, 'verify')];
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true, emailVerified: true }, {}, clear);
    redirect(ctx.res, 303, `${ctx.site.origin}${this.s.prefix}/verify-email?verified=1`, clear);
  }

  async resend(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx, { bodiless: true });
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    const user = active.user;
    const done = `${ctx.site.origin}${this.s.prefix}/verify-email`;
    if (!this.mailer)
      throw new HttpError(
        501,
        'email_not_configured',
        'Email is not set up here, so no link can be sent. Ask an administrator to verify your address.',
      );
    if (user.emailVerified)
      return input.kind === 'json'
        ? sendJson(ctx.res, 200, { ok: true, emailVerified: true })
        : redirect(ctx.res, 303, done);
    // The user owns this account, so telling them about the limit gives nothing away.
    const quota = await this.s.throttle.takeMail(user.email);
    if (!quota.ok) {
      const message = `A link was sent to ${user.email} several times in the last hour. Use the newest message, or try again later.`;
      const headers = { 'retry-after': String(quota.retryAfterSeconds) };
      if (input.kind === 'json') return sendJson(ctx.res, 429, { error: 'too_many_messages', message }, headers);
      return this.tools.html(
        ctx,
        429,
        verifyStatusPage({
          appTitle: ctx.site.title,
          csrf: this.tools.csrf(ctx).token,
          heading: 'Verify your email address',
          email: user.email,
          verified: false,
          message,
          continueUrl: ctx.site.home,
          accountUrl: `${this.s.prefix}/account`,
        }),
        [],
        headers,
      );
    }
    this.queueLink(ctx.site, user, true);
    this.s.logger.info(
      { event: 'email_verification_requested', userId: user.id, requestId: ctx.requestId },
      'new verification link requested',
    );
    if (input.kind === 'json')
      return sendJson(ctx.res, 202, { ok: true, message: `A new link is on its way to ${user.email}.` });
    redirect(ctx.res, 303, `${done}?sent=1`);
  }

  /**
   * accounts.requireVerifiedEmail: what a signed-in user with an unverified address gets
   * instead of a protected page. A browser sees how to verify (and can ask for a new link);
   * an API call gets 403 JSON.
   */
  blocked(ctx: RequestContext, active: ActiveSession): number {
    const verify = `${ctx.site.origin}${this.s.prefix}/verify-email`;
    const message = 'Verify your email address to continue: open the link in the message we sent you.';
    if (!wantsHtml(ctx.req)) {
      sendJson(ctx.res, 403, { error: 'email_unverified', message, verify });
      return 403;
    }
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(
      ctx,
      403,
      verifyStatusPage({
        appTitle: ctx.site.title,
        csrf: token,
        heading: 'Verify your email address',
        email: active.user.email,
        verified: false,
        resendAction: this.mailer ? `${this.s.prefix}/verify-email/resend` : undefined,
        continueUrl: ctx.site.home,
        accountUrl: `${this.s.prefix}/account`,
        signOutUrl: `${this.s.prefix}/logout`,
      }),
      cookies,
    );
    return 403;
  }
}
