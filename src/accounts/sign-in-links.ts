import type { AuditLog } from '../audit/index.ts';
import type { Config } from '../config/schema.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import { field, type Input } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { Logger } from '../log/index.ts';
import type { Mailer } from '../mail/mailer.ts';
import { humanDuration } from '../mail/messages.ts';
import { messagePage } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { Sessions } from '../sessions/index.ts';
import type { Store } from '../store/index.ts';
import type { MailedLinks } from './mailed-links.ts';
import { linkRequestPage, linkSentPage, openSignInLinkPage } from './pages.ts';
import { deviceCookie, publicUser, type SecondFactorGate } from './sign-in.ts';
import type { SignInNotices } from './sign-in-notices.ts';
import type { Throttle } from './throttle.ts';

/** What the request answers, for every address alike (security.md #41). */
const SENT = 'If there is an account for this address, a message with a link that signs you in is on its way.';

/** What sign-in links use (the composition root's Services satisfies it). */
export interface SignInLinksDeps {
  config: Config;
  logger: Logger;
  store: Store;
  sessions: Sessions;
  throttle: Throttle;
  diagnosis: Diagnosis;
  notices: SignInNotices;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  audit: AuditLog;
}

/**
 * Sign-in by a link mailed to the address (accounts.signInLinks), for users who would rather not
 * type a password, or have none (an account of a provider's or a passkey's):
 *   GET/POST /sign-in-link         asks for a link (form, or JSON {email, rd?}); the answer is the
 *                                  same for every address, as forgot-password's: the account is
 *                                  looked up in the background, by the mail task
 *   GET  /sign-in-link/open?token= the mailed link (mailed-links.ts: nothing changes on GET, since
 *                                  mail scanners fetch links), then a page naming the account
 *   POST /sign-in-link/open        signs in (the page's button, or JSON {token, rd?}): the link is
 *                                  used up; a user with a second factor (or under mfa: required)
 *                                  is asked for it next, as after a password; the address counts
 *                                  as verified (the link proved it)
 * The link is 256 random bits, hashed at rest, works once, for email.signInLinkTtl (15 minutes),
 * and only the newest one works. Off (404) unless accounts.signInLinks is set.
 */
export class SignInLinks {
  private readonly s: SignInLinksDeps;
  private readonly tools: FormTools;
  private readonly links: MailedLinks;
  private readonly mailer: Mailer | undefined;
  private secondFactor: SecondFactorGate | undefined;

  constructor(deps: SignInLinksDeps, tools: FormTools, links: MailedLinks, mailer: Mailer | undefined) {
    this.s = deps;
    this.tools = tools;
    this.links = links;
    this.mailer = mailer;
  }

  /** Second factors (mfa/): asked after the link when the user or the policy calls for one. */
  useSecondFactor(gate: SecondFactorGate): this {
    this.secondFactor = gate;
    return this;
  }

  private get ttlMs(): number {
    return this.s.config.email?.signInLinkTtl ?? 15 * 60_000;
  }

  /** The mailer when sign-in links are on (the config requires email for them), else undefined. */
  private get on(): Mailer | undefined {
    return this.s.config.accounts.signInLinks ? this.mailer : undefined;
  }

  private off(ctx: RequestContext, input?: Input): void {
    const message = `Sign-in links are not offered for ${ctx.site.title}.`;
    if (input?.kind === 'json') return sendJson(ctx.res, 404, { error: 'not_found', message });
    this.tools.html(
      ctx,
      404,
      messagePage({
        appTitle: ctx.site.title,
        heading: 'Sign in',
        message,
        link: { href: `${this.s.prefix}${paths.login}`, text: 'Sign in' },
      }),
    );
  }

  private renderForm(
    ctx: RequestContext,
    csrf: string,
    rd: string,
    errors: Record<string, string | undefined> = {},
    email?: string,
  ): string {
    return linkRequestPage({
      appTitle: ctx.site.title,
      csrf,
      heading: 'Sign in with a link',
      intro: `Enter the email address of your account. We will send you a link that signs you in; it works once, for ${humanDuration(this.ttlMs)}.`,
      button: 'Email me a link',
      action: `${this.s.prefix}${paths.signInLink}`,
      loginUrl: this.tools.url(ctx, paths.login, { rd: rd === ctx.site.home ? undefined : rd }),
      rd: rd === ctx.site.home ? undefined : rd,
      email,
      errors,
    });
  }

  // ---- asking for a link ---------------------------------------------------------------

  async requestForm(ctx: RequestContext): Promise<void> {
    if (!this.on) return this.off(ctx);
    const rd = this.tools.returnPath(ctx, this.tools.queryParam(ctx, 'rd'));
    if (this.tools.queryParam(ctx, 'sent') === '1')
      return this.tools.html(
        ctx,
        200,
        linkSentPage({
          appTitle: ctx.site.title,
          loginUrl: `${this.s.prefix}${paths.login}`,
          againUrl: `${this.s.prefix}${paths.signInLink}`,
          what: 'that signs you in',
          works: `${humanDuration(this.ttlMs)}, in any browser`,
        }),
      );
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(ctx, 200, this.renderForm(ctx, token, rd), cookies);
  }

  /**
   * The same status, body and headers for every well-formed address, after the same work (the
   * throttle, keyed by the address; one message queued), as forgot-password (security.md #41):
   * whether there is an account is found out by the mail task, in the background.
   */
  async request(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const mailer = this.on;
    if (!mailer) return this.off(ctx, input);
    const rd = this.tools.returnPath(ctx, field(input, 'rd', 4096));
    await this.links.answerRequest(ctx, input, {
      kind: 'signin',
      mailer,
      ttlMs: this.ttlMs,
      rd: rd === ctx.site.home ? undefined : rd,
      limit: (ip, email) => this.s.throttle.checkSignInLink(ip, email),
      tooMany: 'Too many sign-in links asked for. Wait a while and try again.',
      sent: SENT,
      form: (csrf, errors, given) => this.renderForm(ctx, csrf, rd, errors, given),
    });
  }

  // ---- the mailed link -----------------------------------------------------------------

  async openForm(ctx: RequestContext): Promise<void> {
    if (!this.on) return this.off(ctx);
    const checked = await this.links.opened(ctx, 'signin');
    if (!checked) return;
    const rd = this.tools.returnPath(ctx, this.tools.queryParam(ctx, 'rd'));
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(
      ctx,
      200,
      openSignInLinkPage({
        appTitle: ctx.site.title,
        csrf: token,
        action: `${this.s.prefix}${paths.openSignInLink}`,
        rd: rd === ctx.site.home ? undefined : rd,
        email: checked.user.email,
      }),
      cookies,
    );
  }

  async open(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    if (!this.on) return this.off(ctx, input);
    const rd = this.tools.returnPath(ctx, field(input, 'rd', 4096));
    const used = await this.links.consume(ctx, 'signin', input);
    if (!used.ok) return this.links.problem(ctx, 'signin', used.problem, false, input);
    // Following the link proved the address.
    let user = used.user;
    if (!user.emailVerified) {
      user = (await this.s.store.users.update(user.id, { emailVerified: true })) ?? user;
      this.s.audit.record({ event: 'email_verified', userId: user.id, ctx, detail: { by: 'sign_in_link' } });
    }
    ctx.userId = user.id;
    const amr = ['email'];
    const device = deviceCookie(ctx, this.s.throttle.newDeviceCookie(user.email));
    const known = this.s.notices.seen(ctx, user, amr, { deviceCookie: true });
    const clear = this.links.clear(ctx, 'signin');
    if (await this.secondFactor?.intercept(ctx, input, user, amr, rd, [clear, device, known])) return;
    const cookie = ctx.site.session;
    const { setCookie } = await this.s.sessions.create(user, ctx.site.origin, cookie, {
      amr,
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, cookie),
    });
    this.s.audit.record({ event: 'login', userId: user.id, ctx, detail: { method: 'email_link' } });
    this.s.logger.info(
      { event: 'login', userId: user.id, method: 'email_link', requestId: ctx.requestId },
      'user signed in',
    );
    const cookies = [clear, setCookie, device, this.s.diagnosis.signedIn(ctx.site, ctx.req), known];
    if (input.kind === 'json') return sendJson(ctx.res, 200, { user: publicUser(user), redirect: rd }, {}, cookies);
    redirect(ctx.res, 303, ctx.site.origin + rd, cookies);
  }
}
