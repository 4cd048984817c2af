import type { Cache } from '../cache/index.ts';
import type { TokensConfig } from '../config/oauth.ts';
import { rateLimitAddress } from '../http/client-ip.ts';

const WINDOW_MS = 15 * 60_000;
const REGISTER_WINDOW_MS = 60 * 60_000;

export type Verdict = { ok: true } | { ok: false; retryAfterSeconds: number };

/**
 * Rate limits of the OAuth server, on the shared Cache (so several nodes count together; an
 * IPv6 client counts by its /64, see rateLimitAddress):
 * user-code entries per client IP and per signed-in account (RFC 8628 §5.1: 8 letters of 20
 * are ~34.5 bits, so a handful of guesses per window make a hit hopeless), device
 * authorizations per IP, client ID metadata documents fetched per IP, and dynamic
 * registrations per IP (successful and failed ones apart). Each attempt is counted before it is checked, atomically, so
 * parallel guesses cannot slip under a limit; a correct user code is refunded.
 */
export class Limits {
  private readonly cache: Cache;
  private readonly limits: TokensConfig['rateLimits'];

  constructor(cache: Cache, limits: TokensConfig['rateLimits']) {
    this.cache = cache;
    this.limits = limits;
  }

  private async over(key: string, limit: number, windowMs: number): Promise<number | undefined> {
    const n = await this.cache.hit(key, windowMs);
    return n > limit ? Math.ceil((await this.cache.ttl(key)) / 1000) || 1 : undefined;
  }

  async userCodeAttempt(ip: string, userId: string): Promise<Verdict> {
    const [byIp, byAccount] = await Promise.all([
      this.over(`oauth:ucode:ip:${rateLimitAddress(ip)}`, this.limits.userCodePerIp, WINDOW_MS),
      this.over(`oauth:ucode:acct:${userId}`, this.limits.userCodePerAccount, WINDOW_MS),
    ]);
    const wait = byIp ?? byAccount;
    return wait === undefined ? { ok: true } : { ok: false, retryAfterSeconds: wait };
  }

  async userCodeCorrect(ip: string, userId: string): Promise<void> {
    await Promise.all([
      this.cache.release(`oauth:ucode:ip:${rateLimitAddress(ip)}`),
      this.cache.release(`oauth:ucode:acct:${userId}`),
    ]);
  }

  async deviceAuthorization(ip: string): Promise<Verdict> {
    const wait = await this.over(
      `oauth:device:ip:${rateLimitAddress(ip)}`,
      this.limits.deviceAuthorizationPerIp,
      WINDOW_MS,
    );
    return wait === undefined ? { ok: true } : { ok: false, retryAfterSeconds: wait };
  }

  /** A client ID metadata document to fetch for an authorization request: each is an outbound request an anonymous caller chose. */
  async clientDocument(ip: string): Promise<Verdict> {
    const wait = await this.over(
      `oauth:document:ip:${rateLimitAddress(ip)}`,
      this.limits.clientDocumentsPerIp,
      WINDOW_MS,
    );
    return wait === undefined ? { ok: true } : { ok: false, retryAfterSeconds: wait };
  }

  /**
   * A dynamic registration about to be tried: it counts against registerPerIp (the allowance
   * that successful registrations use up) and registerFailuresPerIp (a larger one for failed
   * attempts) at once, atomically, so parallel requests cannot slip past either; a refused
   * attempt takes nothing. registrationSettled then gives back the one it did not use, so
   * mistakes never use up the allowance of registrations.
   */
  async registration(ip: string): Promise<Verdict> {
    const [done, failed] = registrationKeys(ip);
    const [a, b] = await Promise.all([
      this.over(done, this.limits.registerPerIp, REGISTER_WINDOW_MS),
      this.over(failed, this.limits.registerFailuresPerIp, REGISTER_WINDOW_MS),
    ]);
    if (a === undefined && b === undefined) return { ok: true };
    await Promise.all([this.cache.release(done), this.cache.release(failed)]);
    return { ok: false, retryAfterSeconds: Math.max(a ?? 0, b ?? 0) };
  }

  async registrationSettled(ip: string, succeeded: boolean): Promise<void> {
    const [done, failed] = registrationKeys(ip);
    await this.cache.release(succeeded ? failed : done);
  }
}

function registrationKeys(ip: string): [done: string, failed: string] {
  const a = rateLimitAddress(ip);
  return [`oauth:register:ip:${a}`, `oauth:register-failed:ip:${a}`];
}
