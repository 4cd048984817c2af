import type { App } from '../sites/index.ts';
import type { ActiveSession } from '../sessions/index.ts';
import type { Grant, Store } from '../store/index.ts';
import { jwtIssuer, type ProviderBearerResult } from '../providers/bearer-tokens.ts';
import type { Resources } from './resources.ts';
import type { KeyRing } from '../keys/keys.ts';
import { type Clients, SERVICE_PREFIX, type ServiceClient } from './clients.ts';
import { ACCESS_TOKEN_TYP, type LoginGuard, REVALIDATION_ENDED, type TokenService } from './grants.ts';

/**
 * `Authorization: Bearer` on an app's routes. A token is accepted when its signature is
 * Gatehouse's (the key ring, alg pinned), `typ` is at+jwt, `iss` is publicUrl, it has not
 * expired, `aud` is this app's resource URL, and its grant is live (not revoked, not ended,
 * the user not disabled, its provider still confirming it where providers[].revalidate says so):
 * the grant is read on every request, so a revocation applies at the next one. A service client's
 * own token (client_credentials) has no grant: the config must still hold the client, with the
 * secret it was issued under and this app. What a signature check proves is kept in memory per
 * token, so a busy CLI costs a map lookup and the grant read (itself from memory on SQLite until
 * anything is written), no crypto.
 */

/** A bearer-authenticated request presents itself like a browser session of the grant. */
export interface BearerSession extends ActiveSession {
  /**
   * The CLI or MCP login; null for a service client's own token (client_credentials), whose user is
   * the client, and for a provider's token.
   */
  grant: Grant | null;
  clientId: string;
  scope: string;
  /** A provider's own access token (providers[].bearerTokens): which, and the token (its tokenRelay). */
  provider?: { id: string; token: string };
}

export type BearerResult = { ok: true; active: BearerSession } | { ok: false; description: string };

interface Verified {
  sub: string;
  aud: string;
  /** The grant; null for a service client's token, which carries its secret's mark instead. */
  sid: string | null;
  secretMark: string | null;
  clientId: string;
  scope: string;
  iatMs: number;
  expMs: number;
  /**
   * The answer last built for this token, and the grant read (or the service client) it was built
   * from: reused while the read cache hands out the same one.
   */
  answer?: { from: GrantWithUser | ServiceClient; result: BearerResult };
}

type GrantWithUser = { grant: Grant; user: ActiveSession['user'] };

const CACHE_ENTRIES = 10_000;
const MAX_TOKEN = 4096;

/** The token of an `Authorization: Bearer ...` header (possibly malformed), or undefined for another scheme. */
export function bearerToken(header: string): string | undefined {
  if (
    header.length < 7 ||
    header.slice(0, 6).toLowerCase() !== 'bearer' ||
    (header.length > 6 && header.charCodeAt(6) !== 32)
  )
    return undefined;
  return header.slice(7).trim();
}

const TOKEN_SYNTAX = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Whether a bearer token is Gatehouse's to decide: a JWT naming Gatehouse as its issuer, or
 * a Gatehouse refresh token (never good as an access token). Any other token belongs to the
 * app (unless a provider's tokens are accepted: providers/bearer-tokens.ts). Costs one base64
 * decode and a JSON parse, only for requests that carry a bearer token.
 */
export function looksIssuedBy(token: string, issuer: string): boolean {
  return token.startsWith('grt.') || jwtIssuer(token) === issuer;
}

/** What the app learns of a request with a provider's own access token: the user, as for a browser session. */
export function providerSession(r: ProviderBearerResult & { ok: true }, token: string, app: App): BearerResult {
  const c = r.claims;
  return {
    ok: true,
    active: {
      session: {
        // One assertion per user and provider, as for one session.
        idHash: `idp:${r.provider}:${c.subject}`,
        userId: r.user.id,
        site: app.site.origin,
        createdAt: c.iatMs,
        lastSeenAt: c.iatMs,
        expiresAt: c.expMs,
        amr: [`idp:${r.provider}`],
        ip: null,
        userAgent: null,
        authTime: c.authTimeMs,
      },
      user: r.user,
      grant: null,
      clientId: c.clientId,
      scope: c.scope,
      provider: { id: r.provider, token },
    },
  };
}

export class BearerAuth {
  private readonly verified = new Map<string, Verified>();
  private readonly keys: KeyRing;
  private readonly store: Store;
  private readonly tokens: TokenService;
  private readonly resources: Resources;
  private readonly clients: Pick<Clients, 'service'>;
  private readonly issuer: string;
  private readonly now: () => number;
  private readonly guard: LoginGuard | undefined;

  constructor(o: {
    keys: KeyRing;
    store: Store;
    tokens: TokenService;
    resources: Resources;
    clients: Pick<Clients, 'service'>;
    issuer: string;
    now: () => number;
    guard?: LoginGuard;
  }) {
    this.keys = o.keys;
    this.store = o.store;
    this.tokens = o.tokens;
    this.resources = o.resources;
    this.clients = o.clients;
    this.issuer = o.issuer;
    this.now = o.now;
    this.guard = o.guard;
  }

  /** Whether this token passed verify() and is still held: then it is Gatehouse's for sure. */
  knows(token: string): boolean {
    return this.verified.has(token);
  }

  /** The signature, typ, iss, exp and aud (this app's) checked once per token by the key ring; kept while it lives. */
  private async verify(token: string, audience: string): Promise<Verified | undefined> {
    const claims = await this.keys
      .verify(token, { typ: ACCESS_TOKEN_TYP, audience, issuer: this.issuer, clockToleranceSeconds: 0 })
      .then(
        (r) => r.payload,
        () => undefined,
      );
    if (
      !claims ||
      typeof claims.sub !== 'string' ||
      claims.aud !== audience ||
      typeof claims.client_id !== 'string' ||
      typeof claims.exp !== 'number'
    )
      return undefined;
    const sid = typeof claims.sid === 'string' ? claims.sid : null;
    const secretMark = typeof claims.secret_mark === 'string' ? claims.secret_mark : null;
    // A grant's token (a user's) or a service client's own: never both, never neither.
    if (sid === null ? secretMark === null || claims.sub !== SERVICE_PREFIX + claims.client_id : secretMark !== null)
      return undefined;
    const v: Verified = {
      sub: claims.sub,
      aud: claims.aud,
      sid,
      secretMark,
      clientId: claims.client_id,
      scope: typeof claims.scope === 'string' ? claims.scope : '',
      iatMs: (claims.iat ?? 0) * 1000,
      expMs: claims.exp * 1000,
    };
    if (this.verified.size >= CACHE_ENTRIES) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, v);
    return v;
  }

  async authenticate(token: string, app: App): Promise<BearerResult> {
    const audience = this.resources.idOf(app);
    // A token seen before is a map lookup: no syntax check, no signature, no await.
    let v = this.verified.get(token);
    if (v === undefined) {
      if (token.length > MAX_TOKEN || !TOKEN_SYNTAX.test(token))
        return { ok: false, description: 'the access token is malformed' };
      v = await this.verify(token, audience);
    } else if (v.aud !== audience) v = undefined;
    if (!v) return { ok: false, description: 'the access token is not valid here (signature, issuer, expiry or app)' };
    const now = this.now();
    if (now >= v.expMs) {
      this.verified.delete(token);
      return { ok: false, description: 'the access token has expired' };
    }
    if (v.sid === null) return this.service(v, app);
    const found = await this.login(v.sid, v.clientId, v.sub, now);
    if (typeof found === 'string') return { ok: false, description: found };
    if (v.answer?.from === found && v.answer.result.ok && v.answer.result.active.session.site === app.site.origin)
      return v.answer.result;
    const { grant, user } = found;
    const result: BearerResult = {
      ok: true,
      active: {
        // The grant in the shape of a session: what the app learns of a bearer request is
        // what it learns of a browser session (identity headers, assertion).
        session: {
          idHash: `grant:${grant.id}`,
          userId: user.id,
          site: app.site.origin,
          createdAt: grant.createdAt,
          lastSeenAt: grant.lastUsedAt,
          expiresAt: grant.expiresAt,
          amr: grant.amr,
          ip: grant.ip,
          userAgent: grant.userAgent,
          authTime: grant.authTime,
        },
        user,
        grant,
        clientId: v.clientId,
        scope: v.scope,
      },
    };
    v.answer = { from: found, result };
    return result;
  }

  /** The grant of a token, with its user, while it stands (not revoked, not ended, confirmed); else why not. */
  private async login(sid: string, clientId: string, sub: string, now: number): Promise<GrantWithUser | string> {
    const found = await this.store.oauth.grants.getWithUser(sid);
    if (!found || found.grant.clientId !== clientId || found.grant.userId !== sub || found.user.disabled)
      return 'the login was revoked';
    const ended = this.tokens.ended(found.grant, now);
    if (ended) return ended;
    if (this.guard) {
      const stands = this.guard(found.grant);
      if (stands !== true && !(await stands)) return REVALIDATION_ENDED;
    }
    return found;
  }

  /**
   * Whether what a token admitted still stands, its own expiry aside: the login behind it (a
   * grant, read afresh), or a service client still configured for the app. The user it answers
   * is read now. An open WebSocket is checked by it (pipeline/tunnels.ts): the token admitted the
   * handshake, the login is what the tunnel lives by. A provider's token is the caller's (oauth/server.ts).
   */
  async recheck(active: BearerSession, app: App): Promise<BearerResult> {
    if (active.grant === null) {
      const client = this.clients.service(active.clientId);
      return client && client.apps.has(app.name)
        ? { ok: true, active }
        : { ok: false, description: 'the client may no longer call this app' };
    }
    const found = await this.login(active.grant.id, active.clientId, active.user.id, this.now());
    return typeof found === 'string'
      ? { ok: false, description: found }
      : { ok: true, active: { ...active, user: found.user } };
  }

  /**
   * A service client's own token (client_credentials): good while the config still has that
   * client, with the same secret and this app among its apps. No store read: what it is comes
   * from the config.
   */
  private service(v: Verified, app: App): BearerResult {
    const client = this.clients.service(v.clientId);
    if (!client || client.secretMark !== v.secretMark || !client.apps.has(app.name))
      return {
        ok: false,
        description: 'the client may no longer call this app (removed, new secret, or not in its apps)',
      };
    if (v.answer?.from === client && v.answer.result.ok && v.answer.result.active.session.site === app.site.origin)
      return v.answer.result;
    const result: BearerResult = {
      ok: true,
      active: {
        // One "session" per client: the assertion is signed once per client and app.
        session: {
          idHash: client.user.id,
          userId: client.user.id,
          site: app.site.origin,
          createdAt: v.iatMs,
          lastSeenAt: v.iatMs,
          expiresAt: v.expMs,
          amr: [],
          ip: null,
          userAgent: null,
          authTime: v.iatMs,
        },
        user: client.user,
        grant: null,
        clientId: v.clientId,
        scope: v.scope,
      },
    };
    v.answer = { from: client, result };
    return result;
  }
}
