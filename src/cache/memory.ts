import type { Cache } from './types.ts';

interface Entry {
  n: number;
  expiresAt: number;
}

export class MemoryCache implements Cache {
  readonly kind = 'memory' as const;
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(sweepMs = 60_000) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), sweepMs);
    this.sweeper.unref();
  }

  private live(key: string, now: number): Entry | undefined {
    const e = this.entries.get(key);
    if (e && e.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  private sweep(now: number): void {
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
  }

  async hit(key: string, windowMs: number): Promise<number> {
    const now = Date.now();
    const e = this.live(key, now);
    if (e) return ++e.n;
    this.entries.set(key, { n: 1, expiresAt: now + windowMs });
    return 1;
  }

  async release(key: string): Promise<void> {
    const e = this.live(key, Date.now());
    if (e && e.n > 0) e.n--;
  }

  async count(key: string): Promise<number> {
    return this.live(key, Date.now())?.n ?? 0;
  }

  async ttl(key: string): Promise<number> {
    const now = Date.now();
    const e = this.live(key, now);
    return e ? e.expiresAt - now : 0;
  }

  async reset(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
  }
}
