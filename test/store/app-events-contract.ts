import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import type { AppEventRecord } from '../../src/store/index.ts';
import type { WithStore } from './contract.ts';

/**
 * The Store contract for the outbox of events for apps (src/events/). Called from storeContract,
 * so it runs against SQLite and PostgreSQL alike.
 */

function event(over: Partial<AppEventRecord> = {}): AppEventRecord {
  return {
    id: randomUUID(),
    app: 'crm',
    type: 'account_deleted',
    userId: randomUUID(),
    at: 1_700_000_000_000,
    attempts: 0,
    nextAt: 1_700_000_000_000,
    lastError: null,
    value: null,
    ...over,
  };
}

export function appEventStoreContract(withStore: WithStore): void {
  test(
    'events wait until due; a claim holds them until its lease ends and counts the attempt; retry and done',
    withStore(async (store) => {
      const t = 1_700_000_000_000;
      const first = event({ at: t, nextAt: t });
      const second = event({ at: t + 1, nextAt: t + 1, app: 'billing' });
      const later = event({ at: t + 2, nextAt: t + 60_000, type: 'email_changed', value: 'new@example.com' });
      await store.appEvents.add([later, second, first]);
      assert.deepEqual(await store.appEvents.list(), [first, second, later], 'every field as written');
      const claimed = await store.appEvents.claim(t + 10, t + 10 + 60_000, 10);
      assert.deepEqual(
        claimed.map((e) => [e.id, e.attempts, e.nextAt]),
        [
          [first.id, 1, t + 60_010],
          [second.id, 1, t + 60_010],
        ],
        'the due ones, oldest first, held for the lease',
      );
      assert.deepEqual(await store.appEvents.claim(t + 20, t + 80_000, 10), [], 'held: nobody else gets them');
      await store.appEvents.retry(first.id, t + 30_000, 'HTTP 503');
      await store.appEvents.done(second.id);
      const again = await store.appEvents.claim(t + 30_000, t + 90_000, 10);
      assert.deepEqual(
        again.map((e) => [e.id, e.attempts, e.lastError]),
        [[first.id, 2, 'HTTP 503']],
      );
      assert.deepEqual(
        (await store.appEvents.claim(t + 60_000, t + 120_000, 1)).map((e) => e.id),
        [later.id],
        'at most the limit',
      );
      assert.equal((await store.appEvents.list()).length, 2);
      assert.equal(await store.appEvents.discard(later.userId, 'account_deleted'), 0, 'by user and type');
      assert.equal(await store.appEvents.discard(later.userId, 'email_changed'), 1);
      assert.deepEqual(
        (await store.appEvents.list()).map((e) => e.id),
        [first.id],
      );
      await store.appEvents.add([{ ...later, nextAt: t + 100_000 }]);
      assert.equal(await store.appEvents.expedite(t + 70_000), 2, 'both wait for a later time');
      assert.deepEqual(
        (await store.appEvents.list()).map((e) => e.nextAt),
        [t + 70_000, t + 70_000],
      );
    }),
  );

  test(
    'of two nodes claiming at once, each event goes to one of them',
    withStore(async (store, opened, extra) => {
      const other = await opened.reopen();
      extra.push(other);
      const t = 1_700_000_000_000;
      const events = Array.from({ length: 40 }, (_, i) => event({ at: t + i, nextAt: t + i }));
      await store.appEvents.add(events);
      const took: string[] = [];
      for (let round = 0; round < 5; round++) {
        const [a, b] = await Promise.all([
          store.appEvents.claim(t + 100, t + 60_000, 8),
          other.appEvents.claim(t + 100, t + 60_000, 8),
        ]);
        took.push(...a.map((e) => e.id), ...b.map((e) => e.id));
      }
      assert.equal(took.length, 40, 'every event claimed');
      assert.equal(new Set(took).size, 40, 'none twice');
    }),
  );
}
