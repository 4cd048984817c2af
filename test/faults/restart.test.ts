import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { pgSchema, postgres } from './services.ts';
import { runCli as cli } from '../helpers/cli.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * Sessions live in the store, not in the process: a restart (or another node) honours the
 * cookies the last one issued, and a revocation written by the CLI into the same store is
 * honoured by the running server at its very next request.
 */
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-restart-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const pgService = await postgres();

interface Backend {
  name: string;
  skip: string | false;
  /** A store config for a fresh database, and how to remove it. */
  setup(): Promise<{ store: ConfigInput['store']; yaml: string; cleanup(): Promise<void> }>;
}

let n = 0;
const backends: Backend[] = [
  {
    name: 'SQLite',
    skip: false,
    async setup() {
      const path = join(dir, `shared-${n++}.db`);
      return {
        store: { type: 'sqlite', path },
        yaml: `store:\n  type: sqlite\n  path: ${path}\n`,
        cleanup: async () => {},
      };
    },
  },
  {
    name: 'PostgreSQL',
    skip: pgService.skip,
    async setup() {
      const db = await pgSchema('restart');
      return {
        store: { type: 'postgres', url: db.url(), poolSize: 3 },
        yaml: `store:\n  type: postgres\n  url: "${db.url()}"\n`,
        cleanup: () => db.drop(),
      };
    },
  },
];

for (const backend of backends) {
  describeOrSkip(`sessions in the store: ${backend.name}`, { skip: backend.skip }, () => {
    test('a restart on the same store keeps everyone signed in; logout before it stays logged out', async () => {
      const db = await backend.setup();
      const upstream = await startUpstream();
      let second: TestGatehouse | undefined;
      try {
        const first = await startGatehouse(() => ({ store: db.store }), { upstream });
        const email = uniqueEmail('restart');
        const stays = new Client(first.url);
        const { id } = await registerJson(stays, email);
        const leaves = new Client(first.url);
        assert.equal((await leaves.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
        const leftCookie = leaves.cookieHeader()!;
        assert.ok((await leaves.postJson('/.auth/logout', {})).status < 400);
        assert.equal((await stays.get('/private')).status, 200);
        const publicUrl = first.url;
        await first.close();

        // A new process on the same store and the same public address (another port behind it).
        second = await startGatehouse(() => ({ store: db.store, publicUrl }), { upstream });
        const host = new URL(publicUrl).host;
        const again = new Client(second.url);
        again.defaultHeaders = { host };
        for (const [k, v] of stays.jar) again.jar.set(k, v);
        const res = await again.get('/private');
        assert.equal(res.status, 200, `the old cookie works after the restart: ${res.status} ${res.text}`);
        assert.equal(upstream.last().headers['x-user-id'], id);

        const loggedOut = await new Client(second.url).get('/private', { host, cookie: leftCookie });
        assert.equal(loggedOut.status, 401, 'a session ended before the restart does not come back');

        // And the restarted node signs people in with the same password as before.
        assert.equal(
          (await new Client(second.url).postJson('/.auth/login', { email, password: PASSWORD }, { host })).status,
          200,
        );
      } finally {
        await second?.close();
        await upstream.close();
        await db.cleanup();
      }
    });

    test('gatehouse sessions revoke on the shared store: the running server refuses the very next request', async () => {
      const db = await backend.setup();
      const gh = await startGatehouse(() => ({ store: db.store }));
      try {
        const file = join(dir, `revoke-${n++}.yaml`);
        writeFileSync(file, `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\n${db.yaml}`);
        const email = uniqueEmail('revoke');
        const laptop = new Client(gh.url);
        await registerJson(laptop, email);
        const phone = new Client(gh.url);
        assert.equal((await phone.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
        const bystander = new Client(gh.url);
        await registerJson(bystander);
        // Both are in use, over kept-alive connections, right up to the revocation.
        assert.equal((await laptop.get('/private')).status, 200);
        assert.equal((await phone.get('/private')).status, 200);

        const r = await cli(['sessions', 'revoke', '--user', email, '--config', file]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /revoked 2 sessions/);

        const seen = gh.upstream.requests.length;
        assert.equal((await laptop.get('/private')).status, 401);
        assert.equal((await phone.get('/private')).status, 401);
        assert.equal(gh.upstream.requests.length, seen, 'nothing reached the app for a revoked session');
        assert.equal((await bystander.get('/private')).status, 200, "another user's session is untouched");
        // Revocation ends sessions, not the account.
        assert.equal((await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
      } finally {
        await gh.close();
        await db.cleanup();
      }
    });
  });
}
