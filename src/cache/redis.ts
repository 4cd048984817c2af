import { Redis } from 'ioredis';
import { CacheUnavailableError, type Cache } from './types.ts';

const HIT = `local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n`;

export class RedisCache implements Cache {
  readonly kind = 'redis' as const;
  readonly client: Redis;
  private readonly prefix: string;

  constructor(url: string, keyPrefix: string) {
    this.prefix = keyPrefix;
    // Fail fast while Redis is down (callers fail closed); reconnect in the background.
    this.client = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    this.client.on('error', () => {});
  }

  async connect(): Promise<void> {
    try {
      await this.client.connect();
    } catch (err) {
      this.client.disconnect();
      throw new CacheUnavailableError(`cannot connect to Redis: ${(err as Error).message}`, { cause: err });
    }
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new CacheUnavailableError('Redis is unavailable', { cause: err });
    }
  }

  hit(key: string, windowMs: number): Promise<number> {
    return this.call(async () => Number(await this.client.eval(HIT, 1, this.prefix + key, String(windowMs))));
  }

  count(key: string): Promise<number> {
    return this.call(async () => Number((await this.client.get(this.prefix + key)) ?? 0));
  }

  ttl(key: string): Promise<number> {
    return this.call(async () => Math.max(0, await this.client.pttl(this.prefix + key)));
  }

  reset(key: string): Promise<void> {
    return this.call(async () => void (await this.client.del(this.prefix + key)));
  }

  ping(): Promise<void> {
    return this.call(async () => void (await this.client.ping()));
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
