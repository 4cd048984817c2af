import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import type { ConfigInput } from '../../src/config/schema.ts';
import { openStore } from '../../src/store/index.ts';
import type { AuditEvent } from '../../src/store/index.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { runCli } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { callbackHop, signIn } from '../helpers/oauth.ts';
import { startLab, type Lab } from '../helpers/providers.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { pgSchema, postgres } from '../faults/services.ts';
import { cliClient, deviceLogin, oauthError } from '../oauth/helpers.ts';

const pg = await postgres();
let lab: Lab;

before(async () => {
  lab = await startLab({ gatehouses: 2 });
});
after(() => lab.close());

const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36';

/** The audit events of a user, once written to the store. */
async function stored(gh: TestGatehouse, q: { userId?: string; event?: string } = {}): Promise<AuditEvent[]> {
  await gh.gatehouse.audit.flush();
  return gh.gatehouse.store.audit.list({ ...q, limit: 1000 });
}

function flows(
  label: string,
  storeOf: () => Promise<{ store: ConfigInput['store']; done(): Promise<void> }>,
  at: number,
) {
  describe(`audit trail after real flows (${label})`, () => {
    let gh: TestGatehouse;
    let db: { store: ConfigInput['store']; done(): Promise<void> };
    let configFile: string;

    before(async () => {
      db = await storeOf();
      gh = await startGatehouse(
        ({ dir }) => ({
          ...(db.store ? { store: db.store } : { store: { type: 'sqlite', path: join(dir, 'gatehouse.db') } }),
          providers: lab.providers(),
          accounts: { rateLimits: { loginPerIp: 3 } },
          tokens: { reuseGrace: 0 },
        }),
        { port: lab.ports[at] },
      );
      configFile = join(gh.dir, 'cli.yaml');
      writeFileSync(
        configFile,
        JSON.stringify({ publicUrl: gh.url, upstream: gh.upstream.url, store: gh.config.store }, null, 2),
      );
    });
    after(async () => {
      await gh?.close();
      await db?.done();
    });

    test('password: registration, sign-in, failures, a throttled attempt, sign-out; with IP and user agent', async () => {
      const browser = new Client(gh.url);
      browser.defaultHeaders = { 'user-agent': UA };
      const email = uniqueEmail('audit');
      const user = await registerJson(browser, email);
      assert.equal((await browser.postJson('/.auth/logout', {}, { origin: gh.url })).status, 200);
      assert.equal((await browser.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
      const stranger = new Client(gh.url);
      let throttled = 0;
      for (let i = 0; i < 5; i++) {
        const res = await stranger.postJson('/.auth/login', { email, password: 'wrong password here' });
        if (res.status === 429) throttled++;
        else assert.equal(res.status, 401);
      }
      assert.ok(throttled > 0, 'the flood was throttled');
      const events = await stored(gh, { userId: user.id });
      const names = events.map((e) => `${e.event}:${e.outcome}`).reverse();
      assert.deepEqual(names.slice(0, 3), ['register:success', 'logout:success', 'login:success']);
      assert.equal(names.filter((n) => n === 'login:failure').length, 5 - throttled);
      assert.equal(
        names.filter((n) => n === 'login:throttled').length,
        throttled,
        'throttled attempts are audited too',
      );
      const login = events.find((e) => e.event === 'login' && e.outcome === 'success')!;
      assert.equal(login.ip, '127.0.0.1');
      assert.equal(login.userAgent, UA);
      assert.equal(login.detail.method, 'password');
      assert.equal(login.actor, null);
      const line = gh.logs.find((l) => l.event === 'audit' && l.audit === 'login' && l.userId === user.id);
      assert.ok(line, 'each event is logged too');
      assert.doesNotMatch(gh.logText(), /wrong password here/);
    });

    test('provider sign-in (a real IdP) is audited with its provider', async () => {
      const browser = new Client(gh.url);
      lab.a.autoLogin = 'alice';
      const hops = await signIn(browser, 'a');
      assert.equal(callbackHop(hops).res.status, 303);
      const me = (await browser.get('/.auth/me')).json();
      const events = await stored(gh, { userId: me.id });
      const login = events.find((e) => e.event === 'login')!;
      assert.equal(login.outcome, 'success');
      assert.equal(login.detail.method, 'provider');
      assert.equal(login.detail.provider, 'a');
      assert.ok(
        events.some((e) => e.event === 'register' && e.detail.provider === 'a'),
        'the account it created',
      );
    });

    test('device approval, refresh-token reuse and revocation are audited', async () => {
      const browser = new Client(gh.url);
      const user = await registerJson(browser);
      const config = await cliClient(gh);
      const first = await deviceLogin(gh, browser, config);
      const refreshed = await oauth.refreshTokenGrant(config, first.refresh_token!);
      assert.ok(refreshed.access_token);
      assert.equal(await oauthError(oauth.refreshTokenGrant(config, first.refresh_token!)), 'invalid_grant');
      const second = await deviceLogin(gh, browser, config);
      await oauth.tokenRevocation(config, second.refresh_token!);
      const events = await stored(gh, { userId: user.id });
      const names = events.map((e) => e.event);
      assert.equal(names.filter((n) => n === 'device_approved').length, 2);
      const reuse = events.find((e) => e.event === 'refresh_reuse')!;
      assert.equal(reuse.outcome, 'revoked');
      assert.equal(reuse.detail.client, 'gatehouse-cli');
      const revoked = events.find((e) => e.event === 'login_revoked')!;
      assert.equal(revoked.detail.by, 'client');
    });

    test('operator commands are audited with the OS user who ran them; `gatehouse audit` prints them', async () => {
      const email = uniqueEmail('operated');
      const user = await registerJson(new Client(gh.url), email);
      const r = await runCli(['users', 'disable', email, '--config', configFile]);
      assert.equal(r.code, 0, r.stderr);
      const op = (await stored(gh, { userId: user.id, event: 'operator' }))[0]!;
      assert.equal(op.actor, `operator:${userInfo().username}`);
      assert.equal(op.detail.command, 'users disable');
      assert.equal(op.outcome, 'success');
      const failed = await runCli(['users', 'enable', 'nobody@example.com', '--config', configFile]);
      assert.notEqual(failed.code, 0);
      assert.ok((await stored(gh, { event: 'operator' })).some((e) => e.outcome === 'failure'));

      const text = await runCli(['audit', '--user', email, '--since', '1h', '--config', configFile]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^TIME\s+EVENT\s+OUTCOME\s+USER\s+BY/m);
      assert.match(text.stdout, /register\s+success/);
      assert.match(text.stdout, new RegExp(`operator\\s+success\\s+${email.replace(/[.+]/g, '\\$&')}\\s+operator:`));
      const json = await runCli(['audit', '--event', 'operator', '--json', '--config', configFile]);
      const lines = json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as AuditEvent);
      assert.ok(lines.length >= 2 && lines.every((e) => e.event === 'operator'));
      const bad = await runCli(['audit', '--since', 'yesterday', '--config', configFile]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--since expects a duration/);
    });

    test('events recorded just before a clean shutdown are in the store afterwards', async () => {
      const email = uniqueEmail('last');
      const user = await registerJson(new Client(gh.url), email);
      for (let i = 0; i < 5; i++)
        await new Client(gh.url).postJson('/.auth/login', { email, password: 'nope nope nope' });
      assert.ok(gh.gatehouse.audit.pending > 0, 'still queued');
      await gh.gatehouse.close();
      const store = await openStore(gh.config.store);
      try {
        const events = await store.audit.list({ userId: user.id });
        assert.ok(events.filter((e) => e.event === 'login').length >= 5, 'the last batch was written');
      } finally {
        await store.close();
      }
    });
  });
}

flows('SQLite', async () => ({ store: undefined, done: async () => {} }), 0);

describeOrSkip('PostgreSQL', { skip: pg.skip }, () => {
  flows(
    'PostgreSQL',
    async () => {
      const db = await pgSchema('audit');
      return { store: { type: 'postgres', url: db.url(), poolSize: 3 }, done: () => db.drop() };
    },
    1,
  );
});
