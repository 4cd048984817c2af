import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Audit } from '../../src/audit/index.ts';
import { uuid7, uuid7Source, uuid7Time, type TimedId } from '../../src/audit/uuid7.ts';
import { createLogger } from '../../src/log/index.ts';
import type { AuditEvent, AuditStore } from '../../src/store/index.ts';

/**
 * The ids of audit events (src/audit/uuid7.ts): UUID version 7 with a counter in rand_a, so the
 * ids one process makes are in order, several in one millisecond and a clock that goes back
 * included. Clocks are passed in: nothing here waits for time to pass.
 */

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const T = 1_700_000_000_000;

/** The 12-bit counter in rand_a. */
const counterOf = (id: string) => Number.parseInt(id.slice(15, 18), 16);

/** A clock that reads the given times in turn. */
function clockOf(times: number[]): () => number {
  let i = 0;
  return () => {
    const t = times[i++];
    assert.ok(t !== undefined, 'the clock was read once per id');
    return t;
  };
}

function assertIncreasing(ids: TimedId[]): void {
  for (let i = 1; i < ids.length; i++) {
    const [a, b] = [ids[i - 1]!, ids[i]!];
    assert.ok(a.id < b.id, `id ${i} (${b.id}) sorts after id ${i - 1} (${a.id})`);
    // Byte order is the same (lower-case hex): what SQLite's TEXT and PostgreSQL's "C" compare.
    assert.equal(Buffer.compare(Buffer.from(a.id), Buffer.from(b.id)), -1);
    assert.ok(a.at <= b.at, 'the time never goes back');
  }
}

test('format: lower-case 8-4-4-4-12 hex, version 7, variant 10, the timestamp is `at` and the clock read', () => {
  for (let i = 0; i < 1000; i++) {
    const before = Date.now();
    const { id, at } = uuid7();
    const after = Date.now();
    assert.match(id, V7);
    assert.equal(uuid7Time(id), at);
    assert.ok(at >= before && at <= after + 1, `${at} read between ${before} and ${after}`);
  }
  const { id, at } = uuid7Source(() => T)();
  assert.equal(at, T);
  assert.equal(id.slice(0, 13), '018bcfe5-6800', 'unix_ts_ms, big-endian: 1_700_000_000_000 = 0x018bcfe56800');
  assert.equal(id[14], '7');
  assert.ok('89ab'.includes(id[19]!));
  assert.match(uuid7Source(() => 0)().id, /^00000000-0000-7/);
  assert.match(uuid7Source(() => 2 ** 48 - 1)().id, /^ffffffff-ffff-7/);
});

test('10,000 ids made in a tight loop are strictly increasing as strings (and as bytes)', () => {
  const ids = Array.from({ length: 10_000 }, () => uuid7());
  assertIncreasing(ids);
  assert.equal(new Set(ids.map((x) => x.id)).size, ids.length);
  for (const x of ids) assert.equal(uuid7Time(x.id), x.at);
});

test('10,000 ids in one millisecond: a counter keeps them in order; past its end the time moves one ms ahead', () => {
  const ids = Array.from(
    { length: 10_000 },
    uuid7Source(() => T),
  );
  assertIncreasing(ids);
  for (const x of ids) {
    assert.match(x.id, V7);
    assert.equal(uuid7Time(x.id), x.at, 'the timestamp in the id is `at`');
  }
  // The counter's top bit is seeded 0: at least 2048 ids fit in a millisecond.
  const perMs = Map.groupBy(ids, (x) => x.at);
  assert.equal(perMs.get(T)![0]!.id, ids[0]!.id);
  for (const [at, group] of perMs) {
    assert.ok(counterOf(group[0]!.id) < 0x800, `seeded below 2048 at ${at}`);
    if (at !== ids.at(-1)!.at) assert.ok(group.length >= 2048, `${group.length} ids at ${at}`);
    group.forEach((x, i) => assert.equal(counterOf(x.id), counterOf(group[0]!.id) + i, 'counted one by one'));
  }
  assert.ok(ids.at(-1)!.at <= T + 4, 'at most ceil(10000 / 2048) - 1 ms ahead');
  // When the clock reaches the time the ids moved to, they go on from there (no new seed below).
  const gen = uuid7Source(clockOf([...Array(4097).fill(T), T + 1, T + 1, T + 2]));
  const more = Array.from({ length: 4100 }, gen);
  assertIncreasing(more);
  assert.equal(more[4097]!.at, T + 1);
  assert.equal(more.at(-1)!.at, T + 2);
});

test('a clock that goes back: the last time is kept and the ids still increase, until the clock passes it', () => {
  const times = [T, T, T - 5000, T - 1, T, T - 3_600_000, T + 1, T + 1, T + 7];
  const ids = times.map(uuid7Source(clockOf(times)));
  assertIncreasing(ids);
  assert.deepEqual(
    ids.map((x) => x.at),
    [T, T, T, T, T, T, T + 1, T + 1, T + 7],
  );
  for (const x of ids) assert.equal(uuid7Time(x.id), x.at);
  // Within the kept millisecond the counter goes on by one; a new millisecond seeds it anew.
  assert.deepEqual(
    ids.slice(0, 6).map((x) => counterOf(x.id) - counterOf(ids[0]!.id)),
    [0, 1, 2, 3, 4, 5],
  );
});

test('the rest is random: a fresh counter seed each millisecond, 62 random bits in every id', () => {
  const ticks = Array.from({ length: 2000 }, (_, i) => T + i);
  const ids = ticks.map(uuid7Source(clockOf(ticks)));
  const seeds = new Set(ids.map((x) => counterOf(x.id)));
  assert.ok(seeds.size > 500, `${seeds.size} different seeds of 2000 (11 random bits)`);
  assert.ok(Math.max(...seeds) < 0x800 && Math.max(...seeds) > 0x700, 'the 11 low bits, all of them used');
  const rand = ids.map((x) => x.id.slice(19));
  assert.equal(new Set(rand).size, rand.length);
  // Two processes (two sources) in the same millisecond: different ids, in no defined order.
  const [a, b] = [uuid7Source(() => T)(), uuid7Source(() => T)()];
  assert.notEqual(a.id, b.id);
  assert.equal(a.at, b.at);
});

test('a clock reading that is no time in ms from 1970 to 10889 is refused', () => {
  for (const bad of [Number.NaN, -1, 1.5, 2 ** 48, Number.POSITIVE_INFINITY])
    assert.throws(() => uuid7Source(() => bad)(), RangeError, String(bad));
});

test('Audit.record(): the event id is version 7 and its timestamp is the event time', async () => {
  const rows: AuditEvent[] = [];
  const store: AuditStore = {
    async append(events) {
      rows.push(...events);
    },
    async list() {
      return [];
    },
    async purgeBefore() {
      return 0;
    },
  };
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const audit = new Audit({ store, logger: createLogger('silent', sink), flushMs: 60_000 });
  const before = Date.now();
  for (let i = 0; i < 50; i++) audit.record({ event: 'login', userId: 'u1' });
  await audit.close();
  assert.equal(rows.length, 50);
  for (const e of rows) {
    assert.match(e.id, V7);
    assert.equal(uuid7Time(e.id), e.at);
    assert.ok(e.at >= before && e.at <= Date.now());
  }
  assertIncreasing(rows);
});
