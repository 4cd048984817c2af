import * as oauth from 'openid-client';
import type { ProviderConfig } from '../config/providers.ts';
import type { IssuerKeys } from './backchannel.ts';
import type { ProviderProfile, ProviderTokenSet } from './profile.ts';

/**
 * What a sign-in provider does for Gatehouse, whatever its protocol: build the authorization
 * URL, turn the callback into a verified profile and tokens, refresh, and (OIDC) end the
 * provider's session. Implemented by oidc.ts (any OpenID Connect issuer) and github.ts.
 */
export interface ProviderClient {
  readonly id: string;
  readonly type: ProviderConfig['type'];
  /** "Continue with <name>". */
  readonly name: string;
  readonly config: ProviderConfig;
  /** Runs discovery (once; later calls share it), so the first click is fast; never rejects. */
  warm(): Promise<void>;
  /**
   * Reaches the provider now, as a sign-in would (`gatehouse check --connect`): resolves with what
   * answered, rejects with the ProviderError a sign-in would meet.
   */
  probe(): Promise<string>;
  /** Origins a browser is sent to for authorization (for the pages' CSP form-action). */
  authorizationOrigins(): string[];
  /** Origins the logout form may be redirected to (RP-initiated logout), if it is on. */
  endSessionOrigins(): string[];
  /**
   * `fresh`: the user must sign in again at the provider now (re-authentication): OIDC sends
   * prompt=login and max_age=0, and the callback then requires a fresh auth_time.
   */
  authorizationUrl(p: {
    redirectUri: string;
    state: string;
    nonce: string;
    codeChallenge: string;
    fresh?: boolean;
  }): Promise<URL>;
  /** Validates the authorization response (state, iss), exchanges the code, verifies the ID token. */
  callback(p: {
    redirectUri: string;
    query: string;
    state: string;
    nonce: string;
    codeVerifier: string;
    fresh?: boolean;
  }): Promise<{ profile: ProviderProfile; tokens: ProviderTokenSet }>;
  /**
   * Spends the refresh token (`idToken`: the sign-in's, whose subject userinfo is asked about when
   * the answer carries none). With syncGroups, also the user's groups as the provider states them
   * now; a GitHub provider with `organizations` checks membership again and fails as a refusal
   * (permanent) for a user in none of them.
   */
  refresh(refreshToken: string, idToken?: string | null): Promise<Refreshed>;
  /**
   * A sign-in that left no refresh token, confirmed with its access token instead (GitHub's OAuth
   * apps, whose tokens do not expire): the same tokens, confirmed now, with what refresh() tells
   * (the groups, the organizations' check); a token the provider no longer takes fails as a
   * refusal (permanent). Providers without it cannot confirm such a sign-in.
   */
  confirm?(tokens: ProviderTokenSet): Promise<Refreshed>;
  /** What the issuer's logout and access tokens are verified against (OIDC only). */
  signingKeys?(): Promise<IssuerKeys>;
  /** RP-initiated logout URL, when the provider has one and the config turned it on. */
  endSessionUrl(p: { idToken: string | null; postLogoutRedirectUri: string }): Promise<URL | undefined>;
}

/**
 * What a refresh brought: the new tokens and, with providers[].syncGroups, the user's groups as the
 * provider states them now; undefined when it stated none this time (no ID token in the answer and
 * no groups at userinfo, or the lists could not be read): the user's groups are then left as they are.
 */
export type Refreshed = { tokens: ProviderTokenSet; groups?: string[] };

/**
 * Why a sign-in through a provider did not complete. Each code has one message on the
 * error page (routes.ts) and one log event, `oauth_callback_failed` with `reason: <code>`.
 */
export type FlowError =
  | 'denied'
  | 'provider_error'
  | 'state_missing'
  | 'state_unknown'
  | 'state_used'
  | 'state_expired'
  | 'state_cookie_missing'
  | 'state_cookie_mismatch'
  | 'wrong_provider'
  | 'wrong_site'
  | 'unknown_provider'
  | 'provider_unreachable'
  | 'issuer_mismatch'
  | 'token_exchange_failed'
  | 'id_token_invalid'
  | 'userinfo_failed'
  | 'no_email'
  | 'email_unverified'
  | 'email_taken'
  | 'registration_closed'
  | 'domain_not_allowed'
  | 'organization_not_allowed'
  | 'account_disabled'
  | 'identity_taken'
  | 'link_session_mismatch'
  | 'reauth_mismatch'
  | 'rate_limited';

export class ProviderError extends Error {
  readonly code: FlowError;
  /** Safe to log: the library's message or the provider's error code, never a token. */
  readonly detail: string;
  /** For refresh: the provider refused the refresh token itself (it will never work again). */
  readonly permanent: boolean;
  constructor(code: FlowError, detail: string, permanent = false) {
    super(`${code}: ${detail}`);
    this.name = 'ProviderError';
    this.code = code;
    this.detail = detail;
    this.permanent = permanent;
  }
}

const ID_TOKEN_CODES = new Set([
  'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
  'OAUTH_KEY_SELECTION_FAILED',
  'OAUTH_JWS_SIGNATURE_VERIFICATION_FAILED',
  'OAUTH_UNSUPPORTED_OPERATION',
]);

function isNetworkError(err: unknown): boolean {
  const e = err as { name?: string; cause?: { code?: string; name?: string } };
  return (
    err instanceof TypeError ||
    e?.name === 'AbortError' ||
    e?.name === 'TimeoutError' ||
    e?.cause?.name === 'AbortError' ||
    e?.cause?.name === 'TimeoutError'
  );
}

/**
 * Sorts an openid-client failure into a FlowError. `phase` says what was being done, for the
 * failures that look alike in every phase (an unexpected HTTP status, a network error).
 */
export function classify(err: unknown, phase: 'discovery' | 'callback' | 'refresh' | 'userinfo'): ProviderError {
  if (err instanceof ProviderError) return err;
  if (isNetworkError(err)) return new ProviderError('provider_unreachable', describe(err));
  if (err instanceof oauth.AuthorizationResponseError) {
    return new ProviderError(
      err.error === 'access_denied' ? 'denied' : 'provider_error',
      `${err.error}${err.error_description ? `: ${err.error_description}` : ''}`.slice(0, 300),
    );
  }
  if (err instanceof oauth.ResponseBodyError) {
    const permanent =
      phase === 'refresh' &&
      (err.error === 'invalid_grant' || err.error === 'unauthorized_client' || err.error === 'invalid_client');
    const code =
      phase === 'refresh'
        ? 'token_exchange_failed'
        : phase === 'userinfo'
          ? 'userinfo_failed'
          : phase === 'discovery'
            ? 'provider_unreachable'
            : 'token_exchange_failed';
    return new ProviderError(
      code,
      `HTTP ${err.status} ${err.error}${err.error_description ? `: ${err.error_description}` : ''}`.slice(0, 300),
      permanent,
    );
  }
  const message = describe(err);
  const code = (err as { code?: string })?.code ?? '';
  if (phase === 'discovery') return new ProviderError('provider_unreachable', message);
  if (phase === 'userinfo') return new ProviderError('userinfo_failed', message);
  if (/"iss" \(issuer\) (response parameter|authorization response)|response parameter "iss"/i.test(message))
    return new ProviderError('issuer_mismatch', message);
  if (ID_TOKEN_CODES.has(code) || /JWT|ID Token|id_token|"alg"|signature/i.test(message))
    return new ProviderError('id_token_invalid', message);
  if (code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' && phase === 'refresh') {
    // A 5xx from the token endpoint is the provider's trouble, not a dead refresh token.
    return new ProviderError('provider_unreachable', message);
  }
  return new ProviderError('token_exchange_failed', message);
}

/**
 * The library's own words, for the log: openid-client wraps oauth4webapi's precise message
 * ('unexpected JWT "nonce" claim value') as the cause. Never a cause's payload (claims,
 * bodies), and nothing that looks like a token.
 */
function describe(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: { message?: string; code?: string } };
  const inner = e?.cause && typeof e.cause === 'object' && typeof e.cause.message === 'string' ? e.cause : undefined;
  const text = [e?.message ?? String(err), inner?.message, inner?.code ?? e?.code].filter(Boolean).join(': ');
  return text.replace(/[A-Za-z0-9_.-]{40,}/g, '[…]').slice(0, 300);
}

/**
 * A value loaded on first use and kept, whose failures are remembered for a while (1 s,
 * doubling up to 60 s) so a provider that is down is not hammered and its button answers at
 * once with the error, and is retried after that.
 */
export class Lazy<T> {
  private value: T | undefined;
  private pending: Promise<T> | undefined;
  private failures = 0;
  private retryAt = 0;
  private lastError: unknown;
  private readonly load: () => Promise<T>;

  constructor(load: () => Promise<T>) {
    this.load = load;
  }

  get current(): T | undefined {
    return this.value;
  }

  get(): Promise<T> {
    if (this.value !== undefined) return Promise.resolve(this.value);
    if (this.pending) return this.pending;
    if (this.failures && Date.now() < this.retryAt) return Promise.reject(this.lastError);
    this.pending = this.load().then(
      (v) => {
        this.value = v;
        this.failures = 0;
        this.pending = undefined;
        return v;
      },
      (err: unknown) => {
        this.failures++;
        this.retryAt = Date.now() + Math.min(60_000, 1000 * 2 ** (this.failures - 1));
        this.lastError = err;
        this.pending = undefined;
        throw err;
      },
    );
    return this.pending;
  }
}
