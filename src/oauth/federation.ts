import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { OAuthClientConfig } from '../config/oauth.ts';
import { issuerJwksUri, keySetTrouble } from '../keys/jwks.ts';
import { OAuthError } from './http.ts';

/** What a client assertion is sent as (RFC 7523 §2.2). */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export type FederatedConfig = NonNullable<OAuthClientConfig['federated']>;

/** Asymmetric algorithms only: a shared secret is no proof of the issuer. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const CLOCK_TOLERANCE_S = 30;
/** The longest-lived token taken: a day (Kubernetes' projected tokens live up to that; GitHub's minutes). */
const MAX_LIFETIME_S = 86_400;
const DISCOVERY_TIMEOUT_MS = 5_000;
/** A discovery that failed is tried again at the first assertion this long after (an issuer that is down is not asked at every one). */
const RETRY_MS = 30_000;

/**
 * Workload identity federation for service clients (`tokens.clients[].federated`): a CI job or a
 * workload proves it is the client with a JWT its platform issued (GitHub Actions' OIDC token, a
 * Kubernetes service account token, a cloud's workload identity), sent as the client assertion
 * (RFC 7521, RFC 7523 §2.2). No secret is kept anywhere. The JWT is checked against the issuer's
 * keys (OpenID discovery → jwks_uri; jose caches them and refetches on an unknown kid): the
 * algorithm asymmetric, `iss` the configured issuer, `aud` the configured audience (default
 * Gatehouse's issuer), `sub` exactly the configured subject, `exp` and `iat` present, a lifetime of
 * at most a day. Like the platform's own use of these tokens, one may be presented again until it
 * expires (a pod reads the same projected token for an hour).
 */
export class Federation {
  /** Per issuer: its key set by discovery, and when that discovery failed (then tried again RETRY_MS later). */
  private readonly issuers = new Map<string, { keys: Promise<JWTVerifyGetKey>; failedAt?: number }>();
  private readonly gatehouseIssuer: string;
  private readonly now: () => number;

  constructor(gatehouseIssuer: string, now: () => number = Date.now) {
    this.gatehouseIssuer = gatehouseIssuer;
    this.now = now;
  }

  /** Throws OAuthError (401 invalid_client, or 503 when the issuer's keys cannot be had) unless the assertion is good. */
  async verify(f: FederatedConfig, assertion: string | undefined): Promise<void> {
    if (!assertion) throw new OAuthError(401, 'invalid_client', 'client_assertion is required');
    let keys: JWTVerifyGetKey;
    try {
      keys = await this.keysOf(f.issuer);
    } catch (err) {
      throw new OAuthError(503, 'temporarily_unavailable', `the keys of ${f.issuer} cannot be had: ${String(err)}`);
    }
    let payload: { iat?: number; exp?: number };
    try {
      ({ payload } = await jwtVerify(assertion, keys, {
        issuer: f.issuer,
        audience: f.audience ?? this.gatehouseIssuer,
        subject: f.subject,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(this.now()),
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (err) {
      if (keySetTrouble(err) === 'unfetched')
        throw new OAuthError(503, 'temporarily_unavailable', `the keys of ${f.issuer} cannot be fetched`);
      const why = err instanceof errors.JWTClaimValidationFailed ? err.message : 'its signature, or its form';
      throw new OAuthError(401, 'invalid_client', `the client assertion is not valid: ${why}`);
    }
    if (payload.exp! - payload.iat! > MAX_LIFETIME_S)
      throw new OAuthError(401, 'invalid_client', 'the client assertion lives longer than a day');
    if (payload.iat! > this.now() / 1000 + CLOCK_TOLERANCE_S)
      throw new OAuthError(401, 'invalid_client', 'the client assertion was issued in the future');
  }

  /** The issuer's key set, by discovery: once, and again after a failure once RETRY_MS has passed. */
  private keysOf(issuer: string): Promise<JWTVerifyGetKey> {
    const known = this.issuers.get(issuer);
    if (known && (known.failedAt === undefined || this.now() - known.failedAt < RETRY_MS)) return known.keys;
    const entry: { keys: Promise<JWTVerifyGetKey>; failedAt?: number } = { keys: discover(issuer) };
    entry.keys.catch(() => {
      entry.failedAt = this.now();
    });
    this.issuers.set(issuer, entry);
    return entry.keys;
  }
}

/** For `check --connect`: the issuer's discovery and keys, as an assertion would need them (what answered). */
export async function probeIssuer(issuer: string): Promise<string> {
  const keys = await discover(issuer);
  await keys.reload();
  return `discovered ${issuer}: ${keys.jwks()?.keys.length ?? 0} signing key(s)`;
}

async function discover(issuer: string): Promise<ReturnType<typeof createRemoteJWKSet>> {
  const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, {
    signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS),
    redirect: 'error',
  });
  if (!res.ok) throw new Error(`discovery answered ${res.status}`);
  const meta = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
  if (meta.issuer !== issuer) throw new Error('discovery names another issuer');
  const uri = issuerJwksUri(meta.jwks_uri, issuer);
  if (!uri) throw new Error('discovery lists no usable jwks_uri');
  return createRemoteJWKSet(uri, { timeoutDuration: DISCOVERY_TIMEOUT_MS });
}
