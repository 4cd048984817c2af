import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, test } from 'node:test';
import { openStore } from '../../src/store/index.ts';
import { LATEST_VERSION, MIGRATIONS, migrate } from '../../src/store/migrations.ts';
import { SqliteDriver } from '../../src/store/sqlite.ts';
import { storeContract } from './contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const freshPath = () => join(dir, `store-${files++}.db`);

storeContract('SQLite', {
  async open() {
    const path = freshPath();
    const config = { type: 'sqlite' as const, path };
    return { store: await openStore(config), reopen: () => openStore(config) };
  },
});

describe('SQLite specifics', () => {
  test('the file and its directory are created on first start', async () => {
    const path = join(dir, 'nested', 'deeper', 'gatehouse.db');
    const store = await openStore({ type: 'sqlite', path });
    try {
      await store.users.create({ email: 'first@example.com' });
      assert.equal(await store.users.count(), 1);
    } finally {
      await store.close();
    }
  });

  test('migrations: each applied once; a second run on the same file applies nothing', async () => {
    const path = freshPath();
    const first = new SqliteDriver(path);
    try {
      assert.equal(await migrate(first), MIGRATIONS.length);
      await first.run(`INSERT INTO kv (name, value, updated_at) VALUES ('kept', 'yes', 0)`);
      assert.equal(await migrate(first), 0, 'the same handle again');
    } finally {
      await first.close();
    }
    const second = new SqliteDriver(path);
    try {
      assert.equal(await migrate(second), 0, 'a restart');
      const versions = await second.all<{ version: number }>(`SELECT version FROM schema_migrations ORDER BY version`);
      assert.deepEqual(
        versions.map((v) => Number(v.version)),
        MIGRATIONS.map((m) => m.version),
      );
      assert.equal(Math.max(...versions.map((v) => Number(v.version))), LATEST_VERSION);
      assert.equal(
        (await second.get<{ value: string }>(`SELECT value FROM kv WHERE name = 'kept'`))?.value,
        'yes',
        'data survives',
      );
    } finally {
      await second.close();
    }
  });

  describe('transactions', () => {
    const driver = async () => {
      const d = new SqliteDriver(freshPath());
      await migrate(d);
      return d;
    };
    const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
    const names = async (d: SqliteDriver) =>
      (await d.all<{ name: string }>(`SELECT name FROM kv ORDER BY name`)).map((r) => r.name);

    test('a rolled-back transaction leaves nothing behind', async () => {
      const d = await driver();
      try {
        await assert.rejects(
          d.transaction(async (tx) => {
            await tx.run(`INSERT INTO kv (name, value, updated_at) VALUES ('a', '1', 0)`);
            await tx.run(`INSERT INTO kv (name, value, updated_at) VALUES ('b', '1', 0)`);
            await tick();
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.deepEqual(await names(d), []);
        // And the driver is usable afterwards: no transaction left open.
        await d.run(`INSERT INTO kv (name, value, updated_at) VALUES ('c', '1', 0)`);
        assert.deepEqual(await names(d), ['c']);
      } finally {
        await d.close();
      }
    });

    test("another caller's query issued while a transaction awaits does not land inside it", async () => {
      const d = await driver();
      try {
        let outsideDone = false;
        let outside!: Promise<number>;
        const tx = d.transaction(async (t) => {
          await t.run(`INSERT INTO kv (name, value, updated_at) VALUES ('in-tx', '1', 0)`);
          // Another request handler runs while this transaction waits on something.
          outside = d
            .run(`INSERT INTO kv (name, value, updated_at) VALUES ('outside', '1', 0)`)
            .finally(() => (outsideDone = true));
          await tick(20);
          assert.equal(outsideDone, false, 'the outside write waits for the transaction to end');
          throw new Error('roll back');
        });
        await assert.rejects(tx, /roll back/);
        assert.equal(await outside, 1);
        assert.deepEqual(await names(d), ['outside'], "the rollback took only the transaction's own write");
      } finally {
        await d.close();
      }
    });

    test('concurrent transactions run one after another, all commit', async () => {
      const d = await driver();
      try {
        const order: string[] = [];
        const results = await Promise.allSettled(
          Array.from({ length: 5 }, (_, i) =>
            d.transaction(async (tx) => {
              order.push(`start ${i}`);
              await tx.run(`INSERT INTO kv (name, value, updated_at) VALUES (?, '1', 0)`, [`t${i}`]);
              await tick(2);
              order.push(`end ${i}`);
              return i;
            }),
          ),
        );
        assert.deepEqual(
          results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
          [0, 1, 2, 3, 4],
        );
        for (let i = 0; i < order.length; i += 2)
          assert.equal(
            order[i]!.replace('start', 'end'),
            order[i + 1],
            `transactions do not overlap: ${order.join(', ')}`,
          );
        assert.deepEqual(await names(d), ['t0', 't1', 't2', 't3', 't4']);
      } finally {
        await d.close();
      }
    });

    test('queries queued behind a transaction and a second transaction do not slip into it', async () => {
      const d = await driver();
      try {
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const first = d.transaction(async (tx) => {
          await tx.run(`INSERT INTO kv (name, value, updated_at) VALUES ('first', '1', 0)`);
          await gate;
        });
        // Queued while `first` runs: a plain write, and a transaction that will roll back.
        const plain = d.run(`INSERT INTO kv (name, value, updated_at) VALUES ('plain', '1', 0)`);
        const doomed = d.transaction(async (tx) => {
          await tx.run(`INSERT INTO kv (name, value, updated_at) VALUES ('doomed', '1', 0)`);
          await tick(10);
          throw new Error('doomed');
        });
        const late = d.run(`INSERT INTO kv (name, value, updated_at) VALUES ('late', '1', 0)`);
        release();
        await first;
        await assert.rejects(doomed, /doomed/);
        await Promise.all([plain, late]);
        assert.deepEqual(
          await names(d),
          ['first', 'late', 'plain'],
          "only the doomed transaction's own row was rolled back",
        );
      } finally {
        await d.close();
      }
    });
  });
});

test('WAL checkpoints run in a thread of their own, half a second after writes, and let the WAL start over (security.md #195)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const path = freshPath();
  const d = new SqliteDriver(path);
  await d.run('CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)');
  const walSize = () => statSync(`${path}-wal`).size;
  // 6 MiB: past the 4 MiB at which SQLite's automatic checkpoint would copy the WAL at a commit.
  const burst = async () => {
    for (let i = 0; i < 96; i++) await d.run('INSERT INTO blobs (body) VALUES (randomblob(65536))');
  };
  try {
    assert.equal(Object.values((await d.get('PRAGMA wal_autocheckpoint'))!)[0], 0, 'no checkpoint at a commit');
    await burst();
    const grown = walSize();
    assert.ok(grown > 6 * 1024 * 1024, `the commits left the WAL to the checkpointer (${grown} bytes)`);
    t.mock.timers.tick(500);
    await d.settle();
    await burst();
    assert.equal(walSize(), grown, 'after the checkpoint the next writes reused the WAL instead of growing it');
    assert.equal(((await d.get('SELECT COUNT(*) AS n FROM blobs')) as { n: number }).n, 192);
  } finally {
    t.mock.timers.reset();
    await d.close();
  }
  const reopened = new DatabaseSync(path);
  assert.equal((reopened.prepare('SELECT COUNT(*) AS n FROM blobs').get() as { n: number }).n, 192, 'nothing lost');
  reopened.close();
});

test('another process holding the write lock past busy_timeout: the store is unavailable (503), not a 500', async () => {
  const path = freshPath();
  const driver = new SqliteDriver(path);
  const other = new DatabaseSync(path);
  try {
    await migrate(driver);
    await driver.run('PRAGMA busy_timeout = 50');
    // Another worker (or the CLI) in the middle of a long write.
    other.exec('PRAGMA busy_timeout = 50; BEGIN IMMEDIATE');
    await assert.rejects(
      driver.run(`INSERT INTO kv (name, value, updated_at) VALUES ('k', 'v', 0)`),
      (err: Error) => err.name === 'StoreUnavailableError' && /busy: database is locked/.test(err.message),
    );
    await assert.rejects(
      driver.transaction((tx) => tx.run(`INSERT INTO kv (name, value, updated_at) VALUES ('k', 'v', 0)`)),
      { name: 'StoreUnavailableError' },
    );
    assert.equal((await driver.all('SELECT name FROM kv WHERE name = ?', ['k'])).length, 0, 'reads go on (WAL)');
    other.exec('COMMIT');
    await driver.run(`INSERT INTO kv (name, value, updated_at) VALUES ('k', 'v', 0)`);
    await assert.rejects(
      driver.run('INSERT INTO no_such_table VALUES (1)'),
      (err: Error) => err.name !== 'StoreUnavailableError',
    );
  } finally {
    other.close();
    await driver.close();
  }
});
