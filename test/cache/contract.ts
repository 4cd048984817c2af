import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Cache } from '../../src/cache/index.ts';
import { eventually } from '../faults/services.ts';

/**
 * The Cache contract: rate-limit counters as the login throttle relies on them.
 * test/cache/memory.test.ts and test/cache/redis.test.ts run it against each implementation.
 */
export interface CacheHarness {
  /** A cache with nothing in it (its own key prefix for Redis). The test closes it. */
  open(): Promise<Cache>;
}

let keys = 0;
const key = (tag: string) => `${tag}:${process.pid}:${keys++}`;

export function cacheContract(name: string, harness: CacheHarness): void {
  const withCache = (fn: (cache: Cache) => Promise<void>) => async () => {
    const cache = await harness.open();
    try {
      await fn(cache);
    } finally {
      await cache.close();
    }
  };

  describe(`Cache contract: ${name}`, () => {
    test(
      'hit counts up from 1 and count reads without counting; keys are independent',
      withCache(async (cache) => {
        const a = key('a');
        const b = key('b');
        assert.equal(await cache.count(a), 0);
        assert.equal(await cache.hit(a, 60_000), 1);
        assert.equal(await cache.hit(a, 60_000), 2);
        assert.equal(await cache.hit(a, 60_000), 3);
        assert.equal(await cache.count(a), 3);
        assert.equal(await cache.count(a), 3, 'reading does not count as an attempt');
        assert.equal(await cache.count(b), 0);
        assert.equal(await cache.hit(b, 60_000), 1);
        assert.equal(await cache.count(a), 3);
      }),
    );

    test(
      'parallel hits are all counted, each sees its own number (no limit bypass by racing)',
      withCache(async (cache) => {
        const k = key('race');
        const results = await Promise.all(Array.from({ length: 50 }, () => cache.hit(k, 60_000)));
        assert.deepEqual(
          [...results].sort((x, y) => x - y),
          Array.from({ length: 50 }, (_, i) => i + 1),
        );
        assert.equal(await cache.count(k), 50);
      }),
    );

    test(
      'ttl: 0 when absent, within the window while counting',
      withCache(async (cache) => {
        const k = key('ttl');
        assert.equal(await cache.ttl(k), 0);
        await cache.hit(k, 60_000);
        const t = await cache.ttl(k);
        assert.ok(t > 55_000 && t <= 60_000, `ttl ${t} is within the 60 s window`);
      }),
    );

    test(
      'the window is fixed from the first hit: later hits do not push the expiry out',
      withCache(async (cache) => {
        const k = key('fixed');
        await cache.hit(k, 60_000);
        const first = await cache.ttl(k);
        await eventually('a millisecond passes on the cache clock', async () => (await cache.ttl(k)) < first);
        await cache.hit(k, 60_000);
        await cache.hit(k, 120_000);
        assert.ok(
          (await cache.ttl(k)) < first,
          'an attacker who keeps trying does not extend, nor a victim shorten, the lock-out',
        );
        assert.equal(await cache.count(k), 3);
      }),
    );

    test(
      'a counter expires at the end of its window: count and ttl go to 0, the next hit starts at 1',
      withCache(async (cache) => {
        const k = key('expire');
        const windowMs = 200;
        assert.equal(await cache.hit(k, windowMs), 1);
        assert.equal(await cache.hit(k, windowMs), 2);
        const ttl = await cache.ttl(k);
        assert.ok(ttl > 0 && ttl <= windowMs, `ttl ${ttl}`);
        await eventually('the counter expires', async () => (await cache.count(k)) === 0, 5000, 20);
        assert.equal(await cache.ttl(k), 0);
        assert.equal(await cache.hit(k, windowMs), 1, 'a new window starts from one');
        // A long-window counter next to it is not swept with it.
        const longer = key('longer');
        await cache.hit(longer, 60_000);
        await eventually('the new short window expires too', async () => (await cache.count(k)) === 0, 5000, 20);
        assert.equal(await cache.count(longer), 1);
      }),
    );

    test(
      'reset clears one counter at once (a successful sign-in), and only that one',
      withCache(async (cache) => {
        const k = key('reset');
        const other = key('other');
        for (let i = 0; i < 3; i++) await cache.hit(k, 60_000);
        await cache.hit(other, 60_000);
        await cache.reset(k);
        assert.equal(await cache.count(k), 0);
        assert.equal(await cache.ttl(k), 0);
        assert.equal(await cache.hit(k, 60_000), 1);
        assert.equal(await cache.count(other), 1);
        await cache.reset(key('never-set')); // no error
      }),
    );

    test(
      'release takes one back (a refunded attempt), never below zero, and keeps the window',
      withCache(async (cache) => {
        const k = key('release');
        await cache.release(k);
        assert.equal(await cache.count(k), 0, 'releasing nothing creates nothing');
        assert.equal(await cache.ttl(k), 0);
        await cache.hit(k, 60_000);
        await cache.hit(k, 60_000);
        const ttl = await cache.ttl(k);
        await cache.release(k);
        assert.equal(await cache.count(k), 1);
        assert.ok((await cache.ttl(k)) <= ttl, 'the expiry is not pushed out');
        await cache.release(k);
        await cache.release(k);
        assert.equal(await cache.count(k), 0);
        assert.equal(await cache.hit(k, 60_000), 1);
      }),
    );

    test(
      'ping answers while the cache is up',
      withCache(async (cache) => {
        await cache.ping();
      }),
    );
  });
}
