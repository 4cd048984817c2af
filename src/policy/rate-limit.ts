import { CacheUnavailableError, type Cache } from '../cache/index.ts';
import { rateLimitAddress } from '../http/client-ip.ts';
import type { Metrics } from '../metrics/index.ts';
import type { Rule } from './rules.ts';

/** Refused: when to try again, and the words for the client. */
export type RateVerdict = { ok: true } | { ok: false; retryAfterSeconds: number; message: string };

const OK: RateVerdict = { ok: true };

/**
 * `routes[].rateLimit`: requests to a rule's paths counted per user, or per client address for
 * requests nobody is signed in to, in the cache (fixed windows that start at the first request
 * counted; Redis: shared by every node). The user is the account, whatever carries it: a browser
 * session and that user's CLI and MCP logins share one allowance; a service client has its own.
 * Addresses are counted as the login throttle counts them (IPv6 by /64), as trustedProxies lets
 * Gatehouse see them. A cache that cannot count lets the request through (`unavailable` is told):
 * a Redis outage must not take the app down. A refusal is counted in gatehouse_rate_limited_total
 * as `<app> <rule path>`.
 */
export class RouteLimiter {
  private readonly cache: Cache;
  private readonly unavailable: (err: Error) => void;
  private readonly metrics: Metrics | undefined;

  constructor(cache: Cache, unavailable: (err: Error) => void, metrics?: Metrics) {
    this.cache = cache;
    this.unavailable = unavailable;
    this.metrics = metrics;
  }

  /** Counts this request against `rule.rateLimit` of `app`; userId undefined: the address's allowance. */
  async take(app: string, rule: Rule, userId: string | undefined, ip: string): Promise<RateVerdict> {
    const limit = rule.rateLimit!;
    const key = `route:${app}:${rule.index}:${userId !== undefined ? `u:${userId}` : `ip:${rateLimitAddress(ip)}`}`;
    try {
      const n = await this.cache.hit(key, limit.perMs);
      if (n <= limit.requests) return OK;
      const retryAfterSeconds = Math.max(1, Math.ceil((await this.cache.ttl(key)) / 1000));
      this.metrics?.rateLimited.inc({ limit: `${app} ${rule.path}` });
      return { ok: false, retryAfterSeconds, message: `Too many requests: try again in ${retryAfterSeconds} s.` };
    } catch (err) {
      if (!(err instanceof CacheUnavailableError)) throw err;
      this.unavailable(err);
      return OK;
    }
  }
}
