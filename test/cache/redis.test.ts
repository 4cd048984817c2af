import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { CacheUnavailableError, openCache, type Cache } from '../../src/cache/index.ts';
import { Relay } from '../faults/relay.ts';
import { eventually, redis, viaPort } from '../faults/services.ts';
import { cacheContract } from './contract.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

const service = await redis();
const url = service.url;

// Every key this file writes is under this run's prefix; they are removed at the end.
const run = `gh-test-${randomBytes(5).toString('hex')}`;
let n = 0;
const freshPrefix = () => `${run}-${n++}:`;

async function runKeys(): Promise<string[]> {
  const raw = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await raw.connect();
  try {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await raw.scan(cursor, 'MATCH', `${run}-*`, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    if (found.length) await raw.del(...found);
    return found;
  } finally {
    raw.disconnect();
  }
}

after(async () => {
  if (!service.available) return;
  await runKeys();
  assert.deepEqual(await runKeys(), [], 'no key of this run is left in Redis');
});

const open = (over: { url?: string; keyPrefix?: string } = {}): Promise<Cache> =>
  openCache(
    { type: 'redis', url: over.url ?? url, keyPrefix: 'unused:' },
    { keyPrefix: over.keyPrefix ?? freshPrefix() },
  );

/** Waits for one call to settle and tells how, and how long it took. */
async function outcome(call: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  try {
    await call();
    return { error: undefined, ms: Date.now() - started };
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
}

describeOrSkip('Redis', { skip: service.skip }, () => {
  cacheContract('Redis', { open: () => open() });

  describe('Redis specifics', () => {
    test('nodes with the same key prefix share counters; another prefix shares nothing', async () => {
      const prefix = freshPrefix();
      const [a, b, other] = await Promise.all([open({ keyPrefix: prefix }), open({ keyPrefix: prefix }), open()]);
      try {
        await a.hit('login:ip:203.0.113.1', 60_000);
        assert.equal(await b.hit('login:ip:203.0.113.1', 60_000), 2, 'a second node continues the count');
        assert.equal(await other.count('login:ip:203.0.113.1'), 0);
        await b.reset('login:ip:203.0.113.1');
        assert.equal(await a.count('login:ip:203.0.113.1'), 0);
      } finally {
        await Promise.all([a.close(), b.close(), other.close()]);
      }
    });

    test('an unreachable Redis at start is CacheUnavailableError naming the URL without the password', async () => {
      const relay = await Relay.start(service.host, service.port);
      await relay.cut();
      const bad = new URL(viaPort(url, relay.port));
      bad.username = 'gatehouse';
      bad.password = 'hunter2secret';
      const { error, ms } = await outcome(() => open({ url: bad.toString() }));
      assert.ok(error instanceof CacheUnavailableError, `got ${String(error)}`);
      assert.ok(ms < 3000, `refused within ${ms} ms`);
      assert.match(error.message, new RegExp(`redis://127\\.0\\.0\\.1:${relay.port}`));
      assert.match(error.message, /ECONNREFUSED|refused/i, 'says why');
      assert.doesNotMatch(error.message, /hunter2secret/);
    });

    test('Redis going away mid-run: every call fails fast with CacheUnavailableError; the same cache recovers', async () => {
      const relay = await Relay.start(service.host, service.port);
      const cache = await open({ url: viaPort(url, relay.port) });
      try {
        assert.equal(await cache.hit('k', 60_000), 1);
        await relay.cut();
        for (let round = 0; round < 3; round++) {
          for (const [name, call] of [
            ['hit', () => cache.hit('k', 60_000)],
            ['count', () => cache.count('k')],
            ['ttl', () => cache.ttl('k')],
            ['reset', () => cache.reset('k')],
            ['ping', () => cache.ping()],
          ] as const) {
            const { error, ms } = await outcome(call);
            assert.ok(error instanceof CacheUnavailableError, `${name} while down: ${String(error)}`);
            assert.ok(ms < 2500, `${name} failed in ${ms} ms, not a hang`);
          }
        }
        await relay.restore();
        await eventually(
          'the cache answers again',
          async () =>
            await cache.ping().then(
              () => true,
              () => false,
            ),
        );
        assert.equal(
          await cache.count('k'),
          1,
          'the count from before the outage is still there (nothing was counted during it)',
        );
        assert.equal(await cache.hit('k', 60_000), 2);
      } finally {
        await cache.close();
        await relay.close();
      }
    });

    test('Redis hanging (connection open, no answers): calls fail within a bounded time, then recover', async () => {
      const relay = await Relay.start(service.host, service.port);
      const cache = await open({ url: viaPort(url, relay.port) });
      try {
        await cache.hit('k', 60_000);
        relay.stall();
        for (const [name, call] of [
          ['hit', () => cache.hit('k', 60_000)],
          ['count', () => cache.count('k')],
          ['ping', () => cache.ping()],
        ] as const) {
          const { error, ms } = await outcome(call);
          assert.ok(error instanceof CacheUnavailableError, `${name} while hung: ${String(error)}`);
          assert.ok(ms < 5000, `${name} gave up after ${ms} ms`);
        }
        await relay.restore();
        await eventually(
          'the cache answers again',
          async () =>
            await cache.ping().then(
              () => true,
              () => false,
            ),
        );
        assert.ok((await cache.count('k')) >= 1);
      } finally {
        await cache.close();
        await relay.close();
      }
    });
  });
});
