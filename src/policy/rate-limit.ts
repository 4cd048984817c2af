import { CacheUnavailableError, type Cache } from '../cache/index.ts';
import { rateLimitAddress } from '../http/client-ip.ts';
import type { Rule } from './rules.ts';

export type RateVerdict = { ok: true } | { ok: false; retryAfterSeconds: number };

const OK: RateVerdict = { ok: true };

/**
 * `routes[].rateLimit`: requests to a rule's paths counted per user, or per client address for
 * requests nobody is signed in to, in the cache (fixed windows that start at the first request
 * counted; Redis: shared by every node). The user is the account, whatever carries it: a browser
 * session and that user's CLI and MCP logins share one allowance; a service client has its own.
 * Addresses are counted as the login throttle counts them (IPv6 by /64), as trustedProxies lets
 * Gatehouse see them. A cache that cannot count lets the request through (`unavailable` is told):
 * a Redis outage must not take the app down.
 */
export class RouteLimiter {
  private readonly cache: Cache;
  private readonly unavailable: (err: Error) => void;

  constructor(cache: Cache, unavailable: (err: Error) => void) {
    this.cache = cache;
    this.unavailable = unavailable;
  }

  /** Counts this request against `rule.rateLimit` of `app`; userId undefined: the address's allowance. */
  async take(app: string, rule: Rule, userId: string | undefined, ip: string): Promise<RateVerdict> {
    const limit = rule.rateLimit!;
    const key = `route:${app}:${rule.index}:${userId !== undefined ? `u:${userId}` : `ip:${rateLimitAddress(ip)}`}`;
    try {
      const n = await this.cache.hit(key, limit.perMs);
      if (n <= limit.requests) return OK;
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((await this.cache.ttl(key)) / 1000)) };
    } catch (err) {
      if (!(err instanceof CacheUnavailableError)) throw err;
      this.unavailable(err);
      return OK;
    }
  }
}
