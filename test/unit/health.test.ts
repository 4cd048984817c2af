import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { DependencyHealth } from '../../src/health/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { eventually } from '../faults/services.ts';

function logged() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, logger: createLogger('debug', sink) };
}

test('an outage is logged when it starts, every repeat while it lasts (with the count of failed operations), and when it ends; not once per failure (security.md #196)', async () => {
  const { lines, logger } = logged();
  let answering = true;
  const health = new DependencyHealth(logger, { repeatMs: 200, probeMs: 20 }).register('cache', {
    critical: false,
    ping: async () => {
      if (!answering) throw new Error('connect ECONNREFUSED');
    },
  });
  try {
    answering = false;
    const started = Date.now();
    for (let i = 0; i < 1000; i++) health.failed('cache', new Error('connect ECONNREFUSED'));
    assert.equal(health.isDown('cache'), true);
    await eventually('a reminder', () => lines.some((l) => l.event === 'dependency_still_down'));
    for (let i = 0; i < 500; i++) health.failed('cache');
    await new Promise((r) => setTimeout(r, 450));
    answering = true;
    await eventually('back up', () => !health.isDown('cache'));
    const elapsed = Date.now() - started;
    const events = lines.map((l) => l.event);
    assert.equal(events[0], 'dependency_down');
    assert.equal(events.at(-1), 'dependency_up');
    const reminders = lines.filter((l) => l.event === 'dependency_still_down');
    assert.ok(
      reminders.length >= 1 && reminders.length <= Math.ceil(elapsed / 200) + 1,
      `${reminders.length} reminders`,
    );
    assert.equal(lines.length, reminders.length + 2, '1,500 failures: a handful of lines');
    assert.ok(Number(reminders.at(-1)!.failures) >= 1000, 'reminders count the failed operations');
    assert.equal(lines.at(-1)!.failures, 1500);
    assert.equal(lines.at(-1)!.dependency, 'cache');
    assert.ok(Number(lines.at(-1)!.downMs) >= 400);
  } finally {
    health.close();
  }
});

test('readiness: a critical dependency down makes the node unready, any other only degraded; a ping that hangs counts as down', async () => {
  const { logger } = logged();
  let storeUp = true;
  let cacheHangs = false;
  const health = new DependencyHealth(logger)
    .register('store', {
      critical: true,
      ping: async () => {
        if (!storeUp) throw new Error('down');
      },
    })
    .register('cache', { critical: false, ping: () => (cacheHangs ? new Promise(() => {}) : Promise.resolve()) });
  try {
    assert.equal((await health.check(100)).ready, true);
    cacheHangs = true;
    const degraded = await health.check(100);
    assert.equal(degraded.ready, true);
    assert.deepEqual(
      degraded.states.filter((s) => !s.up).map((s) => s.name),
      ['cache'],
    );
    storeUp = false;
    assert.equal((await health.check(100)).ready, false);
  } finally {
    health.close();
  }
});

test('a dependency with settleMs comes back only after that long without a failure (no flapping under a flood)', async () => {
  const { lines, logger } = logged();
  const health = new DependencyHealth(logger, { probeMs: 10 }).register('passwords', {
    critical: false,
    settleMs: 150,
    ping: async () => {},
  });
  try {
    const stop = Date.now() + 300;
    while (Date.now() < stop) {
      health.failed('passwords', new Error('busy'));
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(health.isDown('passwords'), true, 'still down while failures keep coming');
    await eventually('settled', () => !health.isDown('passwords'));
    assert.deepEqual(
      lines.map((l) => l.event),
      ['dependency_down', 'dependency_up'],
    );
  } finally {
    health.close();
  }
});
