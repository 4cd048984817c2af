import { randomBytes } from 'node:crypto';
import type { Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import { rateLimitAddress } from '../http/client-ip.ts';
import type { Secrets } from '../keys/secrets.ts';

const WINDOW_MS = 15 * 60_000;
const HOUR_MS = 60 * 60_000;
const REGISTER_WINDOW_MS = HOUR_MS;

/** The per-address counters of passwords and of second factors: counted and refunded by the same key. */
const loginIpKey = (ip: string) => `login:ip:${rateLimitAddress(ip)}`;
const secondFactorIpKey = (ip: string) => `mfa:ip:${rateLimitAddress(ip)}`;

export type Verdict = { ok: true } | { ok: false; retryAfterSeconds: number };

/**
 * Brute-force defence for the login form (security.md #42), after OWASP's "device cookies":
 *  - failures per client IP (the address seen through trusted proxies only; IPv6 by /64);
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
    const ipKey = loginIpKey(ip);
    const subject = this.subjectKey(email, nonce);
    const [ipCount, subjectCount] = await Promise.all([
      this.cache.hit(ipKey, WINDOW_MS),
      this.cache.hit(subject, WINDOW_MS),
    ]);
    if (ipCount > this.limits.loginPerIp)
      return { ok: false, retryAfterSeconds: Math.ceil((await this.cache.ttl(ipKey)) / 1000) || 1 };
    if (subjectCount > this.limits.loginPerAccount)
      return { ok: false, retryAfterSeconds: Math.ceil((await this.cache.ttl(subject)) / 1000) || 1 };
    return { ok: true };
  }

  /** A correct password: the attempt does not count against the IP, and a device starts afresh. */
  async loginSucceeded(ip: string, email: string, nonce: string | undefined): Promise<void> {
    await Promise.all([
      this.cache.release(loginIpKey(ip)),
      nonce ? this.cache.reset(`login:dev:${nonce}`) : this.cache.release(this.subjectKey(email, undefined)),
    ]);
  }

  /**
   * A second-factor code or passkey answer (security.md #209): counted like a password, per
   * client IP and per account, before it is checked; a right one is refunded. The account's
   * allowance has no device exception: whoever is here knows the password already. A passkey
   * alone (`userId` null: nobody is known until it verifies) counts per client IP only: one
   * allowance shared by every such sign-in would let anyone throttle them all (security.md #221),
   * and a signature cannot be guessed like a code.
   */
  async attemptSecondFactor(ip: string, userId: string | null): Promise<Verdict> {
    const ipKey = secondFactorIpKey(ip);
    const account = userId === null ? null : this.secondFactorKey(userId);
    const [ipCount, accountCount] = await Promise.all([
      this.cache.hit(ipKey, WINDOW_MS),
      account === null ? 0 : this.cache.hit(account, WINDOW_MS),
    ]);
    if (ipCount > this.limits.loginPerIp) return this.retryAfter(ipKey);
    if (account !== null && accountCount > this.limits.loginPerAccount) return this.retryAfter(account);
    return { ok: true };
  }

  async secondFactorSucceeded(ip: string, userId: string | null): Promise<void> {
    await Promise.all([
      this.cache.release(secondFactorIpKey(ip)),
      userId === null ? undefined : this.cache.release(this.secondFactorKey(userId)),
    ]);
  }

  private secondFactorKey(userId: string): string {
    return `mfa:acct:${this.secrets.mac('throttle', userId).slice(0, 22)}`;
  }

  async checkRegistration(ip: string): Promise<Verdict> {
    const key = `register:ip:${rateLimitAddress(ip)}`;
    const n = await this.cache.hit(key, REGISTER_WINDOW_MS);
    if (n > this.limits.registerPerIp) return this.retryAfter(key);
    return { ok: true };
  }

  /**
   * A password-reset request (security.md #45): counted per client IP and per address, whether or
   * not the address has an account, so the answer says nothing about that either.
   */
  checkPasswordReset(ip: string, email: string): Promise<Verdict> {
    return this.checkLinkRequest(
      'reset',
      ip,
      email,
      this.limits.passwordResetPerIp,
      this.limits.passwordResetPerAccount,
    );
  }

  /** A sign-in link asked for (accounts/sign-in-links.ts): counted like a reset request, apart from it. */
  checkSignInLink(ip: string, email: string): Promise<Verdict> {
    return this.checkLinkRequest(
      'signin-link',
      ip,
      email,
      this.limits.signInLinkPerIp,
      this.limits.signInLinkPerAccount,
    );
  }

  private async checkLinkRequest(
    kind: string,
    ip: string,
    email: string,
    perIp: number,
    perAccount: number,
  ): Promise<Verdict> {
    const ipKey = `${kind}:ip:${rateLimitAddress(ip)}`;
    const account = `${kind}:acct:${this.accountKey(email)}`;
    const [ipCount, accountCount] = await Promise.all([
      this.cache.hit(ipKey, HOUR_MS),
      this.cache.hit(account, HOUR_MS),
    ]);
    if (ipCount > perIp) return this.retryAfter(ipKey);
    if (accountCount > perAccount) return this.retryAfter(account);
    return { ok: true };
  }

  /**
   * A signed-in user asks to change their address (accounts/email-change.ts): at most
   * passwordResetPerAccount times an hour per account, so a session cannot mail link after link.
   */
  async checkEmailChange(userId: string): Promise<Verdict> {
    const key = `email-change:user:${userId}`;
    if ((await this.cache.hit(key, HOUR_MS)) > this.limits.passwordResetPerAccount) return this.retryAfter(key);
    return { ok: true };
  }

  /** One more message to this address, unless it had `emailsPerAddress` in the last hour (a mail flood). */
  async takeMail(email: string): Promise<Verdict> {
    const key = `mail:addr:${this.accountKey(email)}`;
    if ((await this.cache.hit(key, HOUR_MS)) > this.limits.emailsPerAddress) return this.retryAfter(key);
    return { ok: true };
  }

  private async retryAfter(key: string): Promise<Verdict> {
    return { ok: false, retryAfterSeconds: Math.ceil((await this.cache.ttl(key)) / 1000) || 1 };
  }
}
