import type { AuditLog } from '../audit/index.ts';
import type { AppEventSink } from '../events/index.ts';
import type { Config } from '../config/schema.ts';
import { normalizeEmail } from '../config/email.ts';
import { field, type Input } from '../http/body.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { Logger } from '../log/index.ts';
import type { Mailer } from '../mail/mailer.ts';
import { emailChangeMail, emailChangeNoticeMail, emailInUseMail, humanDuration } from '../mail/messages.ts';
import { messagePage, type AccountSectionView } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { ActiveSession } from '../sessions/index.ts';
import { StoreConflictError, type Store, type User } from '../store/index.ts';
import { refuseAccountForm, type SessionGate } from './account-page.ts';
import type { MailedLinks } from './mailed-links.ts';
import { changeEmailForm, changeEmailPage, confirmEmailChangePage } from './pages.ts';
import type { RecentAuthGate } from './reauth.ts';
import type { Throttle } from './throttle.ts';

/** What the change of address uses (the composition root's Services satisfies it). */
export interface EmailChangeDeps {
  config: Config;
  logger: Logger;
  audit: AuditLog;
  store: Store;
  throttle: Throttle;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  /** The apps that get addresses and take events are told of the new one (events/). */
  events: AppEventSink;
}

/** How long the link to the new address works: the verification links' lifetime, at most a day. */
const MAX_TTL_MS = 86_400_000;

/**
 * A signed-in user changes their email address:
 *   POST /account/email        asks for it (form field newEmail, or JSON {email}): needs a recent
 *                              sign-in or re-authentication (reauth.ts); a link goes to the new
 *                              address, a notice to the old one (security.md #205); the answer is
 *                              the same whether or not the new address is free (security.md #206)
 *   GET  /confirm-email?token= the link (mailed-links.ts: nothing changes on GET)
 *   GET  /confirm-email        a confirm button
 *   POST /confirm-email        makes the new address the account's, verified (form, or JSON {token})
 * Until the link is used the old address stays, for sign-in and for mail. The link works once,
 * only the newest one works, and it dies when the address or the password changes meanwhile (a
 * password reset is what the notice to the old address advises). Confirming ends no session:
 * the change was asked for by the signed-in owner after re-authentication, and the sessions of
 * a user stay theirs whatever the address (docs/accounts.md).
 */
export class EmailChange {
  private readonly s: EmailChangeDeps;
  private readonly tools: FormTools;
  private readonly account: SessionGate;
  private readonly reauth: RecentAuthGate;
  private readonly links: MailedLinks;
  private readonly mailer: Mailer | undefined;

  constructor(
    deps: EmailChangeDeps,
    tools: FormTools,
    account: SessionGate,
    reauth: RecentAuthGate,
    links: MailedLinks,
    mailer: Mailer | undefined,
  ) {
    this.s = deps;
    this.tools = tools;
    this.account = account;
    this.reauth = reauth;
    this.links = links;
    this.mailer = mailer;
  }

  private get ttlMs(): number {
    return Math.min(this.s.config.email?.verifyLinkTtl ?? MAX_TTL_MS, MAX_TTL_MS);
  }

  /** The "Change email address" section of the account page (with email configured). */
  async accountSection(
    ctx: RequestContext,
    _active: ActiveSession,
    csrf: string,
  ): Promise<AccountSectionView | undefined> {
    if (!this.mailer) return undefined;
    const sent = this.tools.queryParam(ctx, 'email') === 'sent';
    const changed = this.tools.queryParam(ctx, 'email') === 'changed';
    return {
      id: 'change-email',
      heading: 'Change email address',
      body: changeEmailForm({ csrf, action: this.tools.url(ctx, paths.changeEmail) }),
      notice: sent
        ? `We sent a link to the new address. Your address stays as it is until you open it (within ${humanDuration(this.ttlMs)}).`
        : changed
          ? 'Your email address was changed.'
          : undefined,
    };
  }

  private fail(
    ctx: RequestContext,
    input: Input,
    user: User,
    status: number,
    code: string,
    message: string,
    value?: string,
    headers: Record<string, string> = {},
  ): void {
    if (input.kind === 'json')
      return sendJson(ctx.res, status, { error: code, message, fields: { email: message } }, headers);
    this.tools.html(
      ctx,
      status,
      changeEmailPage({
        appTitle: ctx.site.title,
        csrf: this.tools.csrf(ctx).token,
        action: this.tools.url(ctx, paths.changeEmail),
        email: user.email,
        errors: { newEmail: message },
        value,
        accountUrl: this.tools.url(ctx, paths.account),
      }),
      [],
      headers,
    );
  }

  /** POST /account/email */
  async request(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    const { user } = active;
    const json = input.kind === 'json';
    if (!this.mailer)
      return refuseAccountForm(this.tools, ctx, json, {
        status: 501,
        error: 'email_not_configured',
        heading: 'Change your email address',
        message: `Changing the address needs email, which is not set up for ${ctx.site.title}. Ask an administrator.`,
      });
    // A stolen session alone cannot move the account's address (security.md #205).
    if (!this.reauth.requireRecentAuth(ctx, active, this.tools.url(ctx, paths.account), json)) return;
    const given = field(input, 'newEmail', 512) ?? field(input, 'email', 512);
    const email = normalizeEmail(given);
    const domains = this.s.config.accounts.allowedDomains;
    if (!email)
      return this.fail(
        ctx,
        input,
        user,
        400,
        'invalid_request',
        'Enter an email address like name@example.com.',
        given,
      );
    if (email === user.email)
      return this.fail(ctx, input, user, 400, 'invalid_request', 'This is your address already.', given);
    if (domains && !domains.some((d) => email.endsWith(`@${d.toLowerCase()}`)))
      return this.fail(ctx, input, user, 400, 'invalid_request', `Use an address at ${domains.join(' or ')}.`, given);
    const verdict = await this.s.throttle.checkEmailChange(user.id);
    if (!verdict.ok)
      return this.fail(
        ctx,
        input,
        user,
        429,
        'too_many_attempts',
        'You asked for a change several times in the last hour. Use the newest message, or try again later.',
        given,
        { 'retry-after': String(verdict.retryAfterSeconds) },
      );
    // Whether the new address is someone else's is looked up in the background: the answer,
    // and the time it takes, are the same either way (security.md #206).
    this.mailer.send(this.linkTask(ctx.site, user, email, ctx.requestId));
    this.mailer.send(this.noticeTask(ctx.site, user, email, false));
    this.s.logger.info(
      { event: 'email_change_requested', userId: user.id, requestId: ctx.requestId },
      'change of email address requested',
    );
    this.s.audit.record({ event: 'email_change_requested', userId: user.id, ctx, detail: { email } });
    if (json)
      return sendJson(ctx.res, 202, {
        ok: true,
        message: `A link is on its way to ${email}. Your address stays ${user.email} until you open it.`,
      });
    redirect(ctx.res, 303, `${ctx.site.origin}${this.tools.url(ctx, paths.account, { email: 'sent' })}`);
  }

  /** The link to the new address, or, when it is another account's, a note saying nothing changed. */
  private linkTask(site: SiteInfo, user: User, email: string, requestId: string) {
    const ttlMs = this.ttlMs;
    return {
      kind: 'email_change' as const,
      userId: user.id,
      prepare: async () => {
        if (!(await this.s.throttle.takeMail(email)).ok) {
          this.s.logger.warn(
            { event: 'mail_suppressed', kind: 'email_change', userId: user.id, reason: 'address_rate_limited' },
            'too many messages to this address this hour',
          );
          return undefined;
        }
        const owner = await this.s.store.users.getByEmail(email);
        if (owner) {
          this.s.logger.info(
            { event: 'email_change_address_taken', userId: user.id, requestId },
            'the new address belongs to another account: its owner is told, nothing changes',
          );
          return {
            to: email,
            fromName: site.title,
            ...emailInUseMail({
              appTitle: site.title,
              newEmail: email,
              loginUrl: `${site.origin}${this.s.prefix}${paths.login}`,
              at: Date.now(),
            }),
          };
        }
        const token = await this.links.tokens.issue(user, 'change_email', ttlMs, email);
        return {
          to: email,
          fromName: site.title,
          ...emailChangeMail({
            appTitle: site.title,
            oldEmail: user.email,
            newEmail: email,
            link: this.links.url(site, 'change', token),
            ttlMs,
          }),
        };
      },
    };
  }

  /** To the old address: a change was asked for (`done` false) or made. */
  private noticeTask(site: SiteInfo, user: User, newEmail: string, done: boolean, oldEmail = user.email) {
    return {
      kind: 'email_change_notice' as const,
      userId: user.id,
      prepare: async () => {
        if (!(await this.s.throttle.takeMail(oldEmail)).ok) return undefined;
        return {
          to: oldEmail,
          fromName: site.title,
          ...emailChangeNoticeMail({
            appTitle: site.title,
            oldEmail,
            newEmail,
            at: Date.now(),
            done,
            forgotUrl: `${site.origin}${this.s.prefix}${paths.forgotPassword}`,
          }),
        };
      },
    };
  }

  /** GET /confirm-email */
  async page(ctx: RequestContext): Promise<void> {
    const checked = await this.links.opened(ctx, 'change');
    if (!checked) return;
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(
      ctx,
      200,
      confirmEmailChangePage({
        appTitle: ctx.site.title,
        csrf: token,
        action: this.tools.url(ctx, paths.confirmEmailChange),
        oldEmail: checked.user.email,
        newEmail: checked.token.email,
      }),
      cookies,
    );
  }

  /** POST /confirm-email */
  async confirm(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const used = await this.links.consume(ctx, 'change', input);
    if (!used.ok) return this.links.problem(ctx, 'change', used.problem, false, input);
    const { user, token } = used;
    const clear = [this.links.clear(ctx, 'change')];
    let changed: User | undefined;
    try {
      changed = await this.s.events.record({ type: 'email_changed', userId: user.id, value: token.email }, (outbox) =>
        this.s.store.users.update(user.id, { email: token.email, emailVerified: true }, outbox),
      );
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err;
      // Taken since the link was sent (a registration meanwhile): only the link's holder, who
      // controls the address, learns it.
      const message = 'This address now belongs to another account, so your address was not changed.';
      this.s.logger.info(
        { event: 'email_change_failed', userId: user.id, reason: 'address_taken', requestId: ctx.requestId },
        'the new address was taken meanwhile',
      );
      this.s.audit.record({
        event: 'email_changed',
        outcome: 'failure',
        userId: user.id,
        ctx,
        detail: { reason: 'address_taken' },
      });
      if (input.kind === 'json') return sendJson(ctx.res, 409, { error: 'email_unavailable', message }, {}, clear);
      return this.tools.html(
        ctx,
        409,
        messagePage({
          appTitle: ctx.site.title,
          heading: 'Your address was not changed',
          message,
          link: { href: this.tools.url(ctx, paths.account), text: 'Your account' },
        }),
        clear,
      );
    }
    if (!changed) return this.links.problem(ctx, 'change', 'invalid', false, input);
    ctx.userId = user.id;
    this.s.logger.info(
      { event: 'email_changed', userId: user.id, requestId: ctx.requestId },
      'email address changed with the link sent to the new address',
    );
    this.s.audit.record({
      event: 'email_changed',
      userId: user.id,
      ctx,
      detail: { from: user.email, email: changed.email },
    });
    this.mailer?.send(this.noticeTask(ctx.site, changed, changed.email, true, user.email));
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true, email: changed.email }, {}, clear);
    redirect(ctx.res, 303, `${ctx.site.origin}${this.tools.url(ctx, paths.account, { email: 'changed' })}`, clear);
  }
}
