import { CacheUnavailableError, type Cache } from '../cache/index.ts';
import { rateLimitAddress } from '../http/client-ip.ts';
import type { Metrics } from '../metrics/index.ts';
import type { Rule } from './rules.ts';

/**
 * Let in, with what is left of the allowance (`remaining`; undefined: not counted, the cache could
 * not) and, when nothing is, the seconds until a request is let in again; or refused: when to try
 * again, and the words for the client.
 */
export type RateVerdict =
  | { ok: true; remaining?: number; resetSeconds?: number }
  | { ok: false; retryAfterSeconds: number; message: string };

const UNCOUNTED: RateVerdict = { ok: true };

/**
 * The RateLimit-Policy field of a rule's answers (draft-ietf-httpapi-ratelimit-headers): its
 * allowance as quota `q` over a window `w` in whole seconds (rounded up: never a more generous
 * statement than the limit). The policy is named "gatehouse", apart from any the app states.
 */
export function rateLimitPolicy(requests: number, perMs: number): string {
  return `"gatehouse";q=${requests};w=${Math.ceil(perMs / 1000)}`;
}

/**
 * The RateLimit field for a verdict: what is left (`r`) and, with nothing left, the seconds until a
 * request is let in again (`t`, Retry-After's value on a refusal); undefined when nothing was
 * counted.
 */
export function rateLimitField(verdict: RateVerdict): string | undefined {
  if (!verdict.ok) return `"gatehouse";r=0;t=${verdict.retryAfterSeconds}`;
  if (verdict.remaining === undefined) return undefined;
  return verdict.resetSeconds === undefined
    ? `"gatehouse";r=${verdict.remaining}`
    : `"gatehouse";r=${verdict.remaining};t=${verdict.resetSeconds}`;
}

/** RateLimit-Policy and RateLimit of an answer (proxy/forward.ts adds them to the app's own). */
export type RateLimitFields = readonly [policy: string, limit: string];

/**
 * What an answer to a request the rule counted says (RateLimit-Policy, RateLimit), for the HTTP and
 * WebSocket entry points; undefined with `headers: false` or when nothing was counted.
 */
export function rateLimitFields(
  limit: NonNullable<Rule['rateLimit']>,
  verdict: RateVerdict,
): RateLimitFields | undefined {
  const left = limit.headers ? rateLimitField(verdict) : undefined;
  return left === undefined ? undefined : [rateLimitPolicy(limit.requests, limit.perMs), left];
}

/**
 * `routes[].rateLimit`: requests to a rule's paths counted per user, or per client address for
 * requests nobody is signed in to, in the cache (Redis: shared by every node). The user is the
 * account, whatever carries it: a browser session and that user's CLI and MCP logins share one
 * allowance; a service client has its own. Addresses are counted as the login throttle counts them
 * (IPv6 by /64), as trustedProxies lets Gatehouse see them.
 *
 * A sliding window (the counter of the window under way plus the last window's, weighted by how
 * much of it the sliding window still covers; windows aligned to the clock, so every node counts in
 * the same ones): a client that spent its allowance at the end of one window does not get a whole
 * new one the moment the next begins, as with fixed windows (twice the limit within moments). A
 * refused request is not counted: a client that keeps asking is let in as soon as its rate allows.
 * Retry-After says when that is. A cache that cannot count lets the request through (`unavailable`
 * is told): a Redis outage must not take the app down. A refusal is counted in
 * gatehouse_rate_limited_total as `<app> <rule path>`. The verdict says what is left, for the
 * RateLimit fields of the answer (rateLimitField()).
 */
export class RouteLimiter {
  private readonly cache: Cache;
  private readonly unavailable: (err: Error) => void;
  private readonly metrics: Metrics | undefined;
  private readonly now: () => number;

  constructor(cache: Cache, unavailable: (err: Error) => void, metrics?: Metrics, now: () => number = Date.now) {
    this.cache = cache;
    this.unavailable = unavailable;
    this.metrics = metrics;
    this.now = now;
  }

  /** Counts this request against `rule.rateLimit` of `app`; userId undefined: the address's allowance. */
  async take(app: string, rule: Rule, userId: string | undefined, ip: string): Promise<RateVerdict> {
    const limit = rule.rateLimit!;
    const windowMs = limit.perMs;
    const now = this.now();
    const index = Math.floor(now / windowMs);
    const into = now - index * windowMs;
    const who = `route:${app}:${rule.index}:${userId !== undefined ? `u:${userId}` : `ip:${rateLimitAddress(ip)}`}`;
    const current = `${who}:${index}`;
    try {
      // The current window's counter lives two windows, so that the next one finds it.
      const [previous, n] = await Promise.all([
        this.cache.count(`${who}:${index - 1}`),
        this.cache.hit(current, 2 * windowMs),
      ]);
      // What this window and the weighted last one counted before this request.
      const before = previous * ((windowMs - into) / windowMs) + (n - 1);
      if (before < limit.requests) {
        // The requests let in after this one, now: those that keep the count under the limit.
        const remaining = Math.max(0, Math.ceil(limit.requests - before - 1));
        if (remaining > 0) return { ok: true, remaining };
        return { ok: true, remaining, resetSeconds: waitSeconds(previous, n, limit.requests, windowMs, into) };
      }
      await this.cache.release(current);
      const retryAfterSeconds = waitSeconds(previous, n - 1, limit.requests, windowMs, into);
      this.metrics?.rateLimited.inc({ limit: `${app} ${rule.path}` });
      return { ok: false, retryAfterSeconds, message: `Too many requests: try again in ${retryAfterSeconds} s.` };
    } catch (err) {
      if (!(err instanceof CacheUnavailableError)) throw err;
      this.unavailable(err);
      return UNCOUNTED;
    }
  }
}

/** retryAfterMs() in whole seconds, at least one: Retry-After's value, and RateLimit's `t`. */
function waitSeconds(previous: number, current: number, limit: number, windowMs: number, into: number): number {
  return Math.max(1, Math.ceil(retryAfterMs(previous, current, limit, windowMs, into) / 1000));
}

/**
 * How long until a request would be let in: `previous` and `current` counted in the last window and
 * in this one (`into` ms into it, of `windowMs`). While this window's count is under the limit, the
 * last window's weight falls until there is room; past it, the wait runs into the next window, where
 * this window's count is the one that fades.
 */
export function retryAfterMs(previous: number, current: number, limit: number, windowMs: number, into: number): number {
  const left = windowMs - into;
  if (current < limit && previous > 0) return Math.max(0, left - ((limit - current) * windowMs) / previous) + 1;
  return left + Math.max(0, windowMs - (limit * windowMs) / Math.max(current, 1)) + 1;
}
