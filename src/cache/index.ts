// cache/ (model): the Cache interface for rate-limit counters, in memory or in Redis; openCache picks one
// from the config.
import type { Config } from '../config/schema.ts';
import { MemoryCache } from './memory.ts';
import { RedisCache } from './redis.ts';
import { type Cache, CacheUnavailableError } from './types.ts';

export type { Cache } from './types.ts';
export { CacheUnavailableError } from './types.ts';
export { FallbackCache, type CacheOutage, type WhenDown } from './fallback.ts';

export async function openCache(
  config: { type: 'memory' } | Pick<Extract<Config['cache'], { type: 'redis' }>, 'type' | 'url' | 'keyPrefix'>,
  options: {
    keyPrefix?: string;
    /**
     * Redis could not be reached: called with the error, and the cache is returned anyway, its
     * client reconnecting in the background. Without it, the error is thrown.
     */
    unreachable?: (err: CacheUnavailableError) => void;
  } = {},
): Promise<Cache> {
  if (config.type === 'memory') return new MemoryCache();
  const cache = new RedisCache(config.url, options.keyPrefix ?? config.keyPrefix);
  try {
    await cache.connect({ keepTrying: options.unreachable !== undefined });
  } catch (err) {
    if (!options.unreachable || !(err instanceof CacheUnavailableError)) throw err;
    options.unreachable(err);
  }
  return cache;
}
