import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, decodeEntities, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { runCli } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { consentPath, csrfOf } from './imports.ts';
import { passwordStep, sameSite, totpCode, userWithTotp } from './helpers.ts';

/**
 * Authenticator apps (TOTP, codes computed here as an app would), recovery codes, the
 * second-factor step after a password, accounts.mfa: required, and the attacks on them: skipping
 * the step, replaying a code, reusing a recovery code, guessing codes, CSRF on enrolment and removal.
 */

let gh: TestGatehouse;
let strict: TestGatehouse;
let tight: TestGatehouse;
let invited: TestGatehouse;

before(async () => {
  const limits = { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 };
  gh = await startGatehouse(() => ({
    title: 'Acme Portal',
    routes: [{ path: '/api/**', unauthenticated: '401' }],
    accounts: { rateLimits: limits },
    tokens: { clients: [{ id: 'desk', name: 'Desk', redirectUris: ['http://127.0.0.1:9/callback'] }] },
  }));
  strict = await startGatehouse(() => ({ accounts: { mfa: 'required', rateLimits: limits } }));
  invited = await startGatehouse(() => ({ accounts: { registration: 'invite', mfa: 'required' } }));
  tight = await startGatehouse(() => ({
    accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 5, registerPerIp: 1000 } },
  }));
});
after(async () => {
  await Promise.all([gh?.close(), strict?.close(), tight?.close(), invited?.close()]);
});

const me = async (c: Client) => c.get('/.auth/me');

describe('authenticator app and the second-factor step', () => {
  test('enrol on the account page: a QR code made on the server, the key as text, a code confirms, 10 recovery codes once', async () => {
    const c = new Client(gh.url);
    await registerJson(c, uniqueEmail('enrol'));
    const account = await c.html('/.auth/account');
    assert.match(account.text, /Second factors/);
    assert.match(account.text, /Add an authenticator app/);
    const page = await c.html('/.auth/account/totp');
    assert.equal(page.status, 200);
    assert.match(page.text, /<svg[^>]*viewBox/, 'an inline SVG, no image request');
    assert.doesNotMatch(page.text, /<img /);
    const key = /<code class="secret">([A-Z2-7 ]+)<\/code>/.exec(page.text)![1]!.replace(/ /g, '');
    const wrong = await c.postForm('/.auth/account/totp', { csrf: csrfOf(page), code: '000000' }, sameSite(gh));
    assert.equal(wrong.status, 400);
    assert.match(wrong.text, /not right/);
    const ok = await c.postForm('/.auth/account/totp', { csrf: csrfOf(page), code: totpCode(key) }, sameSite(gh));
    assert.equal(ok.status, 200, ok.text);
    const codes = [...ok.text.matchAll(/<li><code>([a-z0-9-]+)<\/code><\/li>/g)].map((m) => m[1]);
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    const body = (await me(c)).json();
    assert.deepEqual(body.factors, ['totp', 'recovery_codes']);
    const again = await c.html('/.auth/account');
    assert.match(again.text, /10 remaining/);
    assert.doesNotMatch(again.text, new RegExp(codes[0]!), 'codes are shown once, never again');
  });

  test('password → second-factor step (no session yet) → code → back to the page, amr pwd+otp+mfa reaches the app', async () => {
    const u = await userWithTotp(gh);
    const c = new Client(gh.url);
    const login = await c.submitForm('/.auth/login?rd=%2Freports', { email: u.email, password: PASSWORD });
    assert.equal(login.status, 303);
    assert.equal(login.location, `${gh.url}/.auth/second-factor`);
    assert.equal(c.jar.get('gatehouse'), undefined, 'no session cookie before the second factor');
    assert.ok(c.jar.get('gatehouse-mfa'));
    const step = await c.html('/.auth/second-factor');
    assert.equal(step.status, 200);
    assert.match(step.text, /authenticator app/);
    const done = await c.postForm(
      '/.auth/second-factor',
      { csrf: csrfOf(step), code: totpCode(u.secret) },
      sameSite(gh),
    );
    assert.equal(done.status, 303, done.text);
    assert.equal(done.location, `${gh.url}/reports`);
    assert.equal(c.jar.get('gatehouse-mfa'), undefined, 'the pending cookie is cleared');
    const body = (await me(c)).json();
    assert.deepEqual(body.session.amr, ['pwd', 'otp', 'mfa']);
    const app = await c.get('/reports');
    assert.equal(app.status, 200);
    const assertion = app.json().headers['x-gatehouse-assertion'] as string;
    const claims = JSON.parse(Buffer.from(assertion.split('.')[1]!, 'base64url').toString());
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
  });

  test('JSON: login answers secondFactor and next; the step takes {code}; the answer has the user and amr', async () => {
    const u = await userWithTotp(gh);
    const c = new Client(gh.url);
    const login = await c.postJson('/.auth/login', { email: u.email, password: PASSWORD, rd: '/x' });
    assert.equal(login.status, 200);
    assert.deepEqual(login.json(), {
      secondFactor: 'required',
      methods: ['totp', 'recovery_codes'],
      next: `${gh.url}/.auth/second-factor`,
    });
    const info = await c.get('/.auth/second-factor', { accept: 'application/json' });
    assert.deepEqual(info.json(), { step: 'verify', email: u.email, methods: ['totp', 'recovery_codes'] });
    const done = await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    assert.equal(done.status, 200);
    assert.equal(done.json().user.email, u.email);
    assert.deepEqual(done.json().amr, ['pwd', 'otp', 'mfa']);
    assert.equal(done.json().redirect, '/x');
  });

  test('attack: skipping the second step gets nothing: no app route, /me, account, device approval, OAuth authorize (security.md #210)', async () => {
    const u = await userWithTotp(gh);
    const c = await passwordStep(gh, u.email);
    assert.equal((await c.html('/reports')).status, 302, 'the app: back to the login page');
    assert.equal((await c.get('/api/x')).status, 401);
    assert.equal((await me(c)).status, 401);
    assert.equal((await c.html('/.auth/account')).status, 302);
    const device = await c.html('/.auth/device?user_code=BCDF-GHJK');
    assert.equal(device.status, 302);
    assert.match(device.location!, /\/\.auth\/login\?/);
    const authorize = await c.html(consentPath('desk', 'http://127.0.0.1:9/callback', gh.url));
    assert.equal(authorize.status, 302);
    assert.match(authorize.location!, /\/\.auth\/login\?/);
    // The pending cookie under the session cookie's name is no session either.
    const forged = new Client(gh.url);
    forged.jar.set('gatehouse', c.jar.get('gatehouse-mfa')!);
    assert.equal((await me(forged)).status, 401);
  });

  test('attack: the token endpoint between the two steps: a device login the half-signed-in browser tried to approve stays pending', async () => {
    const u = await userWithTotp(gh);
    const start = await fetch(`${gh.url}/.auth/oauth/device_authorization`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: 'gatehouse-cli', resource: gh.url }),
    });
    const device = (await start.json()) as { device_code: string; user_code: string };
    const c = await passwordStep(gh, u.email);
    const approve = await c.postForm(
      '/.auth/device',
      { user_code: device.user_code, decision: 'approve' },
      { ...sameSite(gh), accept: 'application/json' },
    );
    assert.notEqual(approve.status, 303);
    const token = await fetch(`${gh.url}/.auth/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: device.device_code,
        client_id: 'gatehouse-cli',
      }),
    });
    assert.equal(token.status, 400);
    assert.equal(((await token.json()) as { error: string }).error, 'authorization_pending');
  });

  test('attack: a code is accepted once; replayed in another sign-in it is refused (security.md #211)', async () => {
    const u = await userWithTotp(gh);
    const code = totpCode(u.secret);
    const a = await passwordStep(gh, u.email);
    assert.equal((await a.postJson('/.auth/second-factor', { code })).status, 200);
    const b = await passwordStep(gh, u.email);
    const replay = await b.postJson('/.auth/second-factor', { code });
    assert.equal(replay.status, 401);
    assert.equal(replay.json().error, 'invalid_code');
    assert.equal((await me(b)).status, 401);
    assert.equal(
      (await b.postJson('/.auth/second-factor', { code: totpCode(u.secret, 1) })).status,
      200,
      'the next one works',
    );
  });

  test('recovery codes: one signs in and says how many remain; used again it is refused (security.md #212)', async () => {
    const u = await userWithTotp(gh);
    const c = await passwordStep(gh, u.email);
    const step = await c.html('/.auth/second-factor');
    const used = await c.postForm(
      '/.auth/second-factor',
      { csrf: csrfOf(step), code: u.codes[3]!.toUpperCase() },
      sameSite(gh),
    );
    assert.equal(used.status, 200);
    assert.match(used.text, /You have 9 recovery codes left/);
    assert.deepEqual((await me(c)).json().session.amr, ['pwd', 'otp', 'mfa']);
    const again = await passwordStep(gh, u.email);
    const reuse = await again.postJson('/.auth/second-factor', { code: u.codes[3] });
    assert.equal(reuse.status, 401);
    const regen = await c.postJson('/.auth/account/recovery-codes', {}, sameSite(gh));
    assert.equal(regen.status, 200);
    const fresh = regen.json().recoveryCodes as string[];
    assert.equal(fresh.length, 10);
    const old = await passwordStep(gh, u.email);
    assert.equal((await old.postJson('/.auth/second-factor', { code: u.codes[4] })).status, 401, 'old codes are gone');
    assert.equal((await old.postJson('/.auth/second-factor', { code: fresh[0] })).json().recoveryCodesLeft, 9);
  });

  test('attack: guessing codes is throttled per account like passwords (security.md #209)', async () => {
    const u = await userWithTotp(tight);
    const c = await passwordStep(tight, u.email);
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++)
      statuses.push((await c.postJson('/.auth/second-factor', { code: '12345' + (i % 10) })).status);
    assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401]);
    const last = await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    assert.equal(last.status, 429, 'even the right code waits');
    assert.ok(Number(last.headers['retry-after']) > 0);
    assert.equal((await me(c)).status, 401);
  });

  test('attack: CSRF on enrolment, removal and new recovery codes changes nothing (security.md #213)', async () => {
    const u = await userWithTotp(gh);
    const c = await passwordStep(gh, u.email);
    await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    const crossSite = { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' };
    for (const path of ['/.auth/account/totp/remove', '/.auth/account/recovery-codes', '/.auth/account/totp']) {
      const form = await c.postForm(path, { code: '123456' }, sameSite(gh));
      assert.equal(form.status, 403, `${path}: a form without its token`);
      const json = await c.postJson(path, { code: '123456' }, crossSite);
      assert.equal(json.status, 403, `${path}: cross-site JSON`);
    }
    const passkey = await c.postForm('/.auth/account/passkeys/remove', { id: 'x' }, crossSite);
    assert.equal(passkey.status, 403);
    assert.deepEqual((await me(c)).json().factors, ['totp', 'recovery_codes'], 'nothing removed');
  });

  test('removing the app (form) turns the second step off; the recovery codes go with the last factor', async () => {
    const u = await userWithTotp(gh);
    const c = await passwordStep(gh, u.email);
    await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    const account = await c.html('/.auth/account');
    const removed = await c.postForm('/.auth/account/totp/remove', { csrf: csrfOf(account) }, sameSite(gh));
    assert.equal(removed.status, 303);
    assert.equal(removed.location, `${gh.url}/.auth/account?mfa=removed`);
    assert.deepEqual((await me(c)).json().factors, []);
    const plain = await new Client(gh.url).postJson('/.auth/login', { email: u.email, password: PASSWORD });
    assert.ok(plain.json().user, 'a password alone signs in again');
  });

  test('accounts.mfa: required: a user without a factor enrols at sign-in, before any app; then codes, then the page', async () => {
    const email = uniqueEmail('required');
    const reg = new Client(strict.url);
    const r = await reg.postJson('/.auth/register', { email, password: PASSWORD });
    assert.equal(r.json().secondFactor, 'enrol', 'registered, not signed in');
    const c = new Client(strict.url);
    const login = await c.submitForm('/.auth/login?rd=%2Fdocs', { email, password: PASSWORD });
    assert.equal(login.location, `${strict.url}/.auth/second-factor`);
    assert.equal((await c.html('/docs')).status, 302, 'no app before enrolling');
    const page = await c.html('/.auth/second-factor');
    assert.match(page.text, /Set up a second factor/);
    assert.match(page.text, /Add a passkey/);
    assert.match(page.text, /<svg/);
    const key = /<code class="secret">([A-Z2-7 ]+)<\/code>/.exec(page.text)![1]!.replace(/ /g, '');
    const done = await c.postForm(
      '/.auth/second-factor',
      { csrf: csrfOf(page), code: totpCode(key) },
      sameSite(strict),
    );
    assert.equal(done.status, 200);
    assert.match(done.text, /Your recovery codes/);
    assert.equal(decodeEntities(/href="([^"]+)">Continue/.exec(done.text)![1]!), '/docs');
    assert.deepEqual((await me(c)).json().session.amr, ['pwd', 'otp', 'mfa']);
    assert.equal((await c.get('/docs')).status, 200);
  });

  test('accounts.mfa: required: a new registration and an accepted invitation enrol first too, no session before', async () => {
    const c = new Client(strict.url);
    const reg = await c.postJson('/.auth/register', { email: uniqueEmail('req-reg'), password: PASSWORD, rd: '/a' });
    assert.equal(reg.status, 200, reg.text);
    assert.equal(reg.json().secondFactor, 'enrol');
    assert.equal(c.jar.get('gatehouse'), undefined);
    assert.equal((await me(c)).status, 401);

    const file = join(invited.dir, 'ops.yaml');
    writeFileSync(
      file,
      `publicUrl: ${invited.url}\nupstream: ${invited.upstream.url}\nstore: {type: sqlite, path: ${join(invited.dir, 'gatehouse.db')}}\naccounts: {registration: invite, mfa: required}\n`,
    );
    const r = await runCli(['users', 'invite', uniqueEmail('req-inv'), '--config', file]);
    const token = /\/\.auth\/invite\?token=([A-Za-z0-9_-]{43})/.exec(r.stdout)![1]!;
    const i = new Client(invited.url);
    const accepted = await i.postJson('/.auth/invite', { token, password: PASSWORD }, { origin: invited.url });
    assert.equal(accepted.status, 200, accepted.text);
    assert.equal(accepted.json().secondFactor, 'enrol');
    assert.equal((await me(i)).status, 401);
    const step = await i.get('/.auth/second-factor', { accept: 'application/json' });
    assert.equal(step.json().step, 'enrol');
  });

  test('the pending record is short-lived and server-side: an unknown or stale cookie gets "sign in again"', async () => {
    const c = new Client(gh.url);
    c.jar.set('gatehouse-mfa', 'A'.repeat(43));
    const res = await c.postJson('/.auth/second-factor', { code: '123456' });
    assert.equal(res.status, 401);
    assert.equal(res.json().error, 'second_factor_expired');
  });
});
