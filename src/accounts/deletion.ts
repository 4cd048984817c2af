import type { AuditLog } from '../audit/index.ts';
import { normalizeEmail } from '../config/email.ts';
import type { Config } from '../config/schema.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { AppEventSink } from '../events/index.ts';
import { field, type Input } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import { sendJson } from '../http/respond.ts';
import type { Logger } from '../log/index.ts';
import type { Mailer, MailTask } from '../mail/mailer.ts';
import { accountDeletedMail } from '../mail/messages.ts';
import { messagePage, type AccountSectionView } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { Store, User } from '../store/index.ts';
import { refuseAccountForm, type SessionGate } from './account-page.ts';
import { deleteAccountForm, deleteAccountPage } from './pages.ts';
import type { RecentAuthGate } from './reauth.ts';
import type { Throttle } from './throttle.ts';

/** What the deletion uses (the composition root's Services satisfies it). */
export interface AccountDeletionDeps {
  config: Config;
  logger: Logger;
  audit: AuditLog;
  store: Store;
  sessions: Sessions;
  throttle: Throttle;
  diagnosis: Pick<Diagnosis, 'clearSignedIn'>;
  /** The apps that take events are told (events/). */
  events: AppEventSink;
}

/**
 * Deletes the user and everything of theirs: the store's cascade takes their sessions (on
 * every site), provider links and tokens, CLI/MCP logins (grants, device codes), second
 * factors, pending mailed links and their provider sessions. The audit trail keeps its events
 * (by user id). Used by the account page's form and by `gatehouse users delete`. When email is
 * set up, the address is told (a deletion by someone with a stolen session and the password is
 * then noticed). False when there was no such user.
 */
export async function deleteUser(
  d: { store: Store; throttle: Pick<Throttle, 'takeMail'>; events: AppEventSink },
  user: User,
  o: {
    mailer: Mailer | undefined;
    appTitle: string;
    by: 'user' | 'operator';
    /** Told once whether the notice was sent: false also without a deletion or a mailer (the CLI waits for it). */
    settled?: (sent: boolean) => void;
  },
): Promise<boolean> {
  const deleted = await d.events.record({ type: 'account_deleted', userId: user.id }, (outbox) =>
    d.store.users.delete(user.id, outbox),
  );
  if (!deleted) {
    o.settled?.(false);
    return false;
  }
  if (o.mailer?.send({ ...deletedNotice(d.throttle, user, o.appTitle, o.by), settled: o.settled }) !== true)
    o.settled?.(false);
  return true;
}

function deletedNotice(
  throttle: Pick<Throttle, 'takeMail'>,
  user: User,
  appTitle: string,
  by: 'user' | 'operator',
): MailTask {
  const at = Date.now();
  return {
    kind: 'account_deleted',
    userId: user.id,
    prepare: async () => {
      if (!(await throttle.takeMail(user.email)).ok) return undefined;
      return { to: user.email, fromName: appTitle, ...accountDeletedMail({ appTitle, email: user.email, at, by }) };
    },
  };
}

/**
 * A signed-in user deletes their own account (`accounts.selfDeletion`, default true):
 *   the account page's "Delete account" section: what goes, and a form to type the address
 *   POST /account/delete  form field `confirm` (or JSON {confirm}): the account's address, as a
 *                         check that this is meant; needs a recent sign-in or re-authentication
 *                         (reauth.ts), like every sensitive action (security.md #235)
 * On success the session cookie is cleared and the answer says it is done (a page, or JSON).
 */
export class AccountDeletion {
  private readonly s: AccountDeletionDeps;
  private readonly tools: FormTools;
  private readonly account: SessionGate;
  private readonly reauth: RecentAuthGate;
  private readonly mailer: Mailer | undefined;

  constructor(
    deps: AccountDeletionDeps,
    tools: FormTools,
    account: SessionGate,
    reauth: RecentAuthGate,
    mailer: Mailer | undefined,
  ) {
    this.s = deps;
    this.tools = tools;
    this.account = account;
    this.reauth = reauth;
    this.mailer = mailer;
  }

  private get enabled(): boolean {
    return this.s.config.accounts.selfDeletion;
  }

  /** The "Delete account" section of the account page (last), when users may delete themselves. */
  async accountSection(
    ctx: RequestContext,
    active: ActiveSession,
    csrf: string,
  ): Promise<AccountSectionView | undefined> {
    if (!this.enabled) return undefined;
    return {
      id: 'delete-account',
      heading: 'Delete account',
      body: deleteAccountForm({ csrf, action: this.tools.url(ctx, paths.deleteAccount), email: active.user.email }),
    };
  }

  private fail(ctx: RequestContext, input: Input, user: User, status: number, code: string, message: string): void {
    if (input.kind === 'json') return sendJson(ctx.res, status, { error: code, message, fields: { confirm: message } });
    this.tools.html(
      ctx,
      status,
      deleteAccountPage({
        appTitle: ctx.site.title,
        csrf: this.tools.csrf(ctx).token,
        action: this.tools.url(ctx, paths.deleteAccount),
        email: user.email,
        errors: { confirm: message },
        accountUrl: this.tools.url(ctx, paths.account),
      }),
    );
  }

  /** POST /account/delete */
  async delete(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    const { user } = active;
    const json = input.kind === 'json';
    if (!this.enabled)
      return refuseAccountForm(this.tools, ctx, json, {
        status: 403,
        error: 'self_deletion_disabled',
        heading: 'Delete your account',
        message: `Accounts of ${ctx.site.title} are deleted by an administrator. Ask them.`,
      });
    // A stolen session alone cannot delete the account (security.md #235).
    if (!this.reauth.requireRecentAuth(ctx, active, this.tools.url(ctx, paths.account), json)) return;
    const typed = normalizeEmail(field(input, 'confirm', 512));
    if (typed !== user.email)
      return this.fail(
        ctx,
        input,
        user,
        400,
        'invalid_request',
        `Type your email address, ${user.email}, to confirm that the account is to be deleted.`,
      );
    const deleted = await deleteUser(this.s, user, {
      mailer: this.mailer,
      appTitle: ctx.site.title,
      by: 'user',
    });
    if (deleted) {
      this.s.audit.record({ event: 'account_deleted', userId: user.id, ctx });
      this.s.logger.info(
        { event: 'account_deleted', userId: user.id, requestId: ctx.requestId },
        'account deleted by its user',
      );
    }
    // The session went with the account: its cookie (and the sign-in marker) are cleared too.
    const cleared = [this.s.sessions.clear(ctx.site.session), this.s.diagnosis.clearSignedIn(ctx.site)];
    if (json) return sendJson(ctx.res, 200, { ok: true, deleted: true }, {}, cleared);
    this.tools.html(
      ctx,
      200,
      messagePage({
        appTitle: ctx.site.title,
        heading: 'Your account was deleted',
        message: `The account ${user.email} is gone, with its sign-in methods and logins, and you are signed out everywhere.`,
        hint: `What you stored in ${ctx.site.title} itself is its to keep or delete.`,
        link: { href: `${ctx.site.origin}${ctx.site.home}`, text: `Go to ${ctx.site.title}` },
      }),
      cleared,
    );
  }
}
