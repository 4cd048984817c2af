import { hash, randomBytes } from 'node:crypto';
import { field } from '../http/body.ts';
import { redirect, sendJson, wantsHtml } from '../http/respond.ts';
import { messagePage } from '../pages/index.ts';
import type { RequestContext } from '../http/context.ts';
import { StoreConflictError } from '../store/index.ts';
import { DEVICE_GRANT, type Client } from './clients.ts';
import { handOverProviderTokens, requestedApp, signedIn, userAgentOf, type OAuthDeps, type PageKit } from './deps.ts';
import { OAuthError, oauthEndpoint, param, readOAuthForm, sendOAuthJson, type OAuthParams } from './http.ts';
import { deviceConfirmPage, deviceEntryPage } from './pages.ts';
import type { TokenResponse } from './grants.ts';
import { formatUserCode, newUserCode, normalizeUserCode, userCodeProblem } from './user-code.ts';

const sha256 = (s: string) => hash('sha256', s, 'base64url');
const SLOW_DOWN_MS = 5000;

/** What a signed-out user is told on the way to the device page: the sign-in page, and the JSON 401. */
export const SIGN_IN_FOR_DEVICE =
  'Sign in to approve the device login. The program that showed you the code waits until you do.';

/**
 * The device authorization grant (RFC 8628): a CLI asks for a device code and a user code,
 * the user enters the user code at <prefix>/device while signed in (by any method), sees
 * which client asks and for what, and approves or denies with a CSRF-protected POST; the
 * CLI polls the token endpoint meanwhile. Everything lives in the store, hashed: a restart
 * or another node continues where the first left off.
 */
export class DeviceFlow {
  private readonly d: OAuthDeps;
  private readonly pages: PageKit;

  constructor(deps: OAuthDeps, pages: PageKit) {
    this.d = deps;
    this.pages = pages;
  }

  private userCodeHash(code: string): string {
    return this.d.secrets.mac('oauth user code', code);
  }

  /** POST <prefix>/oauth/device_authorization */
  authorize(ctx: RequestContext): Promise<void> {
    return oauthEndpoint(ctx.res, async () => {
      const params = await readOAuthForm(ctx.req);
      const client = await this.d.clients.authenticate(ctx.req, params);
      if (!client.grantTypes.has(DEVICE_GRANT))
        throw new OAuthError(400, 'unauthorized_client', 'this client may not use the device flow');
      const scope = this.d.scopes.request(param(params, 'scope', 1000), client);
      const app = requestedApp(this.d, params.all('resource'));
      const verdict = await this.d.limits.deviceAuthorization(ctx.ip);
      if (!verdict.ok)
        throw new OAuthError(429, 'slow_down', 'too many device sign-ins from this address; try again later', {
          'retry-after': String(verdict.retryAfterSeconds),
        });
      const now = this.d.now();
      const { codeTtl, interval } = this.d.config.tokens.device;
      const deviceCode = randomBytes(32).toString('base64url');
      let userCode = '';
      for (let attempt = 0; ; attempt++) {
        userCode = newUserCode();
        try {
          await this.d.store.oauth.devices.create({
            deviceHash: sha256(deviceCode),
            userCodeHash: this.userCodeHash(userCode),
            clientId: client.id,
            scope,
            resource: this.d.resources.idOf(app),
            createdAt: now,
            expiresAt: now + codeTtl,
            intervalMs: interval,
            lastPollAt: null,
            status: 'pending',
            userId: null,
            amr: [],
            authTime: null,
            decidedAt: null,
            sessionHash: null,
            ip: ctx.ip,
            userAgent: userAgentOf(ctx),
          });
          break;
        } catch (err) {
          // A user code still held by an unpurged old authorization: draw another.
          if (!(err instanceof StoreConflictError) || attempt >= 4) throw err;
        }
      }
      const verification = `${this.d.base}/device`;
      this.d.logger.info(
        {
          event: 'oauth_device_authorization',
          clientId: client.id,
          app: app.name,
          ip: ctx.ip,
          requestId: ctx.requestId,
        },
        'device sign-in started',
      );
      sendOAuthJson(ctx.res, 200, {
        device_code: deviceCode,
        user_code: formatUserCode(userCode),
        verification_uri: verification,
        verification_uri_complete: `${verification}?user_code=${formatUserCode(userCode)}`,
        expires_in: Math.floor(codeTtl / 1000),
        interval: Math.ceil(interval / 1000),
      });
    });
  }

  /** grant_type=urn:ietf:params:oauth:grant-type:device_code at the token endpoint. */
  async exchange(params: OAuthParams, client: Client, ctx: RequestContext): Promise<TokenResponse> {
    if (!client.grantTypes.has(DEVICE_GRANT))
      throw new OAuthError(400, 'unauthorized_client', 'this client may not use the device flow');
    const deviceCode = param(params, 'device_code', 128);
    if (!deviceCode) throw new OAuthError(400, 'invalid_request', 'device_code is required');
    const now = this.d.now();
    const deviceHash = sha256(deviceCode);
    const interval = this.d.config.tokens.device.interval;
    const polled = await this.d.store.oauth.devices.poll(deviceHash, now, {
      slowDownMs: SLOW_DOWN_MS,
      slackMs: Math.min(1000, Math.max(250, interval / 4)),
    });
    if (!polled || polled.device.clientId !== client.id)
      throw new OAuthError(400, 'invalid_grant', 'unknown device code');
    const device = polled.device;
    if (now >= device.expiresAt) throw new OAuthError(400, 'expired_token', 'the device code has expired; start again');
    if (device.status === 'redeemed') throw new OAuthError(400, 'invalid_grant', 'the device code was already used');
    if (polled.tooFast)
      throw new OAuthError(
        400,
        'slow_down',
        `polling too fast: wait ${Math.ceil(device.intervalMs / 1000)} s between requests`,
      );
    if (device.status === 'pending')
      throw new OAuthError(400, 'authorization_pending', 'waiting for the user to approve');
    if (device.status === 'denied') throw new OAuthError(400, 'access_denied', 'the user denied the sign-in');
    const user = device.userId ? await this.d.store.users.get(device.userId) : undefined;
    if (!user || user.disabled) throw new OAuthError(400, 'access_denied', 'the account cannot sign in');
    const { grant, refreshToken } = this.d.tokens.newGrant({
      userId: user.id,
      client,
      kind: 'device',
      scope: device.scope,
      resource: device.resource,
      amr: device.amr,
      authTime: device.authTime ?? now,
      refresh: client.grantTypes.has('refresh_token'),
      now,
      ip: ctx.ip,
      userAgent: userAgentOf(ctx),
    });
    if (!(await this.d.store.oauth.devices.redeem(deviceHash, now, grant)))
      throw new OAuthError(400, 'invalid_grant', 'the device code was already used');
    await handOverProviderTokens(this.d, device.sessionHash, grant);
    ctx.userId = user.id;
    return this.d.tokens.response(grant, refreshToken, grant.scope, now);
  }

  // ---- the page where the user enters the code ------------------------------------

  /** Not signed in: a browser goes to sign in and back (the code kept); JSON gets a 401 saying the same. */
  private signInFirst(ctx: RequestContext, userCode: string | undefined, status: 302 | 303, json: boolean): void {
    const back = this.pages.url(ctx, '/device', { user_code: userCode });
    const login = `${ctx.site.origin}${this.pages.url(ctx, '/login', { rd: back })}`;
    if (json) return sendJson(ctx.res, 401, { error: 'unauthenticated', message: SIGN_IN_FOR_DEVICE, login });
    redirect(ctx.res, status, login);
  }

  /** GET <prefix>/device: the entry form (signed in), or the way to sign in first. */
  async page(ctx: RequestContext): Promise<void> {
    const query = new URLSearchParams(ctx.query.slice(1));
    const typed = query.get('user_code') ?? undefined;
    const normalized = normalizeUserCode(typed);
    const active = await signedIn(this.d, ctx);
    if (!active)
      return this.signInFirst(ctx, normalized ? formatUserCode(normalized) : undefined, 302, !wantsHtml(ctx.req));
    const done = query.get('done');
    if (done === 'approved' || done === 'denied') {
      return this.pages.html(
        ctx,
        200,
        messagePage({
          appTitle: ctx.site.title,
          heading: done === 'approved' ? 'Device connected' : 'Sign-in denied',
          message:
            done === 'approved'
              ? 'You can close this window and go back to your program.'
              : 'The program was not signed in. You can close this window.',
        }),
      );
    }
    // Approving is sensitive: a sign-in (or confirmation) long ago is confirmed first (security.md #204).
    const back = this.pages.url(ctx, '/device', { user_code: normalized ? formatUserCode(normalized) : undefined });
    if (this.d.reauth && !this.d.reauth.requireRecentAuth(ctx, active, back)) return;
    const { token, cookies } = this.pages.csrf(ctx);
    this.pages.html(
      ctx,
      200,
      deviceEntryPage({
        appTitle: ctx.site.title,
        action: this.pages.url(ctx, '/device'),
        csrf: token,
        email: active.user.email,
        userCode: normalized ? formatUserCode(normalized) : undefined,
      }),
      cookies,
    );
  }

  /**
   * POST <prefix>/device: with user_code alone, shows what is asked (client, app, access,
   * where from); with decision=approve|deny, decides. Wrong codes count against the
   * client's IP and the account.
   */
  async submit(ctx: RequestContext): Promise<void> {
    const input = await this.pages.readPost(ctx);
    const typed = field(input, 'user_code', 64);
    const decision = field(input, 'decision', 16);
    const active = await signedIn(this.d, ctx);
    if (!active) {
      const code = normalizeUserCode(typed);
      return this.signInFirst(ctx, code && formatUserCode(code), 303, input.kind === 'json');
    }
    const { user, session } = active;
    const fail = (status: number, code: string, message: string, retryAfter?: number) => {
      const headers: Record<string, string> = retryAfter ? { 'retry-after': String(retryAfter) } : {};
      if (input.kind === 'json') return sendJson(ctx.res, status, { error: code, message }, headers);
      this.pages.html(
        ctx,
        status,
        deviceEntryPage({
          appTitle: ctx.site.title,
          action: this.pages.url(ctx, '/device'),
          csrf: this.pages.csrf(ctx).token,
          email: user.email,
          userCode: typed,
          error: message,
        }),
        [],
        headers,
      );
    };
    if (decision !== undefined && decision !== 'approve' && decision !== 'deny')
      return fail(400, 'invalid_request', 'Choose Allow or Deny.');
    if (decision === 'approve' && this.d.reauth) {
      const code = normalizeUserCode(typed);
      const back = this.pages.url(ctx, '/device', { user_code: code ? formatUserCode(code) : undefined });
      if (!this.d.reauth.requireRecentAuth(ctx, active, back, input.kind === 'json')) return;
    }
    const verdict = await this.d.limits.userCodeAttempt(ctx.ip, user.id);
    if (!verdict.ok)
      return fail(
        429,
        'too_many_attempts',
        'Too many wrong codes. Wait a few minutes and try again.',
        verdict.retryAfterSeconds,
      );
    const code = normalizeUserCode(typed);
    if (!code) return fail(400, 'invalid_code', userCodeProblem(typed));
    const now = this.d.now();
    const device = await this.d.store.oauth.devices.getByUserCode(this.userCodeHash(code));
    if (!device || device.status !== 'pending' || now >= device.expiresAt) {
      return fail(
        400,
        'invalid_code',
        'This code is not valid. Check it, or start again in your program: codes work once and expire after a few minutes.',
      );
    }
    await this.d.limits.userCodeCorrect(ctx.ip, user.id);
    const client = await this.d.clients.get(device.clientId, { fetch: false });
    const app = this.d.resources.resolve(device.resource);
    if (!client || !app)
      return fail(400, 'invalid_code', 'This code is not valid any more. Start again in your program.');
    if (decision === undefined) {
      if (input.kind === 'json')
        return sendJson(ctx.res, 200, {
          client: { id: client.id, name: client.name, verified: client.verified },
          app: app.name,
          resource: device.resource,
          scope: device.scope,
        });
      const { token, cookies } = this.pages.csrf(ctx);
      return this.pages.html(
        ctx,
        200,
        deviceConfirmPage({
          appTitle: ctx.site.title,
          action: this.pages.url(ctx, '/device'),
          csrf: token,
          email: user.email,
          userCode: formatUserCode(code),
          client,
          app: { title: app.title, resource: device.resource },
          scope: device.scope,
          requested: { at: device.createdAt, ip: device.ip, now },
        }),
        cookies,
      );
    }
    const approved = decision === 'approve';
    const decided = await this.d.store.oauth.devices.decide(device.deviceHash, {
      approved,
      userId: user.id,
      amr: session.amr,
      authTime: session.authTime,
      sessionHash: session.idHash,
      now,
    });
    if (!decided)
      return fail(400, 'invalid_code', 'This code was used or has expired meanwhile. Start again in your program.');
    this.d.logger.info(
      {
        event: approved ? 'oauth_device_approved' : 'oauth_device_denied',
        userId: user.id,
        clientId: client.id,
        app: app.name,
        requestId: ctx.requestId,
      },
      approved ? 'device sign-in approved' : 'device sign-in denied',
    );
    if (input.kind === 'json') return sendJson(ctx.res, 200, { result: approved ? 'approved' : 'denied' });
    redirect(
      ctx.res,
      303,
      `${ctx.site.origin}${this.pages.url(ctx, '/device', { done: approved ? 'approved' : 'denied' })}`,
    );
  }
}
