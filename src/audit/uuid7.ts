// audit/uuid7.ts: the ids of audit events, UUID version 7 (RFC 9562 §5.7), made in order. Listing by
// (at, id) then gives the order in which one process recorded its events, several in one millisecond
// included (store/sql-audit.ts, Audit.list).
import { randomFillSync } from 'node:crypto';

/** An id and the time in it. An event's `at` is this time: ordered by (at, id) is ordered by id. */
export interface TimedId {
  /** Lower-case hex, 8-4-4-4-12; version 7, variant 10. */
  id: string;
  /** Epoch ms: the id's unix_ts_ms. */
  at: number;
}

const MAX_TS = 2 ** 48 - 1;
const MAX_COUNTER = 0xfff;
/** Bytes of randomness fetched at once (crypto); 10 an id at most. */
const POOL = 4096;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * A maker of ids, each greater (as a string and as bytes) than the one before it:
 *
 *   unix_ts_ms (48 bits) | ver 7 (4) | rand_a: a counter (12) | var 10 (2) | rand_b: random (62)
 *
 * RFC 9562 §6.2 "Method 1": a fixed-length counter in rand_a, seeded at random with each new
 * millisecond and incremented within one. Its top bit is seeded 0 (the guard bit the RFC suggests),
 * so a millisecond holds at least 2048 ids before the counter rolls over; then the timestamp moves
 * one ms ahead of the clock and the counter is seeded again (§6.2, counter rollover handling).
 * A clock that goes back is not followed: the last timestamp is kept (the counter goes on) until
 * the clock passes it, so no id sorts before the previous one. rand_b is fresh crypto randomness.
 *
 * Not Method 3 (a finer fraction of the millisecond in rand_a): Date.now() has no finer fraction,
 * a finer clock (performance.now) is another clock than the one `at` comes from, and two ids in
 * one 1/4096 ms would still need a counter to be told apart. Method 1 orders them by construction.
 * Not node:crypto's randomUUIDv7: only later Node 24 releases have it (package.json allows any 24),
 * its ids are random within a millisecond (not in order), and it neither takes a clock nor tells
 * the time it put in the id.
 *
 * `clock` (Date.now) is read once per id; tests pass one of their own.
 */
export function uuid7Source(clock: () => number = Date.now): () => TimedId {
  let last = -1;
  let counter = 0;
  const pool = Buffer.alloc(POOL);
  let used = POOL;
  const take = (n: number): number => {
    if (used + n > POOL) {
      randomFillSync(pool);
      used = 0;
    }
    const i = used;
    used += n;
    return i;
  };
  const seed = (): number => {
    const i = take(2);
    return ((pool[i]! << 8) | pool[i + 1]!) & 0x7ff;
  };
  return () => {
    const now = clock();
    if (!Number.isSafeInteger(now) || now < 0 || now > MAX_TS)
      throw new RangeError(`uuid7: the clock read ${now}, not a whole number of ms from 1970 to the year 10889`);
    if (now > last) {
      last = now;
      counter = seed();
    } else if (counter < MAX_COUNTER) counter++;
    else {
      last++;
      counter = seed();
    }
    const ts = last.toString(16).padStart(12, '0');
    const i = take(8);
    const id =
      `${ts.slice(0, 8)}-${ts.slice(8)}-${(0x7000 | counter).toString(16)}-` +
      `${HEX[0x80 | (pool[i]! & 0x3f)]}${HEX[pool[i + 1]!]}-` +
      `${HEX[pool[i + 2]!]}${HEX[pool[i + 3]!]}${HEX[pool[i + 4]!]}${HEX[pool[i + 5]!]}${HEX[pool[i + 6]!]}${HEX[pool[i + 7]!]}`;
    return { id, at: last };
  };
}

/** The process's ids (audit events of the server and of CLI commands): one sequence, so one order. */
export const uuid7: () => TimedId = uuid7Source();

/** The unix_ts_ms of a version 7 id. */
export const uuid7Time = (id: string): number => Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
