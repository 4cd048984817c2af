import type { AuditLog } from '../audit/index.ts';
import { hash, randomBytes } from 'node:crypto';
import type { TokensConfig } from '../config/oauth.ts';
import type { Logger } from '../log/index.ts';
import type { Grant, GrantKind, Store } from '../store/index.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { Client, ServiceClient } from './clients.ts';
import { OAuthError } from './http.ts';
import type { Scopes } from './scopes.ts';
import type { KeyRing } from '../keys/keys.ts';

/**
 * Access and refresh tokens.
 *
 * Access tokens are JWTs (RFC 9068, `typ: at+jwt`) signed with Gatehouse's key ring:
 * iss (publicUrl), sub (user id), aud (the app's resource URL), client_id, scope, sid (the
 * grant), jti, iat, exp (tokens.accessTokenTtl, never past the grant's end), auth_time. A
 * service client's own (client_credentials) has sub "client:<id>" and secret_mark instead of
 * sid and auth_time.
 *
 * Refresh tokens are `grt.<grant id>.<secret>.<mac>`: 256 random bits, stored only as a
 * SHA-256 in the grant's row, plus a MAC (128 bits, derived key) that proves Gatehouse
 * issued the token for that grant. They rotate on every use, as one compare-and-swap on the
 * grant's row, so concurrent refreshes never fork it. A token that was already rotated:
 *   - within tokens.reuseGrace of its rotation: the same successor again (a client that lost
 *     the answer and retries, or two processes refreshing at once, are not logged out);
 *   - later: reuse (RFC 9700 §4.14): the whole grant is revoked.
 * Without the MAC check, anyone who knows a grant id (the `sid` of an access token) could
 * forge an "old token" and revoke a stranger's login; with it only real tokens count.
 */

const sha256 = (s: string) => hash('sha256', s, 'base64url');
/** The JWS typ of access tokens (RFC 9068 §2.1). */
export const ACCESS_TOKEN_TYP = 'at+jwt';

/**
 * Whether a CLI or MCP login still stands by what it was approved through (providers[].revalidate:
 * its provider asked at most every interval): false when it has just been revoked for that.
 */
export type LoginGuard = (grant: Grant) => boolean | Promise<boolean>;
export const REVALIDATION_ENDED = 'the provider the login was approved through no longer confirms it; sign in again';

const REFRESH = /^grt\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{22})$/;

export interface IssueContext {
  now: number;
  ip: string | null;
  userAgent: string | null;
}

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token?: string;
  scope: string;
}

export class TokenService {
  private readonly store: Store;
  private readonly secrets: Secrets;
  private readonly keys: KeyRing;
  private readonly config: TokensConfig;
  private readonly scopes: Scopes;
  private readonly logger: Logger;
  private readonly audit: AuditLog;
  private readonly guard: LoginGuard | undefined;

  /** tokens.accessTokenTtl, within what the key ring signs (tokens.maxLifetime). */
  private readonly accessTtl: number;

  constructor(o: {
    store: Store;
    secrets: Secrets;
    keys: KeyRing;
    config: TokensConfig;
    scopes: Scopes;
    logger: Logger;
    audit: AuditLog;
    guard?: LoginGuard;
  }) {
    this.store = o.store;
    this.secrets = o.secrets;
    this.keys = o.keys;
    this.accessTtl = Math.min(o.config.accessTokenTtl, o.keys.policy.maxLifetimeMs);
    this.config = o.config;
    this.scopes = o.scopes;
    this.logger = o.logger;
    this.audit = o.audit;
    this.guard = o.guard;
  }

  private mac(id: string, secret: string): string {
    return this.secrets.mac('oauth refresh token', `${id}.${secret}`).slice(0, 22);
  }

  private newRefreshToken(grantId: string): string {
    const secret = randomBytes(32).toString('base64url');
    return `grt.${grantId}.${secret}.${this.mac(grantId, secret)}`;
  }

  /** The grant id a refresh token names, when its MAC shows Gatehouse issued it. */
  parseRefresh(token: string): string | undefined {
    const m = REFRESH.exec(token);
    if (!m) return undefined;
    // Checked against secrets.previousKeys too: a master-key rotation does not end CLI logins.
    return this.secrets.verifyMac('oauth refresh token', `${m[1]!}.${m[2]!}`, m[3]!, 22) ? m[1] : undefined;
  }

  /** A new grant (not yet stored: the caller stores it with the step that consumes its code) and its first refresh token. */
  newGrant(
    p: {
      userId: string;
      client: Client;
      kind: GrantKind;
      scope: string;
      resource: string;
      amr: string[];
      authTime: number;
      refresh: boolean;
    } & IssueContext,
  ): { grant: Grant; refreshToken: string | undefined } {
    const id = randomBytes(16).toString('base64url');
    const refreshToken = p.refresh ? this.newRefreshToken(id) : undefined;
    const grant: Grant = {
      id,
      userId: p.userId,
      clientId: p.client.id,
      clientName: p.client.name,
      kind: p.kind,
      scope: p.scope,
      resource: p.resource,
      amr: p.amr,
      authTime: p.authTime,
      createdAt: p.now,
      lastUsedAt: p.now,
      ip: p.ip,
      userAgent: p.userAgent?.slice(0, 256) ?? null,
      // Without a refresh token the grant lives as long as its one access token.
      expiresAt: p.now + (p.refresh ? this.config.refreshTokenTtl : this.accessTtl),
      revokedAt: null,
      revokedReason: null,
      refreshHash: refreshToken ? sha256(refreshToken) : null,
      previousHash: null,
      rotatedAt: null,
      successor: null,
      generation: 0,
    };
    return { grant, refreshToken };
  }

  /** The token endpoint's answer: a fresh access token, and the refresh token when there is one. */
  async response(grant: Grant, refreshToken: string | undefined, scope: string, now: number): Promise<TokenResponse> {
    const ttlMs = Math.min(this.accessTtl, grant.expiresAt - now);
    // iss, iat and exp are the key ring's (the same clock, the same issuer as every Gatehouse JWT).
    const accessToken = await this.keys.sign(
      {
        client_id: grant.clientId,
        scope,
        sid: grant.id,
        jti: randomBytes(16).toString('base64url'),
        auth_time: Math.floor(grant.authTime / 1000),
      },
      { typ: ACCESS_TOKEN_TYP, ttlMs, subject: grant.userId, audience: grant.resource },
    );
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: Math.max(1, Math.floor(ttlMs / 1000)),
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
      scope,
    };
  }

  /**
   * A service client's own access token (client_credentials): the same at+jwt with the client
   * as its subject (RFC 9068 §2.2) and its secret's mark instead of a grant; no refresh token
   * (RFC 6749 §4.4.3): it asks again with its secret.
   */
  async serviceResponse(
    clientId: string,
    service: ServiceClient,
    resource: string,
    scope: string,
  ): Promise<TokenResponse> {
    const accessToken = await this.keys.sign(
      { client_id: clientId, scope, secret_mark: service.secretMark, jti: randomBytes(16).toString('base64url') },
      { typ: ACCESS_TOKEN_TYP, ttlMs: this.accessTtl, subject: service.user.id, audience: resource },
    );
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: Math.max(1, Math.floor(this.accessTtl / 1000)),
      scope,
    };
  }

  /** Why a grant can no longer be used, or undefined while it can. */
  ended(grant: Grant, now: number): string | undefined {
    if (grant.revokedAt !== null) return 'the login was revoked';
    if (now >= grant.expiresAt) return 'the login has expired; sign in again';
    if (grant.refreshHash !== null && now - grant.lastUsedAt >= this.config.refreshIdleTtl)
      return 'the login was unused for too long; sign in again';
    return undefined;
  }

  /** The refresh_token grant (RFC 6749 §6) with rotation, the retry grace and reuse detection. */
  async refresh(
    token: string,
    client: Client,
    scopeParam: string | undefined,
    ctx: IssueContext,
  ): Promise<TokenResponse> {
    const invalid = (why: string) => new OAuthError(400, 'invalid_grant', why);
    const id = REFRESH.exec(token)?.[1];
    if (!id) throw invalid('not a refresh token');
    let grant = await this.store.oauth.grants.get(id);
    if (!grant) throw invalid('unknown refresh token');
    if (grant.clientId !== client.id) throw invalid('the refresh token was issued to another client');
    const ended = this.ended(grant, ctx.now);
    if (ended) throw invalid(ended);
    const user = await this.store.users.get(grant.userId);
    if (!user || user.disabled) throw invalid('the account is disabled');
    if (this.guard && !(await this.guard(grant))) throw invalid(REVALIDATION_ENDED);
    const scope = this.scopes.narrow(scopeParam, grant.scope);
    const presented = sha256(token);
    if (presented === grant.refreshHash) {
      const next = this.newRefreshToken(id);
      const won = await this.store.oauth.grants.rotate(id, presented, {
        hash: sha256(next),
        successor: this.secrets.encrypt(next, `oauth successor ${id} ${presented}`),
        now: ctx.now,
        ip: ctx.ip,
        userAgent: ctx.userAgent?.slice(0, 256) ?? null,
      });
      if (won) return this.response(grant, next, scope, ctx.now);
      // Someone rotated it a moment ago: what they got is below.
      grant = (await this.store.oauth.grants.get(id)) ?? grant;
      const endedMeanwhile = this.ended(grant, ctx.now);
      if (endedMeanwhile) throw invalid(endedMeanwhile);
    }
    if (
      presented === grant.previousHash &&
      grant.successor &&
      grant.rotatedAt !== null &&
      ctx.now - grant.rotatedAt <= this.config.reuseGrace
    ) {
      const successor = this.secrets.decrypt(grant.successor, `oauth successor ${id} ${presented}`);
      if (successor) return this.response(grant, successor, scope, ctx.now);
    }
    if (this.parseRefresh(token) === id) {
      const revoked = await this.store.oauth.grants.revoke(id, ctx.now, 'refresh_token_reused');
      this.audit.record({
        event: 'refresh_reuse',
        outcome: 'revoked',
        userId: grant.userId,
        ip: ctx.ip,
        userAgent: ctx.userAgent,
        detail: { client: client.id, grant: id },
      });
      this.logger.warn(
        { event: 'oauth_refresh_reuse', grant: id, clientId: client.id, userId: grant.userId, ip: ctx.ip, revoked },
        'a rotated refresh token was used again: the login is revoked',
      );
      throw invalid('the refresh token was already used; the login is revoked');
    }
    throw invalid('unknown refresh token');
  }

  /**
   * Revocation (RFC 7009) of a refresh or access token: ends the grant it belongs to, and so
   * every token issued under it. Only the client the token was issued to can do that; for
   * anyone else, and for unknown tokens, nothing happens (and the answer is the same).
   */
  async revoke(token: string, client: Client, audiences: string[], now: number): Promise<Grant | undefined> {
    let grantId = this.parseRefresh(token);
    if (!grantId && token.split('.').length === 3 && token.length <= 4096) {
      const claims = await this.keys.verify(token, { typ: ACCESS_TOKEN_TYP, audience: audiences }).then(
        (r) => r.payload,
        () => undefined,
      );
      if (claims && typeof claims.sid === 'string' && claims.client_id === client.id) grantId = claims.sid;
    }
    if (!grantId) return undefined;
    const grant = await this.store.oauth.grants.get(grantId);
    if (!grant || grant.clientId !== client.id) return undefined;
    return (await this.store.oauth.grants.revoke(grant.id, now, 'client')) ? grant : undefined;
  }
}
