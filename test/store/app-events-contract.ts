import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import type { AppEventRecord, Session, Store } from '../../src/store/index.ts';
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

/** A user with a session, read once through getWithUser (so a store that caches it has it cached). */
async function signedIn(store: Store): Promise<{ userId: string; idHash: string }> {
  const user = await store.users.create({ email: `outbox-${randomUUID()}@example.com` });
  const now = Date.now();
  const session: Session = {
    idHash: randomUUID(),
    userId: user.id,
    site: 'https://app.example.com',
    createdAt: now,
    lastSeenAt: now,
    expiresAt: now + 3_600_000,
    amr: ['pwd'],
    ip: null,
    userAgent: null,
    authTime: now,
  };
  await store.sessions.create(session);
  assert.equal((await store.sessions.getWithUser(session.idHash))?.user.disabled, false);
  return { userId: user.id, idHash: session.idHash };
}

const ids = async (store: Store) => (await store.appEvents.list()).map((e) => e.id).sort();

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

  test(
    "an account change writes its events in its own transaction: a disable, an address change, a deletion that drops the user's waiting address changes",
    withStore(async (store) => {
      const { userId, idHash } = await signedIn(store);
      const t = 1_700_000_000_000;
      const disabled = event({ userId, type: 'account_disabled', at: t, nextAt: t });
      const user = await store.users.update(userId, { disabled: true }, { events: [disabled] });
      assert.equal(user?.disabled, true);
      assert.equal((await store.sessions.getWithUser(idHash))?.user.disabled, true, 'a cached read sees the change');
      const email = `moved-${randomUUID()}@example.com`;
      const moved = event({ userId, type: 'email_changed', value: email, at: t + 1, nextAt: t + 1 });
      await store.users.update(
        userId,
        { email, emailVerified: true },
        { events: [moved, { ...moved, id: randomUUID(), app: 'billing' }] },
      );
      assert.equal((await store.sessions.getWithUser(idHash))?.user.email, email);
      assert.deepEqual(
        (await store.appEvents.list()).map((e) => [e.type, e.userId, e.value]),
        [
          ['account_disabled', userId, null],
          ['email_changed', userId, email],
          ['email_changed', userId, email],
        ],
      );
      const deleted = event({ userId, at: t + 2, nextAt: t + 2 });
      assert.equal(await store.users.delete(userId, { events: [deleted], discard: ['email_changed'] }), true);
      assert.equal(await store.users.get(userId), undefined);
      assert.equal(await store.sessions.getWithUser(idHash), undefined, 'the cached session went with the user');
      assert.deepEqual(await ids(store), [disabled.id, deleted.id].sort(), 'the address changes are gone');

      // No such user: nothing changed, so no event either.
      const none = event();
      assert.equal(await store.users.update(none.userId, { disabled: true }, { events: [none] }), undefined);
      assert.equal(await store.users.delete(none.userId, { events: [none] }), false);
      assert.deepEqual(await ids(store), [disabled.id, deleted.id].sort());
    }),
  );

  test(
    'an account change whose events cannot be written is not made, and none of its events is: a deletion, a disable, an address change',
    withStore(async (store) => {
      const { userId, idHash } = await signedIn(store);
      const before = await store.users.get(userId);
      const waiting = event({ userId, type: 'email_changed', value: 'waiting@example.com' });
      const other = event();
      await store.appEvents.add([waiting, other]);
      // Its second row's id is taken: the insert fails (a unique violation) after the user's row was written.
      const failing = (type: string) => ({ events: [event({ userId, type }), { ...other, userId, type }] });
      const notAConflict = (err: Error) => err.name !== 'StoreConflictError';

      await assert.rejects(store.users.update(userId, { disabled: true }, failing('account_disabled')), notAConflict);
      const email = `moved-${randomUUID()}@example.com`;
      await assert.rejects(
        store.users.update(userId, { email, emailVerified: true }, failing('email_changed')),
        notAConflict,
        'not "email already registered": the address is free',
      );
      await assert.rejects(
        store.users.delete(userId, { ...failing('account_deleted'), discard: ['email_changed'] }),
        notAConflict,
      );

      assert.deepEqual(await store.users.get(userId), before, 'neither disabled, nor moved, nor deleted');
      assert.equal(await store.users.getByEmail(email), undefined);
      assert.deepEqual((await store.sessions.getWithUser(idHash))?.user, before, 'its session is still there');
      assert.deepEqual(await ids(store), [waiting.id, other.id].sort(), 'no event of it, and the waiting one kept');
      // The store goes on: the same change with rows that can be written is made.
      assert.equal(
        (await store.users.update(userId, { disabled: true }, { events: [event({ userId })] }))?.disabled,
        true,
      );
    }),
  );
}
