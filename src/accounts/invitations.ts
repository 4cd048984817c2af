import type { AuditLog } from '../audit/index.ts';
import type { Config } from '../config/schema.ts';
import { normalizeEmail } from '../config/email.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import { field, type Input } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { deviceCookie, type SecondFactorGate } from './sign-in.ts';
import { paths } from '../http/paths.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { Logger } from '../log/index.ts';
import type { MailTask } from '../mail/mailer.ts';
import { invitationMail } from '../mail/messages.ts';
import type { SafeHtml } from '../pages/html.ts';
import { CSP, cspWithScripts } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { Sessions } from '../sessions/index.ts';
import { basePath } from '../sites/index.ts';
import { StoreConflictError, type Store, type User } from '../store/index.ts';
import type { EmailTokens } from './email-tokens.ts';
import type { MailedLinks } from './mailed-links.ts';
import { checkDisplayName } from './names.ts';
import { acceptInvitationPage } from './pages.ts';
import { hashPassword, passwordProblem } from './passwords.ts';
import type { SignInNotices } from './sign-in-notices.ts';
import type { Throttle } from './throttle.ts';

/**
 * Invitations (accounts.registration: invite, though they work in every mode):
 *   gatehouse users invite <email> [--groups a,b] [--name N]
 *                       makes the user (no password, address not yet verified, the groups) and
 *                       a single-use link, mailed, or printed when no email is configured; again
 *                       for a pending invitation: a new link, the old one superseded
 *   GET  /invite?token= the link (mailed-links.ts: nothing changes on GET)
 *   GET  /invite        "Welcome": choose a password (and a name)
 *   POST /invite        sets it (form, or JSON {token, password, name?}): the address is verified
 *                       by the link, and the invitee is signed in
 * The link is hashed at rest like every mailed token, expires (accounts.invitationTtl, 7 days),
 * works once, and dies when a password is set any other way. An address that has an account
 * already is refused, clearly: only operators invite (security.md #207).
 */

/** The invitation part that needs no HTTP: the CLI invites through it. */
export class Invitations {
  private readonly store: Store;
  private readonly tokens: EmailTokens;
  private readonly config: Config;

  constructor(store: Store, tokens: EmailTokens, config: Config) {
    this.store = store;
    this.tokens = tokens;
    this.config = config;
  }

  /** The link of an invitation token: on publicUrl's site, as every mailed link. */
  link(token: string): string {
    return `${new URL(this.config.publicUrl).origin}${basePath(this.config.publicUrl)}${this.config.authPrefix}${paths.invite}?token=${token}`;
  }

  get ttlMs(): number {
    return this.config.accounts.invitationTtl;
  }

  /**
   * Invites `email`: a new user, or a new link for one whose invitation is pending (no
   * password, no verified address, no provider sign-in). Refused when the address has an
   * account in use.
   */
  async invite(input: {
    email: string | undefined;
    groups?: string[];
    name?: string;
  }): Promise<{ ok: true; user: User; token: string; link: string; again: boolean } | { ok: false; error: string }> {
    const email = normalizeEmail(input.email);
    if (!email) return { ok: false, error: 'give a valid email address, like ann@example.com' };
    const named = checkDisplayName(input.name);
    if (!named.ok) return { ok: false, error: `--name: ${named.error}` };
    const existing = await this.store.users.getByEmail(email);
    let user: User;
    let again = false;
    if (existing) {
      if (!(await this.pending(existing)))
        return {
          ok: false,
          error: `${email} already has an account${existing.disabled ? ' (disabled: gatehouse users enable)' : ''}: nothing to invite. They sign in, or reset their password.`,
        };
      again = true;
      user =
        (await this.store.users.update(existing.id, {
          ...(input.groups ? { groups: input.groups } : {}),
          ...(named.name ? { name: named.name } : {}),
        })) ?? existing;
    } else {
      try {
        user = await this.store.users.create({
          email,
          name: named.name,
          groups: input.groups ?? [],
          passwordHash: null,
          emailVerified: false,
        });
      } catch (err) {
        if (err instanceof StoreConflictError) return { ok: false, error: `${email} already has an account` };
        throw err;
      }
    }
    const token = await this.tokens.issue(user, 'invite', this.ttlMs);
    return { ok: true, user, token, link: this.link(token), again };
  }

  /** An invited user who has not accepted yet: see awaitingAcceptance. */
  pending(user: User): Promise<boolean> {
    return awaitingAcceptance(this.store, user);
  }

  /** The message of an invitation, for the mailer. */
  mail(user: User, link: string, appTitle: string): MailTask {
    const ttlMs = this.ttlMs;
    return {
      kind: 'invitation',
      userId: user.id,
      prepare: async () => ({
        to: user.email,
        fromName: appTitle,
        ...invitationMail({ appTitle, email: user.email, link, ttlMs }),
      }),
    };
  }
}

/**
 * An invited user who has not accepted (whether or not the link still works): no password,
 * address unverified, no provider identity, not disabled. Such a user cannot sign in at all.
 */
export async function awaitingAcceptance(store: Store, user: User): Promise<boolean> {
  if (user.passwordHash || user.emailVerified || user.disabled) return false;
  return (await store.identities.listByUser(user.id)).length === 0;
}

/** What the invitation pages use (the composition root's Services satisfies it). */
export interface InvitationPageDeps {
  config: Config;
  logger: Logger;
  audit: AuditLog;
  store: Store;
  sessions: Sessions;
  throttle: Throttle;
  diagnosis: Diagnosis;
  notices: SignInNotices;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
}

/**
 * Another way to accept, shown on the invitation page below the password form (the passkey
 * option of the second-factor module). Its own routes finish with InvitationPage.accept.
 */
export type InviteOption = (view: { ctx: RequestContext; user: User; csrf: string }) => SafeHtml | undefined;

/** The invitation link's pages. */
export class InvitationPage {
  private readonly s: InvitationPageDeps;
  private readonly tools: FormTools;
  private readonly links: MailedLinks;
  private readonly options: InviteOption[] = [];

  constructor(deps: InvitationPageDeps, tools: FormTools, links: MailedLinks) {
    this.s = deps;
    this.tools = tools;
    this.links = links;
  }

  private secondFactor: SecondFactorGate | undefined;

  /** Second factors (mfa/): with accounts.mfa: required, the invitee enrols one before any session. */
  useSecondFactor(gate: SecondFactorGate): this {
    this.secondFactor = gate;
    return this;
  }

  /** Adds another way to accept to the page (e.g. a passkey). */
  addOption(option: InviteOption): this {
    this.options.push(option);
    return this;
  }

  private render(
    ctx: RequestContext,
    user: User,
    status: number,
    errors: Record<string, string | undefined> = {},
    name?: string,
  ): void {
    const { token, cookies } = this.tools.csrf(ctx);
    const options = this.options
      .map((o) => o({ ctx, user, csrf: token }))
      .filter((o): o is SafeHtml => o !== undefined);
    this.tools.html(
      ctx,
      status,
      acceptInvitationPage({
        appTitle: ctx.site.title,
        csrf: token,
        action: this.tools.url(ctx, paths.invite),
        email: user.email,
        name: name ?? user.name ?? undefined,
        errors,
        minPasswordLength: this.s.config.accounts.minPasswordLength,
        options,
      }),
      cookies,
      // Another way to accept may run Gatehouse's own script (the passkey button).
      options.length ? { 'content-security-policy': cspWithScripts(CSP) } : {},
    );
  }

  /** GET /invite */
  async page(ctx: RequestContext): Promise<void> {
    const checked = await this.links.opened(ctx, 'invite');
    if (!checked) return;
    this.render(ctx, checked.user, 200);
  }

  /** POST /invite: the password form. */
  async submit(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const checked = await this.links.check(ctx, 'invite', input);
    if (!checked.ok) return this.links.problem(ctx, 'invite', checked.problem, false, input);
    const user = checked.user;
    const password = field(input, 'password', 8192) ?? '';
    const givenName = field(input, 'name', 512);
    const errors: Record<string, string> = {};
    const problem = passwordProblem(password, {
      minLength: this.s.config.accounts.minPasswordLength,
      email: user.email,
    });
    if (problem) errors.password = problem;
    const named = checkDisplayName(givenName);
    if (!named.ok) errors.name = named.error;
    if (Object.keys(errors).length) {
      if (input.kind === 'json') {
        const message = Object.values(errors)[0];
        return sendJson(ctx.res, 400, { error: 'invalid_request', message, fields: errors });
      }
      return this.render(ctx, user, 400, errors, givenName);
    }
    // Hashed before the link is used up: a busy hasher (503) leaves the link working.
    const passwordHash = await hashPassword(password);
    await this.accept(ctx, input, { passwordHash, name: named.ok ? named.name : null, amr: ['pwd'] });
  }

  /**
   * Uses the invitation of this request (the cookie, or `token` in a JSON body) and finishes it:
   * the password (if any) is set, the address is verified by the link, the invitee is signed in
   * and sent to the start page. For other ways to accept (addOption), after their own proof.
   */
  async accept(
    ctx: RequestContext,
    input: Input,
    how: { passwordHash: string | null; name?: string | null; amr: string[] },
  ): Promise<void> {
    const used = await this.links.consume(ctx, 'invite', input);
    if (!used.ok) return this.links.problem(ctx, 'invite', used.problem, false, input);
    const user =
      (await this.s.store.users.update(used.user.id, {
        emailVerified: true,
        ...(how.passwordHash ? { passwordHash: how.passwordHash } : {}),
        ...(how.name ? { name: how.name } : {}),
      })) ?? used.user;
    ctx.userId = user.id;
    // Recorded once the link is used, also when a second factor is asked next (the invitation is spent).
    this.s.audit.record({
      event: 'invitation_accepted',
      userId: user.id,
      ctx,
      detail: { method: how.passwordHash ? 'password' : 'passkey' },
    });
    const cookie = ctx.site.session;
    const device = deviceCookie(ctx, this.s.throttle.newDeviceCookie(user.email));
    // The browser that accepted is the account's first: no new-sign-in notice for it.
    const known = this.s.notices.seen(ctx, user, how.amr, { first: true });
    if (
      await this.secondFactor?.intercept(ctx, input, user, how.amr, ctx.site.home, [
        this.links.clear(ctx, 'invite'),
        device,
        known,
      ])
    )
      return;
    const { setCookie } = await this.s.sessions.create(user, ctx.site.origin, cookie, {
      amr: how.amr,
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, cookie),
    });
    this.s.logger.info(
      { event: 'invitation_accepted', userId: user.id, requestId: ctx.requestId },
      'invitation accepted; user signed in',
    );
    const cookies = [
      this.links.clear(ctx, 'invite'),
      setCookie,
      // The browser that accepted is its owner's, as after a registration (security.md #42).
      device,
      this.s.diagnosis.signedIn(ctx.site, ctx.req),
      known,
    ];
    const home = ctx.site.home;
    if (input.kind === 'json')
      return sendJson(
        ctx.res,
        201,
        {
          user: { id: user.id, email: user.email, emailVerified: true, name: user.name, groups: user.groups },
          redirect: home,
        },
        {},
        cookies,
      );
    redirect(ctx.res, 303, ctx.site.origin + home, cookies);
  }
}
