import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { pgSchema, postgres } from '../faults/services.ts';
import { assertNoStall, purgeUnderTraffic, seedExpiredSessions } from './seed.ts';

/**
 * Growth (`npm run test:scale`, run by .ci/run after `npm test`): one million expired sessions,
 * the situation of issue 12 where one unbatched DELETE froze a SQLite node for 15 s. The purge
 * must delete them all while a signed-in user's requests keep being answered, with no event-loop
 * stall of 50 ms, and leave the SQLite WAL small.
 */

const MILLION = Number(process.env.GATEHOUSE_SCALE_ROWS ?? 1_000_000);
const IDLE = 12 * 3_600_000;

describe('purging a million expired sessions (SQLite)', () => {
  let gh: TestGatehouse;
  after(async () => gh?.close());

  test('1M expired sessions: all deleted in batches, no event-loop stall of 50 ms, requests answered throughout, the WAL truncated (security.md #195)', async () => {
    gh = await startGatehouse(() => ({}), { startJobs: false, logLevel: 'info' });
    const user = new Client(gh.url);
    const { id } = await registerJson(user);
    const path = join(gh.dir, 'gatehouse.db');
    await seedExpiredSessions({ sqlitePath: path }, id, MILLION, Date.now(), IDLE);

    const { result, maxMs, baselineMs, answered, slowest, longestGcMs } = await purgeUnderTraffic(user, () =>
      gh.gatehouse.runJobs(),
    );
    const sessions = result.find((r) => r.job === 'sessions')!;
    console.log(
      `SQLite: ${sessions.deleted} rows in ${sessions.ms} ms, ${sessions.batches} batches, longest ${sessions.longestBatchMs} ms (${sessions.longestBatchCpuMs} ms CPU); event loop max ${maxMs.toFixed(1)} ms (baseline ${baselineMs.toFixed(1)} ms); ${answered} requests answered, slowest ${slowest.toFixed(1)} ms`,
    );
    assert.equal(sessions.deleted, MILLION);
    assertNoStall(sessions, maxMs, baselineMs, longestGcMs);
    assert.ok(answered > 100, `requests kept being answered (${answered})`);
    assert.equal((await user.get('/private')).status, 200, 'the live session stayed');
    const wal = statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    assert.ok(wal < 8 * 1024 * 1024, `the WAL was truncated after the purge (${wal} bytes)`);
  });
});

const service = await postgres();

describeOrSkip('purging a million expired sessions (PostgreSQL)', { skip: service.skip }, () => {
  let db: Awaited<ReturnType<typeof pgSchema>>;
  let gh: TestGatehouse;
  after(async () => {
    await gh?.close();
    await db?.drop();
  });

  test('1M expired sessions: all deleted in batches, no event-loop stall of 50 ms, requests answered throughout (security.md #195)', async () => {
    db = await pgSchema('scale');
    gh = await startGatehouse(() => ({ store: { type: 'postgres', url: db.url(), poolSize: 5 } }), {
      startJobs: false,
      logLevel: 'info',
    });
    const user = new Client(gh.url);
    const { id } = await registerJson(user);
    await seedExpiredSessions({ pgUrl: db.url() }, id, MILLION, Date.now(), IDLE);

    const { result, maxMs, baselineMs, answered, slowest, longestGcMs } = await purgeUnderTraffic(user, () =>
      gh.gatehouse.runJobs(),
    );
    const sessions = result.find((r) => r.job === 'sessions')!;
    console.log(
      `PostgreSQL: ${sessions.deleted} rows in ${sessions.ms} ms, ${sessions.batches} batches, longest ${sessions.longestBatchMs} ms; event loop max ${maxMs.toFixed(1)} ms (baseline ${baselineMs.toFixed(1)} ms); ${answered} requests answered, slowest ${slowest.toFixed(1)} ms`,
    );
    assert.equal(sessions.deleted, MILLION);
    // A PostgreSQL purge does no work on the event loop: whatever stall there is, is the machine's.
    assertNoStall({ longestBatchCpuMs: 0 }, maxMs, baselineMs, longestGcMs);
    assert.ok(answered > 100, `requests kept being answered (${answered})`);
    assert.equal((await user.get('/private')).status, 200, 'the live session stayed');
  });
});
