import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryCache } from '../../src/cache/memory.ts';
import { RouteLimiter, rateLimitField, rateLimitPolicy, retryAfterMs } from '../../src/policy/rate-limit.ts';
import type { Rule } from '../../src/policy/rules.ts';

/**
 * routes[].rateLimit's sliding window, on a real (in-memory) cache with a clock the test moves:
 * 10 requests per minute. The HTTP side (429, Retry-After, per user, Redis across nodes) is in
 * test/integration/rate-limit.test.ts.
 */

const MINUTE = 60_000;
const rule = { index: 0, path: '/api/**', rateLimit: { requests: 10, perMs: MINUTE } } as unknown as Rule;

function limiter(start: number) {
  let now = start;
  const l = new RouteLimiter(
    new MemoryCache(),
    () => assert.fail('the cache is up'),
    undefined,
    () => now,
  );
  return {
    at(ms: number) {
      now = start + ms;
    },
    /** How many of `n` requests now are let in, and the last refusal's Retry-After. */
    async send(n: number): Promise<{ allowed: number; retry?: number }> {
      let allowed = 0;
      let retry: number | undefined;
      for (let i = 0; i < n; i++) {
        const v = await l.take('app', rule, 'user-1', '192.0.2.1');
        if (v.ok) allowed++;
        else retry = v.retryAfterSeconds;
      }
      return { allowed, retry };
    },
  };
}

const windowStart = 1000 * MINUTE; // a minute boundary: windows are aligned to the clock

test('the first window is a plain count: the limit, then 429 until the window ends', async () => {
  const l = limiter(windowStart);
  l.at(30_000);
  assert.deepEqual(await l.send(12), { allowed: 10, retry: 31 }, 'the rest of the minute, rounded up');
});

test('a spent allowance does not come back whole when the next window begins: no twice the limit within moments', async () => {
  const l = limiter(windowStart);
  l.at(59_000);
  assert.equal((await l.send(10)).allowed, 10);
  // One second into the next window the last one still weighs 59/60: room for one (fixed windows: 10).
  l.at(61_000);
  const burst = await l.send(10);
  assert.equal(burst.allowed, 1);
  // Halfway through, it weighs 5 of 10: four more (five in this window).
  l.at(90_000);
  assert.equal((await l.send(10)).allowed, 4);
});

test('refused requests are not counted, and Retry-After is when the next one is let in', async () => {
  const l = limiter(windowStart);
  l.at(59_000);
  await l.send(10);
  l.at(61_000);
  await l.send(1);
  // Hammering changes nothing.
  const refused = await l.send(100);
  assert.equal(refused.allowed, 0);
  // The last window's 10 weigh (60 - into) / 60, this one's 1 counts whole: room once
  // 10 * (60 - into) / 60 + 1 < 10, that is past 6 s into the window: 5 s from now, 6 as whole seconds.
  assert.equal(refused.retry, 6);
  l.at(61_000 + 5_000);
  assert.equal((await l.send(1)).allowed, 0, 'just before');
  l.at(61_000 + 6_000);
  assert.equal((await l.send(1)).allowed, 1, 'when Retry-After said');
});

test('users and rules are counted apart', async () => {
  let now = windowStart;
  const l = new RouteLimiter(
    new MemoryCache(),
    () => {},
    undefined,
    () => now,
  );
  for (let i = 0; i < 10; i++) assert.ok((await l.take('app', rule, 'a', '192.0.2.1')).ok);
  assert.equal((await l.take('app', rule, 'a', '192.0.2.1')).ok, false);
  assert.ok((await l.take('app', rule, 'b', '192.0.2.1')).ok, 'another user');
  assert.ok((await l.take('app', rule, undefined, '192.0.2.1')).ok, 'nobody signed in, by address');
  assert.ok((await l.take('app', { ...rule, index: 1 } as Rule, 'a', '192.0.2.1')).ok, 'another rule');
  now += 2 * MINUTE;
  assert.ok((await l.take('app', rule, 'a', '192.0.2.1')).ok, 'two windows later, all of it back');
});

test('retryAfterMs: within this window while it has room, else into the next', () => {
  // 10 of 10 counted now, none before: the next window, the moment it starts (its previous weighs all).
  assert.equal(retryAfterMs(0, 10, 10, MINUTE, 30_000), 30_001);
  // 20 counted (a limit lowered by a reload): into the next window until 20 * (60 - t) / 60 < 10.
  assert.equal(retryAfterMs(0, 20, 10, MINUTE, 0), MINUTE + 30_000 + 1);
  // 10 before, 5 now: room when 10 * (60 - into) / 60 + 5 < 10, that is past 30 s into the window.
  assert.equal(retryAfterMs(10, 5, 10, MINUTE, 30_000), 1);
  assert.equal(retryAfterMs(10, 5, 10, MINUTE, 20_000), 10_001);
});

test('each verdict says what is left; the last request let in, and every refusal, when the next one is', async () => {
  let now = windowStart + 30_000;
  const l = new RouteLimiter(
    new MemoryCache(),
    () => assert.fail('the cache is up'),
    undefined,
    () => now,
  );
  const fields: (string | undefined)[] = [];
  for (let i = 0; i < 11; i++) fields.push(rateLimitField(await l.take('app', rule, 'user-1', '192.0.2.1')));
  assert.deepEqual(fields, [
    ...[9, 8, 7, 6, 5, 4, 3, 2, 1].map((r) => `"gatehouse";r=${r}`),
    '"gatehouse";r=0;t=31',
    '"gatehouse";r=0;t=31',
  ]);
  // Halfway into the next window the last one weighs 5 of 10: four more now, said as such.
  now = windowStart + 90_000;
  assert.equal(rateLimitField(await l.take('app', rule, 'user-1', '192.0.2.1')), '"gatehouse";r=4');
  assert.equal(rateLimitPolicy(10, MINUTE), '"gatehouse";q=10;w=60');
  assert.equal(rateLimitPolicy(3, 1500), '"gatehouse";q=3;w=2', 'whole seconds, never a longer allowance than set');
  assert.equal(rateLimitField({ ok: true }), undefined, 'nothing counted (the cache is down): nothing said');
});
