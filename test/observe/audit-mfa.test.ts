import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ConfigInput } from '../../src/config/schema.ts';
import { hashSessionId } from '../../src/sessions/index.ts';
import type { AuditEvent } from '../../src/store/index.ts';
import { runCli } from '../helpers/cli.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, linkIn, mailTo, sameOrigin } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { pgSchema, postgres } from '../faults/services.ts';
import { confirmTotp, passwordStep, sameSite, totpCode } from '../mfa/helpers.ts';

/**
 * The audit trail of second factors and account changes, after real flows over HTTP: an
 * authenticator app added (code computed here as an app would), sign-ins finished with it or with
 * a recovery code, wrong and throttled codes, the app removed; re-authentication; a change of
 * email confirmed with the mailed link; an invitation (the real CLI) accepted. Read back from the
 * store, from `gatehouse audit --json` and from the account page's "Recent activity". No secret
 * (TOTP key, code, recovery code, link token) is ever in an event.
 */

const pg = await postgres();
let smtp: TestSmtp;

before(async () => {
  smtp = await startSmtp();
});
after(() => smtp?.close());

function flows(label: string, storeOf: () => Promise<{ store: ConfigInput['store']; done(): Promise<void> }>) {
  describe(`audit trail of second factors and account changes (${label})`, () => {
    let gh: TestGatehouse;
    let db: { store: ConfigInput['store']; done(): Promise<void> };
    let configFile: string;

    before(async () => {
      db = await storeOf();
      gh = await startGatehouse(({ dir }) => ({
        title: 'Acme Portal',
        ...(db.store ? { store: db.store } : { store: { type: 'sqlite', path: join(dir, 'gatehouse.db') } }),
        email: emailConfig(smtp),
        accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 5, registerPerIp: 1000 } },
      }));
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

    /** The events of a user, oldest first (in the order they happened), once written to the store. */
    async function events(userId: string): Promise<AuditEvent[]> {
      await gh.gatehouse.audit.flush();
      return (await gh.gatehouse.store.audit.list({ userId, limit: 1000 })).reverse();
    }
    const brief = (e: AuditEvent) =>
      `${e.event}:${e.outcome}:${String(e.detail.type ?? e.detail.method ?? '')}` as const;

    test('authenticator app: added, sign-ins with it and a recovery code, a wrong code, removal; no secret recorded', async () => {
      const browser = new Client(gh.url);
      const email = uniqueEmail('auditmfa');
      const user = await registerJson(browser, email);
      const start = await browser.get('/.auth/account/totp', { accept: 'application/json' });
      assert.equal(start.status, 200, start.text);
      const secret = start.json().secret as string;
      const added = await confirmTotp(browser, gh, secret);
      assert.equal(added.status, 200, added.text);
      const codes = added.json().recoveryCodes as string[];
      await browser.postJson('/.auth/logout', {}, sameSite(gh));

      const c = await passwordStep(gh, email);
      const wrong = await c.postJson('/.auth/second-factor', { code: totpCode(secret, 5) });
      assert.equal(wrong.status, 401);
      const ok = await c.postJson('/.auth/second-factor', { code: totpCode(secret) });
      assert.equal(ok.status, 200, ok.text);
      const r = await passwordStep(gh, email);
      assert.equal((await r.postJson('/.auth/second-factor', { code: codes[0] })).json().recoveryCodesLeft, 9);

      const removed = await c.postJson('/.auth/account/totp/remove', {}, sameSite(gh));
      assert.equal(removed.status, 200, removed.text);

      const list = await events(user.id);
      // Events of one request share a millisecond more often than not: their ids keep them in order.
      assert.deepEqual(list.filter((e) => e.event !== 'register' && e.event !== 'logout').map(brief), [
        'factor_added:success:totp',
        'factor_added:success:recovery_codes',
        'login:failure:totp',
        'login:success:totp',
        'login:success:recovery_code',
        'factor_removed:success:totp',
        'factor_removed:success:recovery_codes',
      ]);
      const signIn = list.find((e) => e.event === 'login' && e.outcome === 'success')!;
      assert.equal(signIn.detail.amr, 'pwd otp mfa', 'the password and the app');
      assert.ok(signIn.ip, 'the request it came with');
      const all = JSON.stringify(list);
      for (const s of [secret, ...codes, totpCode(secret), totpCode(secret, -1)])
        assert.ok(!all.includes(s), 'no key or code in the audit trail');

      // The owner reads it on the account page, in words.
      const activity = (await c.get('/.auth/account/activity')).json().activity as { what: string }[];
      const words = activity.map((a) => a.what);
      for (const w of [
        'Authenticator app added',
        'Recovery codes added',
        'Signed in with your authenticator app',
        'Signed in with a recovery code',
        'Failed sign-in: wrong second-factor code',
        'Authenticator app removed',
      ])
        assert.ok(words.includes(w), `${w} in ${JSON.stringify(words)}`);
    });

    test('guessed codes: each wrong one is a failed sign-in, then the throttled ones are recorded as such', async () => {
      const browser = new Client(gh.url);
      const email = uniqueEmail('auditguess');
      const user = await registerJson(browser, email);
      const { secret } = (await browser.get('/.auth/account/totp', { accept: 'application/json' })).json();
      assert.equal((await confirmTotp(browser, gh, secret)).status, 200);
      const c = await passwordStep(gh, email);
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++)
        statuses.push((await c.postJson('/.auth/second-factor', { code: `12345${i}` })).status);
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429]);
      const logins = (await events(user.id)).filter((e) => e.event === 'login');
      // A fast machine makes several attempts in one millisecond: their ids keep them in order.
      assert.deepEqual(
        logins.map((e) => `${e.outcome}:${String(e.detail.method)}`),
        [...Array(5).fill('failure:totp'), 'throttled:totp', 'throttled:totp'],
      );
      // The account page lists them newest first, in the same order.
      const activity = (await browser.get('/.auth/account/activity')).json().activity as { what: string }[];
      assert.deepEqual(
        activity.slice(0, 7).map((a) => a.what),
        [
          ...Array(2).fill('Sign-in refused: too many failed attempts'),
          ...Array(5).fill('Failed sign-in: wrong second-factor code'),
        ],
      );
    });

    test('re-authentication (wrong password, then right), a change of email confirmed with the mailed link', async () => {
      const c = new Client(gh.url);
      const email = uniqueEmail('auditold');
      const user = await registerJson(c, email);
      const idHash = hashSessionId(c.jar.get('gatehouse')!);
      const s = (await gh.gatehouse.store.sessions.get(idHash))!;
      await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });
      const bad = await c.postJson('/.auth/reauth', { password: 'not the password at all' }, sameOrigin(c));
      assert.equal(bad.status, 401);
      assert.equal((await c.postJson('/.auth/reauth', { password: PASSWORD }, sameOrigin(c))).status, 200);

      const newEmail = uniqueEmail('auditnew');
      const n = smtp.messages.length;
      const asked = await c.postJson('/.auth/account/email', { email: newEmail }, sameOrigin(c));
      assert.equal(asked.status, 202, asked.text);
      const link = linkIn(await mailTo(smtp, newEmail, /^Confirm your new email address/, n), '/.auth/confirm-email');
      const token = new URL(link).searchParams.get('token')!;
      const done = await new Client(gh.url).postJson('/.auth/confirm-email', { token });
      assert.equal(done.status, 200, done.text);

      const list = (await events(user.id)).filter((e) => e.event !== 'register');
      assert.deepEqual(
        list.map((e) => `${e.event}:${e.outcome}`),
        [
          'reauthentication_failed:failure',
          'reauthenticated:success',
          'email_change_requested:success',
          'email_changed:success',
        ],
      );
      assert.equal(list[0]!.detail.method, 'password');
      assert.equal(list[2]!.detail.email, newEmail);
      assert.deepEqual([list[3]!.detail.from, list[3]!.detail.email], [email, newEmail]);
      assert.ok(!JSON.stringify(list).includes(token), 'the link token is never recorded');

      // `gatehouse audit --json` shows the same, under the new address.
      const json = await runCli(['audit', '--user', newEmail, '--json', '--config', configFile]);
      assert.equal(json.code, 0, json.stderr);
      const names = json.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as AuditEvent).event);
      for (const e of ['reauthentication_failed', 'reauthenticated', 'email_change_requested', 'email_changed'])
        assert.ok(names.includes(e), `${e} in ${names.join(',')}`);
      const byEvent = await runCli(['audit', '--event', 'email_changed', '--json', '--config', configFile]);
      assert.equal(byEvent.code, 0, byEvent.stderr);
      const activity = (await c.get('/.auth/account/activity')).json().activity as { what: string }[];
      for (const w of ['Change of email address requested', 'Email address changed', 'Confirmed it was you'])
        assert.ok(
          activity.some((a) => a.what === w),
          w,
        );
    });

    test('an invitation from `gatehouse users invite` accepted: the operator command and the acceptance', async () => {
      const email = uniqueEmail('auditinvite');
      const r = await runCli(['users', 'invite', email, '--config', configFile]);
      assert.equal(r.code, 0, r.stderr);
      const token = /\/\.auth\/invite\?token=([A-Za-z0-9_-]{43})/.exec(r.stdout)?.[1];
      assert.ok(token, r.stdout);
      const c = new Client(gh.url);
      const ok = await c.postJson('/.auth/invite', { token, password: PASSWORD }, sameOrigin(c));
      assert.equal(ok.status, 201, ok.text);
      const user = ok.json().user as { id: string };
      const list = await events(user.id);
      const op = list.find((e) => e.event === 'operator');
      assert.equal(op?.detail.command, 'users invite');
      assert.match(String(op?.actor), /^operator:/);
      const accepted = list.find((e) => e.event === 'invitation_accepted');
      assert.equal(accepted?.detail.method, 'password');
      assert.ok(accepted?.ip);
      assert.ok(!JSON.stringify(list).includes(token), 'the invitation token is never recorded');
    });
  });
}

flows('SQLite', async () => ({ store: undefined, done: async () => {} }));

describeOrSkip('PostgreSQL', { skip: pg.skip }, () => {
  flows('PostgreSQL', async () => {
    const db = await pgSchema('auditmfa');
    return { store: { type: 'postgres', url: db.url(), poolSize: 3 }, done: () => db.drop() };
  });
});
