import { randomBytes } from 'node:crypto';
import type { Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import type { Secrets } from '../tokens/secrets.ts';

const WINDOW_MS = 15 * 60_000;
const REGISTER_WINDOW_MS = 60 * 60_000;

export type Verdict = { ok: true } | { ok: false; retryAfterSeconds: number };

/**
 * Brute-force defence for the login form (ATTACKS 42), after OWASP's "device cookies":
 *  - failures per client IP (the address seen through trusted proxies only);
 *  - failures per account from browsers that never signed in to it;
 *  - failures per device cookie, which a browser gets when it signs in successfully.
 * An attacker who hammers an account exhausts only the untrusted allowance; the owner's
 * own browser carries its device cookie and signs in regardless, so throttling cannot be
 * used to lock a user out. Emails are keyed by MAC, never stored in the cache in clear.
 */
export class Throttle {
  private readonly cache: Cache;
  private readonly secrets: Secrets;
  private readonly limits: Config['accounts']['rateLimits'];

  constructor(cache: Cache, secrets: Secrets, limits: Config['accounts']['rateLimits']) {
    this.cache = cache;
    this.secrets = secrets;
    this.limits = limits;
  }

  private accountKey(email: string): string {
    return this.secrets.mac('throttle', email).slice(0, 22);
  }

  /** The device cookie's nonce when it was issued for this email, else undefined. */
  deviceNonce(cookie: string | undefined | null, email: string): string | undefined {
    if (!cookie) return undefined;
    const [nonce, mac, extra] = cookie.split('.');
    if (!nonce || !mac || extra !== undefined || nonce.length > 32) return undefined;
    return this.secrets.verifyMac('device', `${email}|${nonce}`, mac) ? nonce : undefined;
  }

  newDeviceCookie(email: string): string {
    const nonce = randomBytes(16).toString('base64url');
    return `${nonce}.${this.secrets.mac('device', `${email}|${nonce}`)}`;
  }

  private subjectKey(email: string, nonce: string | undefined): string {
    return nonce ? `login:dev:${nonce}` : `login:acct:${this.accountKey(email)}`;
  }

  /**
   * Counts this attempt before the password is checked, atomically, so parallel guesses
   * cannot all slip under the limit; a successful attempt is refunded afterwards.
   */
  async attemptLogin(ip: string, email: string, nonce: string | undefined): Promise<Verdict> {
    const ipKey = `login:ip:${ip}`;
    const subject = this.subjectKey(email, nonce);
    const [ipCount, subjectCount] = await Promise.all([this.cache.hit(ipKey, WINDOW_MS), this.cache.hit(subject, WINDOW_MS)]);
    if (ipCount > this.limits.loginPerIp) return { ok: false, retryAfterSeconds: Math.ceil((await this.cache.ttl(ipKey)) / 1000) || 1 };
    if (subjectCount > this.limits.loginPerAccount) return { ok: false, retryAfterSeconds: Math.ceil((await this.cache.ttl(subject)) / 1000) || 1 };
    return { ok: true };
  }

  /** A correct password: the attempt does not count against the IP, and a device starts afresh. */
  async loginSucceeded(ip: string, email: string, nonce: string | undefined): Promise<void> {
    await Promise.all([this.cache.release(`login:ip:${ip}`), nonce ? this.cache.reset(`login:dev:${nonce}`) : this.cache.release(this.subjectKey(email, undefined))]);
  }

  async checkRegistration(ip: string): Promise<Verdict> {
    const key = `register:ip:${ip}`;
    const n = await this.cache.hit(key, REGISTER_WINDOW_MS);
    if (n > this.limits.registerPerIp) return { ok: false, retryAfterSeconds: Math.ceil((await this.cache.ttl(key)) / 1000) || 1 };
    return { ok: true };
  }
}
