// cache/ (model): the Cache interface for rate-limit counters, in memory or in Redis; openCache picks one
// from the config.
import type { Config } from '../config/schema.ts';
import { MemoryCache } from './memory.ts';
import { RedisCache } from './redis.ts';
import type { Cache } from './types.ts';

export type { Cache } from './types.ts';
export { CacheUnavailableError } from './types.ts';
export { FallbackCache, type CacheOutage, type WhenDown } from './fallback.ts';

export async function openCache(
  config: { type: 'memory' } | Pick<Extract<Config['cache'], { type: 'redis' }>, 'type' | 'url' | 'keyPrefix'>,
  options: { keyPrefix?: string } = {},
): Promise<Cache> {
  if (config.type === 'memory') return new MemoryCache();
  const cache = new RedisCache(config.url, options.keyPrefix ?? config.keyPrefix);
  await cache.connect();
  return cache;
}
