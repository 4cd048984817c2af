import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, type JWTVerifyGetKey } from 'jose';
import * as oauth from 'openid-client';
import { cleanDisplayName } from '../accounts/names.ts';
import { issuerJwksUri } from '../keys/jwks.ts';
import type { Logger } from '../log/index.ts';
import { LogoutTokenError, type IssuerKeys } from './backchannel.ts';
import { classify, Lazy, ProviderError, type ProviderClient, type Refreshed } from './client.ts';
import {
  claimAt,
  cleanText,
  groupsFrom,
  providerDidMfa,
  verifiedFrom,
  type ProviderProfile,
  type ProviderTokenSet,
} from './profile.ts';
import { displayName, scopesOf, type OidcProviderConfig } from '../config/providers.ts';

/**
 * Any OpenID Connect issuer, through openid-client: discovery on first use (cached; a
 * failure is retried after a back-off, and never stops Gatehouse from starting), the
 * authorization code flow with PKCE S256, state and nonce, the RFC 9207 `iss` check, and an
 * ID token validated by the library (signature against the issuer's JWKS, also for a token
 * from the token endpoint; alg among those discovery lists or the one configured; iss, aud,
 * azp, exp, iat, nbf, nonce), plus its `typ` and a future `iat` (idTokenProblem). Plain http
 * only for a loopback issuer (the schema refuses any other).
 */
export class OidcProvider implements ProviderClient {
  readonly id: string;
  readonly type = 'oidc' as const;
  readonly name: string;
  readonly config: OidcProviderConfig;
  private readonly logger: Logger;
  private readonly discovery: Lazy<oauth.Configuration>;
  /** The issuer's JWKS for logout tokens (jose caches it and refetches for an unknown kid, at most every 30 s). */
  private jwks: { uri: string; keys: JWTVerifyGetKey } | undefined;

  constructor(config: OidcProviderConfig, logger: Logger) {
    this.config = config;
    this.id = config.id;
    this.name = displayName(config);
    this.logger = logger;
    this.discovery = new Lazy(() => this.discover());
  }

  private async discover(): Promise<oauth.Configuration> {
    const c = this.config;
    const issuer = new URL(c.issuer);
    const secret = c.clientSecret;
    const method = c.tokenEndpointAuthMethod;
    const basic = secret ? oauth.ClientSecretBasic(secret) : undefined;
    const post = secret ? oauth.ClientSecretPost(secret) : undefined;
    // Basic when the issuer allows it (the spec's default), post when it lists only that.
    const auth: oauth.ClientAuth = (as, client, body, headers) => {
      if (!basic || !post) return oauth.None()(as, client, body, headers);
      const supported = as.token_endpoint_auth_methods_supported;
      const usePost = method
        ? method === 'client_secret_post'
        : Array.isArray(supported) &&
          !supported.includes('client_secret_basic') &&
          supported.includes('client_secret_post');
      return (usePost ? post : basic)(as, client, body, headers);
    };
    const metadata: Partial<oauth.ClientMetadata> = {
      [oauth.clockTolerance]: CLOCK_TOLERANCE_S,
      ...(secret ? { client_secret: secret } : {}),
      ...(c.idTokenSigningAlg ? { id_token_signed_response_alg: c.idTokenSigningAlg } : {}),
    };
    try {
      const config = await oauth.discovery(issuer, c.clientId, metadata, auth, {
        timeout: Math.ceil(c.timeout / 1000),
        // The ID token's signature is checked against the issuer's JWKS although it came
        // straight from the token endpoint: TLS alone would not catch a forged token from a
        // compromised path (and a loopback issuer has no TLS). Plain http: loopback only
        // (the schema refuses any other), and only then is it turned on.
        execute: [
          oauth.enableNonRepudiationChecks,
          ...(issuer.protocol === 'http:' ? [oauth.allowInsecureRequests] : []),
        ],
      });
      const m = config.serverMetadata();
      this.logger.info(
        {
          event: 'provider_discovered',
          provider: this.id,
          issuer: m.issuer,
          endSession: Boolean(m.end_session_endpoint),
        },
        `discovered ${m.issuer}`,
      );
      return config;
    } catch (err) {
      const e = classify(err, 'discovery');
      this.logger.warn(
        { event: 'provider_discovery_failed', provider: this.id, issuer: c.issuer, detail: e.detail },
        `cannot read the discovery document of ${c.issuer}`,
      );
      throw e;
    }
  }

  /** Discovery (the issuer checked against the document's) and the issuer's keys. */
  async probe(): Promise<string> {
    const m = (await this.discovery.get()).serverMetadata();
    if (!m.jwks_uri)
      throw new ProviderError('provider_unreachable', `the discovery document of ${m.issuer} has no jwks_uri`);
    let keys: unknown;
    try {
      const res = await fetch(m.jwks_uri, { signal: AbortSignal.timeout(this.config.timeout) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      keys = ((await res.json()) as { keys?: unknown }).keys;
    } catch (err) {
      throw new ProviderError('provider_unreachable', `jwks_uri ${m.jwks_uri}: ${(err as Error).message}`);
    }
    if (!Array.isArray(keys) || keys.length === 0)
      throw new ProviderError('provider_unreachable', `jwks_uri ${m.jwks_uri} lists no keys`);
    return `discovered ${m.issuer}: ${keys.length} signing key(s)${m.end_session_endpoint ? ', an end_session_endpoint' : ''}`;
  }

  warm(): Promise<void> {
    return this.discovery.get().then(
      () => {},
      () => {},
    );
  }

  authorizationOrigins(): string[] {
    const m = this.discovery.current?.serverMetadata();
    const origins = new Set([new URL(this.config.issuer).origin]);
    if (m?.authorization_endpoint) origins.add(new URL(m.authorization_endpoint).origin);
    return [...origins];
  }

  endSessionOrigins(): string[] {
    if (!this.config.endSession) return [];
    const endpoint = this.discovery.current?.serverMetadata().end_session_endpoint;
    return [new URL(endpoint ?? this.config.issuer).origin];
  }

  async authorizationUrl(p: {
    redirectUri: string;
    state: string;
    nonce: string;
    codeChallenge: string;
    fresh?: boolean;
  }): Promise<URL> {
    const config = await this.discovery.get();
    return oauth.buildAuthorizationUrl(config, {
      ...this.config.authorizationParams,
      ...(p.fresh ? { prompt: 'login', max_age: '0' } : {}),
      redirect_uri: p.redirectUri,
      response_type: 'code',
      scope: scopesOf(this.config).join(' '),
      state: p.state,
      nonce: p.nonce,
      code_challenge: p.codeChallenge,
      code_challenge_method: 'S256',
    });
  }

  async callback(p: {
    redirectUri: string;
    query: string;
    state: string;
    nonce: string;
    codeVerifier: string;
    fresh?: boolean;
  }): Promise<{ profile: ProviderProfile; tokens: ProviderTokenSet }> {
    const config = await this.discovery.get();
    let response: Awaited<ReturnType<typeof oauth.authorizationCodeGrant>>;
    try {
      response = await oauth.authorizationCodeGrant(config, new URL(p.redirectUri + p.query), {
        pkceCodeVerifier: p.codeVerifier,
        expectedState: p.state,
        expectedNonce: p.nonce,
        idTokenExpected: true,
        // A re-authentication asked for max_age=0: the ID token's auth_time must be now.
        ...(p.fresh ? { maxAge: 0 } : {}),
      });
    } catch (err) {
      throw classify(err, 'callback');
    }
    const claims = response.claims();
    if (!claims || !response.id_token) throw new ProviderError('id_token_invalid', 'no ID token in the token response');
    const problem = idTokenProblem(response.id_token, Date.now() / 1000);
    if (problem) throw new ProviderError('id_token_invalid', problem);
    const tokens = tokenSet(response, undefined);
    const profile = this.profileFrom(claims as Record<string, unknown>, claims.iss);
    profile.mfa = providerDidMfa(claims as Record<string, unknown>);
    const m = config.serverMetadata();
    // Many issuers put only sub in the ID token of a code flow; the rest is at userinfo.
    if ((!profile.email || !profile.name || !profile.groups.length) && m.userinfo_endpoint && response.access_token) {
      try {
        const info = (await oauth.fetchUserInfo(config, response.access_token, claims.sub)) as Record<string, unknown>;
        const more = this.profileFrom(info, claims.iss);
        if (!profile.email && more.email) {
          profile.email = more.email;
          profile.emailVerified = more.emailVerified;
        }
        profile.name ??= more.name;
        if (!profile.groups.length) profile.groups = more.groups;
      } catch (err) {
        throw classify(err, 'userinfo');
      }
    }
    return { profile, tokens };
  }

  private profileFrom(claims: Record<string, unknown>, issuer: string): ProviderProfile {
    const email = cleanText(claims.email, 254);
    return {
      issuer,
      subject: String(claims.sub),
      email,
      emailVerified: Boolean(email) && (this.config.trustEmail || verifiedFrom(claims.email_verified)),
      name:
        cleanDisplayName(claims.name) ??
        cleanDisplayName([claims.given_name, claims.family_name].filter((x) => typeof x === 'string').join(' ')) ??
        cleanDisplayName(claims.preferred_username),
      groups: groupsFrom(claimAt(claims, this.config.groupsClaim)),
    };
  }

  async refresh(refreshToken: string, idToken?: string | null): Promise<Refreshed> {
    const config = await this.discovery.get().catch((err: unknown) => {
      throw classify(err, 'discovery');
    });
    let response: Awaited<ReturnType<typeof oauth.refreshTokenGrant>>;
    try {
      response = await oauth.refreshTokenGrant(config, refreshToken);
    } catch (err) {
      throw classify(err, 'refresh');
    }
    const tokens = tokenSet(response, refreshToken);
    if (!this.config.syncGroups || !tokens.accessToken) return { tokens };
    return { tokens, groups: await this.groupsNow(config, response, tokens.accessToken, idToken) };
  }

  /**
   * syncGroups at a refresh, from the same places as at sign-in: the new ID token's groupsClaim,
   * else userinfo's. Without a new ID token only a userinfo answer that names the claim counts (an
   * issuer that sends no ID token at a refresh must not empty the groups). Undefined: nothing said.
   */
  private async groupsNow(
    config: oauth.Configuration,
    response: oauth.TokenEndpointResponse & oauth.TokenEndpointResponseHelpers,
    accessToken: string,
    idToken: string | null | undefined,
  ): Promise<string[] | undefined> {
    const claims = response.claims() as Record<string, unknown> | undefined;
    if (claims) {
      const groups = groupsFrom(claimAt(claims, this.config.groupsClaim));
      if (groups.length) return groups;
    }
    const subject = claims?.sub ?? (idToken ? decodeJwt(idToken).sub : undefined);
    if (typeof subject !== 'string' || !config.serverMetadata().userinfo_endpoint) return claims ? [] : undefined;
    try {
      const info = (await oauth.fetchUserInfo(config, accessToken, subject)) as Record<string, unknown>;
      const stated = claimAt(info, this.config.groupsClaim);
      return stated === undefined ? (claims ? [] : undefined) : groupsFrom(stated);
    } catch (err) {
      this.logger.warn(
        { event: 'provider_groups_unavailable', provider: this.id, detail: classify(err, 'userinfo').detail },
        "the provider's userinfo could not be read at a refresh: the user's groups are left as they are",
      );
      return undefined;
    }
  }

  /**
   * What tokens the issuer signs are checked against: the discovered issuer, this client, the algs
   * ID tokens are signed with here, the issuer's JWKS. Back-channel logout tokens (backchannel.ts)
   * use all of it; its access tokens (bearer-tokens.ts) the issuer and the JWKS.
   */
  async signingKeys(): Promise<IssuerKeys> {
    const config = await this.discovery.get().catch(() => {
      throw new LogoutTokenError(`the discovery document of ${this.config.issuer} cannot be read`, true);
    });
    const m = config.serverMetadata();
    const uri = issuerJwksUri(m.jwks_uri, this.config.issuer);
    if (!uri) throw new LogoutTokenError('discovery lists no usable jwks_uri', true);
    if (this.jwks?.uri !== uri.href)
      this.jwks = { uri: uri.href, keys: createRemoteJWKSet(uri, { timeoutDuration: this.config.timeout }) };
    const listed = m.id_token_signing_alg_values_supported ?? ['RS256'];
    return {
      issuer: m.issuer,
      clientId: this.config.clientId,
      // Never none, never a shared secret (HS*: the client secret is no proof of the issuer).
      algorithms: (this.config.idTokenSigningAlg ? [this.config.idTokenSigningAlg] : listed).filter(
        (a) => a !== 'none' && !a.startsWith('HS'),
      ),
      jwks: this.jwks.keys,
    };
  }

  async endSessionUrl(p: { idToken: string | null; postLogoutRedirectUri: string }): Promise<URL | undefined> {
    if (!this.config.endSession) return undefined;
    const config = await this.discovery.get().catch(() => undefined);
    if (!config?.serverMetadata().end_session_endpoint) return undefined;
    return oauth.buildEndSessionUrl(config, {
      post_logout_redirect_uri: p.postLogoutRedirectUri,
      ...(p.idToken ? { id_token_hint: p.idToken } : {}),
    });
  }
}

/** openid-client's allowed clock difference for exp and nbf (its default), set here so the iat check uses the same. */
const CLOCK_TOLERANCE_S = 30;

/**
 * What openid-client leaves unchecked in an ID token it has verified (signature, iss, aud,
 * exp, nbf, nonce): a `typ` header that names another kind of JWT (an RFC 9068 access token,
 * `at+jwt`, may be signed with the same keys, for the same client), and an `iat` in the future
 * beyond the allowed clock difference. An ID token has no `typ`, or JWT.
 */
export function idTokenProblem(idToken: string, nowSeconds: number): string | undefined {
  const typ: unknown = decodeProtectedHeader(idToken).typ;
  if (typ !== undefined && !(typeof typ === 'string' && /^(application\/)?jwt$/i.test(typ)))
    return `unexpected JWT "typ" header ${JSON.stringify(typ)}: not an ID token`;
  const iat = decodeJwt(idToken).iat;
  if (typeof iat === 'number' && iat > nowSeconds + CLOCK_TOLERANCE_S)
    return 'unexpected JWT "iat" (issued at) claim value, it is in the future';
  return undefined;
}

/** The token endpoint's answer as Gatehouse keeps it. A refresh without a new refresh token keeps the old one. */
export function tokenSet(
  r: oauth.TokenEndpointResponse & oauth.TokenEndpointResponseHelpers,
  previousRefresh: string | undefined,
): ProviderTokenSet {
  const now = Date.now();
  const expiresIn = r.expiresIn();
  return {
    accessToken: r.access_token ?? null,
    refreshToken: r.refresh_token ?? previousRefresh ?? null,
    idToken: r.id_token ?? null,
    // A second short: the issuer rounds its exp down to the second, and the answer took a while to get here.
    expiresAt: expiresIn === undefined ? null : now + Math.max(0, expiresIn - 1) * 1000,
    obtainedAt: now,
    scope: typeof r.scope === 'string' ? r.scope : null,
  };
}
