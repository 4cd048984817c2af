import { type Cache, CacheUnavailableError } from './types.ts';

/**
 * The memory cache shared by the workers of one node (`listen.workers` > 1): the counters live
 * in the primary process, and each worker asks for every operation over the cluster's IPC
 * channel. One counter for the node, not one per worker: a rate limit of 10 stays 10, however
 * the connections are spread (security.md #179). The primary answers
 * one message at a time, so a hit is as atomic as in one process. Costs an IPC round trip
 * (~0.1 ms) on the rate-limited routes only (logins, registration, the OAuth endpoints).
 */

type Op = 'hit' | 'release' | 'count' | 'ttl' | 'reset' | 'ping';

/** Worker → primary. */
export interface CacheRequest {
  gatehouse: 'cache';
  id: number;
  op: Op;
  key: string;
  windowMs?: number;
}

/** Primary → worker. */
export interface CacheReply {
  gatehouse: 'cache';
  id: number;
  value?: number;
  error?: string;
}

/** The IPC end of a worker: `process` in a cluster worker. */
export interface Channel {
  send?(message: unknown, sendHandle?: undefined, options?: object, callback?: (err: Error | null) => void): boolean;
  readonly connected?: boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'disconnect', listener: () => void): unknown;
}

function isReply(m: unknown): m is CacheReply {
  return typeof m === 'object' && m !== null && (m as CacheReply).gatehouse === 'cache';
}

export function isCacheRequest(m: unknown): m is CacheRequest {
  const r = m as CacheRequest;
  return typeof m === 'object' && m !== null && r.gatehouse === 'cache' && typeof r.id === 'number';
}

/** The worker's side: a Cache whose every operation the primary carries out. */
export class ClusterCache implements Cache {
  readonly kind = 'memory' as const;
  private readonly channel: Channel;
  private readonly pending = new Map<number, { resolve: (n: number) => void; reject: (e: Error) => void }>();
  private next = 0;

  constructor(channel: Channel) {
    this.channel = channel;
    channel.on('message', this.onMessage);
    channel.on('disconnect', this.onDisconnect);
  }

  private readonly onMessage = (m: unknown) => {
    if (!isReply(m)) return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.error !== undefined) p.reject(new CacheUnavailableError(`the primary process: ${m.error}`));
    else p.resolve(m.value ?? 0);
  };

  private readonly onDisconnect = () => this.failAll('the primary process is gone');

  private failAll(why: string): void {
    for (const p of this.pending.values()) p.reject(new CacheUnavailableError(why));
    this.pending.clear();
  }

  private call(op: Op, key: string, windowMs?: number): Promise<number> {
    if (!this.channel.send || this.channel.connected === false)
      return Promise.reject(new CacheUnavailableError('the primary process is gone'));
    const id = ++this.next;
    const request: CacheRequest = { gatehouse: 'cache', id, op, key, windowMs };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.channel.send!(request, undefined, {}, (err) => {
        if (!err || !this.pending.delete(id)) return;
        reject(new CacheUnavailableError(`cannot reach the primary process (${err.message})`, { cause: err }));
      });
    });
  }

  hit(key: string, windowMs: number): Promise<number> {
    return this.call('hit', key, windowMs);
  }

  async release(key: string): Promise<void> {
    await this.call('release', key);
  }

  count(key: string): Promise<number> {
    return this.call('count', key);
  }

  ttl(key: string): Promise<number> {
    return this.call('ttl', key);
  }

  async reset(key: string): Promise<void> {
    await this.call('reset', key);
  }

  async ping(): Promise<void> {
    await this.call('ping', '');
  }

  async close(): Promise<void> {
    this.channel.off('message', this.onMessage);
    this.channel.off('disconnect', this.onDisconnect);
    this.failAll('closed');
  }
}

/** The primary's side: carries out a worker's request on the node's one cache and says what came of it. */
export async function answerCacheRequest(cache: Cache, r: CacheRequest): Promise<CacheReply> {
  try {
    const key = String(r.key);
    let value: number | undefined;
    if (r.op === 'hit') value = await cache.hit(key, Number(r.windowMs));
    else if (r.op === 'count') value = await cache.count(key);
    else if (r.op === 'ttl') value = await cache.ttl(key);
    else if (r.op === 'release') await cache.release(key);
    else if (r.op === 'reset') await cache.reset(key);
    else if (r.op === 'ping') await cache.ping();
    else return { gatehouse: 'cache', id: r.id, error: 'unknown operation' };
    return { gatehouse: 'cache', id: r.id, value };
  } catch (err) {
    return { gatehouse: 'cache', id: r.id, error: (err as Error).message };
  }
}
