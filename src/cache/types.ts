/**
 * Short-lived shared state: rate-limit counters now, locks and pending flows later.
 * "memory" serves one node; "redis" lets several nodes share the counts.
 */
export interface Cache {
  readonly kind: 'memory' | 'redis';
  /** Adds one to a counter that lives windowMs from its first hit; returns the new count. */
  hit(key: string, windowMs: number): Promise<number>;
  /** Takes one back from a live counter (never below zero, never extends it). */
  release(key: string): Promise<void>;
  /** The current count (0 when absent or expired). */
  count(key: string): Promise<number>;
  /** Milliseconds until the counter expires (0 when absent). */
  ttl(key: string): Promise<number>;
  reset(key: string): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class CacheUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CacheUnavailableError';
  }
}
