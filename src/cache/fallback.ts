import { MemoryCache } from './memory.ts';
import { CacheUnavailableError, type Cache } from './types.ts';

/** What the rate limits do while the shared cache (Redis) cannot be reached: see cache.whenDown. */
export type WhenDown = 'local' | 'closed';

export interface CacheOutage {
  /** An operation failed on the shared cache, or was answered without it. */
  failed(err?: unknown): void;
  /** Whether the shared cache is known to be down (from failures, until a ping answers). */
  isDown(): boolean;
  /** The shared cache answered a ping. */
  succeeded(): void;
}

/**
 * The shared cache with a fallback for its outages. While Redis is down (an operation failed,
 * until a ping answers again; the node's DependencyHealth pings it every second meanwhile):
 *  - `local`: every counter is kept in this node's memory instead, with the same limits. Logins
 *    keep working and stay throttled, per node: with N nodes an attacker gets at most N times
 *    the allowance for the length of the outage, and counts from before it are not seen.
 *  - `closed`: every operation fails with CacheUnavailableError at once (a 503 with Retry-After
 *    for sign-in, registration and the other limited forms), without waiting on Redis.
 * Either way Redis is not asked while it is known to be down, so a Redis that hangs costs a
 * request at most one command timeout at the start of the outage.
 */
export class FallbackCache implements Cache {
  readonly kind: Cache['kind'];
  readonly local = new MemoryCache();
  private readonly shared: Cache;
  private readonly whenDown: WhenDown;
  private readonly outage: CacheOutage;

  constructor(shared: Cache, whenDown: WhenDown, outage: CacheOutage) {
    this.shared = shared;
    this.kind = shared.kind;
    this.whenDown = whenDown;
    this.outage = outage;
  }

  private async use<T>(op: (c: Cache) => Promise<T>): Promise<T> {
    if (!this.outage.isDown()) {
      try {
        return await op(this.shared);
      } catch (err) {
        if (!(err instanceof CacheUnavailableError)) throw err;
        this.outage.failed(err);
        if (this.whenDown === 'closed') throw err;
        return op(this.local);
      }
    }
    this.outage.failed();
    if (this.whenDown === 'closed') throw new CacheUnavailableError('the shared cache is unavailable');
    return op(this.local);
  }

  hit(key: string, windowMs: number): Promise<number> {
    return this.use((c) => c.hit(key, windowMs));
  }

  release(key: string): Promise<void> {
    return this.use((c) => c.release(key));
  }

  count(key: string): Promise<number> {
    return this.use((c) => c.count(key));
  }

  ttl(key: string): Promise<number> {
    return this.use((c) => c.ttl(key));
  }

  reset(key: string): Promise<void> {
    return this.use((c) => c.reset(key));
  }

  /** Asks the shared cache itself: the readiness check and the outage's probe. */
  async ping(): Promise<void> {
    await this.shared.ping();
    this.outage.succeeded();
  }

  async close(): Promise<void> {
    await Promise.all([this.shared.close(), this.local.close()]);
  }
}
