import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Audit } from '../../src/audit/index.ts';
import { uuid7Source } from '../../src/audit/uuid7.ts';
import { createLogger } from '../../src/log/index.ts';
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
    'events of one millisecond are listed newest first in the order their ids were made, whatever order they were written in',
    withStore(async (store) => {
      const t = 1_700_000_000_000;
      const next = uuid7Source(() => t);
      const made = Array.from({ length: 1000 }, (_, i) => {
        const { id, at } = next();
        return event({ id, at, userId: i % 2 ? 'odd' : 'even', detail: { i } });
      });
      assert.ok(
        made.every((e) => e.at === t),
        'one millisecond',
      );
      // Written shuffled, in batches: only the ids can tell the order.
      const shuffled = made.map((e) => [randomUUID(), e] as const).sort(([a], [b]) => (a < b ? -1 : 1));
      for (let i = 0; i < shuffled.length; i += 100)
        await store.audit.append(shuffled.slice(i, i + 100).map(([, e]) => e));
      // With it an older row of the same millisecond, id random (version 4): it still loads.
      const legacy = event({ at: t, userId: 'legacy' });
      await store.audit.append([legacy]);
      const newestFirst = (es: AuditEvent[]) => es.map((e) => e.detail.i);
      const all = (await store.audit.list({ limit: 2000 })).filter((e) => e.userId !== 'legacy');
      assert.deepEqual(newestFirst(all), newestFirst(made.toReversed()));
      assert.deepEqual(
        newestFirst(await store.audit.list({ userId: 'odd', limit: 1000 })),
        newestFirst(made.filter((e) => e.userId === 'odd').toReversed()),
      );
      // A limit inside the millisecond takes the newest, and since (at or after) keeps them all.
      assert.deepEqual(newestFirst(await store.audit.list({ userId: 'even', limit: 5 })), [998, 996, 994, 992, 990]);
      assert.equal((await store.audit.list({ since: t, limit: 2000 })).length, 1001);
      assert.deepEqual(await store.audit.list({ userId: 'legacy' }), [legacy]);
    }),
  );

  test(
    'events recorded in one millisecond are listed newest first, in exactly the reverse order they were recorded',
    withStore(async (store) => {
      const t = 1_700_000_000_000;
      const sink = new Writable({ write: (_c, _e, cb) => cb() });
      const audit = new Audit({
        store: store.audit,
        logger: createLogger('silent', sink),
        flushMs: 60_000,
        clock: () => t,
      });
      const record = (from: number, to: number) => {
        for (let i = from; i < to; i++)
          audit.record({ event: i % 3 ? 'login' : 'logout', userId: 'u1', detail: { i } });
      };
      const order = (n: number) => Array.from({ length: n }, (_, i) => n - 1 - i);
      const listed = async (q = {}) => (await audit.list({ userId: 'u1', limit: 1000, ...q })).map((e) => e.detail.i);
      record(0, 300);
      assert.deepEqual(await listed(), order(300), 'queued, not written yet');
      await audit.flush();
      record(300, 600);
      assert.deepEqual(await listed(), order(600), 'written and queued');
      await audit.close();
      assert.deepEqual(await listed(), order(600), 'written');
      const stored = await store.audit.list({ userId: 'u1', limit: 1000 });
      assert.ok(
        stored.every((e) => e.at === t),
        'one millisecond',
      );
      assert.deepEqual(
        stored.map((e) => e.detail.i),
        order(600),
      );
      assert.deepEqual(
        (await store.audit.list({ event: 'logout', limit: 3 })).map((e) => e.detail.i),
        [597, 594, 591],
      );
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
