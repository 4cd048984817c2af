import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { openStore, StoreUnavailableError, type Store } from '../../src/store/index.ts';
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts';
import { createPostgresDriver } from '../../src/store/postgres.ts';
import { Relay } from '../faults/relay.ts';
import { eventually, postgres, viaPort } from '../faults/services.ts';
import { storeContract } from './contract.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

const service = await postgres();
const url = service.url;

// Every store this file opens lives in a schema of its own, named for this run, dropped at the end.
const run = `gh_test_${randomBytes(5).toString('hex')}`;
const schemas: string[] = [];
let n = 0;
const freshSchema = () => {
  const s = `${run}_${n++}`;
  schemas.push(s);
  return s;
};

after(async () => {
  if (!service.available || !schemas.length) return;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    const { rows } = await admin.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, [`${run}%`]);
    assert.deepEqual(rows, [], 'no schema of this run is left behind');
  } finally {
    await admin.end();
  }
});

const open = (
  schema: string,
  over: { url?: string; poolSize?: number; queryTimeoutMs?: number } = {},
): Promise<Store> =>
  openStore(
    { type: 'postgres', url: over.url ?? url, poolSize: over.poolSize ?? 4 },
    { schema, queryTimeoutMs: over.queryTimeoutMs },
  );

describeOrSkip('PostgreSQL', { skip: service.skip }, () => {
  storeContract('PostgreSQL', {
    async open() {
      const schema = freshSchema();
      return { store: await open(schema), reopen: () => open(schema) };
    },
  });

  describe('PostgreSQL specifics', () => {
    test('two stores in different schemas do not see each other (how tests and tenants are kept apart)', async () => {
      const a = await open(freshSchema());
      const b = await open(freshSchema());
      try {
        await a.users.create({ email: 'same@example.com' });
        await b.users.create({ email: 'same@example.com' });
        assert.equal(await a.users.count(), 1);
        assert.equal(await b.users.count(), 1);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    test('migrations: several nodes starting at once on an empty database all start, each migration applied once', async () => {
      const schema = freshSchema();
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => open(schema, { poolSize: 2 })));
      const stores = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      try {
        assert.deepEqual(
          results.map((r) => (r.status === 'fulfilled' ? 'started' : String((r.reason as Error).message))),
          Array(5).fill('started'),
        );
        const u = await stores[0]!.users.create({ email: 'first@example.com' });
        for (const s of stores) assert.equal((await s.users.get(u.id))?.email, 'first@example.com');
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
      const driver = createPostgresDriver({ url, schema, poolSize: 1 });
      try {
        const versions = await driver.all<{ version: number }>(
          `SELECT version FROM schema_migrations ORDER BY version`,
        );
        assert.deepEqual(
          versions.map((v) => v.version),
          MIGRATIONS.map((m) => m.version),
        );
        assert.equal(await driver.withLock((db) => migrate(db)), 0, 'a restart applies nothing');
      } finally {
        await driver.close();
      }
    });

    test('poolSize 1, the smallest the config allows, starts (schema set-up needs one connection) and serves', async () => {
      const started = Date.now();
      const store = await open(freshSchema(), { poolSize: 1 });
      try {
        assert.ok(Date.now() - started < 3000, 'no wait for a second connection');
        await Promise.all([
          store.users.create({ email: 'a@example.com' }),
          store.users.create({ email: 'b@example.com' }),
          store.kv.putIfAbsent('k', 'v'),
        ]);
        assert.equal(await store.users.count(), 2);
      } finally {
        await store.close();
      }
    });

    test('audit events of one millisecond are listed in the byte order of their ids, whatever the collation', async (t) => {
      const schema = freshSchema();
      const store = await open(schema, { poolSize: 1 });
      const driver = createPostgresDriver({ url, schema, poolSize: 1 });
      try {
        // A collation that orders runs of digits as numbers (a database may have one as its
        // default): there '…-7099-…' comes after '…-70a0-…'.
        try {
          await driver.run(`CREATE COLLATION numbers_in_order (provider = icu, locale = 'en-u-kn-true')`);
        } catch (err) {
          return t.skip(`no ICU collations in this PostgreSQL: ${(err as Error).message}`);
        }
        await driver.run(`ALTER TABLE audit_events ALTER COLUMN id TYPE TEXT COLLATE numbers_in_order`);
        const at = 1_700_000_000_000;
        const ids = ['7099', '70a0', '7100'].map((c) => `018bcfe5-6800-${c}-8000-000000000000`);
        await store.audit.append(
          ids.map((id) => ({
            id,
            at,
            event: 'login',
            userId: 'u',
            outcome: 'success',
            ip: null,
            userAgent: null,
            actor: null,
            detail: {},
          })),
        );
        const column = await driver.all<{ id: string }>(`SELECT id FROM audit_events ORDER BY id DESC`);
        assert.notDeepEqual(
          column.map((r) => r.id),
          ids.toReversed(),
          'the collation orders them otherwise',
        );
        assert.deepEqual(
          (await store.audit.list()).map((e) => e.id),
          ids.toReversed(),
        );
      } finally {
        await driver.close();
        await store.close();
      }
    });

    test('an unreachable server is StoreUnavailableError, at once, naming where without the password', async () => {
      const relay = await Relay.start(service.host, service.port);
      await relay.cut();
      const bad = new URL(viaPort(url, relay.port));
      bad.password = 'hunter2secret';
      const started = Date.now();
      const err = await openStore(
        { type: 'postgres', url: bad.toString(), poolSize: 1 },
        { schema: freshSchema() },
      ).then(
        () => assert.fail('opened a store on a closed port'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof StoreUnavailableError, `got ${String(err)}`);
      assert.ok(Date.now() - started < 3000, 'refused quickly, no retry loop');
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${relay.port}`));
      assert.match(err.message, /ECONNREFUSED|refused/i);
      assert.doesNotMatch(err.message, /hunter2secret/);
      assert.doesNotMatch(String((err as Error).stack), /hunter2secret/);
    });

    test('a database that does not exist is StoreUnavailableError naming it (a config mistake, told at start)', async () => {
      const missing = new URL(url);
      missing.pathname = `/no_such_db_${randomBytes(4).toString('hex')}`;
      const err = await openStore({ type: 'postgres', url: missing.toString(), poolSize: 1 }).then(
        () => assert.fail('opened a missing database'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof StoreUnavailableError, `got ${String(err)}`);
      assert.match(err.message, new RegExp(missing.pathname.slice(1)));
    });

    test('the server going away mid-run: every call fails fast with StoreUnavailableError; it recovers by itself', async () => {
      const relay = await Relay.start(service.host, service.port);
      const schema = freshSchema();
      const store = await open(schema, { url: viaPort(url, relay.port), poolSize: 3 });
      try {
        const u = await store.users.create({ email: 'outage@example.com' });
        // Several pooled connections are open when the server goes.
        await Promise.all([store.ping(), store.users.get(u.id), store.users.count()]);
        assert.ok(relay.accepted >= 1);
        await relay.cut();
        const calls: [string, () => Promise<unknown>][] = [
          ['ping', () => store.ping()],
          ['users.get', () => store.users.get(u.id)],
          ['users.create', () => store.users.create({ email: 'during@example.com' })],
          ['sessions.getWithUser', () => store.sessions.getWithUser('x')],
          ['kv.putIfAbsent', () => store.kv.putIfAbsent('k', 'v')],
          ['sessions.purgeExpired', () => store.sessions.purgeExpired(Date.now(), 1000)],
        ];
        // Twice: the first round meets the dead pooled connections, the second new refused ones.
        for (let round = 0; round < 2; round++) {
          for (const [name, call] of calls) {
            const started = Date.now();
            const err = await call().then(
              () => assert.fail(`${name} succeeded with the server gone`),
              (e: unknown) => e,
            );
            assert.ok(err instanceof StoreUnavailableError, `${name}: ${String(err)}`);
            assert.ok(Date.now() - started < 6000, `${name} failed within the connect timeout`);
          }
        }
        await relay.restore();
        // No restart, no new store: the same object works again once the server is back.
        await eventually(
          'the store answers again',
          async () => (await store.users.get(u.id))?.email === 'outage@example.com',
        );
        assert.ok(await store.users.create({ email: 'after@example.com' }));
        assert.equal(await store.users.count(), 2, 'nothing half-written during the outage');
      } finally {
        await store.close();
        await relay.close();
      }
    });

    test('the server hanging (connections open, no answers): calls fail within the query timeout, then recover', async () => {
      const relay = await Relay.start(service.host, service.port);
      const store = await open(freshSchema(), { url: viaPort(url, relay.port), poolSize: 2, queryTimeoutMs: 1000 });
      try {
        const u = await store.users.create({ email: 'hang@example.com' });
        await Promise.all([store.ping(), store.users.get(u.id)]); // two pooled connections, both idle now
        relay.stall();
        for (const [name, call] of [
          ['sessions.getWithUser', () => store.sessions.getWithUser('x')],
          ['users.get', () => store.users.get(u.id)],
          ['ping', () => store.ping()],
        ] as const) {
          const started = Date.now();
          const err = await call().then(
            () => assert.fail(`${name} succeeded while the server hangs`),
            (e: unknown) => e,
          );
          assert.ok(err instanceof StoreUnavailableError, `${name}: ${String(err)}`);
          assert.ok(Date.now() - started < 7000, `${name} gave up after ${Date.now() - started} ms`);
        }
        await relay.restore();
        await eventually(
          'the store answers again',
          async () => (await store.users.get(u.id))?.email === 'hang@example.com',
        );
      } finally {
        await store.close();
        await relay.close();
      }
    });
  });
});
