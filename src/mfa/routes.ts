import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { SessionGate } from '../accounts/account-page.ts';
import type { SignInNotices } from '../accounts/sign-in-notices.ts';
import type { AuditLog, AuditName } from '../audit/index.ts';
import type { InvitationPage } from '../accounts/invitations.ts';
import type { MailedLinks } from '../accounts/mailed-links.ts';
import type { ReauthProof, RecentAuthGate } from '../accounts/reauth.ts';
import { publicUser, type SecondFactorGate } from '../accounts/sign-in.ts';
import type { Accounts } from '../accounts/service.ts';
import type { Throttle } from '../accounts/throttle.ts';
import type { Config } from '../config/schema.ts';
import { field, type Input } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { HttpError } from '../http/errors.ts';
import { paths } from '../http/paths.ts';
import { redirect, sendJson, wantsHtml } from '../http/respond.ts';
import type { Logger } from '../log/index.ts';
import { CSP, cspWithScripts, messagePage, type AccountSectionView } from '../pages/index.ts';
import { html, type SafeHtml } from '../pages/html.ts';
import type { FormTools } from '../pages/kit.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { MfaPending, Store, User } from '../store/index.ts';
import { Factors, hasSecondFactor, MFA, type MfaSecrets, withFactor } from './factors.ts';
import {
  factorsSection,
  passkeyButton,
  reauthCodeForm,
  recoveryCodesPage,
  type Scripts,
  secondFactorPage,
  totpEnrolPage,
} from './pages.ts';
import { passkeyAmr, Passkeys, passkeysPossible } from './passkeys.ts';
import { Pending } from './pending.ts';

/** What the second-factor routes use (the composition root's Services satisfies it). */
export interface MfaDeps {
  config: Config;
  logger: Logger;
  store: Store;
  sessions: Sessions;
  secrets: MfaSecrets;
  throttle: Pick<Throttle, 'attemptSecondFactor' | 'secondFactorSucceeded'>;
  /** Registration's checks, for an account made with a passkey instead of a password. */
  accounts: Pick<Accounts, 'checkSignUp' | 'createWithoutPassword'>;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  diagnosis: { signedIn(site: RequestContext['site'], req: RequestContext['req']): string };
  /** The audit trail: factors added and removed, second-factor and passkey sign-ins (never a secret). */
  audit: AuditLog;
  notices: Pick<SignInNotices, 'seen'>;
}

/** How a proof is recorded in the audit trail: the method (totp | recovery_code | passkey) and its event. */
interface Proof {
  method: 'totp' | 'recovery_code' | 'passkey';
  /** login for a sign-in, reauthentication_failed for a step-up of a signed-in session. */
  event: Extract<AuditName, 'login' | 'reauthentication_failed'>;
  userId: string | null;
}

const SCRIPT_CSP = cspWithScripts(CSP);
const require = createRequire(import.meta.url);
let webauthnBundle: Buffer | undefined;
let passkeysScript: Buffer | undefined;

/**
 * The routes of second factors (server/routes.ts lists them): the step after a first factor
 * (/.auth/second-factor, also the step-up of a signed-in session), enrolment and removal on the
 * account page, passkey ceremonies, and the two scripts the passkey buttons need.
 */
export class SecondFactorRoutes implements SecondFactorGate {
  readonly factors: Factors;
  readonly passkeys: Passkeys;
  private readonly pending: Pending;
  private readonly s: MfaDeps;
  private readonly forms: FormTools;
  private readonly gate: SessionGate;
  private readonly registered: ((ctx: RequestContext, user: User) => void)[] = [];
  private readonly continuations = new Map<
    string,
    (user: User, session: { idHash: string; userId: string }, data: string) => Promise<void>
  >();

  private readonly reauth: RecentAuthGate | undefined;

  constructor(deps: MfaDeps, forms: FormTools, gate: SessionGate, reauth?: RecentAuthGate) {
    this.s = deps;
    this.forms = forms;
    this.gate = gate;
    this.reauth = reauth;
    this.factors = new Factors(deps.store, deps.secrets, deps.config);
    this.passkeys = new Passkeys(deps.store, deps.config);
    this.pending = new Pending(deps.store);
  }

  private invites:
    | { page: Pick<InvitationPage, 'accept' | 'addOption'>; links: Pick<MailedLinks, 'check' | 'tokenOf'> }
    | undefined;

  /** An invitation (accounts/invitations.ts) may be accepted with a passkey instead of a password. */
  useInvitations(
    page: Pick<InvitationPage, 'accept' | 'addOption'>,
    links: Pick<MailedLinks, 'check' | 'tokenOf'>,
  ): this {
    this.invites = { page, links };
    page.addOption(() =>
      this.passkeysOn
        ? passkeyButton({
            mode: 'invite',
            options: this.url(paths.invitePasskeyOptions),
            verify: this.url(paths.invitePasskey),
            label: 'Use a passkey instead',
            secondary: true,
            scripts: this.scripts,
          })
        : undefined,
    );
    return this;
  }

  /** useInvitations, returning the page (for the composition root's one expression). */
  inviteWith<P extends Pick<InvitationPage, 'accept' | 'addOption'>>(
    page: P,
    links: Pick<MailedLinks, 'check' | 'tokenOf'>,
  ): P {
    this.useInvitations(page, links);
    return page;
  }

  /** The invitation of this request: its token (a JSON body's, else the link's cookie) and user. */
  private async invitation(ctx: RequestContext, input: Input): Promise<{ token: string; user: User } | undefined> {
    if (!this.invites) return undefined;
    const token = field(input, 'token', 128) ?? this.invites.links.tokenOf(ctx, 'invite') ?? undefined;
    if (!token) return undefined;
    const checked = await this.invites.links.check(ctx, 'invite', { kind: 'json', data: { token } });
    return checked.ok ? { token, user: checked.user } : undefined;
  }

  /** Runs after each account made with a passkey (the verification mail); must neither throw nor wait. */
  onRegister(fn: (ctx: RequestContext, user: User) => void): this {
    this.registered.push(fn);
    return this;
  }

  continueWith(
    kind: string,
    fn: (user: User, session: { idHash: string; userId: string }, data: string) => Promise<void>,
  ): void {
    this.continuations.set(kind, fn);
  }

  get enabled(): boolean {
    return this.s.config.accounts.mfa !== 'off';
  }

  /** Second factors on, and publicUrl (or accounts.passkeys.rpId) a domain name WebAuthn accepts. */
  get passkeysOn(): boolean {
    return this.enabled && passkeysPossible(this.s.config);
  }

  private get scripts(): Scripts {
    return {
      webauthn: `${this.s.prefix}${paths.webauthnScript}`,
      passkeys: `${this.s.prefix}${paths.passkeysScript}`,
    };
  }

  private url(route: string): string {
    return `${this.s.prefix}${route}`;
  }

  // ---- the gate SignIn (and provider sign-ins) pass through --------------------------

  async intercept(
    ctx: RequestContext,
    input: Input,
    user: User,
    amr: string[],
    rd: string,
    cookies: string[],
    require = false,
    carry?: { kind: string; data: string },
  ): Promise<boolean> {
    const need = await this.factors.needs(user, amr, require);
    if (need === 'none') return false;
    const { setCookie } = await this.pending.create(ctx, {
      userId: user.id,
      purpose: need === 'verify' ? 'second_factor' : 'enrol',
      amr,
      returnTo: rd,
      data: carry ? { carry } : undefined,
    });
    const next = ctx.site.origin + this.url(paths.secondFactor);
    const all = [...cookies, setCookie];
    this.s.logger.info(
      { event: 'second_factor_asked', userId: user.id, step: need, requestId: ctx.requestId },
      'first factor accepted, second factor asked',
    );
    if (input.kind === 'json') {
      const methods = need === 'verify' ? Factors.types(await this.factors.summary(user.id)) : ['passkey', 'totp'];
      sendJson(ctx.res, 200, { secondFactor: need === 'verify' ? 'required' : 'enrol', methods, next }, {}, all);
    } else redirect(ctx.res, 303, next, all);
    return true;
  }

  /** The sign-in page's passkey button (with autofill on the email field), and the CSP it needs. */
  loginExtras(rd: string | undefined): { html: SafeHtml; csp: string } | undefined {
    if (!this.passkeysOn) return undefined;
    return {
      html: passkeyButton({
        mode: 'signin',
        options: this.url(paths.passkeyLoginOptions),
        verify: this.url(paths.passkeyLogin),
        label: 'Sign in with a passkey',
        rd,
        secondary: true,
        scripts: this.scripts,
      }),
      csp: SCRIPT_CSP,
    };
  }

  registerExtras(rd: string | undefined): { html: SafeHtml; csp: string } | undefined {
    if (!this.passkeysOn || this.s.config.accounts.registration !== 'open') return undefined;
    return {
      html: passkeyButton({
        mode: 'signup',
        options: this.url(paths.passkeyRegisterOptions),
        verify: this.url(paths.passkeyRegister),
        label: 'Create it with a passkey',
        rd,
        secondary: true,
        scripts: this.scripts,
      }),
      csp: SCRIPT_CSP,
    };
  }

  /** The enrolled factor types of a user (/.auth/me, `users list`). */
  async typesOf(userId: string): Promise<string[]> {
    return Factors.types(await this.factors.summary(userId));
  }

  // ---- the second-factor step --------------------------------------------------------

  private async who(
    ctx: RequestContext,
  ): Promise<
    { kind: 'pending'; p: MfaPending; user: User } | { kind: 'step_up'; active: ActiveSession } | { kind: 'none' }
  > {
    const p = await this.pending.get(ctx, 'second_factor', 'enrol');
    if (p?.userId) {
      const user = await this.s.store.users.get(p.userId);
      if (user) return { kind: 'pending', p, user };
    }
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (found.state === 'active') return { kind: 'step_up', active: found.active };
    return { kind: 'none' };
  }

  private expired(ctx: RequestContext): never {
    throw new HttpError(
      401,
      'second_factor_expired',
      'This sign-in is not waiting for a second factor (it expired after 5 minutes, or was finished). Sign in again.',
    );
  }

  async stepPage(ctx: RequestContext): Promise<void> {
    const w = await this.who(ctx);
    if (w.kind === 'none') {
      if (!wantsHtml(ctx.req)) return this.expired(ctx);
      return redirect(ctx.res, 302, ctx.site.origin + this.forms.url(ctx, paths.login));
    }
    const user = w.kind === 'pending' ? w.user : w.active.user;
    ctx.userId = user.id;
    const rd = w.kind === 'pending' ? w.p.returnTo : this.forms.returnPath(ctx, this.forms.queryParam(ctx, 'rd'));
    const summary = await this.factors.summary(user.id);
    if (w.kind === 'step_up' && hasSecondFactor(w.active.session.amr))
      return redirect(ctx.res, 302, ctx.site.origin + rd);
    const enrol = w.kind === 'pending' && w.p.purpose === 'enrol';
    if (!wantsHtml(ctx.req))
      return sendJson(ctx.res, 200, {
        step: enrol ? 'enrol' : w.kind === 'step_up' ? 'step_up' : 'verify',
        email: user.email,
        methods: enrol ? ['passkey', 'totp'] : Factors.types(summary),
      });
    const { token, cookies } = this.forms.csrf(ctx);
    if (enrol) return this.renderEnrol(ctx, user, token, cookies, {});
    if (w.kind === 'step_up' && !Factors.enrolled(summary))
      return this.forms.html(
        ctx,
        403,
        messagePage({
          appTitle: ctx.site.title,
          heading: 'A second factor is needed',
          message: 'This page asks for a second factor, and your account has none yet.',
          hint: 'Add a passkey or an authenticator app on your account page, then open the page again.',
          link: { href: this.url(paths.account), text: 'Your account' },
        }),
        cookies,
      );
    this.renderVerify(ctx, user, summary, token, cookies, 200, {}, w.kind === 'step_up' ? rd : undefined);
  }

  private renderVerify(
    ctx: RequestContext,
    user: User,
    summary: Awaited<ReturnType<Factors['summary']>>,
    token: string,
    cookies: string[],
    status: number,
    errors: Record<string, string>,
    stepUpRd?: string,
    headers: Record<string, string> = {},
  ): void {
    this.forms.html(
      ctx,
      status,
      secondFactorPage({
        appTitle: ctx.site.title,
        csrf: token,
        action: this.url(paths.secondFactor),
        email: user.email,
        rd: stepUpRd,
        totp: summary.totp,
        passkeys: summary.passkeys > 0,
        recoveryCodes: summary.recoveryCodes > 0,
        errors,
        stepUp: stepUpRd !== undefined,
        passkey: passkeyButton({
          mode: 'second_factor',
          options: this.url(paths.passkeyLoginOptions),
          verify: this.url(paths.passkeyLogin),
          label: 'Use a passkey',
          rd: stepUpRd,
          scripts: this.scripts,
        }),
      }),
      cookies,
      { 'content-security-policy': SCRIPT_CSP, ...headers },
    );
  }

  private async renderEnrol(
    ctx: RequestContext,
    user: User,
    token: string,
    cookies: string[],
    errors: Record<string, string>,
    status = 200,
  ): Promise<void> {
    const totp = (await this.factors.pendingTotp(user)) ?? (await this.factors.startTotp(user));
    if (!totp) throw new HttpError(409, 'already_enrolled', 'An authenticator app is set up already. Sign in again.');
    this.forms.html(
      ctx,
      status,
      totpEnrolPage({
        appTitle: ctx.site.title,
        csrf: token,
        action: this.url(paths.secondFactor),
        totp,
        errors,
        required: true,
        passkey: !this.passkeysOn
          ? undefined
          : passkeyButton({
              mode: 'register',
              options: this.url(paths.passkeyRegisterOptions),
              verify: this.url(paths.passkeyRegister),
              label: 'Add a passkey',
              scripts: this.scripts,
              nameField: true,
            }),
      }),
      cookies,
      { 'content-security-policy': SCRIPT_CSP },
    );
  }

  /** A second-factor proof that did not sign anyone in, in the audit trail: its event and method. */
  private recordProof(
    ctx: RequestContext,
    proof: Proof,
    outcome: 'failure' | 'throttled' | 'disabled',
    userId: string | null,
    detail: Record<string, boolean> = {},
  ): void {
    this.s.audit.record({ event: proof.event, outcome, userId, ctx, detail: { method: proof.method, ...detail } });
  }

  private async throttled(ctx: RequestContext, input: Input, userId: string | null, proof?: Proof): Promise<boolean> {
    const verdict = await this.s.throttle.attemptSecondFactor(ctx.ip, userId);
    if (verdict.ok) return false;
    if (proof) this.recordProof(ctx, proof, 'throttled', proof.userId);
    // A passkey is not a code the user typed: the message says what was counted.
    const message =
      proof?.method === 'passkey'
        ? 'Too many passkey sign-ins that did not work from here. Wait a few minutes and try again.'
        : 'Too many wrong codes. Wait a few minutes and try again.';
    const headers = { 'retry-after': String(verdict.retryAfterSeconds) };
    if (input.kind === 'json') sendJson(ctx.res, 429, { error: 'too_many_attempts', message }, headers);
    else
      this.forms.html(
        ctx,
        429,
        messagePage({ appTitle: ctx.site.title, heading: 'Too many attempts', message }),
        [],
        headers,
      );
    return true;
  }

  async stepSubmit(ctx: RequestContext): Promise<void> {
    const input = await this.forms.readPost(ctx);
    const code = (field(input, 'code', 64) ?? '').trim();
    const w = await this.who(ctx);
    if (w.kind === 'none') return this.expired(ctx);
    const user = w.kind === 'pending' ? w.user : w.active.user;
    ctx.userId = user.id;
    if (w.kind === 'step_up' && hasSecondFactor(w.active.session.amr))
      throw new HttpError(409, 'already_verified', 'This session has a second factor already.');
    const rd = w.kind === 'pending' ? w.p.returnTo : this.forms.returnPath(ctx, field(input, 'rd', 4096));
    const amr = w.kind === 'pending' ? w.p.amr : w.active.session.amr;
    if (!code) {
      const errors = { code: 'Enter the code.' };
      if (input.kind === 'json') return sendJson(ctx.res, 400, { error: 'invalid_request', message: errors.code });
      return this.again(ctx, w, user, 400, errors);
    }
    const digits = code.replace(/\s/g, '');
    const enrol = w.kind === 'pending' && w.p.purpose === 'enrol';
    const proof: Proof = {
      method: enrol || /^\d{6}$/.test(digits) ? 'totp' : 'recovery_code',
      event: w.kind === 'pending' ? 'login' : 'reauthentication_failed',
      userId: user.id,
    };
    if (await this.throttled(ctx, input, user.id, proof)) return;
    if (w.kind === 'pending' && w.p.purpose === 'enrol') {
      if (!(await this.factors.confirmTotp(user.id, digits))) return this.wrong(ctx, input, w, user, proof);
      await this.s.throttle.secondFactorSucceeded(ctx.ip, user.id);
      this.added(ctx, user.id, 'totp');
      const codes = await this.newCodes(ctx, user.id);
      return this.finish(ctx, input, user, withFactor(amr, 'otp'), rd, w.p, undefined, { recoveryCodes: codes }, proof);
    }
    let left: number | undefined;
    if (proof.method === 'totp') {
      if (!(await this.factors.checkTotp(user.id, digits))) return this.wrong(ctx, input, w, user, proof);
    } else {
      left = await this.factors.useRecoveryCode(user.id, code);
      if (left === undefined) return this.wrong(ctx, input, w, user, proof);
    }
    await this.s.throttle.secondFactorSucceeded(ctx.ip, user.id);
    return this.finish(
      ctx,
      input,
      user,
      withFactor(amr, 'otp'),
      rd,
      w.kind === 'pending' ? w.p : undefined,
      w.kind === 'step_up' ? w.active : undefined,
      { recoveryCodesLeft: left },
      proof,
    );
  }

  private async again(
    ctx: RequestContext,
    w: { kind: 'pending'; p: MfaPending; user: User } | { kind: 'step_up'; active: ActiveSession },
    user: User,
    status: number,
    errors: Record<string, string>,
  ): Promise<void> {
    const { token, cookies } = this.forms.csrf(ctx);
    if (w.kind === 'pending' && w.p.purpose === 'enrol')
      return this.renderEnrol(ctx, user, token, cookies, errors, status);
    const summary = await this.factors.summary(user.id);
    this.renderVerify(
      ctx,
      user,
      summary,
      token,
      cookies,
      status,
      errors,
      w.kind === 'step_up' ? this.forms.returnPath(ctx, this.forms.queryParam(ctx, 'rd')) : undefined,
    );
  }

  private async wrong(
    ctx: RequestContext,
    input: Input,
    w: { kind: 'pending'; p: MfaPending; user: User } | { kind: 'step_up'; active: ActiveSession },
    user: User,
    proof: Proof,
  ): Promise<void> {
    this.s.logger.info(
      { event: 'second_factor_failed', userId: user.id, requestId: ctx.requestId },
      'wrong second-factor code',
    );
    this.recordProof(ctx, proof, 'failure', user.id);
    const message = 'That code is not right, or was used already. Codes work once.';
    if (input.kind === 'json') return sendJson(ctx.res, 401, { error: 'invalid_code', message });
    return this.again(ctx, w, user, 401, { code: message });
  }

  /** The second factor is proved: a new session (or the step-up of this one), and on to `rd`. */
  private async finish(
    ctx: RequestContext,
    input: Input,
    user: User,
    amr: string[],
    rd: string,
    p: MfaPending | undefined,
    stepUp: ActiveSession | undefined,
    /** first: the account was made just now (a passkey sign-up): its browser is its first. */
    extra: { recoveryCodes?: string[]; recoveryCodesLeft?: number; first?: boolean } = {},
    proof?: Pick<Proof, 'method'> & { only?: boolean },
  ): Promise<void> {
    const cookies: string[] = [];
    if (p) {
      await this.pending.end(p);
      cookies.push(this.pending.clear(ctx));
    }
    if (stepUp) {
      // A factor proved now is also a re-authentication (accounts.reauthenticateAfter).
      if (this.reauth) await this.reauth.proven(stepUp.session, amr);
      else await this.s.store.sessions.setAuth(stepUp.session.idHash, { authTime: Date.now(), amr });
      this.s.logger.info({ event: 'step_up', userId: user.id, amr, requestId: ctx.requestId }, 'second factor added');
      if (proof)
        this.s.audit.record({
          event: 'reauthenticated',
          userId: user.id,
          ctx,
          detail: { method: proof.method, amr: amr.join(' ') },
        });
    } else {
      const cookie = ctx.site.session;
      const { setCookie, idHash } = await this.s.sessions.create(user, ctx.site.origin, cookie, {
        amr,
        ip: ctx.ip,
        userAgent: ctx.req.headers['user-agent'] ?? null,
        previous: this.s.sessions.cookieValue(ctx.req, cookie),
      });
      cookies.push(
        setCookie,
        this.s.diagnosis.signedIn(ctx.site, ctx.req),
        this.s.notices.seen(ctx, user, amr, { first: extra.first }),
      );
      // What the first sign-in left to do with a session (a provider's tokens to keep).
      const carry = p ? (JSON.parse(p.data) as { carry?: { kind: string; data: string } }).carry : undefined;
      const next = carry && this.continuations.get(carry.kind);
      if (carry && next) await next(user, { idHash, userId: user.id }, carry.data);
      this.s.logger.info(
        { event: 'login', userId: user.id, method: amr.join('+'), requestId: ctx.requestId },
        'user signed in',
      );
      // A sign-in the second factor finished (or a passkey alone: detail.passkeyOnly).
      if (proof)
        this.s.audit.record({
          event: 'login',
          userId: user.id,
          ctx,
          detail: { method: proof.method, amr: amr.join(' '), ...(proof.only ? { passkeyOnly: true } : {}) },
        });
    }
    ctx.userId = user.id;
    if (input.kind === 'json')
      return sendJson(ctx.res, 200, { user: publicUser(user), amr, redirect: rd, ...extra }, {}, cookies);
    if (extra.recoveryCodes)
      return this.forms.html(
        ctx,
        200,
        recoveryCodesPage({ appTitle: ctx.site.title, codes: extra.recoveryCodes, continueUrl: rd }),
        cookies,
      );
    if (extra.recoveryCodesLeft !== undefined)
      return this.forms.html(
        ctx,
        200,
        messagePage({
          appTitle: ctx.site.title,
          heading: 'Recovery code used',
          message: `You have ${extra.recoveryCodesLeft} recovery code${extra.recoveryCodesLeft === 1 ? '' : 's'} left.`,
          hint: 'Make new ones on your account page when you run low; each code works once.',
          link: { href: rd, text: 'Continue' },
        }),
        cookies,
      );
    redirect(ctx.res, 303, ctx.site.origin + rd, cookies);
  }

  /** A factor added, in the audit trail (its type only, never a secret). */
  private added(
    ctx: RequestContext,
    userId: string,
    type: 'totp' | 'passkey' | 'recovery_codes',
    replaced = false,
  ): void {
    this.s.audit.record({
      event: 'factor_added',
      userId,
      ctx,
      detail: { type, ...(replaced ? { replaced: true } : {}) },
    });
  }

  /** New recovery codes (the old ones stop working), recorded as a factor added. */
  private async newCodes(ctx: RequestContext, userId: string, replaced = false): Promise<string[]> {
    const codes = await this.factors.newRecoveryCodes(userId);
    this.added(ctx, userId, 'recovery_codes', replaced);
    return codes;
  }

  // ---- passkeys ----------------------------------------------------------------------

  private json(input: Input): Input & { kind: 'json' } {
    if (input.kind !== 'json') throw new HttpError(415, 'unsupported_media_type', 'Send application/json.');
    return input as Input & { kind: 'json' };
  }

  async passkeyRegisterOptions(ctx: RequestContext): Promise<void> {
    const input = this.json(await this.forms.readPost(ctx));
    if (!this.passkeysOn) throw new HttpError(404, 'not_found', 'Passkeys are off here.');
    if (field(input, 'mode', 32) === 'signup') return this.signUpOptions(ctx, input);
    if (field(input, 'mode', 32) === 'invite') {
      const invited = await this.invitation(ctx, input);
      if (!invited)
        throw new HttpError(
          410,
          'invitation_invalid',
          'This invitation does not work (any longer). Ask for a new one.',
        );
      const options = await this.passkeys.registrationOptions(invited.user);
      const made = await this.pending.create(
        ctx,
        {
          userId: invited.user.id,
          purpose: 'passkey_register',
          amr: [],
          returnTo: ctx.site.home,
          data: { invite: true },
        },
        options.challenge,
      );
      return sendJson(ctx.res, 200, options, {}, [made.setCookie]);
    }
    const enrol = await this.pending.get(ctx, 'enrol');
    let user: User | undefined;
    let cookies: string[] = [];
    if (enrol?.userId) {
      user = await this.s.store.users.get(enrol.userId);
      if (!user) return this.expired(ctx);
      const options = await this.passkeys.registrationOptions(user);
      await this.s.store.mfa.setChallenge(enrol.idHash, options.challenge);
      return sendJson(ctx.res, 200, options);
    }
    const active = await this.gate.requireSession(ctx);
    if (!active) return;
    user = active.user;
    const options = await this.passkeys.registrationOptions(user);
    const made = await this.pending.create(
      ctx,
      {
        userId: user.id,
        purpose: 'passkey_register',
        amr: active.session.amr,
        returnTo: this.url(paths.account),
        data: { session: active.session.idHash },
      },
      options.challenge,
    );
    cookies = [made.setCookie];
    void input;
    sendJson(ctx.res, 200, options, {}, cookies);
  }

  /**
   * A new account with a passkey instead of a password: registration's checks first, then the
   * options for a credential named after the user id the account will get. Nothing is stored but
   * the pending record until the browser answers.
   */
  private async signUpOptions(ctx: RequestContext, input: Input): Promise<void> {
    const checked = await this.s.accounts.checkSignUp(
      { email: field(input, 'email', 512), name: field(input, 'name', 512) },
      ctx.ip,
    );
    if (!checked.ok) {
      const { form, ...fields } = checked.errors;
      return sendJson(
        ctx.res,
        checked.status,
        {
          error:
            checked.status === 429
              ? 'too_many_attempts'
              : checked.status === 403
                ? 'registration_closed'
                : 'invalid_request',
          message: form ?? Object.values(fields)[0] ?? 'Invalid request',
          ...(Object.keys(fields).length ? { fields } : {}),
        },
        checked.retryAfterSeconds ? { 'retry-after': String(checked.retryAfterSeconds) } : {},
      );
    }
    const id = randomUUID();
    const options = await this.passkeys.registrationOptions({
      id,
      email: checked.email,
      name: checked.name,
    });
    const made = await this.pending.create(
      ctx,
      {
        userId: null,
        purpose: 'passkey_register',
        amr: [],
        returnTo: this.forms.returnPath(ctx, field(input, 'rd', 4096)),
        data: { signUp: { id, email: checked.email, name: checked.name } },
      },
      options.challenge,
    );
    sendJson(ctx.res, 200, options, {}, [made.setCookie]);
  }

  private async signUp(
    ctx: RequestContext,
    input: Input & { kind: 'json' },
    p: MfaPending,
    s: { id: string; email: string; name: string | null },
    passkeyName: string,
  ): Promise<void> {
    const challenge = await this.s.store.mfa.takeChallenge(p.idHash);
    if (!challenge) throw new HttpError(400, 'challenge_used', 'Ask for new passkey options: each one works once.');
    // The credential is checked before the account exists, so a failed ceremony leaves nothing behind.
    const check = await this.passkeys.verifyRegistration(input.data.response, challenge, ctx.site.origin);
    if (!check.ok) return sendJson(ctx.res, 400, { error: 'passkey_invalid', message: check.message });
    const made = await this.s.accounts.createWithoutPassword(s.id, s.email, s.name);
    if (!made.ok)
      return sendJson(ctx.res, 409, { error: 'email_unavailable', message: made.errors.email, fields: made.errors });
    const user = made.user;
    const stored = await this.passkeys.keep(user, check.info, passkeyName);
    if (!stored.ok) return sendJson(ctx.res, 400, { error: 'passkey_invalid', message: stored.message });
    this.s.logger.info(
      { event: 'register', userId: user.id, method: 'passkey', requestId: ctx.requestId },
      'user registered',
    );
    this.s.audit.record({ event: 'register', userId: user.id, ctx, detail: { method: 'passkey' } });
    this.added(ctx, user.id, 'passkey');
    for (const fn of this.registered) fn(ctx, user);
    const codes = await this.newCodes(ctx, user.id);
    return this.finish(ctx, input, user, [passkeyAmr(stored.passkey), MFA], p.returnTo, p, undefined, {
      recoveryCodes: codes,
      first: true,
    });
  }

  /** An invitation accepted with a passkey: the credential is verified and kept, then the invitation is used. */
  private async acceptInvitation(
    ctx: RequestContext,
    input: Input & { kind: 'json' },
    p: MfaPending,
    name: string,
  ): Promise<void> {
    const invited = await this.invitation(ctx, input);
    if (!invited || invited.user.id !== p.userId || !this.invites)
      throw new HttpError(410, 'invitation_invalid', 'This invitation does not work (any longer). Ask for a new one.');
    const challenge = await this.s.store.mfa.takeChallenge(p.idHash);
    if (!challenge) throw new HttpError(400, 'challenge_used', 'Ask for new passkey options: each one works once.');
    const check = await this.passkeys.verifyRegistration(input.data.response, challenge, ctx.site.origin);
    if (!check.ok) return sendJson(ctx.res, 400, { error: 'passkey_invalid', message: check.message });
    const stored = await this.passkeys.keep(invited.user, check.info, name);
    if (!stored.ok) return sendJson(ctx.res, 400, { error: 'passkey_invalid', message: stored.message });
    await this.pending.end(p);
    ctx.res.setHeader('set-cookie', [this.pending.clear(ctx)]);
    this.s.logger.info(
      { event: 'factor_added', userId: invited.user.id, factor: 'passkey', requestId: ctx.requestId },
      'added',
    );
    this.added(ctx, invited.user.id, 'passkey');
    return this.invites.page.accept(
      ctx,
      { kind: 'json', data: { token: invited.token } },
      { passwordHash: null, amr: [passkeyAmr(stored.passkey), MFA] },
    );
  }

  async passkeyRegister(ctx: RequestContext): Promise<void> {
    const input = this.json(await this.forms.readPost(ctx));
    const name = (field(input, 'name', 64) ?? '').trim().replace(/[\p{Cc}\p{Cf}]/gu, '') || 'Passkey';
    const p = await this.pending.get(ctx, 'enrol', 'passkey_register');
    const signUp =
      p && !p.userId
        ? (JSON.parse(p.data) as { signUp?: { id: string; email: string; name: string | null } }).signUp
        : undefined;
    if (p && signUp) return this.signUp(ctx, input, p, signUp, name);
    if (!p?.userId) return this.expired(ctx);
    if ((JSON.parse(p.data) as { invite?: boolean }).invite) return this.acceptInvitation(ctx, input, p, name);
    const user = await this.s.store.users.get(p.userId);
    if (!user) return this.expired(ctx);
    let active: ActiveSession | undefined;
    if (p.purpose === 'passkey_register') {
      // Only the session that asked may finish it.
      active = await this.gate.requireSession(ctx);
      if (!active) return;
      if ((JSON.parse(p.data) as { session?: string }).session !== active.session.idHash || active.user.id !== user.id)
        throw new HttpError(403, 'session_mismatch', 'This passkey was asked for by another session.');
    }
    const challenge = await this.s.store.mfa.takeChallenge(p.idHash);
    if (!challenge) throw new HttpError(400, 'challenge_used', 'Ask for new passkey options: each one works once.');
    const before = await this.factors.summary(user.id);
    const r = await this.passkeys.register(user, input.data.response, challenge, ctx.site.origin, name);
    if (!r.ok) return sendJson(ctx.res, 400, { error: 'passkey_invalid', message: r.message });
    this.s.logger.info(
      { event: 'factor_added', userId: user.id, factor: 'passkey', requestId: ctx.requestId },
      'added',
    );
    this.added(ctx, user.id, 'passkey');
    const codes = Factors.enrolled(before) ? undefined : await this.newCodes(ctx, user.id);
    if (p.purpose === 'enrol')
      return this.finish(
        ctx,
        input,
        user,
        withFactor(p.amr, passkeyAmr(r.passkey)),
        p.returnTo,
        p,
        undefined,
        { recoveryCodes: codes },
        { method: 'passkey' },
      );
    await this.pending.end(p);
    sendJson(
      ctx.res,
      200,
      {
        passkey: { id: r.passkey.id, name: r.passkey.name },
        redirect: `${this.url(paths.account)}?mfa=passkey-added`,
        ...(codes ? { recoveryCodes: codes } : {}),
      },
      {},
      [this.pending.clear(ctx)],
    );
  }

  async passkeyLoginOptions(ctx: RequestContext): Promise<void> {
    const input = this.json(await this.forms.readPost(ctx));
    if (!this.passkeysOn) throw new HttpError(404, 'not_found', 'Passkeys are off here.');
    const mode = field(input, 'mode', 32);
    if (mode === 'second_factor' || mode === 'reauth') {
      const w = await this.who(ctx);
      if (w.kind === 'none') return this.expired(ctx);
      if (w.kind === 'pending' && mode === 'second_factor') {
        if (w.p.purpose !== 'second_factor') return this.expired(ctx);
        const options = await this.passkeys.authenticationOptions(w.user);
        await this.s.store.mfa.setChallenge(w.p.idHash, options.challenge);
        return sendJson(ctx.res, 200, options);
      }
      if (w.kind !== 'step_up') return this.expired(ctx);
      const options = await this.passkeys.authenticationOptions(w.active.user);
      const made = await this.pending.create(
        ctx,
        {
          userId: w.active.user.id,
          purpose: 'step_up',
          amr: w.active.session.amr,
          returnTo: this.forms.returnPath(ctx, field(input, 'rd', 4096)),
          data: { session: w.active.session.idHash },
        },
        options.challenge,
      );
      return sendJson(ctx.res, 200, options, {}, [made.setCookie]);
    }
    const options = await this.passkeys.authenticationOptions();
    const made = await this.pending.create(
      ctx,
      {
        userId: null,
        purpose: 'passkey_login',
        amr: [],
        returnTo: this.forms.returnPath(ctx, field(input, 'rd', 4096)),
      },
      options.challenge,
    );
    sendJson(ctx.res, 200, options, {}, [made.setCookie]);
  }

  async passkeyLogin(ctx: RequestContext): Promise<void> {
    const input = this.json(await this.forms.readPost(ctx));
    const p = await this.pending.get(ctx, 'second_factor', 'step_up', 'passkey_login');
    if (!p) return this.expired(ctx);
    const challenge = await this.s.store.mfa.takeChallenge(p.idHash);
    if (!challenge) throw new HttpError(400, 'challenge_used', 'Ask for new passkey options: each one works once.');
    const proof: Proof = {
      method: 'passkey',
      event: p.purpose === 'step_up' ? 'reauthentication_failed' : 'login',
      userId: p.userId,
    };
    if (await this.throttled(ctx, input, p.userId, proof)) return;
    const r = await this.passkeys.authenticate(input.data.response, challenge, ctx.site.origin, p.userId);
    if (!r.ok) {
      this.s.logger.info(
        { event: 'second_factor_failed', userId: p.userId ?? undefined, factor: 'passkey', requestId: ctx.requestId },
        'passkey refused',
      );
      this.recordProof(ctx, proof, 'failure', p.userId, p.userId ? {} : { passkeyOnly: true });
      return sendJson(ctx.res, 401, { error: 'passkey_invalid', message: r.message });
    }
    const user = await this.s.store.users.get(r.passkey.userId);
    if (!user || user.disabled) {
      if (user) this.recordProof(ctx, proof, 'disabled', user.id);
      throw new HttpError(403, 'account_disabled', 'This account is disabled. Contact an administrator.');
    }
    await this.s.throttle.secondFactorSucceeded(ctx.ip, p.userId);
    const method = passkeyAmr(r.passkey);
    if (p.purpose === 'passkey_login')
      return this.finish(
        ctx,
        input,
        user,
        [method, MFA],
        p.returnTo || ctx.site.home,
        p,
        undefined,
        {},
        {
          method: 'passkey',
          only: true,
        },
      );
    if (p.purpose === 'second_factor')
      return this.finish(ctx, input, user, withFactor(p.amr, method), p.returnTo, p, undefined, {}, proof);
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (
      found.state !== 'active' ||
      found.active.session.idHash !== (JSON.parse(p.data) as { session?: string }).session ||
      found.active.user.id !== user.id
    )
      throw new HttpError(403, 'session_mismatch', 'This confirmation was asked for by another session.');
    return this.finish(
      ctx,
      input,
      user,
      withFactor(found.active.session.amr, method),
      p.returnTo,
      p,
      found.active,
      {},
      proof,
    );
  }

  // ---- the account page ----------------------------------------------------------------

  async accountSection(
    ctx: RequestContext,
    active: ActiveSession,
    csrf: string,
  ): Promise<AccountSectionView | undefined> {
    if (!this.enabled) return undefined;
    const userId = active.user.id;
    const [passkeys, totp, left] = await Promise.all([
      this.s.store.mfa.passkeys(userId),
      this.s.store.mfa.totp(userId),
      this.s.store.mfa.recoveryCodesLeft(userId),
    ]);
    const done = this.forms.queryParam(ctx, 'mfa');
    const notices: Record<string, string> = {
      'passkey-added': 'The passkey was added.',
      'totp-added': 'The authenticator app was added.',
      removed: 'The second factor was removed.',
    };
    return {
      id: 'mfa',
      heading: 'Second factors',
      scripts: this.passkeysOn,
      notice: done ? notices[done] : undefined,
      body: factorsSection({
        csrf,
        passkeys,
        totp: Boolean(totp?.confirmed),
        recoveryCodes: left,
        totpUrl: this.url(paths.totp),
        totpRemove: this.url(paths.totpRemove),
        passkeyRemove: this.url(paths.passkeyRemove),
        recoveryCodesUrl: this.url(paths.recoveryCodes),
        addPasskey: !this.passkeysOn
          ? html``
          : passkeyButton({
              mode: 'register',
              options: this.url(paths.passkeyRegisterOptions),
              verify: this.url(paths.passkeyRegister),
              label: 'Add a passkey',
              secondary: true,
              scripts: this.scripts,
              nameField: true,
            }),
      }),
    };
  }

  private enabledOr404(): void {
    if (!this.enabled) throw new HttpError(404, 'not_found', 'Second factors are off here.');
  }

  async totpForm(ctx: RequestContext): Promise<void> {
    this.enabledOr404();
    const active = await this.gate.requireSession(ctx);
    if (!active) return;
    const user = active.user;
    const totp = (await this.factors.pendingTotp(user)) ?? (await this.factors.startTotp(user));
    if (!totp) {
      if (!wantsHtml(ctx.req))
        return sendJson(ctx.res, 409, {
          error: 'already_enrolled',
          message: 'An authenticator app is set up already.',
        });
      return redirect(ctx.res, 302, ctx.site.origin + this.url(paths.account));
    }
    if (!wantsHtml(ctx.req)) return sendJson(ctx.res, 200, { secret: totp.secret.replace(/ /g, ''), uri: totp.uri });
    const { token, cookies } = this.forms.csrf(ctx);
    this.renderTotp(ctx, token, cookies, totp, {}, 200);
  }

  private renderTotp(
    ctx: RequestContext,
    token: string,
    cookies: string[],
    totp: { secret: string; uri: string; qrSvg: string },
    errors: Record<string, string>,
    status: number,
  ): void {
    this.forms.html(
      ctx,
      status,
      totpEnrolPage({
        appTitle: ctx.site.title,
        csrf: token,
        action: this.url(paths.totp),
        totp,
        errors,
        backUrl: this.url(paths.account),
      }),
      cookies,
    );
  }

  /**
   * The start of every second-factor action of a signed-in user (the feature on): the posted
   * form and the session, or nothing when there is no session (the sign-in page or a 401 has
   * been sent).
   */
  private async signedInPost(ctx: RequestContext): Promise<{ input: Input; active: ActiveSession } | undefined> {
    this.enabledOr404();
    const input = await this.forms.readPost(ctx);
    const active = await this.gate.requireSession(ctx);
    return active && { input, active };
  }

  async totpConfirm(ctx: RequestContext): Promise<void> {
    const post = await this.signedInPost(ctx);
    if (!post) return;
    const { input, active } = post;
    const user = active.user;
    const code = (field(input, 'code', 64) ?? '').replace(/\s/g, '');
    if (await this.throttled(ctx, input, user.id)) return;
    const before = await this.factors.summary(user.id);
    if (!(await this.factors.confirmTotp(user.id, code))) {
      const message = code ? 'That code is not right. Type the code your app shows now.' : 'Enter the code.';
      if (input.kind === 'json') return sendJson(ctx.res, 400, { error: 'invalid_code', message });
      const totp = await this.factors.pendingTotp(user);
      if (!totp) return redirect(ctx.res, 303, ctx.site.origin + this.url(paths.account));
      const { token, cookies } = this.forms.csrf(ctx);
      return this.renderTotp(ctx, token, cookies, totp, { code: message }, 400);
    }
    await this.s.throttle.secondFactorSucceeded(ctx.ip, user.id);
    this.s.logger.info({ event: 'factor_added', userId: user.id, factor: 'totp', requestId: ctx.requestId }, 'added');
    this.added(ctx, user.id, 'totp');
    const codes = Factors.enrolled(before) ? undefined : await this.newCodes(ctx, user.id);
    const next = `${this.url(paths.account)}?mfa=totp-added`;
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true, redirect: next, recoveryCodes: codes });
    if (codes)
      return this.forms.html(
        ctx,
        200,
        recoveryCodesPage({
          appTitle: ctx.site.title,
          codes,
          continueUrl: next,
          notice: 'The authenticator app was added.',
        }),
      );
    redirect(ctx.res, 303, ctx.site.origin + next);
  }

  /** After a factor is removed: with none left, the recovery codes go too. */
  private async removed(ctx: RequestContext, input: Input, user: User, factor: string): Promise<void> {
    const now = await this.factors.summary(user.id);
    this.s.audit.record({ event: 'factor_removed', userId: user.id, ctx, detail: { type: factor } });
    if (!Factors.enrolled(now)) {
      await this.s.store.mfa.deleteRecoveryCodes(user.id);
      if (now.recoveryCodes > 0)
        this.s.audit.record({ event: 'factor_removed', userId: user.id, ctx, detail: { type: 'recovery_codes' } });
      now.recoveryCodes = 0;
    }
    this.s.logger.info({ event: 'factor_removed', userId: user.id, factor, requestId: ctx.requestId }, 'removed');
    const next = `${this.url(paths.account)}?mfa=removed`;
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true, factors: Factors.types(now) });
    redirect(ctx.res, 303, ctx.site.origin + next);
  }

  /** Removing a factor is a sensitive action: a session must have proved who it is recently (accounts/reauth.ts). */
  private recent(ctx: RequestContext, input: Input, active: ActiveSession): boolean {
    return this.reauth?.requireRecentAuth(ctx, active, this.url(paths.account), input.kind === 'json') ?? true;
  }

  /**
   * The ways to re-authenticate that second factors add to /.auth/reauth: a code from the
   * authenticator app (or a recovery code), and a passkey. Each also counts as a second factor
   * in the session.
   */
  reauthProofs(): ReauthProof[] {
    const code: ReauthProof = {
      method: 'code',
      available: async (user) => {
        const s = await this.factors.summary(user.id);
        return this.enabled && (s.totp || s.recoveryCodes > 0);
      },
      render: (v) => reauthCodeForm(v),
      verify: async (ctx, input, active) => {
        const entered = (field(input, 'code', 64) ?? '').trim();
        if (!entered) return { ok: false, status: 400, error: 'invalid_request', message: 'Enter the code.' };
        const verdict = await this.s.throttle.attemptSecondFactor(ctx.ip, active.user.id);
        if (!verdict.ok)
          return {
            ok: false,
            status: 429,
            error: 'too_many_attempts',
            message: 'Too many wrong codes. Wait a few minutes and try again.',
            retryAfterSeconds: verdict.retryAfterSeconds,
          };
        const digits = entered.replace(/\s/g, '');
        const ok = /^\d{6}$/.test(digits)
          ? await this.factors.checkTotp(active.user.id, digits)
          : (await this.factors.useRecoveryCode(active.user.id, entered)) !== undefined;
        if (!ok)
          return {
            ok: false,
            status: 401,
            error: 'invalid_code',
            message: 'That code is not right, or was used already. Codes work once.',
          };
        await this.s.throttle.secondFactorSucceeded(ctx.ip, active.user.id);
        return { ok: true, amr: ['otp', MFA] };
      },
    };
    const passkey: ReauthProof = {
      method: 'passkey',
      scripts: true,
      available: async (user) => this.passkeysOn && (await this.factors.summary(user.id)).passkeys > 0,
      render: (v) =>
        passkeyButton({
          mode: 'reauth',
          options: this.url(paths.passkeyLoginOptions),
          verify: this.url(paths.passkeyLogin),
          label: 'Use a passkey',
          rd: v.rd,
          scripts: this.scripts,
        }),
      // The ceremony has routes of its own (passkeyLogin): its success calls RecentAuthGate.proven.
      verify: async () => ({
        ok: false,
        status: 400,
        error: 'unsupported_method',
        message: 'Use the passkey button.',
      }),
    };
    return [code, passkey];
  }

  async totpRemove(ctx: RequestContext): Promise<void> {
    const post = await this.signedInPost(ctx);
    if (!post) return;
    const { input, active } = post;
    if (!this.recent(ctx, input, active)) return;
    if (!(await this.factors.removeTotp(active.user.id)))
      throw new HttpError(404, 'not_found', 'There is no authenticator app to remove.');
    return this.removed(ctx, input, active.user, 'totp');
  }

  async passkeyRemove(ctx: RequestContext): Promise<void> {
    const post = await this.signedInPost(ctx);
    if (!post) return;
    const { input, active } = post;
    if (!this.recent(ctx, input, active)) return;
    const id = field(input, 'id', 1024) ?? '';
    // Only the user's own: another user's credential id removes nothing.
    if (!id || !(await this.s.store.mfa.deletePasskey(active.user.id, id)))
      throw new HttpError(404, 'not_found', 'There is no such passkey on your account.');
    return this.removed(ctx, input, active.user, 'passkey');
  }

  async regenerateCodes(ctx: RequestContext): Promise<void> {
    const post = await this.signedInPost(ctx);
    if (!post) return;
    const { input, active } = post;
    if (!Factors.enrolled(await this.factors.summary(active.user.id)))
      throw new HttpError(409, 'no_second_factor', 'Add a passkey or an authenticator app first.');
    const codes = await this.newCodes(ctx, active.user.id, true);
    this.s.logger.info({ event: 'recovery_codes_replaced', userId: active.user.id, requestId: ctx.requestId }, 'new');
    if (input.kind === 'json') return sendJson(ctx.res, 200, { recoveryCodes: codes });
    this.forms.html(
      ctx,
      200,
      recoveryCodesPage({
        appTitle: ctx.site.title,
        codes,
        continueUrl: this.url(paths.account),
        notice: 'New recovery codes: the old ones no longer work.',
      }),
    );
  }

  // ---- the scripts -------------------------------------------------------------------

  script(ctx: RequestContext, which: 'webauthn' | 'passkeys'): void {
    const body =
      which === 'webauthn'
        ? (webauthnBundle ??= readFileSync(
            require.resolve('@simplewebauthn/browser').replace(/script[/\\]index\.js$/, 'dist/bundle/index.umd.min.js'),
          ))
        : (passkeysScript ??= readFileSync(new URL('./passkeys-browser.js', import.meta.url)));
    ctx.res.writeHead(200, {
      'content-type': 'text/javascript; charset=utf-8',
      'content-length': body.length,
      'cache-control': 'public, max-age=3600',
      'x-content-type-options': 'nosniff',
      'cross-origin-resource-policy': 'same-origin',
    });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
  }
}
