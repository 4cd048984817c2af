import { errors, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { keySetTrouble } from '../keys/jwks.ts';

/**
 * The logout token of OpenID Connect Back-Channel Logout 1.0 (§2.4), checked as §2.6 says: a JWT
 * signed by the provider with one of the algs it signs ID tokens with (never "none", never a
 * shared secret), by a key of its JWKS; iss the provider's issuer, aud this client; iat present
 * and recent (at most MAX_AGE_S old, none in the future beyond the clock tolerance), exp if
 * present; a jti; the back-channel logout event; a sid, a sub or both; no nonce (so an ID token
 * cannot be passed off as one). Its `typ`, when present, must name a logout token (or plain JWT,
 * as issuers from before the spec's explicit typing send). Replays are refused by the caller,
 * which remembers jti for MAX_AGE_S.
 */

export const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** How old a logout token may be: an issuer sends it at once. */
export const MAX_AGE_S = 300;
const CLOCK_TOLERANCE_S = 30;
const MAX_ID_LENGTH = 256;

export interface IssuerKeys {
  issuer: string;
  clientId: string;
  algorithms: string[];
  jwks: JWTVerifyGetKey;
}

export interface LogoutClaims {
  jti: string;
  sid?: string;
  sub?: string;
}

/** Why a logout token was refused (said in the 400's error_description and the log). */
export class LogoutTokenError extends Error {
  /** true: the provider's keys could not be fetched; the token may be good (503, the issuer retries). */
  readonly unavailable: boolean;
  constructor(message: string, unavailable = false) {
    super(message);
    this.name = 'LogoutTokenError';
    this.unavailable = unavailable;
  }
}

const text = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_LENGTH;

export async function verifyLogoutToken(token: string, keys: IssuerKeys): Promise<LogoutClaims> {
  let verified: Awaited<ReturnType<typeof jwtVerify>>;
  try {
    verified = await jwtVerify(token, keys.jwks, {
      issuer: keys.issuer,
      audience: keys.clientId,
      algorithms: keys.algorithms,
      clockTolerance: CLOCK_TOLERANCE_S,
      maxTokenAge: MAX_AGE_S,
      requiredClaims: ['iat', 'jti'],
    });
  } catch (err) {
    const trouble = keySetTrouble(err);
    if (trouble === 'unfetched') throw new LogoutTokenError("the provider's keys cannot be fetched", true);
    if (trouble === 'unreadable')
      throw new LogoutTokenError(`the provider's keys cannot be read: ${(err as Error).message}`, true);
    throw new LogoutTokenError(
      err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWSSignatureVerificationFailed
        ? 'the signature is not one of the provider’s keys'
        : err instanceof Error
          ? err.message
          : 'not a JWT',
    );
  }
  const { payload, protectedHeader } = verified;
  const typ = protectedHeader.typ;
  if (typ !== undefined && !/^(application\/)?(logout\+)?jwt$/i.test(typ))
    throw new LogoutTokenError(`unexpected "typ" ${JSON.stringify(typ)}: not a logout token`);
  const events = payload.events;
  if (typeof events !== 'object' || events === null || Array.isArray(events))
    throw new LogoutTokenError('no "events" claim');
  const event = (events as Record<string, unknown>)[LOGOUT_EVENT];
  if (typeof event !== 'object' || event === null || Array.isArray(event))
    throw new LogoutTokenError(`"events" does not hold ${LOGOUT_EVENT}`);
  if ('nonce' in payload) throw new LogoutTokenError('a logout token carries no "nonce"');
  if (!text(payload.jti)) throw new LogoutTokenError('"jti" is not a string of 1 to 256 characters');
  const { sid, sub } = payload as { sid?: unknown; sub?: unknown };
  if (sid === undefined && sub === undefined) throw new LogoutTokenError('neither "sid" nor "sub"');
  if (sid !== undefined && !text(sid)) throw new LogoutTokenError('"sid" is not a string of 1 to 256 characters');
  if (sub !== undefined && !text(sub)) throw new LogoutTokenError('"sub" is not a string of 1 to 256 characters');
  return { jti: payload.jti, ...(sid !== undefined ? { sid } : {}), ...(sub !== undefined ? { sub } : {}) };
}
