import { Redis } from 'ioredis';
import { CacheUnavailableError, type Cache } from './types.ts';

const RELEASE = `if redis.call('GET', KEYS[1]) and tonumber(redis.call('GET', KEYS[1])) > 0 then return redis.call('DECR', KEYS[1]) end return 0`;
const HIT = `local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n`;

/** redis://host:port/db, never the user or password. */
export function describeRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}:${u.port || 6379}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}

/** How long one command may take before the caller is told Redis is unavailable (fail closed). */
const COMMAND_TIMEOUT_MS = 2000;

export class RedisCache implements Cache {
  readonly kind = 'redis' as const;
  readonly client: Redis;
  private readonly prefix: string;
  private readonly where: string;
  private lastError: Error | undefined;

  constructor(url: string, keyPrefix: string) {
    this.prefix = keyPrefix;
    this.where = describeRedisUrl(url);
    // Fail fast while Redis is down (callers fail closed); reconnect in the background.
    this.client = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      // A Redis that accepts but never answers must not hang requests.
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    this.client.on('error', (err: Error) => {
      this.lastError = err;
    });
  }

  /**
   * Connects, or throws CacheUnavailableError naming the address. With `keepTrying` the client
   * goes on reconnecting in the background after that error (a node that starts while Redis is
   * down serves without it and picks it up when it answers); without, it gives up.
   */
  async connect(options: { keepTrying?: boolean } = {}): Promise<void> {
    try {
      await this.client.connect();
    } catch (err) {
      if (!options.keepTrying) this.client.disconnect();
      // ioredis rejects with a bare "Connection is closed."; the reason came as an 'error' event.
      const reason = this.lastError ?? (err as Error);
      throw new CacheUnavailableError(`cannot connect to Redis at ${this.where}: ${reason.message}`, { cause: reason });
    }
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new CacheUnavailableError(`Redis at ${this.where} is unavailable: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  hit(key: string, windowMs: number): Promise<number> {
    return this.call(async () => Number(await this.client.eval(HIT, 1, this.prefix + key, String(windowMs))));
  }

  release(key: string): Promise<void> {
    return this.call(async () => void (await this.client.eval(RELEASE, 1, this.prefix + key)));
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
