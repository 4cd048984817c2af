import { hash, randomBytes } from 'node:crypto';
import { field, type Input } from '../http/body.ts';
import { redirect } from '../http/respond.ts';
import { CSP, messagePage } from '../pages/index.ts';
import type { RequestContext } from '../http/context.ts';
import type { App } from '../sites/index.ts';
import type { Client } from './clients.ts';
import { handOverProviderTokens, requestedApp, signedIn, userAgentOf, type OAuthDeps, type PageKit } from './deps.ts';
import { OAuthError, param, paramsFrom, type OAuthParams } from './http.ts';
import { consentPage } from './pages.ts';
import { redirectCspSource, redirectUriMatches } from '../http/redirect-uri.ts';
import type { TokenResponse } from './grants.ts';

const sha256 = (s: string) => hash('sha256', s, 'base64url');
const CODE_TTL_MS = 60_000;
const CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
/** The request parameters the consent form carries to its POST. */
const CARRIED = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
  'resource',
] as const;

interface AuthorizationRequest {
  client: Client;
  redirectUri: string;
  state: string | undefined;
  scope: string;
  codeChallenge: string;
  app: App;
  prompt: string | undefined;
  carried: Record<string, string | undefined>;
}

/** Failures before the redirect URI is known to be the client's: shown, never redirected (RFC 6749 §4.1.2.1). */
class ShownError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(message: string, status = 400, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}
/** Failures after: sent back to the client at its redirect URI. */
class ReturnedError extends Error {
  readonly error: string;
  readonly to: string;
  readonly state: string | undefined;
  constructor(error: string, description: string, to: string, state: string | undefined) {
    super(description);
    this.error = error;
    this.to = to;
    this.state = state;
  }
}

/**
 * The authorization code grant with PKCE (OAuth 2.1, RFC 9700), as MCP clients use it:
 * GET <prefix>/oauth/authorize checks the request, sends the user to sign in (by any
 * method) and back, and shows the consent page; its CSRF-protected POST issues a
 * single-use code bound to the client, the exact redirect URI, the S256 challenge, the
 * scope and the resource, and answers 303 to the client with code, state and iss (RFC 9207).
 */
export class AuthorizationCodeFlow {
  private readonly d: OAuthDeps;
  private readonly pages: PageKit;

  constructor(deps: OAuthDeps, pages: PageKit) {
    this.d = deps;
    this.pages = pages;
  }

  /** `ip`: the client IP a fetch of a client ID metadata document counts against. */
  private async validate(params: OAuthParams, ip: string): Promise<AuthorizationRequest> {
    const clientId = params.get('client_id');
    if (!clientId || clientId.length > 512) throw new ShownError('The request does not name a client (client_id).');
    let client: Client | undefined;
    try {
      client = await this.d.clients.get(clientId, { fetch: true, requester: ip });
    } catch (err) {
      if (err instanceof OAuthError)
        throw new ShownError(
          `The client cannot be used: ${err.message}.`,
          err.status === 429 ? 429 : 400,
          err.headers as Record<string, string>,
        );
      throw err;
    }
    if (!client) throw new ShownError('This client is not known here.');
    const redirectUri = params.get('redirect_uri');
    if (!redirectUri) throw new ShownError('The request has no redirect_uri.');
    if (!redirectUriMatches(client.redirectUris, redirectUri))
      throw new ShownError('The redirect_uri is not one this client registered.');
    const state = params.get('state');
    const back = (error: string, description: string) => new ReturnedError(error, description, redirectUri, state);
    if (state !== undefined && state.length > 2048) throw back('invalid_request', 'state is too long');
    if (params.get('response_type') !== 'code') throw back('unsupported_response_type', 'response_type must be code');
    if (!client.grantTypes.has('authorization_code'))
      throw back('unauthorized_client', 'this client may not use the authorization code grant');
    const codeChallenge = params.get('code_challenge');
    if (!codeChallenge)
      throw back('invalid_request', 'PKCE is required: send code_challenge with code_challenge_method=S256');
    if (params.get('code_challenge_method') !== 'S256')
      throw back('invalid_request', 'code_challenge_method must be S256');
    if (!CHALLENGE.test(codeChallenge)) throw back('invalid_request', 'code_challenge must be a base64url SHA-256');
    let scope: string;
    let app: App;
    try {
      scope = this.d.scopes.request(params.get('scope'), client);
      app = requestedApp(this.d, params.all('resource'));
    } catch (err) {
      if (err instanceof OAuthError) throw back(err.error, err.message);
      throw err;
    }
    const carried: Record<string, string | undefined> = {};
    for (const k of CARRIED) carried[k] = params.get(k);
    return { client, redirectUri, state, scope, codeChallenge, app, prompt: params.get('prompt'), carried };
  }

  private returnUrl(to: string, values: Record<string, string | undefined>): string {
    const u = new URL(to);
    for (const [k, v] of Object.entries(values)) if (v !== undefined) u.searchParams.append(k, v);
    return u.href;
  }

  private answer(ctx: RequestContext, err: unknown, status: 302 | 303): void {
    if (err instanceof ShownError) {
      return this.pages.html(
        ctx,
        err.status,
        messagePage({
          appTitle: ctx.site.title,
          heading: 'This sign-in request cannot be used',
          message: err.message,
          hint: 'Go back to the program that sent you here and try again, or tell its developer.',
        }),
        [],
        err.headers,
      );
    }
    if (err instanceof ReturnedError) {
      this.d.logger.info({ event: 'oauth_authorize_refused', error: err.error, requestId: ctx.requestId }, err.message);
      return redirect(
        ctx.res,
        status,
        this.returnUrl(err.to, {
          error: err.error,
          error_description: err.message,
          state: err.state,
          iss: this.d.issuer,
        }),
      );
    }
    throw err;
  }

  private parse(input: URLSearchParams): OAuthParams {
    try {
      return paramsFrom(input);
    } catch (err) {
      if (err instanceof OAuthError) throw new ShownError(`The request is malformed: ${err.message}.`);
      throw err;
    }
  }

  /** GET <prefix>/oauth/authorize */
  async start(ctx: RequestContext): Promise<void> {
    let request: AuthorizationRequest;
    try {
      request = await this.validate(this.parse(new URLSearchParams(ctx.query.slice(1))), ctx.ip);
    } catch (err) {
      return this.answer(ctx, err, 302);
    }
    const active = await signedIn(this.d, ctx);
    if (request.prompt === 'none') {
      return this.answer(
        ctx,
        new ReturnedError(
          active ? 'consent_required' : 'login_required',
          'Gatehouse asks the user every time',
          request.redirectUri,
          request.state,
        ),
        302,
      );
    }
    if (!active)
      return redirect(ctx.res, 302, `${ctx.site.origin}${this.pages.url(ctx, '/login', { rd: ctx.path + ctx.query })}`);
    // Approving a client is sensitive: a sign-in long ago is confirmed first (security.md #204).
    if (this.d.reauth && !this.d.reauth.requireRecentAuth(ctx, active, ctx.path + ctx.query)) return;
    const { token, cookies } = this.pages.csrf(ctx);
    const { client, app } = request;
    const page = consentPage({
      appTitle: ctx.site.title,
      action: this.pages.url(ctx, '/oauth/authorize'),
      csrf: token,
      email: active.user.email,
      client: {
        id: client.id,
        name: client.name,
        verified: client.verified,
        uri: client.uri,
        metadataDocument: client.kind === 'metadata',
      },
      returnsTo: redirectCspSource(request.redirectUri),
      app: { title: app.title, resource: this.d.resources.idOf(app) },
      scope: request.scope,
      params: request.carried,
    });
    // Browsers apply form-action to the redirect that follows the POST: allow the client's.
    const csp = CSP.replace("form-action 'self'", `form-action 'self' ${redirectCspSource(request.redirectUri)}`);
    this.pages.html(ctx, 200, page, cookies, { 'content-security-policy': csp });
  }

  /** POST <prefix>/oauth/authorize: the consent form's answer. */
  async decide(ctx: RequestContext): Promise<void> {
    const input = await this.pages.readPost(ctx);
    let request: AuthorizationRequest;
    try {
      request = await this.validate(this.parse(formParams(input)), ctx.ip);
    } catch (err) {
      return this.answer(ctx, err, 303);
    }
    const active = await signedIn(this.d, ctx);
    if (!active) {
      const again = new URLSearchParams(
        Object.entries(request.carried).filter((e): e is [string, string] => e[1] !== undefined),
      );
      return redirect(
        ctx.res,
        303,
        `${ctx.site.origin}${this.pages.url(ctx, '/login', { rd: `${this.pages.url(ctx, '/oauth/authorize')}?${again}` })}`,
      );
    }
    const decision = field(input, 'decision', 16);
    if (decision === 'approve' && this.d.reauth) {
      const again = new URLSearchParams(
        Object.entries(request.carried).filter((e): e is [string, string] => e[1] !== undefined),
      );
      const back = `${this.pages.url(ctx, '/oauth/authorize')}?${again}`;
      if (!this.d.reauth.requireRecentAuth(ctx, active, back, input.kind === 'json')) return;
    }
    if (decision !== 'approve') {
      return this.answer(
        ctx,
        new ReturnedError('access_denied', 'the user denied access', request.redirectUri, request.state),
        303,
      );
    }
    const now = this.d.now();
    const code = randomBytes(32).toString('base64url');
    await this.d.store.oauth.codes.create({
      codeHash: sha256(code),
      clientId: request.client.id,
      redirectUri: request.redirectUri,
      codeChallenge: request.codeChallenge,
      scope: request.scope,
      resource: this.d.resources.idOf(request.app),
      userId: active.user.id,
      amr: active.session.amr,
      authTime: active.session.authTime,
      sessionHash: active.session.idHash,
      createdAt: now,
      expiresAt: now + CODE_TTL_MS,
      redeemedAt: null,
      grantId: null,
    });
    this.d.logger.info(
      {
        event: 'oauth_authorized',
        userId: active.user.id,
        clientId: request.client.id,
        app: request.app.name,
        requestId: ctx.requestId,
      },
      'client authorized',
    );
    redirect(ctx.res, 303, this.returnUrl(request.redirectUri, { code, state: request.state, iss: this.d.issuer }));
  }

  /** grant_type=authorization_code at the token endpoint. */
  async exchange(params: OAuthParams, client: Client, ctx: RequestContext): Promise<TokenResponse> {
    if (!client.grantTypes.has('authorization_code'))
      throw new OAuthError(400, 'unauthorized_client', 'this client may not use the authorization code grant');
    const code = param(params, 'code', 128);
    const verifier = param(params, 'code_verifier', 128);
    const redirectUri = param(params, 'redirect_uri', 2048);
    if (!code) throw new OAuthError(400, 'invalid_request', 'code is required');
    const invalid = (why: string) => new OAuthError(400, 'invalid_grant', why);
    const now = this.d.now();
    const codeHash = sha256(code);
    const row = await this.d.store.oauth.codes.get(codeHash);
    if (!row || row.clientId !== client.id) throw invalid('unknown code');
    if (row.redeemedAt === null) {
      if (now >= row.expiresAt) throw invalid('the code has expired');
      if (redirectUri !== row.redirectUri) throw invalid('redirect_uri differs from the authorization request');
      if (!verifier || !VERIFIER.test(verifier) || sha256(verifier) !== row.codeChallenge)
        throw invalid('the code_verifier does not match the code_challenge');
      const resources = params.all('resource');
      if (resources.length && this.d.resources.idOf(requestedApp(this.d, resources)) !== row.resource)
        throw new OAuthError(400, 'invalid_target', 'resource differs from the authorization request');
    }
    const user = await this.d.store.users.get(row.userId);
    if (!user || user.disabled) throw invalid('the account cannot sign in');
    const { grant, refreshToken } = this.d.tokens.newGrant({
      userId: user.id,
      client,
      kind: 'client',
      scope: row.scope,
      resource: row.resource,
      amr: row.amr,
      authTime: row.authTime,
      refresh: client.grantTypes.has('refresh_token'),
      now,
      ip: ctx.ip,
      userAgent: userAgentOf(ctx),
    });
    const outcome = await this.d.store.oauth.codes.redeem(codeHash, now, grant);
    if (outcome === 'reused') {
      this.d.logger.warn(
        { event: 'oauth_code_reuse', clientId: client.id, userId: user.id, ip: ctx.ip, requestId: ctx.requestId },
        'an authorization code was used twice: what it issued is revoked',
      );
      throw invalid('the code was already used; the tokens issued for it are revoked');
    }
    if (outcome !== 'redeemed') throw invalid(outcome === 'expired' ? 'the code has expired' : 'unknown code');
    await handOverProviderTokens(this.d, row.sessionHash, grant);
    ctx.userId = user.id;
    return this.d.tokens.response(grant, refreshToken, grant.scope, now);
  }
}

function formParams(input: Input): URLSearchParams {
  const search = new URLSearchParams();
  for (const k of CARRIED) {
    const v = input.data[k];
    if (typeof v === 'string') search.append(k, v);
  }
  return search;
}
