import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import { test } from 'node:test';
import { createLogger } from '../../src/log/index.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { lintWorkers, Supervisor, workerCount } from '../../src/server/workers.ts';

/** The primary's supervision of workers that never start (security.md: worker crash loop). */

test('workers that exit before they serve are restarted with a growing delay, then the node gives up with a clear line', async () => {
  const lines: Record<string, any>[] = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) });
  const supervisor = new Supervisor({
    count: 2,
    logger,
    drainMs: 1000,
    exec: new URL('./fixtures/exits-at-start.ts', import.meta.url).pathname,
    args: [],
    restartDelayMs: 20,
    maxStartupFailures: 4,
  });
  const started = Date.now();
  const code = await supervisor.run();
  assert.equal(code, 1, 'the node exits 1 instead of restarting forever');
  assert.ok(Date.now() - started < 15_000);
  const exits = lines.filter((l) => l.event === 'worker_exit');
  assert.equal(exits.length, 3, 'three restarts, then the fourth failure in a row ends it');
  assert.ok(exits.every((l) => l.code === 3 && l.serving === false));
  const delays = exits.map((l) => l.restartInMs as number);
  assert.deepEqual(
    delays,
    [...delays].sort((a, b) => a - b),
    'each restart waits at least as long as the last',
  );
  assert.ok(delays.at(-1)! > delays[0]!, 'the delay grows');
  const fatal = lines.find((l) => l.event === 'workers_crash_loop');
  assert.ok(fatal, 'a fatal line says why');
  assert.equal(fatal.level, 'fatal');
  assert.match(fatal.msg, /4 workers in a row exited before serving \(the last with code 3\); giving up/);
});

test('SIGTERM while workers are still starting: they are ended at once and the node exits 0', async () => {
  const lines: Record<string, any>[] = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) });
  const supervisor = new Supervisor({
    count: 2,
    logger,
    drainMs: 60_000,
    exec: new URL('./fixtures/starts-slowly.ts', import.meta.url).pathname,
    args: [],
  });
  const online = new Promise<void>((resolve) => {
    let n = 0;
    cluster.on('online', function onOnline() {
      if (++n < 2) return;
      cluster.off('online', onOnline);
      resolve();
    });
  });
  const running = supervisor.run();
  await online;
  const stopped = Date.now();
  supervisor.stop('SIGTERM');
  assert.equal(await running, 0);
  assert.ok(Date.now() - stopped < 10_000, 'not held until the drain deadline');
  const ended = lines.filter((l) => l.event === 'worker_stopped');
  assert.equal(ended.length, 2);
  assert.ok(ended.every((l) => l.signal === 'SIGTERM'));
  assert.ok(!lines.some((l) => l.event === 'worker_exit'), 'no restart while stopping');
});

test('gatehouse check: more workers than cores, and what the memory cache does with workers', () => {
  const config = (listen: Record<string, unknown>, cache?: Record<string, unknown>) =>
    ConfigSchema.parse({
      publicUrl: 'http://127.0.0.1:8080',
      upstream: 'http://127.0.0.1:3000',
      listen,
      ...(cache ? { cache } : {}),
    });
  assert.deepEqual(lintWorkers(config({}), 2), [], 'one process: nothing to say');
  assert.deepEqual(workerCount(config({ workers: 'auto' }), 6), 6, 'auto is the cores Node may use');
  assert.deepEqual(
    lintWorkers(config({ workers: 'auto' }, { type: 'redis', url: 'redis://127.0.0.1:6379' }), 6),
    [],
    'auto with Redis: nothing to say',
  );
  const many = lintWorkers(config({ workers: 8 }, { type: 'redis', url: 'redis://127.0.0.1:6379' }), 2);
  assert.equal(many.length, 1);
  assert.equal(many[0]!.key, 'listen.workers');
  assert.match(many[0]!.message, /8 workers, but Node may use 2 cores here/);
  const memory = lintWorkers(config({ workers: 2 }), 2);
  assert.deepEqual(
    memory.map((w) => w.key),
    ['cache'],
  );
  assert.match(memory[0]!.message, /kept by the primary process and shared by its workers/);
  assert.throws(() => config({ workers: 0 }), /listen\.workers|workers/);
  assert.throws(() => config({ workers: 'all' }));
});
