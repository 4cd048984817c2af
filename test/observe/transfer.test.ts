import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as oauth from 'openid-client';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import { runCli } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { callbackHop, signIn } from '../helpers/oauth.ts';
import { startLab, type Lab } from '../helpers/providers.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { pgSchema, postgres } from '../faults/services.ts';
import { cliClient, deviceLogin } from '../oauth/helpers.ts';

const pg = await postgres();
let lab: Lab;
let upstream: TestUpstream;

before(async () => {
  lab = await startLab({ gatehouses: 1 });
  upstream = await startUpstream();
});
after(async () => {
  await lab.close();
  await upstream.close();
});

/** A Gatehouse on lab port 0 over `store`, with the lab's providers. */
function start(store: ConfigInput['store']): Promise<TestGatehouse> {
  return startGatehouse(() => ({ store, providers: lab.providers() }), { port: lab.ports[0], upstream });
}

/** A config file for the CLI naming `store`. */
function cliConfig(dir: string, name: string, store: ConfigInput['store']): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, JSON.stringify({ publicUrl: lab.origin(), upstream: upstream.url, store }));
  return file;
}

async function kids(gh: TestGatehouse): Promise<string[]> {
  return ((await new Client(gh.url).get('/.well-known/jwks.json')).json().keys as { kid: string }[]).map((k) => k.kid);
}

function headerOf(file: string): { format: string; version: number; counts: Record<string, number>; source: string } {
  return JSON.parse(readFileSync(file, 'utf8').split('\n', 1)[0]!);
}

describeOrSkip('export and import', { skip: pg.skip }, () => {
  test('SQLite → PostgreSQL → SQLite: users, sessions, identities, provider tokens, CLI logins, keys and audit move; the same cookie, kid and refresh token work after each move (security.md #194)', async () => {
    const db = await pgSchema('transfer');
    // 1. A populated SQLite store.
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-transfer-'));
    const sqliteA = { type: 'sqlite' as const, path: join(dir, 'a.db') };
    let gh = await start(sqliteA);
    try {
      const browser = new Client(gh.url);
      const email = uniqueEmail('moved');
      const user = await registerJson(browser, email);
      lab.a.autoLogin = 'alice';
      const idp = new Client(gh.url);
      assert.equal(callbackHop(await signIn(idp, 'a')).res.status, 303);
      const alice = (await idp.get('/.auth/me')).json();
      const config = await cliClient(gh);
      const tokens = await deviceLogin(gh, browser, config);
      const kidBefore = await kids(gh);
      const auditBefore = (await gh.gatehouse.audit.list({ userId: user.id })).length;
      await gh.close();

      const exported = join(dir, 'store.jsonl');
      const fromSqlite = cliConfig(dir, 'sqlite', sqliteA);
      const e1 = await runCli(['export', '--to', exported, '--config', fromSqlite]);
      assert.equal(e1.code, 0, e1.stderr);
      assert.equal(statSync(exported).mode & 0o777, 0o600, 'readable by its owner only');
      const h1 = headerOf(exported);
      assert.equal(h1.format, 'gatehouse-export');
      assert.equal(h1.version, 1);
      assert.equal(h1.source, 'sqlite');
      for (const t of ['users', 'sessions', 'identities', 'provider_tokens', 'oauth_grants', 'signing_keys', 'kv'])
        assert.ok(h1.counts[t]! > 0, `${t} exported`);
      assert.ok(h1.counts.audit_events! >= auditBefore);
      const text = readFileSync(exported, 'utf8');
      assert.ok(!text.includes(tokens.refresh_token!), 'no usable token in the file');
      assert.ok(!text.includes(lab.secretA), 'no client secret');
      assert.doesNotMatch(text, /"d":"/, 'no private JWK in clear');

      // 2. Into PostgreSQL.
      const pgStore = { type: 'postgres' as const, url: db.url(), poolSize: 2 };
      const toPg = cliConfig(dir, 'pg', pgStore);
      const i1 = await runCli(['import', exported, '--config', toPg]);
      assert.equal(i1.code, 0, i1.stderr + i1.stdout);
      assert.match(i1.stdout, /every count checked/);
      const again = await runCli(['import', exported, '--config', toPg]);
      assert.equal(again.code, 2, 'a store with data is not overwritten');
      assert.match(again.stderr, /not empty .*--force/);

      gh = await start(pgStore);
      assert.equal(gh.gatehouse.store.kind, 'postgres');
      assert.equal((await browser.get('/.auth/me')).json().id, user.id, 'the same session cookie');
      assert.deepEqual(await kids(gh), kidBefore, 'the same signing key');
      const refreshed = await oauth.refreshTokenGrant(await cliClient(gh), tokens.refresh_token!);
      assert.ok(refreshed.access_token, 'the CLI login carries on');
      const idp2 = new Client(gh.url);
      assert.equal(callbackHop(await signIn(idp2, 'a')).res.status, 303);
      assert.equal((await idp2.get('/.auth/me')).json().id, alice.id, 'the linked identity');
      const events = await gh.gatehouse.audit.list({ userId: user.id });
      assert.ok(events.length >= auditBefore && events.some((e) => e.event === 'register'), 'the audit trail');
      await gh.close();

      // 3. Back into a new SQLite store.
      const back = join(dir, 'back.jsonl');
      const e2 = await runCli(['export', '--to', back, '--config', toPg]);
      assert.equal(e2.code, 0, e2.stderr);
      assert.equal(headerOf(back).source, 'postgres');
      const sqliteB = { type: 'sqlite' as const, path: join(dir, 'b.db') };
      const toSqlite = cliConfig(dir, 'sqlite-b', sqliteB);
      const i2 = await runCli(['import', back, '--config', toSqlite]);
      assert.equal(i2.code, 0, i2.stderr + i2.stdout);
      gh = await start(sqliteB);
      assert.equal((await browser.get('/.auth/me')).json().id, user.id, 'the same session cookie again');
      assert.deepEqual(await kids(gh), kidBefore);
      const counts = headerOf(back).counts;
      assert.equal(await gh.gatehouse.store.users.count(), counts.users);
      await gh.close();

      // 4. --force replaces what is there; a file that is not an export is refused.
      const forced = await runCli(['import', exported, '--force', '--config', toSqlite]);
      assert.equal(forced.code, 0, forced.stderr + forced.stdout);
      const junk = join(dir, 'junk.jsonl');
      writeFileSync(junk, '{"format":"something else"}\n');
      const refused = await runCli(['import', junk, '--config', toSqlite]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /not a Gatehouse export/);
      const evil = join(dir, 'evil.jsonl');
      writeFileSync(
        evil,
        `${JSON.stringify({ format: 'gatehouse-export', version: 1, schema: 1, source: 'sqlite', counts: {} })}\n${JSON.stringify({ t: 'users', r: { 'id) VALUES (1); DROP TABLE users; --': 'x' } })}\n`,
      );
      const injected = await runCli(['import', evil, '--force', '--config', toSqlite]);
      assert.notEqual(injected.code, 0);
      assert.match(injected.stderr, /has no column/);
    } finally {
      await gh.close().catch(() => {});
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
