import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import Provider, { errors, type OidcContext } from 'oidc-provider';
import { request } from 'undici';
import { freePort } from './gatehouse.ts';

/**
 * A real OpenID Provider for the tests: panva's oidc-provider (OpenID Certified) on a
 * loopback port, with clients, accounts (claims incl. groups), short access-token TTLs,
 * rotating refresh tokens, RP-initiated logout, and switches to make it misbehave. Its
 * own interaction pages stand in for a login screen: a form a browser fills in, or
 * `autoLogin` for HTTP-client tests. Nothing here fakes the protocol.
 */

export interface IdpAccount {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
}

export interface IdpClient {
  client_id: string;
  client_secret?: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
  id_token_signed_response_alg?: string;
  token_endpoint_auth_method?: string;
  /** Where the IdP posts its logout token when a session here ends (Back-Channel Logout 1.0). */
  backchannel_logout_uri?: string;
  /** With it, ID and logout tokens carry sid. */
  backchannel_logout_session_required?: boolean;
  /** Default authorization_code and refresh_token; without refresh_token the client gets none. */
  grant_types?: string[];
}

export interface IdpOptions {
  /** Names its cookies (several IdPs share 127.0.0.1 and so a cookie jar) and its pages. */
  name: string;
  port?: number;
  clients: IdpClient[];
  accounts: IdpAccount[];
  /** Seconds; default 300. */
  accessTokenTtl?: number;
  /** true: email, name and groups only at userinfo (oidc-provider's default); false: in the ID token too. */
  claimsOnlyAtUserinfo?: boolean;
  /** groups in the ID token only, never at userinfo (with claimsOnlyAtUserinfo false). */
  groupsOnlyInIdToken?: boolean;
  /** 'RS256' (default) or 'ES256': the key the IdP signs with. */
  alg?: 'RS256' | 'ES256';
  /**
   * An API (resource indicator, RFC 8707) the IdP issues JWT access tokens for (RFC 9068), with the
   * scopes api:read and api:write: asked for with `resource`; without it access tokens stay opaque.
   */
  apiResource?: string;
}

export interface TokenEvent {
  grantType: string;
  clientId: string | undefined;
  /** The account the code or refresh token belonged to (so parallel tests can count their own). */
  accountId: string | undefined;
  ok: boolean;
}

export interface TestIdp {
  issuer: string;
  port: number;
  name: string;
  provider: Provider;
  /** The account the next authorization signs in without a form; undefined: show the form. */
  autoLogin: string | undefined;
  /** The next authorization is cancelled by the user (access_denied). */
  deny: boolean;
  accounts: Map<string, IdpAccount>;
  /** Every token-endpoint request, in order. */
  tokenEvents: TokenEvent[];
  /** Every token response body the IdP sent (to look for leaks, to revoke). */
  issued: { accountId?: string; access_token?: string; refresh_token?: string; id_token?: string }[];
  /** Rewrites the next successful authorization-code token response once (tampering tests). */
  tamperNext: ((body: Record<string, unknown>) => Promise<Record<string, unknown>>) | undefined;
  /**
   * Refresh-token grants answer without an ID token, as OpenID Connect Core §12.2 allows (many
   * issuers send none at a refresh).
   */
  refreshWithoutIdToken: boolean;
  /** Answer every token request with this HTTP status (e.g. 503); undefined: behave. */
  failToken: number | undefined;
  /** Requests to end_session that came in. */
  endSessions: URLSearchParams[];
  /** Logout tokens the IdP posted to clients' back-channel logout URIs, and what became of them. */
  backchannel: { clientId: string; accountId: string; sid: string; error?: string }[];
  signIdToken(claims: JWTPayload, header?: Record<string, unknown>): Promise<string>;
  publicJwk: JWK;
  /** Destroys the refresh tokens issued so far (to one account, or all): the next refresh gets invalid_grant. */
  revokeRefreshTokens(accountId?: string): Promise<void>;
  /** Whether the IdP still accepts an access token (its userinfo endpoint answers 200). */
  accepts(accessToken: string): Promise<boolean>;
  /** Successful refresh_token grants, of one account or all. */
  refreshCount(accountId?: string): number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res: ServerResponse, title: string, body: string, status = 200): void {
  const text = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title></head><body><main><h1>${esc(title)}</h1>${body}</main></body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

export async function startIdp(options: IdpOptions): Promise<TestIdp> {
  const port = options.port ?? (await freePort());
  const issuer = `http://127.0.0.1:${port}`;
  const alg = options.alg ?? 'RS256';
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${options.name}-key-1`;
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  const accounts = new Map(options.accounts.map((a) => [a.sub, a]));

  const provider = new Provider(issuer, {
    clients: options.clients.map((c) => ({
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: c.client_secret ? 'client_secret_basic' : 'none',
      ...c,
    })),
    jwks: { keys: [privateJwk] },
    cookies: {
      names: {
        session: `${options.name}_session`,
        interaction: `${options.name}_interaction`,
        resume: `${options.name}_resume`,
      },
      keys: [`${options.name}-cookie-key-0123456789`],
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
    conformIdTokenClaims: options.claimsOnlyAtUserinfo ?? true,
    findAccount: async (_ctx: unknown, sub: string) => {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async (use: string) => {
          const claims = { ...accounts.get(sub)! };
          if (options.groupsOnlyInIdToken && use === 'userinfo') delete claims.groups;
          return claims;
        },
      };
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: options.apiResource
        ? {
            enabled: true,
            defaultResource: async () => undefined,
            useGrantedResource: async () => true,
            getResourceServerInfo: async (_ctx: unknown, resource: string) => {
              if (resource !== options.apiResource) throw new errors.InvalidTarget();
              return {
                scope: 'api:read api:write',
                audience: resource,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg } },
              };
            },
          }
        : { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx: { body: string }, form: string) => {
          ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign out of ${esc(options.name)}</title></head><body><main><h1>Sign out of ${esc(options.name)}?</h1>${form}<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button><button type="submit" form="op.logoutForm">No</button></main></body></html>`;
        },
        postLogoutSuccessSource: async (ctx: { body: string }) => {
          ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head><body><main><h1>Signed out of ${esc(options.name)}</h1></main></body></html>`;
        },
      },
    },
    // oidc-provider refuses to post to special-use addresses (SSRF protection); the tests' Gatehouse
    // is on loopback, where its back-channel logout calls must go.
    fetch: (url: string | URL, init: RequestInit & { dispatcher?: unknown }) => {
      const { dispatcher: _, ...rest } = init;
      return globalThis.fetch(url, rest);
    },
    pkce: { required: () => true },
    // Tokens die at their exp, not 15 s later (the default tolerance): tests wait for that.
    clockTolerance: 0,
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(t: string): boolean }) =>
      client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: options.accessTokenTtl ?? 300,
      IdToken: 3600,
      RefreshToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    renderError: async (ctx: { type: string; body: string }, out: Record<string, string>) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>IdP error</title></head><body><main><h1>IdP error</h1><pre>${esc(JSON.stringify(out))}</pre></main></body></html>`;
    },
  });

  const idp: TestIdp = {
    issuer,
    port,
    name: options.name,
    provider,
    autoLogin: undefined,
    deny: false,
    accounts,
    tokenEvents: [],
    issued: [],
    tamperNext: undefined,
    refreshWithoutIdToken: false,
    failToken: undefined,
    endSessions: [],
    backchannel: [],
    publicJwk,
    signIdToken: (claims, header = {}) =>
      new SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'JWT', ...header }).sign(privateKey),
    async revokeRefreshTokens(accountId) {
      for (const t of idp.issued) {
        if (!t.refresh_token || (accountId !== undefined && t.accountId !== accountId)) continue;
        const rt = await provider.RefreshToken.find(t.refresh_token);
        if (rt) await rt.destroy();
      }
    },
    async accepts(accessToken) {
      const res = await request(`${issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } });
      await res.body.dump();
      return res.statusCode === 200;
    },
    refreshCount: (accountId) =>
      idp.tokenEvents.filter(
        (e) => e.grantType === 'refresh_token' && e.ok && (accountId === undefined || e.accountId === accountId),
      ).length,
    down: () => close(),
    up: () => listen(),
    close: () => close(),
  };

  const event = (ctx: OidcContext, ok: boolean): TokenEvent => {
    const e = ctx.oidc?.entities;
    return {
      grantType: String(ctx.oidc?.params?.grant_type),
      clientId: ctx.oidc?.client?.clientId,
      accountId: e?.RefreshToken?.accountId ?? e?.AuthorizationCode?.accountId ?? e?.Account?.accountId,
      ok,
    };
  };
  type LogoutClient = { clientId: string };
  provider.on('backchannel.success', (_ctx: OidcContext, client: LogoutClient, accountId: string, sid: string) =>
    idp.backchannel.push({ clientId: client.clientId, accountId, sid }),
  );
  provider.on(
    'backchannel.error',
    (_ctx: OidcContext, err: Error, client: LogoutClient, accountId: string, sid: string) =>
      idp.backchannel.push({ clientId: client.clientId, accountId, sid, error: err.message }),
  );
  provider.on('grant.success', (ctx: OidcContext) => idp.tokenEvents.push(event(ctx, true)));
  provider.on('grant.error', (ctx: OidcContext) => idp.tokenEvents.push(event(ctx, false)));
  provider.use(async (ctx, next) => {
    if (ctx.path === '/token' && ctx.method === 'POST' && idp.failToken) {
      ctx.status = idp.failToken;
      ctx.body = { error: 'server_error', error_description: 'the test IdP was told to fail' };
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      let body = ctx.body as Record<string, unknown>;
      if (idp.tamperNext && ctx.oidc?.params?.grant_type === 'authorization_code') {
        const tamper = idp.tamperNext;
        idp.tamperNext = undefined;
        body = await tamper(body);
        ctx.body = body;
      }
      if (idp.refreshWithoutIdToken && ctx.oidc?.params?.grant_type === 'refresh_token') {
        const { id_token: _dropped, ...rest } = body;
        body = rest;
        ctx.body = body;
      }
      const e = ctx.oidc?.entities;
      const accountId = e?.AuthorizationCode?.accountId ?? e?.RefreshToken?.accountId;
      idp.issued.push({
        accountId,
        access_token: body.access_token as string,
        refresh_token: body.refresh_token as string | undefined,
        id_token: body.id_token as string | undefined,
      });
    }
  });

  const oidc = provider.callback();
  const interactions = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    const details = await provider.interactionDetails(req, res);
    const finishLogin = (accountId: string) =>
      provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    const cancel = () =>
      provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
    if (req.method === 'POST' && path.endsWith('/login')) {
      const form = await readForm(req);
      if (form.has('cancel')) return cancel();
      const login = form.get('login') ?? '';
      if (accounts.has(login)) return finishLogin(login);
      return loginForm(res, details.uid, 'Unknown user.');
    }
    if (details.prompt.name === 'login') {
      if (idp.deny) {
        idp.deny = false;
        return cancel();
      }
      if (idp.autoLogin) return finishLogin(idp.autoLogin);
      return loginForm(res, details.uid);
    }
    // Consent: granted for whatever was asked, as a first-party IdP does.
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
    const grant =
      (details.grantId && (await provider.Grant.find(details.grantId))) ||
      new provider.Grant({ accountId: details.session!.accountId!, clientId: details.params.client_id! });
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {}))
      grant.addResourceScope(indicator, scopes.join(' '));
    return provider.interactionFinished(
      req,
      res,
      { consent: { grantId: await grant.save() } },
      { mergeWithLastSubmission: true },
    );
  };
  const loginForm = (res: ServerResponse, uid: string, error?: string) =>
    page(
      res,
      `Sign in to ${options.name}`,
      `${error ? `<p role="alert">${esc(error)}</p>` : ''}<form method="post" action="/interaction/${esc(uid)}/login"><label for="login">Username</label> <input id="login" name="login" autocomplete="username"> <button type="submit">Sign in</button> <button type="submit" name="cancel" value="1">Cancel</button></form>`,
    );

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/session/end' || path === '/session/end/confirm') {
      const q = new URL(req.url!, issuer).searchParams;
      if (path === '/session/end' && req.method === 'GET') idp.endSessions.push(q);
    }
    if (path.startsWith('/interaction/')) {
      interactions(req, res, path).catch((err: Error) =>
        page(res, 'Interaction failed', `<pre>${esc(err.message)}</pre>`, 400),
      );
      return;
    }
    oidc(req, res);
  });
  server.keepAliveTimeout = 1000;

  async function listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    idp.port = (server.address() as AddressInfo).port;
  }
  async function close(): Promise<void> {
    if (!server.listening) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  await listen();
  return idp;
}

/** A token endpoint response's ID token, re-signed by the IdP after `change` (a real key, a chosen defect). */
export async function resign(
  idp: TestIdp,
  body: Record<string, unknown>,
  change: (claims: JWTPayload) => JWTPayload,
): Promise<Record<string, unknown>> {
  const claims = decodeJwt(String(body.id_token));
  return { ...body, id_token: await idp.signIdToken(change({ ...claims })) };
}
