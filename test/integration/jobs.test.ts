import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { eventually, pgSchema, postgres } from '../faults/services.ts';
import { assertNoStall, purgeUnderTraffic, seedExpiredSessions } from '../scale/seed.ts';
import { JobRunner, purgeJob } from '../../src/jobs/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { openStore } from '../../src/store/index.ts';

/**
 * The background jobs (src/jobs/): what expired is deleted in small batches that leave the event
 * loop free, by one node at a time, soon after start, and every run is logged (issue 12).
 */

const IDLE = 12 * 3_600_000;

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

describe('background jobs on one node (SQLite)', () => {
  let gh: TestGatehouse;
  after(async () => gh?.close());

  test('50,000 expired sessions are purged in batches while the node keeps answering: no event-loop stall of 50 ms, live sessions stay, the run is logged with its counts (security.md #195)', async () => {
    gh = await startGatehouse(() => ({}), { startJobs: false });
    const user = new Client(gh.url);
    const { id } = await registerJson(user);
    await seedExpiredSessions({ sqlitePath: join(gh.dir, 'gatehouse.db') }, id, 50_000, Date.now(), IDLE);

    const { result, maxMs, baselineMs, answered, slowest, longestGcMs } = await purgeUnderTraffic(user, () =>
      gh.gatehouse.runJobs(),
    );

    const sessions = result.find((r) => r.job === 'sessions')!;
    assert.equal(sessions.outcome, 'ran');
    assert.equal(sessions.deleted, 50_000);
    assert.ok(sessions.batches! > 10, `in batches (${sessions.batches})`);
    assertNoStall(sessions, maxMs, baselineMs, longestGcMs);
    assert.ok(answered > 10, `requests were answered meanwhile (${answered}, slowest ${slowest.toFixed(1)} ms)`);
    assert.equal((await user.get('/private')).status, 200, 'the live session stayed');

    const done = gh.logs.filter((l) => l.event === 'job_done');
    assert.deepEqual(done.map((l) => l.job).sort(), [
      'audit',
      'email_tokens',
      'mfa_pending',
      'oauth',
      'provider_flows',
      'sessions',
    ]);
    const line = done.find((l) => l.job === 'sessions')!;
    assert.equal(line.deleted, 50_000);
    assert.equal(typeof line.ms, 'number');
    assert.equal(typeof line.longestBatchMs, 'number');
    assert.ok(
      gh.logs.some((l) => l.event === 'store_compacted'),
      'a large purge compacts the store (the WAL)',
    );

    // Within the interval the lease is this node's: asked again, it does not run again.
    assert.deepEqual(
      (await gh.gatehouse.runJobs()).map((r) => r.outcome),
      ['skipped', 'skipped', 'skipped', 'skipped', 'skipped', 'skipped'],
    );
  });
});

describe('the job timer', () => {
  test('the first run comes soon after start, not one interval later; a node restarted within the interval does not run it again', async () => {
    const { lines, logger } = logged();
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-jobs-'));
    const store = await openStore({ type: 'sqlite', path: join(dir, 'g.db') });
    const calls: number[] = [];
    const job = () => purgeJob('demo', async (_now, limit) => (calls.push(limit), 0));
    try {
      const first = new JobRunner({ store, logger, intervalMs: 3_600_000, firstRunMs: [10, 50] }).add(job());
      first.start();
      await eventually('the first run', () => lines.some((l) => l.event === 'job_done' && l.job === 'demo'));
      await first.stop();
      const restarted = new JobRunner({ store, logger, intervalMs: 3_600_000, firstRunMs: [10, 50] }).add(job());
      restarted.start();
      await eventually('the restarted node tried', () => lines.some((l) => l.event === 'job_skipped'));
      await restarted.stop();
      assert.equal(calls.length, 1, 'the job ran once');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a job that throws is logged as job_failed with the error, and the next run tries again', async () => {
    const { lines, logger } = logged();
    const store = await openStore({ type: 'sqlite', path: ':memory:' });
    let fail = true;
    const runner = new JobRunner({ store, logger, intervalMs: 1000 }).add(
      purgeJob('flaky', async () => {
        if (fail) throw new Error('disk I/O error');
        return 0;
      }),
    );
    try {
      assert.equal((await runner.runAll())[0]!.outcome, 'failed');
      const failed = lines.find((l) => l.event === 'job_failed')!;
      assert.equal(failed.job, 'flaky');
      assert.equal(failed.level, 'warn');
      assert.equal((failed.err as { message: string }).message, 'disk I/O error');
      fail = false;
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await runner.runAll())[0]!.outcome, 'ran');
    } finally {
      await runner.stop();
      await store.close();
    }
  });
});

const service = await postgres();

describeOrSkip('background jobs on two nodes (PostgreSQL)', { skip: service.skip }, () => {
  let db: Awaited<ReturnType<typeof pgSchema>>;
  const nodes: TestGatehouse[] = [];
  after(async () => {
    for (const n of nodes) await n.close();
    await db?.drop();
  });

  test('two nodes on one database: each job runs on one of them, once per interval (security.md #195)', async () => {
    db = await pgSchema('jobs');
    const config = () => ({ store: { type: 'postgres' as const, url: db.url(), poolSize: 3 } });
    nodes.push(await startGatehouse(config, { startJobs: false }));
    nodes.push(await startGatehouse(config, { startJobs: false }));
    const [a, b] = nodes as [TestGatehouse, TestGatehouse];
    const user = new Client(a.url);
    const { id } = await registerJson(user);
    await seedExpiredSessions({ pgUrl: db.url() }, id, 5000, Date.now(), IDLE);

    const [ra, rb] = await Promise.all([a.gatehouse.runJobs(), b.gatehouse.runJobs()]);
    for (const job of ['sessions', 'provider_flows', 'oauth', 'email_tokens', 'audit', 'mfa_pending']) {
      const outcomes = [ra, rb].map((r) => r.find((x) => x.job === job)!.outcome).sort();
      assert.deepEqual(outcomes, ['ran', 'skipped'], `${job}: one node ran it`);
    }
    const deleted = [...ra, ...rb].filter((r) => r.job === 'sessions').reduce((s, r) => s + (r.deleted ?? 0), 0);
    assert.equal(deleted, 5000, 'every expired session went, once');
    assert.equal((await user.get('/private')).status, 200, 'the live one stayed');
    const again = await Promise.all([a.gatehouse.runJobs(), b.gatehouse.runJobs()]);
    assert.ok(
      again.flat().every((r) => r.outcome === 'skipped'),
      'within the interval neither runs it again',
    );
  });
});
