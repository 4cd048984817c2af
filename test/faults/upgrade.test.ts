import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { MIGRATIONS } from '../../src/store/migrations.ts';
import { pgSchema, postgres } from './services.ts';

/**
 * A rolling upgrade of two nodes on one PostgreSQL whose new version brings a migration
 * (docs/operations.md, "Upgrades"): the new nodes start while the old ones serve; one of them
 * applies the migration under the advisory lock, the other waits for it and applies nothing; the
 * old nodes keep serving throughout and afterwards (migrations only add), and a node of the old
 * version started after the upgrade (a rollback) starts too.
 */
const service = await postgres();

describeOrSkip('rolling upgrade with a pending migration (PostgreSQL)', { skip: service.skip }, () => {
  let db: Awaited<ReturnType<typeof pgSchema>>;
  const nodes: TestGatehouse[] = [];
  let upstream: Awaited<ReturnType<typeof startUpstream>> | undefined;
  after(async () => {
    for (const n of nodes) await n.close();
    await upstream?.close();
    await db?.drop();
  });

  test('old nodes serve while two new nodes start at once and one migrates; then every node serves every session', async () => {
    db = await pgSchema('upgrade');
    upstream = await startUpstream();
    // Every node serves one public address (a balancer in front); the tests reach each by its port.
    const publicUrl = 'http://app.test';
    const config = () => ({ publicUrl, store: { type: 'postgres' as const, url: db.url(), poolSize: 3 } });
    const start = () => startGatehouse(config, { upstream, startJobs: false });
    /** A browser with `from`'s cookies, talking to `node`. */
    const via = (node: TestGatehouse, from?: Client) => {
      const c = new Client(node.url);
      c.defaultHeaders = { host: 'app.test' };
      for (const [k, v] of from?.jar ?? []) c.jar.set(k, v);
      return c;
    };
    const old1 = await start();
    const old2 = await start();
    nodes.push(old1, old2);
    const user = via(old1);
    await registerJson(user);

    // Traffic through both old nodes for the whole upgrade, with the same session cookie.
    const statuses: number[] = [];
    let going = true;
    const traffic = (async () => {
      for (let i = 0; going; i++) {
        const node = i % 2 ? old1 : old2;
        statuses.push((await via(node, user).get('/private')).status);
      }
    })();

    // The new version: one more migration, slow (as one that builds an index would be) and additive.
    const pending = {
      version: 9000,
      name: 'test: a pending migration',
      sql: [
        `SELECT pg_sleep(1)`,
        `CREATE TABLE upgrade_probe (id TEXT PRIMARY KEY)`,
        `ALTER TABLE sessions ADD COLUMN upgrade_note TEXT`,
      ],
    };
    MIGRATIONS.push(pending);
    let new1: TestGatehouse;
    let new2: TestGatehouse;
    const during = statuses.length;
    try {
      [new1, new2] = await Promise.all([start(), start()]);
    } finally {
      MIGRATIONS.pop();
    }
    nodes.push(new1, new2);
    const servedDuring = statuses.length - during;
    going = false;
    await traffic;

    assert.ok(servedDuring > 5, `the old nodes answered during the migration (${servedDuring} requests)`);
    assert.deepEqual(
      statuses.filter((s) => s !== 200),
      [],
      'every request through the old nodes succeeded, before, during and after',
    );

    const { default: pg } = await import('pg');
    const admin = new pg.Client({ connectionString: db.url() });
    await admin.connect();
    try {
      const { rows } = await admin.query('SELECT version FROM schema_migrations WHERE version = 9000');
      assert.equal(rows.length, 1, 'applied once');
    } finally {
      await admin.end();
    }

    for (const node of [old1, old2, new1, new2]) {
      const res = await via(node, user).get('/private');
      assert.equal(res.status, 200, `${node.url}: the session works on every node`);
    }
    const fresh = via(new1);
    await registerJson(fresh);
    assert.equal((await via(old2, fresh).get('/private')).status, 200, 'signed up on a new node, served by an old one');

    // A node of the old version started after the upgrade (a rollback of one node) starts too:
    // it finds every migration it knows applied, and ignores the newer one.
    const rolledBack = await start();
    nodes.push(rolledBack);
    assert.equal((await via(rolledBack, user).get('/private')).status, 200);

    // The old nodes leave (drain), the new ones carry on.
    await old1.close();
    await old2.close();
    nodes.splice(nodes.indexOf(old1), 1);
    nodes.splice(nodes.indexOf(old2), 1);
    assert.equal((await via(new2, user).get('/private')).status, 200);
  });
});
