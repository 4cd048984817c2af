import { errors, jwtVerify } from 'jose';
import { HttpError } from '../http/errors.ts';
import { keySetTrouble } from '../keys/jwks.ts';
import type { Metrics } from '../metrics/index.ts';
import type { Store, User } from '../store/index.ts';
import type { ProviderClient } from './client.ts';

/**
 * providers[].bearerTokens: JWT access tokens a provider issued, accepted on the apps' routes as a
 * CLI or MCP login's are (a program that already holds the company IdP's token for the API: a
 * native app with MSAL, a script that signed in with the IdP's own device flow). A token is taken
 * when it is signed by a key of the provider's JWKS (discovery; jose caches the set and refetches
 * for an unknown kid) with an asymmetric algorithm, names the discovered issuer, carries one of the
 * configured audiences (never Gatehouse's client id, which ID tokens carry), has `exp` and `sub`,
 * and lives at most a day; its user is the one linked to (issuer, sub) by a sign-in through the
 * provider, enabled. What a signature check proves is kept per token until it expires, so a busy
 * caller costs a map lookup and the user read, no crypto.
 */

/** What a verified token says, kept per token until it expires. */
export interface TokenClaims {
  subject: string;
  /** azp or client_id: the program at the provider the token was issued to. */
  clientId: string;
  scope: string;
  iatMs: number;
  expMs: number;
  authTimeMs: number;
}

export type ProviderBearerResult =
  | { ok: true; provider: string; user: User; claims: TokenClaims }
  | { ok: false; description: string };

interface Accepting {
  client: ProviderClient;
  audience: string[];
  /** The apps that accept the provider's tokens; null: every app. */
  apps: Set<string> | null;
}

interface Verified {
  by: Accepting;
  issuer: string;
  claims: TokenClaims;
}

/** Asymmetric algorithms only: a shared secret is no proof of the issuer. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const CLOCK_TOLERANCE_S = 30;
const MAX_LIFETIME_S = 86_400;
const CACHE_ENTRIES = 10_000;
const MAX_TOKEN = 8192;
const TOKEN_SYNTAX = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The `iss` of a JWT's payload, unverified: whose token it says it is (undefined: not a JWT). */
export function jwtIssuer(token: string): string | undefined {
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (second < 0 || second - first > 8192 || token.indexOf('.', second + 1) >= 0) return undefined;
  try {
    const iss = (
      JSON.parse(Buffer.from(token.slice(first + 1, second), 'base64url').toString('utf8')) as { iss?: unknown }
    ).iss;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

const withoutSlash = (s: string) => s.replace(/\/+$/, '');

export class ProviderBearer {
  /** The accepting providers by configured issuer (without a trailing slash). */
  private readonly byIssuer = new Map<string, Accepting>();
  private readonly verified = new Map<string, Verified>();
  private readonly store: Store;
  private readonly metrics: Pick<Metrics, 'providerBearer'> | undefined;
  private readonly now: () => number;

  constructor(
    clients: readonly ProviderClient[],
    store: Store,
    metrics?: Pick<Metrics, 'providerBearer'>,
    now: () => number = Date.now,
  ) {
    this.store = store;
    this.metrics = metrics;
    this.now = now;
    for (const client of clients) {
      const c = client.config;
      if (c.type !== 'oidc' || !c.bearerTokens) continue;
      this.byIssuer.set(withoutSlash(c.issuer), {
        client,
        audience: c.bearerTokens.audience,
        apps: c.bearerTokens.apps ? new Set(c.bearerTokens.apps) : null,
      });
    }
  }

  /** Some provider's tokens are accepted. */
  get enabled(): boolean {
    return this.byIssuer.size > 0;
  }

  /** Whether the token names an accepting provider as its issuer (then it is Gatehouse's to decide, never the app's). */
  claims(token: string): boolean {
    if (this.verified.has(token)) return true;
    const iss = jwtIssuer(token);
    return iss !== undefined && this.byIssuer.has(withoutSlash(iss));
  }

  /**
   * The user a provider's token stands for at `app`; throws HttpError 503 when the provider's keys
   * cannot be had (the token may be good: the caller tries again, rather than signing in again).
   */
  async authenticate(token: string, app: string): Promise<ProviderBearerResult> {
    const counted = this.metrics?.providerBearer;
    if (!counted) return this.decide(token, app);
    const by = this.verified.get(token)?.by ?? this.byIssuer.get(withoutSlash(jwtIssuer(token) ?? ''));
    const provider = by?.client.id ?? 'unknown';
    try {
      const r = await this.decide(token, app);
      counted.inc({ provider, outcome: r.ok ? 'accepted' : 'refused' });
      return r;
    } catch (err) {
      counted.inc({ provider, outcome: 'unavailable' });
      throw err;
    }
  }

  private async decide(token: string, app: string): Promise<ProviderBearerResult> {
    let v = this.verified.get(token);
    if (v === undefined) {
      if (token.length > MAX_TOKEN || !TOKEN_SYNTAX.test(token))
        return { ok: false, description: 'the access token is malformed' };
      const result = await this.verify(token);
      if (typeof result === 'string') return { ok: false, description: result };
      v = result;
    }
    const { client, apps } = v.by;
    if (apps !== null && !apps.has(app))
      return { ok: false, description: `${client.name} tokens are not accepted by this app` };
    if (this.now() >= v.claims.expMs) {
      this.verified.delete(token);
      return { ok: false, description: 'the access token has expired' };
    }
    const identity = await this.store.identities.find(v.issuer, v.claims.subject);
    const user = identity && (await this.store.users.get(identity.userId));
    if (!user)
      return {
        ok: false,
        description: `nobody here has signed in through ${client.name} with this account: sign in once in a browser`,
      };
    if (user.disabled) return { ok: false, description: 'the account is disabled' };
    return { ok: true, provider: client.id, user, claims: v.claims };
  }

  /** The checks of a token seen for the first time: what it proves, or why it is refused. */
  private async verify(token: string): Promise<Verified | string> {
    const iss = jwtIssuer(token);
    const entry = iss === undefined ? undefined : this.byIssuer.get(withoutSlash(iss));
    if (!entry) return 'the access token is not from a provider whose tokens are accepted';
    let keys: Awaited<ReturnType<NonNullable<ProviderClient['signingKeys']>>>;
    try {
      keys = await entry.client.signingKeys!();
    } catch {
      throw unavailable(entry.client);
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, keys.jwks, {
        issuer: keys.issuer,
        audience: entry.audience,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(this.now()),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      if (keySetTrouble(err)) throw unavailable(entry.client);
      if (err instanceof errors.JWTExpired) return 'the access token has expired';
      if (err instanceof errors.JWTClaimValidationFailed)
        return err.claim === 'aud'
          ? 'the access token is not for this API (its audience)'
          : `the access token is not valid: ${err.message}`;
      return 'the access token is not valid (its signature, or its form)';
    }
    const exp = payload.exp as number;
    const iat = typeof payload.iat === 'number' ? payload.iat : exp - MAX_LIFETIME_S;
    if (exp - iat > MAX_LIFETIME_S) return 'the access token lives longer than a day';
    const sub = payload.sub as string;
    if (sub.length > 255) return 'the access token is not valid: its sub is too long';
    const clientId =
      typeof payload.azp === 'string' ? payload.azp : typeof payload.client_id === 'string' ? payload.client_id : '';
    // RFC 9068's scope, or Entra ID's scp.
    const scope =
      typeof payload.scope === 'string' ? payload.scope : typeof payload.scp === 'string' ? payload.scp : '';
    const v: Verified = {
      by: entry,
      issuer: keys.issuer,
      claims: {
        subject: sub,
        clientId: clientId.slice(0, 255),
        scope: scope.slice(0, 1000),
        iatMs: iat * 1000,
        expMs: exp * 1000,
        authTimeMs: (typeof payload.auth_time === 'number' ? payload.auth_time : iat) * 1000,
      },
    };
    if (this.verified.size >= CACHE_ENTRIES) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, v);
    return v;
  }
}

function unavailable(client: ProviderClient): HttpError {
  return new HttpError(
    503,
    'provider_unavailable',
    `${client.name} cannot be reached to check the token: try again in a moment`,
    {
      'retry-after': '5',
    },
  );
}
