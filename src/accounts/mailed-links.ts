import { normalizeEmail } from '../config/email.ts';
import { field, type Input } from '../http/body.ts';
import { expireCookie, readCookie, serializeCookie } from '../http/cookies.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { Config } from '../config/schema.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Logger } from '../log/index.ts';
import type { MailKind, MailTask } from '../mail/mailer.ts';
import { type Rendered, resetMail, signInLinkMail } from '../mail/messages.ts';
import { messagePage } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import type { EmailTokenPurpose, Store } from '../store/index.ts';
import type { EmailTokens, LinkCheck, LinkProblem } from './email-tokens.ts';
import { describeLinkProblem } from './pages.ts';
import type { Throttle, Verdict } from './throttle.ts';

/**
 * How a link from a message is opened, for every kind (verify-email, reset-password, confirm-email,
 * invite, sign-in-link/open):
 *
 *   GET  <route>?token=T   checks T (changes nothing: mail scanners fetch links), keeps it in a
 *                          short-lived HttpOnly cookie scoped to <route>, and 303s to <route>
 *                          without it. The token leaves the address bar, the history and every
 *                          Referer; this answer itself has Referrer-Policy: no-referrer.
 *   GET  <route>           the page (a confirm button, or the new-password form), read from the cookie
 *   POST <route>           does it: CSRF-checked like every form, the token from the cookie
 *                          (or, for SPAs, `token` in a JSON body), used once
 *
 * (A page with the token still in its URL would need "no-referrer", and under it browsers send
 * `Origin: null` with the form's POST, which the cross-site check rightly refuses.)
 */

/** A JSON error answer in the shape of the other own routes: {error, message, fields?}. */
export function sendErrors(
  ctx: RequestContext,
  status: number,
  code: string,
  errors: Record<string, string | undefined>,
  headers: Record<string, string> = {},
): void {
  const { form, ...fields } = errors;
  sendJson(
    ctx.res,
    status,
    { error: code, message: form ?? Object.values(fields)[0], ...(Object.keys(fields).length ? { fields } : {}) },
    headers,
  );
}

/** What mailed links use (the composition root's Services satisfies it). */
export interface MailedLinksDeps {
  config: Config;
  logger: Logger;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  store: Store;
  audit: AuditLog;
  throttle: Pick<Throttle, 'takeMail'>;
}

export type LinkKind = 'verify' | 'reset' | 'change' | 'invite' | 'signin';
type Kind = LinkKind;

const PURPOSE: Record<Kind, EmailTokenPurpose> = {
  verify: 'verify_email',
  reset: 'reset_password',
  change: 'change_email',
  invite: 'invite',
  signin: 'sign_in',
};
const ROUTE: Record<Kind, string> = {
  verify: paths.verifyEmail,
  reset: paths.resetPassword,
  change: paths.confirmEmailChange,
  invite: paths.invite,
  signin: paths.openSignInLink,
};
/** Where the page of a link that does not work points to. */
const AGAIN: Record<Kind, { route: string; text: string; heading: string }> = {
  verify: { route: paths.verifyEmail, text: 'Ask for a new link', heading: 'This link does not work' },
  reset: { route: paths.forgotPassword, text: 'Ask for a new link', heading: 'This reset link does not work' },
  change: { route: paths.account, text: 'Your account', heading: 'This link does not work' },
  invite: { route: paths.login, text: 'Sign in', heading: 'This invitation does not work' },
  signin: { route: paths.signInLink, text: 'Ask for a new link', heading: 'This sign-in link does not work' },
};

/** The page of a link's route opened without its cookie (opened()): what it is for. */
const NEEDED: Record<Exclude<Kind, 'verify'>, { heading: string; message: string }> = {
  reset: {
    heading: 'Choose a new password',
    message: 'This page needs the link from the password-reset message. Open the link in the message again.',
  },
  change: {
    heading: 'Confirm your new email address',
    message: 'This page needs the link from the message sent to your new address. Open the link again.',
  },
  invite: {
    heading: 'Accept your invitation',
    message: 'This page needs the link from your invitation. Open the link in the message again.',
  },
  signin: {
    heading: 'Sign in with a link',
    message: 'This page needs the link from the sign-in message. Open the link in the message again.',
  },
};

/** The links asked for by address (requestTask): the message, its kind, and the event that records the request. */
type RequestKind = 'reset' | 'signin';
const REQUESTED: Record<
  RequestKind,
  {
    mail: MailKind;
    event: 'password_reset_requested' | 'sign_in_link_requested';
    message: (m: { appTitle: string; email: string; link: string; ttlMs: number }) => Rendered;
    /** The form's route: its ?sent=1 page follows the request. */
    route: string;
  }
> = {
  reset: {
    mail: 'password_reset',
    event: 'password_reset_requested',
    message: resetMail,
    route: paths.forgotPassword,
  },
  signin: { mail: 'sign_in_link', event: 'sign_in_link_requested', message: signInLinkMail, route: paths.signInLink },
};

/** The cookie lives at most this long: the page is opened right after the link. */
const COOKIE_MAX_AGE_S = 3600;

export class MailedLinks {
  private readonly s: MailedLinksDeps;
  private readonly tools: FormTools;
  readonly tokens: EmailTokens;

  constructor(deps: MailedLinksDeps, tools: FormTools, tokens: EmailTokens) {
    this.s = deps;
    this.tools = tools;
    this.tokens = tokens;
  }

  /**
   * The link to mail: built from the site's origin (publicUrl), never from the request's Host.
   * `rd`: where the page goes after it (a path of the site, checked again when it is used).
   */
  url(site: SiteInfo, kind: Kind, token: string, rd?: string): string {
    return `${site.origin}${this.s.prefix}${ROUTE[kind]}?token=${token}${rd ? `&rd=${encodeURIComponent(rd)}` : ''}`;
  }

  private cookie(ctx: RequestContext, kind: Kind): { name: string; path: string; secure: boolean } {
    // __Secure-, not __Host-: the cookie is scoped to its one route, and __Host- requires Path=/.
    return {
      name: `${ctx.site.secure ? '__Secure-' : ''}${this.s.config.sessions.cookieName}-${kind}`,
      path: `${this.s.prefix}${ROUTE[kind]}`,
      secure: ctx.site.secure,
    };
  }

  clear(ctx: RequestContext, kind: Kind): string {
    const c = this.cookie(ctx, kind);
    return expireCookie(c.name, { secure: c.secure, path: c.path });
  }

  /**
   * A GET of the route with ?token=: answers (the redirect, or the page saying what is wrong
   * with the link) and returns true; false when there is no token in the URL.
   */
  async landing(ctx: RequestContext, kind: Kind): Promise<boolean> {
    const token = this.tools.queryParam(ctx, 'token');
    if (token === undefined) return false;
    const checked = await this.tokens.check(token, PURPOSE[kind]);
    if (!checked.ok) {
      this.problem(ctx, kind, checked.problem, true);
      return true;
    }
    const c = this.cookie(ctx, kind);
    const maxAge = Math.min(COOKIE_MAX_AGE_S, Math.ceil((checked.token.expiresAt - Date.now()) / 1000));
    // A return path stays in the address (not a secret), if it is one of the site's.
    const rd = this.tools.returnTarget(ctx, this.tools.queryParam(ctx, 'rd'));
    redirect(ctx.res, 303, `${ctx.site.origin}${c.path}${rd ? `?rd=${encodeURIComponent(rd)}` : ''}`, [
      serializeCookie(c.name, token, { secure: c.secure, path: c.path, maxAgeSeconds: maxAge }),
    ]);
    return true;
  }

  /**
   * The background half of a request for a link by address (forgot-password, sign-in links):
   * whose address it is (an account that is not disabled), recorded in the audit trail and the
   * log (`known`: for the operator only), and its link mailed, or nothing. Looked up here, off the
   * request's path, so that nothing the answer waits for depends on the account (security.md #41).
   */
  private requestTask(o: {
    kind: RequestKind;
    from: RequestContext;
    email: string;
    ttlMs: number;
    rd?: string;
  }): MailTask {
    const { ip, requestId, site } = o.from;
    const userAgent = o.from.req.headers['user-agent'] ?? null;
    const { mail, event, message } = REQUESTED[o.kind];
    const task: MailTask = {
      kind: mail,
      prepare: async () => {
        const user = await this.s.store.users.getByEmail(o.email);
        const account = user && !user.disabled ? user : undefined;
        task.userId = account?.id;
        this.s.audit.record({
          event,
          outcome: account ? 'success' : 'unknown_account',
          userId: account?.id,
          ip,
          userAgent,
        });
        this.s.logger.info(
          { event, userId: account?.id, known: account !== undefined, requestId },
          event.replaceAll('_', ' '),
        );
        if (!account) return undefined;
        if (!(await this.s.throttle.takeMail(account.email)).ok) {
          this.s.logger.warn(
            { event: 'mail_suppressed', kind: mail, userId: account.id, reason: 'address_rate_limited' },
            'too many messages to this address this hour',
          );
          return undefined;
        }
        const token = await this.tokens.issue(account, PURPOSE[o.kind], o.ttlMs);
        return {
          to: account.email,
          fromName: site.title,
          ...message({
            appTitle: site.title,
            email: account.email,
            link: this.url(site, o.kind, token, o.rd),
            ttlMs: o.ttlMs,
          }),
        };
      },
    };
    return task;
  }

  /**
   * GET of a link's route: the landing of `?token=` (landing()), else the token kept in the
   * cookie, checked. Returns the checked link, or undefined when this has answered: the landing,
   * the page of a link that does not work, or, without the cookie (straight here, or a browser
   * that does not keep cookies), a 400 page that says so.
   */
  async opened(
    ctx: RequestContext,
    kind: Exclude<Kind, 'verify'>,
  ): Promise<Extract<LinkCheck, { ok: true }> | undefined> {
    if (await this.landing(ctx, kind)) return undefined;
    if (this.tokenOf(ctx, kind) === undefined) {
      const again = AGAIN[kind];
      this.tools.html(
        ctx,
        400,
        messagePage({
          appTitle: ctx.site.title,
          ...NEEDED[kind],
          hint: 'If you see this again after opening the link, your browser is not keeping cookies for this site: allow them, then open the link once more.',
          link: { href: `${this.s.prefix}${again.route}`, text: again.text },
        }),
      );
      return undefined;
    }
    const checked = await this.check(ctx, kind);
    if (checked.ok) return checked;
    this.problem(ctx, kind, checked.problem, false);
    return undefined;
  }

  /**
   * POST of a form that asks for a link by address (forgot-password, sign-in links): the same
   * status, body and headers for every well-formed address, after the same work: the throttle
   * (`limit`, keyed by the address, not the account) and one message queued (requestTask, which
   * looks the account up in the background), so that nothing the answer waits for, nor its
   * timing, depends on the account (security.md #41). `form` renders the form again with errors.
   */
  async answerRequest(
    ctx: RequestContext,
    input: Input,
    o: {
      kind: RequestKind;
      mailer: { send(task: MailTask): unknown };
      ttlMs: number;
      rd?: string;
      limit: (ip: string, email: string) => Promise<Verdict>;
      tooMany: string;
      /** What the JSON answer says, to every address alike. */
      sent: string;
      form: (csrf: string, errors: Record<string, string>, given: string | undefined) => string;
    },
  ): Promise<void> {
    const given = field(input, 'email', 512);
    const email = normalizeEmail(given);
    const fail = (status: number, errors: Record<string, string>, headers: Record<string, string> = {}) => {
      if (input.kind === 'json')
        return sendErrors(ctx, status, status === 429 ? 'too_many_attempts' : 'invalid_request', errors, headers);
      this.tools.html(ctx, status, o.form(this.tools.csrf(ctx).token, errors, given), [], headers);
    };
    if (!email) return fail(400, { email: 'Enter an email address like name@example.com.' });
    const verdict = await o.limit(ctx.ip, email);
    if (!verdict.ok) return fail(429, { form: o.tooMany }, { 'retry-after': String(verdict.retryAfterSeconds) });
    o.mailer.send(this.requestTask({ kind: o.kind, from: ctx, email, ttlMs: o.ttlMs, rd: o.rd }));
    if (input.kind === 'json') return sendJson(ctx.res, 202, { ok: true, message: o.sent });
    redirect(ctx.res, 303, `${ctx.site.origin}${this.s.prefix}${REQUESTED[o.kind].route}?sent=1`);
  }

  /** The token of this request: the JSON body's `token`, else the route's cookie. */
  tokenOf(ctx: RequestContext, kind: Kind, input?: Input): string | null | undefined {
    if (input?.kind === 'json') return field(input, 'token', 128);
    return readCookie(ctx.req.headers.cookie, this.cookie(ctx, kind).name);
  }

  check(ctx: RequestContext, kind: Kind, input?: Input): Promise<LinkCheck> {
    return this.tokens.check(this.tokenOf(ctx, kind, input), PURPOSE[kind]);
  }

  consume(ctx: RequestContext, kind: Kind, input?: Input): Promise<LinkCheck> {
    return this.tokens.consume(this.tokenOf(ctx, kind, input), PURPOSE[kind]);
  }

  /** The one page (or JSON) for a link that does not work; logged as `email_link_refused`. */
  problem(ctx: RequestContext, kind: Kind, problem: LinkProblem, inUrl: boolean, input?: Input): void {
    const { status, message, hint } = describeLinkProblem(problem, kind);
    this.s.logger.info(
      { event: 'email_link_refused', purpose: PURPOSE[kind], problem, requestId: ctx.requestId },
      'a mailed link was refused',
    );
    if (input?.kind === 'json') return sendJson(ctx.res, status, { error: `link_${problem}`, message });
    const again = AGAIN[kind];
    const link = { href: `${this.s.prefix}${again.route}`, text: again.text };
    const heading = again.heading;
    // The URL may hold the token: no referrer leaves this page; a stale cookie goes.
    this.tools.html(
      ctx,
      status,
      messagePage({ appTitle: ctx.site.title, heading, message, hint, link }),
      inUrl ? [] : [this.clear(ctx, kind)],
      { 'referrer-policy': 'no-referrer' },
    );
  }
}
