import assert from 'node:assert/strict';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import type { Client } from '../helpers/client.ts';

/**
 * Seeds `n` expired sessions of one user straight into the database, in one statement (a
 * recursive CTE on SQLite, generate_series on PostgreSQL), with random ids like real ones (the
 * SHA-256 of a cookie value) so the deletes land all over the primary key's b-tree. Half are
 * past their absolute expiry, half idle for longer than `idleMs`.
 */
export async function seedExpiredSessions(
  target: { sqlitePath: string } | { pgUrl: string },
  userId: string,
  n: number,
  now: number,
  idleMs: number,
): Promise<void> {
  const old = now - idleMs - 60_000;
  if ('sqlitePath' in target) {
    const db = new DatabaseSync(target.sqlitePath);
    try {
      db.exec('PRAGMA busy_timeout = 5000');
      db.prepare(
        `INSERT INTO sessions (id_hash, user_id, site, created_at, last_seen_at, expires_at, amr_json)
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
         SELECT hex(randomblob(32)), ?, 'https://app.example.com', ?, CASE WHEN i % 2 = 0 THEN ? ELSE ? END, CASE WHEN i % 2 = 0 THEN ? ELSE ? END, '["pwd"]' FROM s`,
      ).run(n, userId, old, now - 1000, old, now - 1, now + 86_400_000);
    } finally {
      db.close();
    }
    return;
  }
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: target.pgUrl });
  await client.connect();
  try {
    await client.query(
      `INSERT INTO sessions (id_hash, user_id, site, created_at, last_seen_at, expires_at, amr_json)
       SELECT md5(random()::text || i) || md5(i::text || random()::text), $2, 'https://app.example.com', $3,
              CASE WHEN i % 2 = 0 THEN $4::bigint ELSE $3::bigint END, CASE WHEN i % 2 = 0 THEN $5::bigint ELSE $6::bigint END, '["pwd"]'
       FROM generate_series(1, $1::int) AS i`,
      [n, userId, old, now - 1000, now - 1, now + 86_400_000],
    );
    await client.query('ANALYZE sessions');
  } finally {
    await client.end();
  }
}

/**
 * The longest the event loop was held while `fn` ran, in ms: Node's own event-loop delay
 * histogram (sampled every 5 ms), which counts every timer and I/O callback that had to wait.
 */
export async function longestStall<T>(fn: () => Promise<T>): Promise<{ result: T; maxMs: number; p99Ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  try {
    const result = await fn();
    return { result, maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6 };
  } finally {
    h.disable();
  }
}

/**
 * Runs `purge` while a signed-in user keeps requesting a protected page, after as long a stretch
 * of the same traffic without it (the baseline: what this machine's scheduling alone makes the
 * event loop wait). Returns the longest event-loop stall of each.
 */
export async function purgeUnderTraffic<T>(user: Client, purge: () => Promise<T>) {
  let answered = 0;
  let slowest = 0;
  let going = true;
  const traffic = (async () => {
    while (going) {
      const t0 = performance.now();
      assert.equal((await user.get('/private')).status, 200);
      slowest = Math.max(slowest, performance.now() - t0);
      answered++;
    }
  })();
  // GC pauses of this process during the purge (the test's and Gatehouse's: one heap).
  const gcs: { startTime: number; duration: number }[] = [];
  const gcObserver = new PerformanceObserver((list) => void gcs.push(...list.getEntries()));
  gcObserver.observe({ entryTypes: ['gc'] });
  const started = performance.now();
  const { result, maxMs } = await longestStall(purge);
  const took = performance.now() - started;
  const baseline = await longestStall(() => new Promise((r) => setTimeout(r, Math.min(took, 20_000))));
  gcObserver.disconnect();
  going = false;
  await traffic;
  const during = gcs.filter((g) => g.startTime >= started && g.startTime <= started + took);
  const longestGcMs = Math.max(0, ...during.map((g) => g.duration));
  return { result, maxMs, baselineMs: baseline.maxMs, answered, slowest, longestGcMs };
}

/**
 * No batch held the event loop for 50 ms: by the CPU time each batch took (what a batch holds the
 * loop for, whatever the machine's load), and by the event loop's own delay histogram. That one
 * also counts the times the OS ran something else or the disk made a read wait, so it is asserted
 * when the machine is quiet enough to measure it (its own noise, the baseline, under 20 ms), and
 * otherwise reported. A batch's thread CPU time also holds any garbage collection that stopped the
 * thread meanwhile (this process's heap is the test's and Gatehouse's), which is not the batch's
 * work: the longest such pause during the purge (`longestGcMs`) is allowed on top.
 */
export function assertNoStall(
  counts: { longestBatchCpuMs?: number },
  maxMs: number,
  baselineMs: number,
  longestGcMs = 0,
): void {
  assert.ok(
    counts.longestBatchCpuMs! - longestGcMs < 50,
    `the longest batch took ${counts.longestBatchCpuMs} ms of CPU (the longest GC pause meanwhile: ${longestGcMs.toFixed(1)} ms)`,
  );
  const what = `the longest event-loop stall was ${maxMs.toFixed(1)} ms (without a purge: ${baselineMs.toFixed(1)} ms)`;
  if (baselineMs < 20) assert.ok(maxMs < 50, what);
  else console.log(`# too busy a machine to assert it: ${what}`);
}
