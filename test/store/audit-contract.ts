import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import type { AuditEvent } from '../../src/store/index.ts';
import type { WithStore } from './contract.ts';

/**
 * The Store contract for the audit trail. Called from storeContract, so it runs against
 * SQLite and PostgreSQL alike.
 */

function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: randomUUID(),
    at: Date.now(),
    event: 'login',
    userId: 'u1',
    outcome: 'success',
    ip: '203.0.113.7',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0',
    actor: null,
    detail: { method: 'password' },
    ...over,
  };
}

export function auditStoreContract(withStore: WithStore): void {
  test(
    'audit events are appended in one batch and read back newest first, by user, time and event',
    withStore(async (store) => {
      const t = 1_700_000_000_000;
      await store.audit.append([
        event({ at: t, userId: 'a' }),
        event({ at: t + 1, userId: 'b', event: 'logout' }),
        event({ at: t + 2, userId: 'a', event: 'password_changed', detail: { n: 1, ok: true, none: null } }),
        event({ at: t + 3, userId: null, outcome: 'failure', detail: { email: 'x@example.com' } }),
      ]);
      const all = await store.audit.list();
      assert.deepEqual(
        all.map((e) => e.at),
        [t + 3, t + 2, t + 1, t],
      );
      assert.deepEqual(all[1]!.detail, { n: 1, ok: true, none: null });
      assert.equal(all[0]!.userId, null);
      assert.deepEqual(
        (await store.audit.list({ userId: 'a' })).map((e) => e.event),
        ['password_changed', 'login'],
      );
      assert.equal((await store.audit.list({ since: t + 2 })).length, 2);
      assert.equal((await store.audit.list({ event: 'logout' }))[0]!.userId, 'b');
      assert.equal((await store.audit.list({ limit: 1 })).length, 1);
      await store.audit.append([]);
    }),
  );

  test(
    'purgeBefore deletes the oldest first, at most `limit` per call, and nothing newer than the cutoff',
    withStore(async (store) => {
      const t = 1_700_000_000_000;
      await store.audit.append(Array.from({ length: 7 }, (_, i) => event({ at: t + i })));
      assert.equal(await store.audit.purgeBefore(t + 5, 3), 3);
      assert.equal(await store.audit.purgeBefore(t + 5, 3), 2);
      assert.equal(await store.audit.purgeBefore(t + 5, 3), 0);
      assert.deepEqual(
        (await store.audit.list()).map((e) => e.at),
        [t + 6, t + 5],
      );
    }),
  );

  test(
    'audit events outlive the user they are about',
    withStore(async (store) => {
      const user = await store.users.create({ email: `audit-${randomUUID()}@example.com` });
      await store.audit.append([event({ userId: user.id })]);
      await store.users.delete(user.id);
      assert.equal((await store.audit.list({ userId: user.id })).length, 1);
    }),
  );

  test(
    'countActive counts the sessions whose absolute and idle expiry are both ahead',
    withStore(async (store) => {
      const user = await store.users.create({ email: `count-${randomUUID()}@example.com` });
      const now = Date.now();
      const s = (id: string, lastSeenAt: number, expiresAt: number) =>
        store.sessions.create({
          idHash: id,
          userId: user.id,
          site: 'http://x',
          createdAt: now - 1000,
          authTime: now - 1000,
          lastSeenAt,
          expiresAt,
          amr: ['pwd'],
          ip: null,
          userAgent: null,
        });
      await s(randomUUID(), now, now + 60_000);
      await s(randomUUID(), now - 20_000, now + 60_000);
      await s(randomUUID(), now, now - 1);
      assert.equal(await store.sessions.countActive(now, 10_000), 1);
    }),
  );
}
