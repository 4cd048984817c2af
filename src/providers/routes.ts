import type { AuditLog } from '../audit/index.ts';
import type { Cache } from '../cache/index.ts';
import { DiagnosedError } from '../diagnosis/index.ts';
import { field, readInput } from '../http/body.ts';
import { rateLimitAddress } from '../http/client-ip.ts';
import { HttpError } from '../http/errors.ts';
import { redirect, sendJson } from '../http/respond.ts';
import { cspWithFormAction, messagePage } from '../pages/index.ts';
import type { SessionGate } from '../accounts/account-page.ts';
import type { SecondFactorGate } from '../accounts/sign-in.ts';
import type { ReauthProof, RecentAuthGate } from '../accounts/reauth.ts';
import { paths } from '../http/paths.ts';
import type { Config } from '../config/schema.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { SignInNotices } from '../accounts/sign-in-notices.ts';
import type { Logger } from '../log/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { RequestContext } from '../http/context.ts';
import type { Params } from '../http/router.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { LoginState, Store } from '../store/index.ts';
import { type LogoutClaims, LogoutTokenError, MAX_AGE_S, verifyLogoutToken } from './backchannel.ts';
import { classify, type FlowError, type ProviderClient } from './client.ts';
import { confirmPage, describeFailure, identitiesSection, reauthProviderForms } from './pages.ts';
import type { ProviderProfile, ProviderTokenSet } from './profile.ts';
import { redirectUri, sessionProvider, type ProviderService } from './service.ts';
import { sessionOwner } from './token-vault.ts';

/** What the providers' routes use (the composition root's Services satisfies it). */
export interface ProviderRoutesDeps {
  config: Config;
  logger: Logger;
  store: Store;
  cache: Cache;
  sessions: Sessions;
  diagnosis: Diagnosis;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  audit: AuditLog;
  notices: SignInNotices;
  /** Encrypts a provider's tokens while a second factor is pending (keys/secrets.ts). */
  secrets: {
    encrypt(plaintext: string, context: string): string;
    decrypt(c: string, context: string): string | undefined;
  };
}

/**
 * accounts.rateLimits.providerStartsPerIp counts per this window: generous for people behind one
 * NAT, finite for scripts.
 */
const STARTS_WINDOW_MS = 15 * 60_000;
/** A logout token is a few hundred bytes; this leaves room for large keys' claims. */
const MAX_LOGOUT_TOKEN = 8192;

/**
 * The HTTP side of sign-in through providers:
 *   GET  /login/:provider    a same-origin navigation (the login page's buttons, a link in
 *                            the app) starts the flow; from another site it shows one button
 *   POST /login/:provider    starts the flow (CSRF-protected form)
 *   GET  /callback/:provider the provider's answer: state, then the code, then the user
 *   POST /account/link       a signed-in user starts linking another provider
 *   POST /account/unlink     ... or removes one, never the last way to sign in (both after a recent sign-in)
 *   GET  /signed-out         where a provider's logout sends the browser back to
 * Every failure of a callback ends on one page that says what happened, with a "Try again"
 * link to the sign-in page, logged once as `oauth_callback_failed`. Nothing redirects on
 * its own after a failure, so nothing can loop.
 */
export class ProviderRoutes {
  private readonly p: ProviderService;
  private readonly s: ProviderRoutesDeps;
  private readonly tools: FormTools;
  private readonly account: SessionGate;
  private readonly cache: Cache;
  private readonly reauth: RecentAuthGate | undefined;

  private secondFactor: SecondFactorGate | undefined;

  /**
   * Second factors (mfa/): after a provider sign-in, the user's own factor is asked when they have
   * one, unless the provider did MFA and providers[].mfa is trust; with require, always. The
   * provider's tokens wait, encrypted, in the pending record until the session exists.
   */
  useSecondFactor(gate: SecondFactorGate): this {
    this.secondFactor = gate;
    gate.continueWith('provider_tokens', async (user, session, data) => {
      const plain = this.s.secrets.decrypt(data, `mfa-carry:${user.id}`);
      if (!plain) return;
      const { provider, tokens } = JSON.parse(plain) as { provider: string; tokens: ProviderTokenSet };
      const client = this.p.get(provider);
      if (!client) return;
      // The carry is made by completeLogin only: the session was signed in through this provider.
      await this.p.rememberProviderSession(session.idHash, client, tokens);
      await this.p.keepTokens(sessionOwner(session), client, tokens, 'login');
    });
    return this;
  }

  constructor(
    providers: ProviderService,
    deps: ProviderRoutesDeps,
    tools: FormTools,
    account: SessionGate,
    reauth?: RecentAuthGate,
  ) {
    this.p = providers;
    this.s = deps;
    this.tools = tools;
    this.account = account;
    this.cache = deps.cache;
    this.reauth = reauth;
  }

  /** GET /signed-out: back from a provider's logout, to the sign-in page that says so. */
  async signedOut(ctx: RequestContext): Promise<void> {
    redirect(ctx.res, 302, `${ctx.site.origin}${this.s.prefix}/login?signed_out=1`);
  }

  /**
   * POST /backchannel-logout/:provider: the provider's server tells Gatehouse that a user's
   * session there ended (OpenID Connect Back-Channel Logout 1.0). Its logout token is verified
   * (backchannel.ts) and used once; the sessions signed in through that provider session (or of
   * that subject there, when it names no sid) end at their next request, on every node. 200 when
   * done (also when nothing matched: the user may have signed out here first), 400 with the reason
   * for a token that does not hold, 503 when the provider's keys cannot be fetched. No cookie,
   * no CSRF token: the signed token is the request's only authority.
   */
  async backchannelLogout(ctx: RequestContext, params: Params): Promise<void> {
    const client = this.p.get(params.provider!);
    if (!client || client.config.type !== 'oidc' || !client.config.backchannelLogout || !client.signingKeys)
      return sendJson(ctx.res, 404, { error: 'not_found', message: 'No back-channel logout for this provider.' });
    const refuse = (status: 400 | 503, reason: string) => {
      this.s.logger.warn(
        { event: 'backchannel_logout_refused', provider: client.id, reason, requestId: ctx.requestId },
        `back-channel logout from ${client.id} refused: ${reason}`,
      );
      const error = status === 400 ? 'invalid_request' : 'temporarily_unavailable';
      sendJson(ctx.res, status, { error, error_description: reason }, status === 503 ? { 'retry-after': '5' } : {});
    };
    const input = await readInput(ctx.req);
    if (input.kind !== 'form') return refuse(400, 'send logout_token as application/x-www-form-urlencoded');
    const token = field(input, 'logout_token', MAX_LOGOUT_TOKEN);
    if (!token) return refuse(400, 'no logout_token');
    let claims: LogoutClaims;
    try {
      claims = await verifyLogoutToken(token, await client.signingKeys());
    } catch (err) {
      if (!(err instanceof LogoutTokenError)) throw err;
      return refuse(err.unavailable ? 503 : 400, err.message);
    }
    // Used once: the same token again (a replay, or the issuer's retry after a lost answer) ends
    // nothing more; both answer 400 after the first.
    const used = `bcl-jti:${client.id}:${claims.jti}`;
    if ((await this.cache.hit(used, (MAX_AGE_S + 60) * 1000)) > 1)
      return refuse(400, 'this logout token was used already');
    let ended: { idHash: string; userId: string }[];
    try {
      ended = await this.p.endProviderSessions(client, { sid: claims.sid, subject: claims.sub });
    } catch (err) {
      // The store failed (503): the issuer's retry of this token must still work.
      await this.cache.release(used).catch(() => {});
      throw err;
    }
    const users = new Map<string, number>();
    for (const e of ended) users.set(e.userId, (users.get(e.userId) ?? 0) + 1);
    for (const [userId, n] of users)
      this.s.audit.record({
        event: 'logout',
        userId,
        actor: `provider:${client.id}`,
        detail: { by: 'provider', provider: client.id, sessions: n },
      });
    this.s.logger.info(
      {
        event: 'backchannel_logout',
        provider: client.id,
        by: claims.sid ? 'sid' : 'sub',
        sessions: ended.length,
        requestId: ctx.requestId,
      },
      `${client.name} signed a user out: ${ended.length} session(s) ended`,
    );
    ctx.res.writeHead(200, { 'cache-control': 'no-store', 'content-length': 0 }).end();
  }

  /** Origins the identities section's forms are redirected to (the providers' authorization endpoints). */
  formActions(): string[] {
    return this.p.clients.flatMap((c) => c.authorizationOrigins());
  }

  // ---- starting a flow --------------------------------------------------------------

  /**
   * A navigation this site made (Sec-Fetch-Site same-origin, or none: typed, bookmarked)
   * may start a sign-in at once. Another site's link gets a confirmation button instead, so
   * no page elsewhere can send a browser through a provider on its own (forced login).
   */
  private sameSiteNavigation(ctx: RequestContext): boolean {
    const site = ctx.req.headers['sec-fetch-site'];
    if (site !== undefined) return site === 'same-origin' || site === 'none';
    const referer = ctx.req.headers.referer;
    return typeof referer === 'string' && (referer === ctx.site.origin || referer.startsWith(`${ctx.site.origin}/`));
  }

  async startGet(ctx: RequestContext, params: Params): Promise<void> {
    const client = this.p.get(params.provider!);
    if (!client) return this.fail(ctx, undefined, 'unknown_provider');
    const rd = this.tools.returnPath(ctx, this.tools.queryParam(ctx, 'rd'));
    // HEAD (a link checker, a prefetch) never starts a flow.
    if (ctx.req.method === 'GET' && this.sameSiteNavigation(ctx)) return this.begin(ctx, client, 'login', null, rd);
    // The form's redirect goes to the authorization endpoint: know its origin for the CSP.
    await client.warm();
    const { token, cookies } = this.tools.csrf(ctx);
    this.tools.html(
      ctx,
      200,
      confirmPage({
        appTitle: ctx.site.title,
        provider: client,
        action: `${this.s.prefix}/login/${client.id}`,
        csrf: token,
        rd,
      }),
      cookies,
      {
        'content-security-policy': cspWithFormAction(client.authorizationOrigins()),
      },
    );
  }

  async startPost(ctx: RequestContext, params: Params): Promise<void> {
    const client = this.p.get(params.provider!);
    const input = await this.tools.readPost(ctx);
    if (!client) return this.fail(ctx, undefined, 'unknown_provider');
    return this.begin(ctx, client, 'login', null, this.tools.returnPath(ctx, field(input, 'rd', 4096)));
  }

  private async begin(
    ctx: RequestContext,
    client: ProviderClient,
    purpose: 'login' | 'link' | 'reauth',
    sessionHash: string | null,
    returnTo: string,
  ): Promise<void> {
    if (
      (await this.cache.hit(`oauth-start:ip:${rateLimitAddress(ctx.ip)}`, STARTS_WINDOW_MS)) >
      this.s.config.accounts.rateLimits.providerStartsPerIp
    )
      return this.fail(ctx, client, 'rate_limited');
    const flow = await this.p.flows.prepare();
    let url: URL;
    try {
      url = await client.authorizationUrl({
        redirectUri: redirectUri(ctx.site.origin, this.s.prefix, client.id),
        state: flow.state,
        nonce: flow.nonce,
        codeChallenge: flow.codeChallenge,
        fresh: purpose === 'reauth',
      });
    } catch (err) {
      const e = classify(err, 'discovery');
      return this.fail(ctx, client, e.code, undefined, e.detail);
    }
    const cookies = await this.p.flows.save(ctx, flow, { provider: client.id, purpose, sessionHash, returnTo });
    this.s.logger.info(
      { event: 'oauth_start', provider: client.id, purpose, requestId: ctx.requestId },
      `sign-in sent to ${client.name}`,
    );
    redirect(ctx.res, 303, url.href, cookies);
  }

  // ---- the callback -----------------------------------------------------------------

  async callback(ctx: RequestContext, params: Params): Promise<void> {
    // A HEAD (a link checker, a prefetch) must not spend the one-time state.
    if (ctx.req.method === 'HEAD')
      throw new HttpError(405, 'method_not_allowed', 'Open this address with GET.', { allow: 'GET' });
    const client = this.p.get(params.provider!);
    if (!client) return this.fail(ctx, undefined, 'unknown_provider');
    const query = new URLSearchParams(ctx.query.slice(1));
    const states = query.getAll('state');
    if (states.length > 1) return this.fail(ctx, client, 'state_unknown');
    const finished = await this.p.flows.finish(ctx, client.id, states[0]);
    if (!finished.ok) {
      // No state cookie: most often the deployment (scheme or host differs, a proxy drops
      // cookies); the diagnosis names the likely cause and the key to fix (diagnosis/).
      if (finished.code === 'state_cookie_missing') {
        this.s.logger.warn(
          {
            event: 'oauth_callback_failed',
            provider: client.id,
            reason: finished.code,
            purpose: finished.record?.purpose,
            requestId: ctx.requestId,
          },
          `sign-in with ${client.id} failed: ${finished.code}`,
        );
        throw new DiagnosedError(this.s.diagnosis.cookieMissing(ctx, 'state'));
      }
      return this.fail(ctx, client, finished.code, finished.record);
    }
    const { record } = finished;
    let result: { profile: ProviderProfile; tokens: ProviderTokenSet };
    try {
      result = await client.callback({
        redirectUri: redirectUri(ctx.site.origin, this.s.prefix, client.id),
        query: ctx.query,
        state: finished.state,
        nonce: finished.nonce,
        codeVerifier: finished.codeVerifier,
        fresh: record.purpose === 'reauth',
      });
    } catch (err) {
      const e = classify(err, 'callback');
      return this.fail(ctx, client, e.code, record, e.detail);
    }
    if (record.purpose === 'link') return this.completeLink(ctx, client, record, result);
    if (record.purpose === 'reauth') return this.completeReauth(ctx, client, record, result);
    return this.completeLogin(ctx, client, record, result);
  }

  private async completeLogin(
    ctx: RequestContext,
    client: ProviderClient,
    record: LoginState,
    result: { profile: ProviderProfile; tokens: ProviderTokenSet },
  ): Promise<void> {
    const resolved = await this.p.accounts.resolve(client, result.profile);
    if (!resolved.ok) return this.fail(ctx, client, resolved.code, record, undefined, resolved.email);
    const { user } = resolved;
    if (user.disabled) return this.fail(ctx, client, 'account_disabled', record, undefined, undefined, user.id);
    ctx.userId = user.id;
    const cookie = ctx.site.session;
    const require = client.config.mfa === 'require';
    const amr = [`idp:${client.id}`, ...(result.profile.mfa && !require ? ['mfa'] : [])];
    const carry = {
      kind: 'provider_tokens',
      data: this.s.secrets.encrypt(
        JSON.stringify({ provider: client.id, tokens: result.tokens }),
        `mfa-carry:${user.id}`,
      ),
    };
    const form = { kind: 'form' as const, data: Object.create(null) as Record<string, unknown> };
    // A new account's browser is its first, marked before any second factor; any other sign-in's
    // once it is complete (with a notice if the browser was new to the account: sign-in-notices.ts).
    const early = resolved.how === 'created' ? [this.s.notices.seen(ctx, user, amr, { first: true })] : [];
    if (await this.secondFactor?.intercept(ctx, form, user, amr, record.returnTo, early, require, carry)) return;
    // A new session id at every sign-in; the one the browser came with ends (security.md #22).
    const { setCookie, idHash } = await this.s.sessions.create(user, ctx.site.origin, cookie, {
      amr,
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, cookie),
    });
    await this.p.rememberProviderSession(idHash, client, result.tokens);
    await this.p.keepTokens(sessionOwner({ idHash, userId: user.id }), client, result.tokens, 'login');
    if (resolved.how === 'created')
      this.s.audit.record({
        event: 'register',
        userId: user.id,
        ctx,
        detail: { method: 'provider', provider: client.id },
      });
    else if (resolved.how === 'linked_by_email')
      this.s.audit.record({
        event: 'provider_linked',
        userId: user.id,
        ctx,
        detail: { provider: client.id, by: 'email' },
      });
    this.s.audit.record({ event: 'login', userId: user.id, ctx, detail: { method: 'provider', provider: client.id } });
    this.s.logger.info(
      {
        event: 'login',
        userId: user.id,
        method: 'provider',
        provider: client.id,
        account: resolved.how,
        requestId: ctx.requestId,
      },
      'user signed in',
    );
    redirect(ctx.res, 303, ctx.site.origin + record.returnTo, [
      setCookie,
      this.s.diagnosis.signedIn(ctx.site, ctx.req),
      ...(early.length ? early : [this.s.notices.seen(ctx, user, amr)]),
    ]);
  }

  private async completeLink(
    ctx: RequestContext,
    client: ProviderClient,
    record: LoginState,
    result: { profile: ProviderProfile; tokens: ProviderTokenSet },
  ): Promise<void> {
    // Only the session that asked for the link may complete it.
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (found.state !== 'active' || found.active.session.idHash !== record.sessionHash)
      return this.fail(ctx, client, 'link_session_mismatch', record);
    const { user, session } = found.active;
    ctx.userId = user.id;
    const linked = await this.p.accounts.link(user.id, client, result.profile);
    if (!linked.ok) return this.fail(ctx, client, linked.code, record);
    await this.p.accounts.syncGroups(client, user, result.profile);
    await this.p.keepTokens(sessionOwner(session), client, result.tokens, 'link');
    if (!linked.already) {
      this.s.audit.record({
        event: 'provider_linked',
        userId: user.id,
        ctx,
        detail: { provider: client.id, by: 'user' },
      });
      this.s.logger.info(
        { event: 'identity_linked', userId: user.id, provider: client.id, by: 'user', requestId: ctx.requestId },
        'identity linked',
      );
    }
    redirect(ctx.res, 303, ctx.site.origin + record.returnTo);
  }

  /**
   * Back from a fresh sign-in at a provider for "Confirm it's you": in the session that asked,
   * as the identity linked to its user; the session's auth time is then now (accounts/reauth.ts).
   */
  private async completeReauth(
    ctx: RequestContext,
    client: ProviderClient,
    record: LoginState,
    result: { profile: ProviderProfile; tokens: ProviderTokenSet },
  ): Promise<void> {
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (found.state !== 'active' || found.active.session.idHash !== record.sessionHash || !this.reauth)
      return this.fail(ctx, client, 'link_session_mismatch', record);
    const { user, session } = found.active;
    ctx.userId = user.id;
    const identity = await this.s.store.identities.find(result.profile.issuer, result.profile.subject);
    if (!identity || identity.userId !== user.id) {
      this.s.audit.record({
        event: 'reauthentication_failed',
        userId: user.id,
        outcome: 'failure',
        ctx,
        detail: { method: 'provider', provider: client.id, reason: 'reauth_mismatch' },
      });
      return this.fail(ctx, client, 'reauth_mismatch', record);
    }
    await this.reauth.proven(session, [`idp:${client.id}`]);
    // A fresh sign-in there may be a new provider session: its logout now ends this one, when the
    // session was signed in with that provider (a password session is not tied to it).
    if (sessionProvider(session) === client.id)
      await this.p.rememberProviderSession(session.idHash, client, result.tokens);
    await this.p.keepTokens(sessionOwner(session), client, result.tokens, 'login');
    this.s.logger.info(
      { event: 'reauthenticated', userId: user.id, method: 'provider', provider: client.id, requestId: ctx.requestId },
      'the user confirmed who they are',
    );
    this.s.audit.record({
      event: 'reauthenticated',
      userId: user.id,
      ctx,
      detail: { method: 'provider', provider: client.id },
    });
    redirect(ctx.res, 303, ctx.site.origin + record.returnTo);
  }

  /** POST /reauth/provider: "Continue with <provider>" on /reauth, for a provider linked to the user. */
  async reauthStart(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    const rd = this.tools.returnPath(ctx, field(input, 'rd', 4096));
    const client = this.p.get(field(input, 'provider', 64) ?? '');
    const linked =
      client && (await this.s.store.identities.listByUser(active.user.id)).some((i) => i.provider === client.id);
    if (!client || !linked)
      throw new HttpError(400, 'unknown_provider', 'That provider is not linked to your account.');
    return this.begin(ctx, client, 'reauth', active.session.idHash, rd);
  }

  /** "Confirm it's you" by signing in again at a linked provider (added to accounts/reauth.ts's page). */
  reauthProof(): ReauthProof {
    const linkedClients = async (userId: string) => {
      const ids = new Set((await this.s.store.identities.listByUser(userId)).map((i) => i.provider));
      return this.p.clients.filter((c) => ids.has(c.id));
    };
    return {
      method: 'provider',
      available: async (user) => (await linkedClients(user.id)).length > 0,
      render: async (v) =>
        reauthProviderForms({
          providers: await linkedClients(v.user.id),
          action: this.tools.url(v.ctx, paths.reauthProvider),
          csrf: v.csrf,
          rd: v.rd,
          error: v.error,
        }),
      // Its own route (reauthStart) and the callback do the work.
      verify: async () => ({
        ok: false,
        status: 400,
        error: 'unsupported_method',
        message: 'Continue with the provider: its button signs you in there again.',
      }),
      formActions: () => this.formActions(),
    };
  }

  /** The one error page of a flow: what happened, what to do, "Try again". Logged once. */
  private fail(
    ctx: RequestContext,
    client: ProviderClient | undefined,
    code: FlowError,
    record?: LoginState,
    detail?: string,
    email?: string,
    /** The account it was for, when known (the audit trail). */
    userId?: string,
  ): void {
    const { status, message, hint } = describeFailure(code, {
      name: client?.name ?? 'The provider',
      email,
      domains: this.s.config.accounts.allowedDomains,
      organizations: client?.config.type === 'github' ? client.config.organizations : undefined,
      origin: ctx.site.origin,
    });
    // A failed sign-in with a known provider (a flow that got as far as the provider's answer).
    if (client && record?.purpose === 'login')
      this.s.audit.record({
        event: 'login',
        outcome: code === 'account_disabled' ? 'disabled' : 'failure',
        userId,
        ctx,
        detail: { method: 'provider', provider: client.id, reason: code, email },
      });
    this.s.logger.warn(
      {
        event: 'oauth_callback_failed',
        provider: client?.id,
        reason: code,
        detail,
        purpose: record?.purpose,
        requestId: ctx.requestId,
      },
      `sign-in with ${client?.id ?? 'an unknown provider'} failed: ${code}`,
    );
    const link =
      record?.purpose === 'link' || record?.purpose === 'reauth'
        ? { href: `${this.s.prefix}/account`, text: 'Back to your account' }
        : {
            href: `${this.s.prefix}/login${record && record.returnTo !== ctx.site.home ? `?rd=${encodeURIComponent(record.returnTo)}` : ''}`,
            text: 'Try again',
          };
    const heading =
      record?.purpose === 'link'
        ? 'Linking did not complete'
        : record?.purpose === 'reauth'
          ? 'Confirming did not complete'
          : 'Sign-in did not complete';
    // The callback's URL held a code and state: no referrer leaves this page (security.md #38).
    const retryAfter = status === 503 ? '5' : status === 429 ? String(STARTS_WINDOW_MS / 1000) : undefined;
    this.tools.html(ctx, status, messagePage({ appTitle: ctx.site.title, heading, message, hint, link }), [], {
      'referrer-policy': 'no-referrer',
      ...(retryAfter ? { 'retry-after': retryAfter } : {}),
    });
  }

  // ---- the account page -------------------------------------------------------------

  /** The "Sign-in methods" section of the account page: linked identities, link and unlink. */
  async identities(ctx: RequestContext, active: ActiveSession, csrf: string) {
    if (!this.p.clients.length) return undefined;
    const list = await this.s.store.identities.listByUser(active.user.id);
    const nameOf = (id: string | undefined) => (id && this.p.get(id)?.name) || id;
    const linked = this.tools.queryParam(ctx, 'linked');
    const unlinked = this.tools.queryParam(ctx, 'unlinked');
    const notice =
      linked && list.some((i) => i.provider === linked)
        ? `${nameOf(linked)} is linked to your account.`
        : unlinked && this.p.get(unlinked)
          ? `${nameOf(unlinked)} is no longer linked.`
          : undefined;
    return {
      id: 'sign-in-methods',
      heading: 'Ways to sign in',
      body: identitiesSection({
        identities: list,
        providers: this.p.clients,
        hasPassword: active.user.passwordHash !== null,
        prefix: this.s.prefix,
        csrf,
      }),
      notice,
    };
  }

  async link(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    const client = this.p.get(field(input, 'provider', 64) ?? '');
    if (!client) throw new HttpError(400, 'unknown_provider', 'There is no such sign-in provider.');
    // Linking adds a way into the account: a sign-in long ago is confirmed first (security.md #204).
    if (this.reauth && !this.reauth.requireRecentAuth(ctx, active, `${this.s.prefix}/account`, input.kind === 'json'))
      return;
    return this.begin(ctx, client, 'link', active.session.idHash, `${this.s.prefix}/account?linked=${client.id}`);
  }

  async unlink(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    // Unlinking takes a way into the account away (the owner's, in a stolen session's hands):
    // a sign-in long ago is confirmed first, as for linking (security.md #204).
    if (this.reauth && !this.reauth.requireRecentAuth(ctx, active, `${this.s.prefix}/account`, input.kind === 'json'))
      return;
    const id = field(input, 'identity', 64) ?? '';
    const identity = (await this.s.store.identities.listByUser(active.user.id)).find((i) => i.id === id);
    const result = identity ? await this.s.store.identities.deleteUnlessLast(identity.id, active.user.id) : 'not_found';
    if (result === 'not_found') throw new HttpError(404, 'not_found', 'That identity is not linked to your account.');
    if (result === 'last')
      throw new HttpError(409, 'last_sign_in_method', 'This is your only way to sign in. Link another provider first.');
    await this.p.tokens.forgetUser(active.user.id, identity!.provider);
    this.s.audit.record({
      event: 'provider_unlinked',
      userId: active.user.id,
      ctx,
      detail: { provider: identity!.provider },
    });
    this.s.logger.info(
      { event: 'identity_unlinked', userId: active.user.id, provider: identity!.provider, requestId: ctx.requestId },
      'identity unlinked',
    );
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true });
    redirect(ctx.res, 303, `${ctx.site.origin}${this.s.prefix}/account?unlinked=${identity!.provider}`);
  }
}
