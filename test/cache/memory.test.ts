import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryCache } from '../../src/cache/memory.ts';
import { openCache } from '../../src/cache/index.ts';
import { cacheContract } from './contract.ts';

cacheContract('memory', { open: async () => new MemoryCache() });

test('openCache gives a memory cache for type: memory, and two of them share nothing (one node each)', async () => {
  const a = await openCache({ type: 'memory' });
  const b = await openCache({ type: 'memory' });
  try {
    assert.equal(a.kind, 'memory');
    await a.hit('k', 60_000);
    assert.equal(await b.count('k'), 0);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('expired counters are swept even when never read again (memory stays flat under a spray of keys)', async () => {
  const cache = new MemoryCache(20);
  try {
    for (let i = 0; i < 1000; i++) await cache.hit(`spray:${i}`, 30);
    const entries = (cache as unknown as { entries: Map<string, unknown> }).entries;
    assert.equal(entries.size, 1000);
    const deadline = Date.now() + 5000;
    while (entries.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(entries.size, 0, 'the sweeper removed every expired counter');
  } finally {
    await cache.close();
  }
});
