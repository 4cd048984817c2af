import type { AuditLog } from '../audit/index.ts';
import { field, type Input } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { readCookie } from '../http/cookies.ts';
import { paths } from '../http/paths.ts';
import { redirect, sendJson, wantsHtml } from '../http/respond.ts';
import type { Logger } from '../log/index.ts';
import type { SafeHtml } from '../pages/html.ts';
import { cspWithFormAction, cspWithScripts } from '../pages/styles.ts';
import type { FormTools } from '../pages/kit.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { Session, Store, User } from '../store/index.ts';
import { noProofPage, passwordProofForm, reauthPage } from './pages.ts';
import type { Accounts } from './service.ts';

/**
 * Re-authentication: sensitive actions (changing the email address, approving a device or an
 * MCP/OAuth client, linking or unlinking a provider; the password change asks for the current password
 * itself) need the session's user to have proved who they are within
 * accounts.reauthenticateAfter. A session records when they last did (Session.authTime: the
 * sign-in, or a later re-authentication); a stolen cookie alone is then not enough for them.
 *
 *   GET  /reauth?rd=<path>   "Confirm it's you": the proofs this user can give (their password;
 *                            signing in again at a linked provider: providers/routes.ts)
 *   POST /reauth             gives one (form: csrf, method, rd and the proof's fields; or JSON
 *                            {method?, password, rd?}); on success the session's auth time is
 *                            now and the browser goes back to rd
 *
 * Features call `requireRecentAuth` before a sensitive action: a browser is sent to /reauth
 * and back, a JSON client gets 401 `reauthentication_required` with where to go. Password
 * attempts here are counted and throttled like sign-in attempts for the account. Other proofs
 * (a passkey, an authenticator code) are added with `addProof`, or, when they have routes of
 * their own (a WebAuthn ceremony), record their success with `proven`.
 */

export const REAUTHENTICATION_REQUIRED = 'reauthentication_required';

/** Whether the session's last proof of identity is at most `windowMs` old at `now`. */
export function isRecent(session: Pick<Session, 'authTime'>, now: number, windowMs: number): boolean {
  return now - session.authTime <= windowMs && session.authTime <= now + 60_000;
}

export type ProofResult =
  | { ok: true; amr: string[] }
  | {
      ok: false;
      status: 400 | 401 | 403 | 409 | 429;
      /** JSON error code, e.g. invalid_credentials, too_many_attempts. */
      error: string;
      message: string;
      retryAfterSeconds?: number;
    };

/** What a proof's part of the /reauth page gets. Its form POSTs to `action` with `method`, `csrf` and `rd`. */
export interface ProofView {
  ctx: RequestContext;
  user: User;
  csrf: string;
  action: string;
  rd: string;
  /** The error of the last attempt with this proof, if any. */
  error?: string;
}

/**
 * One way to re-authenticate (the pending-step hook): shown on /reauth when `available`, and
 * checked by POST /reauth when the form's `method` is its own. The password is built in;
 * the second-factor module adds its own (TOTP, passkey, recovery code).
 */
export interface ReauthProof {
  /** The `method` field value of its POST, e.g. "password", "totp". */
  readonly method: string;
  available(user: User): boolean | Promise<boolean>;
  render(view: ProofView): SafeHtml | Promise<SafeHtml>;
  verify(ctx: RequestContext, input: Input, active: ActiveSession): Promise<ProofResult>;
  /** Origins its form is redirected to (a provider's sign-in), added to the page's CSP form-action. */
  formActions?(): string[];
  /** It runs Gatehouse's own scripts (a passkey button): the page's CSP allows them. */
  scripts?: boolean;
}

/** The gate features take (oauth/, providers/, the email change): the Reauthentication satisfies it. */
export interface RecentAuthGate {
  /**
   * True when the session's user proved who they are recently enough for a sensitive action.
   * Otherwise answers and returns false: a browser is redirected (303) to /reauth and then to
   * `returnTo` (a path on this site, usually the page of the action); a JSON client (`json`,
   * default: the request does not accept HTML) gets 401 `reauthentication_required`.
   */
  requireRecentAuth(ctx: RequestContext, active: ActiveSession, returnTo: string, json?: boolean): boolean;
  /** Whether the session is recent enough, without answering. */
  isRecent(session: Pick<Session, 'authTime'>): boolean;
  /**
   * Records a fresh proof of identity in the session: its auth time is now, and `amr` joins its
   * methods. For proofs that run through routes of their own (a provider, a passkey ceremony).
   */
  proven(session: Session, amr: readonly string[]): Promise<Session>;
}

export interface ReauthDeps {
  logger: Logger;
  audit: AuditLog;
  store: Store;
  sessions: Sessions;
  accounts: Accounts;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  config: { accounts: { reauthenticateAfter: number } };
  now(): number;
}

export class Reauthentication implements RecentAuthGate {
  private readonly s: ReauthDeps;
  private readonly tools: FormTools;
  private readonly proofs: ReauthProof[] = [];

  constructor(deps: ReauthDeps, tools: FormTools) {
    this.s = deps;
    this.tools = tools;
    this.addProof(passwordProof(deps));
  }

  get windowMs(): number {
    return this.s.config.accounts.reauthenticateAfter;
  }

  /** Adds a way to re-authenticate (shown after those added before it). */
  addProof(proof: ReauthProof): this {
    this.proofs.push(proof);
    return this;
  }

  isRecent(session: Pick<Session, 'authTime'>): boolean {
    return isRecent(session, this.s.now(), this.windowMs);
  }

  /** /reauth with its return target, as a path. */
  url(ctx: RequestContext, returnTo: string): string {
    return this.tools.url(ctx, paths.reauth, { rd: this.tools.returnPath(ctx, returnTo) });
  }

  requireRecentAuth(ctx: RequestContext, active: ActiveSession, returnTo: string, json?: boolean): boolean {
    if (this.isRecent(active.session)) return true;
    const where = `${ctx.site.origin}${this.url(ctx, returnTo)}`;
    this.s.logger.info(
      { event: 'reauthentication_required', userId: active.user.id, requestId: ctx.requestId },
      'a sensitive action asks the user to confirm who they are',
    );
    if (json ?? !wantsHtml(ctx.req)) {
      const maxAge = Math.floor(this.windowMs / 1000);
      const message = 'Confirm who you are first: enter your password again, then retry.';
      sendJson(
        ctx.res,
        401,
        { error: REAUTHENTICATION_REQUIRED, message, reauthenticate: where, maxAge },
        {
          // RFC 9470: the authentication event is too old for this action.
          'www-authenticate': `Bearer realm="${ctx.site.origin}", error="insufficient_user_authentication", error_description="${message}", max_age=${maxAge}`,
        },
      );
    } else redirect(ctx.res, 303, where);
    return false;
  }

  async proven(session: Session, amr: readonly string[]): Promise<Session> {
    const authTime = this.s.now();
    const merged = [...new Set([...session.amr, ...amr])];
    await this.s.store.sessions.setAuth(session.idHash, { authTime, amr: merged });
    return { ...session, authTime, amr: merged };
  }

  private async available(user: User): Promise<ReauthProof[]> {
    const ok = await Promise.all(this.proofs.map((p) => p.available(user)));
    return this.proofs.filter((_, i) => ok[i]);
  }

  /** Not signed in: a fresh sign-in is the proof; back to rd after it. */
  private signInFirst(ctx: RequestContext, rd: string, json: boolean): void {
    const login = `${ctx.site.origin}${this.tools.url(ctx, paths.login, { rd: rd === ctx.site.home ? undefined : rd })}`;
    if (json)
      return sendJson(
        ctx.res,
        401,
        { error: 'unauthenticated', message: 'Sign in first.', login },
        { 'www-authenticate': `Bearer realm="${ctx.site.origin}"` },
      );
    redirect(ctx.res, 303, login);
  }

  private async render(
    ctx: RequestContext,
    active: ActiveSession,
    rd: string,
    status: number,
    failed?: { method: string; message: string },
    headers: Record<string, string> = {},
  ): Promise<void> {
    const { token, cookies } = this.tools.csrf(ctx);
    const proofs = await this.available(active.user);
    const action = this.tools.url(ctx, paths.reauth);
    const cancel = this.tools.url(ctx, paths.account);
    if (!proofs.length) {
      const signOut = this.tools.url(ctx, paths.logout, {
        rd: this.tools.url(ctx, paths.login, { rd: rd === ctx.site.home ? undefined : rd }),
      });
      return this.tools.html(
        ctx,
        409,
        noProofPage({ appTitle: ctx.site.title, signOutUrl: signOut, cancelUrl: cancel }),
      );
    }
    const parts = await Promise.all(
      proofs.map((p) =>
        p.render({
          ctx,
          user: active.user,
          csrf: token,
          action,
          rd,
          error: failed?.method === p.method ? failed.message : undefined,
        }),
      ),
    );
    const formActions = [...new Set(proofs.flatMap((p) => p.formActions?.() ?? []))];
    const scripts = proofs.some((p) => p.scripts);
    const csp = scripts || formActions.length ? cspWithFormAction(formActions) : undefined;
    this.tools.html(
      ctx,
      status,
      reauthPage({
        appTitle: ctx.site.title,
        email: active.user.email,
        proofs: parts,
        error: failed?.message,
        cancelUrl: cancel,
      }),
      cookies,
      { ...headers, ...(csp ? { 'content-security-policy': scripts ? cspWithScripts(csp) : csp } : {}) },
    );
  }

  /** GET /reauth */
  async page(ctx: RequestContext): Promise<void> {
    const rd = this.tools.returnPath(ctx, this.tools.queryParam(ctx, 'rd'));
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    const json = !wantsHtml(ctx.req);
    if (found.state !== 'active') return this.signInFirst(ctx, rd, json);
    const active = found.active;
    ctx.userId = active.user.id;
    if (json) {
      const proofs = await this.available(active.user);
      return sendJson(ctx.res, 200, {
        recent: this.isRecent(active.session),
        authTime: new Date(active.session.authTime).toISOString(),
        maxAge: Math.floor(this.windowMs / 1000),
        methods: proofs.map((p) => p.method),
      });
    }
    await this.render(ctx, active, rd, 200);
  }

  /** POST /reauth */
  async submit(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const rd = this.tools.returnPath(ctx, field(input, 'rd', 4096));
    const json = input.kind === 'json';
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (found.state !== 'active') return this.signInFirst(ctx, rd, json);
    const active = found.active;
    ctx.userId = active.user.id;
    const method = field(input, 'method', 32) ?? 'password';
    const proof = (await this.available(active.user)).find((p) => p.method === method);
    const result: ProofResult = proof
      ? await proof.verify(ctx, input, active)
      : {
          ok: false,
          status: 400,
          error: 'unsupported_method',
          message: 'This way of confirming who you are is not available for your account.',
        };
    if (!result.ok) {
      this.s.logger.info(
        {
          event: 'reauthentication_failed',
          userId: active.user.id,
          method,
          reason: result.error,
          requestId: ctx.requestId,
        },
        'a re-authentication was refused',
      );
      this.s.audit.record({
        event: 'reauthentication_failed',
        outcome: result.status === 429 ? 'throttled' : 'failure',
        userId: active.user.id,
        ctx,
        detail: { method, reason: result.error },
      });
      const headers: Record<string, string> = result.retryAfterSeconds
        ? { 'retry-after': String(result.retryAfterSeconds) }
        : {};
      if (json) return sendJson(ctx.res, result.status, { error: result.error, message: result.message }, headers);
      return this.render(ctx, active, rd, result.status, { method, message: result.message }, headers);
    }
    const session = await this.proven(active.session, result.amr);
    this.s.logger.info(
      { event: 'reauthenticated', userId: active.user.id, method, requestId: ctx.requestId },
      'the user confirmed who they are',
    );
    this.s.audit.record({ event: 'reauthenticated', userId: active.user.id, ctx, detail: { method } });
    if (json)
      return sendJson(ctx.res, 200, {
        ok: true,
        authTime: new Date(session.authTime).toISOString(),
        redirect: rd,
      });
    redirect(ctx.res, 303, ctx.site.origin + rd);
  }
}

/** The built-in proof: the account's password, counted like a sign-in attempt. */
function passwordProof(deps: ReauthDeps): ReauthProof {
  return {
    method: 'password',
    available: (user) => user.passwordHash !== null,
    render: (v) => passwordProofForm({ ...v, email: v.user.email }),
    async verify(ctx, input, active) {
      const password = field(input, 'password', 8192) ?? '';
      if (!password) return { ok: false, status: 400, error: 'invalid_request', message: 'Enter your password.' };
      const device = readCookie(ctx.req.headers.cookie, ctx.site.cookies.device);
      const checked = await deps.accounts.checkPassword(active.user, password, ctx.ip, device);
      if (checked.ok) return { ok: true, amr: ['pwd'] };
      return checked.status === 429
        ? {
            ok: false,
            status: 429,
            error: 'too_many_attempts',
            message: checked.error,
            retryAfterSeconds: checked.retryAfterSeconds,
          }
        : { ok: false, status: 401, error: 'invalid_credentials', message: checked.error };
    },
  };
}
