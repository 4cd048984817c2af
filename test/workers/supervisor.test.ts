import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../src/log/index.ts';
import { Supervisor } from '../../src/server/workers.ts';

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
