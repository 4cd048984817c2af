import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Audit } from '../../src/audit/index.ts';
import { createLogger } from '../../src/log/index.ts';
import type { AuditEvent, AuditQuery, AuditStore } from '../../src/store/index.ts';

/** An audit store in memory that can be made to refuse writes. */
class FlakyStore implements AuditStore {
  rows: AuditEvent[] = [];
  failing = false;
  appends = 0;
  async append(events: readonly AuditEvent[]): Promise<void> {
    this.appends++;
    await new Promise((r) => setImmediate(r));
    if (this.failing) throw new Error('store down');
    this.rows.push(...events);
  }
  async list(q: AuditQuery = {}): Promise<AuditEvent[]> {
    return this.rows.filter((e) => q.userId === undefined || e.userId === q.userId).reverse();
  }
  async purgeBefore(cutoff: number, limit: number): Promise<number> {
    const old = this.rows.filter((e) => e.at < cutoff).slice(0, limit);
    this.rows = this.rows.filter((e) => !old.includes(e));
    return old.length;
  }
}

function logger(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  });
  return {
    logger: createLogger('info', sink),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

test('a batch the store refuses is kept and written later; close() writes what is left; list() shows queued events', async () => {
  const store = new FlakyStore();
  const log = logger();
  const audit = new Audit({ store, logger: log.logger, flushMs: 60_000 });
  audit.record({
    event: 'login',
    userId: 'u1',
    ip: '192.0.2.1',
    userAgent: 'x'.repeat(1000),
    detail: { method: 'password' },
  });
  audit.record({ event: 'logout', userId: 'u1' });
  assert.equal(audit.pending, 2);
  const listed = await audit.list({ userId: 'u1' });
  assert.deepEqual(
    listed.map((e) => e.event),
    ['logout', 'login'],
    'queued events are listed before they are written, newest first (in one millisecond too)',
  );
  assert.equal(listed.find((e) => e.event === 'login')!.userAgent!.length, 256, 'clipped');
  store.failing = true;
  await audit.flush();
  assert.equal(store.rows.length, 0);
  assert.equal(audit.pending, 2, 'kept for the next try');
  assert.ok(log.lines().some((l) => l.event === 'audit_write_failed'));
  store.failing = false;
  audit.record({ event: 'password_changed', userId: 'u1' });
  await audit.close();
  assert.equal(audit.pending, 0);
  assert.deepEqual(
    store.rows.map((e) => e.event),
    ['login', 'logout', 'password_changed'],
    'in order, none lost',
  );
  audit.record({ event: 'operator', actor: 'operator:root' });
  await new Promise((r) => setTimeout(r, 10));
  await audit.flush();
  assert.equal(store.rows.at(-1)!.event, 'operator', 'after close, events are written at once');
  assert.ok(log.lines().filter((l) => l.event === 'audit').length === 4, 'every event is logged');
});

test('concurrent flushes write each event once; purge() deletes in batches', async () => {
  const store = new FlakyStore();
  const audit = new Audit({ store, logger: logger().logger, flushMs: 60_000 });
  for (let i = 0; i < 450; i++) audit.record({ event: 'login', userId: `u${i}` });
  await Promise.all([audit.flush(), audit.flush(), audit.flush()]);
  assert.equal(store.rows.length, 450);
  assert.equal(new Set(store.rows.map((e) => e.id)).size, 450);
  for (const e of store.rows) e.at = 1000;
  assert.equal(await audit.purge(1, Date.now(), 100, 3), 300, 'at most maxBatches × batch per call');
  assert.equal(await audit.purge(1, Date.now(), 100, 3), 150);
  assert.equal(store.rows.length, 0);
});
