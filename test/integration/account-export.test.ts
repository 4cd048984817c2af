import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client, PASSWORD } from '../helpers/client.ts';
import { sameOrigin } from '../helpers/email.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';
import { follow } from '../helpers/oauth.ts';
import { type Lab, startLab, labGatehouse } from '../helpers/providers.ts';
import { totpCode, userWithTotp } from '../mfa/helpers.ts';
import { cliClient, deviceLogin } from '../oauth/helpers.ts';

/**
 * "Download your data" (accounts/export.ts): one JSON file of what Gatehouse keeps about the
 * signed-in user, never a secret, after a recent sign-in (security.md #240).
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab();
  gh = await labGatehouse(lab, {
    title: 'Acme Portal',
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

test('the file holds the account, its provider, sessions, program logins, second factors and activity, and no secret', async () => {
  const { email, id, secret, browser: c } = await userWithTotp(gh);
  const signedIn = await c.postJson('/.auth/login', { email, password: PASSWORD });
  assert.equal(signedIn.json().secondFactor, 'required');
  assert.equal((await c.postJson('/.auth/second-factor', { code: totpCode(secret) }, sameOrigin(c))).status, 200);
  const tokens = await deviceLogin(gh, c, await cliClient(gh));
  lab.a.autoLogin = 'alice';
  const page = await c.html('/.auth/account');
  assert.match(page.text, /<h2[^>]*>Your data<\/h2>/);
  assert.match(page.text, /<a class="button secondary" href="\/\.auth\/account\/export">Download your data<\/a>/);
  const linked = await c.postForm(
    '/.auth/account/link',
    {
      csrf: /name="csrf" value="([^"]+)"/.exec(page.text)![1]!,
      provider: 'a',
    },
    sameOrigin(c),
  );
  assert.equal(linked.status, 303, linked.text);
  await follow(c, linked.location!);

  const res = await c.get('/.auth/account/export');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers['cache-control'], 'no-store');
  assert.match(String(res.headers['content-disposition']), /^attachment; filename="account-\d{4}-\d{2}-\d{2}\.json"$/);
  const data = res.json();
  assert.deepEqual([data.account.id, data.account.email, data.account.password], [id, email, true]);
  assert.deepEqual(
    data.identities.map((i: { provider: string; subject: string }) => [i.provider, i.subject]),
    [['a', 'alice']],
  );
  const current = data.browserSessions.filter((s: { current: boolean }) => s.current);
  assert.equal(current.length, 1);
  assert.equal(current[0].ip, '127.0.0.1');
  assert.equal(data.programLogins.length, 1);
  assert.equal(data.programLogins[0].kind, 'device');
  assert.equal(data.secondFactors.authenticatorApp !== null, true);
  assert.equal(data.secondFactors.recoveryCodesLeft, 10);
  await gh.gatehouse.audit.flush();
  const fresh = (await c.get('/.auth/account/export')).json();
  const events = new Set(fresh.activity.map((e: { event: string }) => e.event));
  for (const e of ['register', 'factor_added', 'login', 'device_approved', 'provider_linked'])
    assert.ok(events.has(e), `activity holds ${e}`);

  // No secret of any kind: password hash, session ids or their hashes, tokens, the TOTP seed.
  const text = JSON.stringify(fresh);
  const user = (await gh.gatehouse.store.users.get(id))!;
  const sessionHash = hashSessionId(c.jar.get('gatehouse')!);
  for (const s of [
    user.passwordHash!,
    c.jar.get('gatehouse')!,
    sessionHash,
    tokens.refresh_token!,
    tokens.access_token,
    secret,
  ])
    assert.ok(!text.includes(s), 'no secret in the file');
  const passkeysAndTotp = await gh.gatehouse.store.mfa.totp(id);
  assert.ok(!text.includes(passkeysAndTotp!.secret), 'not even the encrypted seed');
});

test('it needs a recent sign-in (a browser confirms and comes back to it) and a session', async () => {
  const { email, id, secret, browser: c } = await userWithTotp(gh);
  await c.postJson('/.auth/login', { email, password: PASSWORD });
  await c.postJson('/.auth/second-factor', { code: totpCode(secret) }, sameOrigin(c));
  const idHash = hashSessionId(c.jar.get('gatehouse')!);
  const s = (await gh.gatehouse.store.sessions.get(idHash))!;
  await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });
  const stale = await c.html('/.auth/account/export');
  assert.equal(stale.status, 303);
  assert.equal(stale.location, `${gh.url}/.auth/reauth?rd=%2F.auth%2Faccount%2Fexport`);
  const api = await c.get('/.auth/account/export');
  assert.deepEqual([api.status, api.json().error], [401, 'reauthentication_required']);
  assert.equal((await new Client(gh.url).get('/.auth/account/export')).status, 401);
  assert.equal((await new Client(gh.url).html('/.auth/account/export')).status, 302);
  assert.equal((await c.postJson('/.auth/reauth', { password: PASSWORD }, sameOrigin(c))).status, 200);
  const ok = await c.get('/.auth/account/export');
  assert.equal(ok.status, 200);
  assert.equal(ok.json().account.id, id);
});
