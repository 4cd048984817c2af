import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashSessionId } from '../../src/sessions/index.ts';
import type { Client } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { csrfOf } from './imports.ts';
import { passwordStep, sameSite, totpCode, userWithTotp } from './helpers.ts';

/**
 * Second factors and re-authentication (accounts.reauthenticateAfter): removing a factor is a
 * sensitive action, and /.auth/reauth takes a code from the authenticator app (or a recovery code)
 * as well as the password.
 */

let gh: TestGatehouse;

before(async () => {
  gh = await startGatehouse(() => ({
    accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
  }));
});
after(() => gh.close());

/** Makes the browser's sign-in older than accounts.reauthenticateAfter. */
async function age(c: Client): Promise<string> {
  const idHash = hashSessionId(c.jar.get('gatehouse')!);
  const s = (await gh.gatehouse.store.sessions.get(idHash))!;
  await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });
  return idHash;
}

describe('re-authentication with a second factor', () => {
  test('removing a factor from a stale session asks to confirm first; a code from the app confirms, then the removal goes through', async () => {
    const u = await userWithTotp(gh);
    const c = await passwordStep(gh, u.email);
    await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    const idHash = await age(c);

    const json = await c.postJson('/.auth/account/totp/remove', {}, sameSite(gh));
    assert.equal(json.status, 401);
    assert.equal(json.json().error, 'reauthentication_required');
    const account = await c.html('/.auth/account');
    const form = await c.postForm('/.auth/account/totp/remove', { csrf: csrfOf(account) }, sameSite(gh));
    assert.equal(form.status, 303);
    assert.match(form.location!, /\/\.auth\/reauth\?rd=%2F\.auth%2Faccount/);
    assert.deepEqual((await c.get('/.auth/me')).json().factors, ['totp', 'recovery_codes'], 'nothing removed yet');

    const page = await c.html('/.auth/reauth?rd=%2F.auth%2Faccount');
    assert.match(page.text, /name="method" value="code"/, 'the reauth page offers the code');
    const methods = (await c.get('/.auth/reauth', { accept: 'application/json' })).json().methods;
    assert.deepEqual(methods, ['password', 'code']);
    const wrong = await c.postJson('/.auth/reauth', { method: 'code', code: '000000' }, sameSite(gh));
    assert.equal(wrong.status, 401);
    const ok = await c.postForm(
      '/.auth/reauth',
      { csrf: csrfOf(page), method: 'code', code: totpCode(u.secret, 1), rd: '/.auth/account' },
      sameSite(gh),
    );
    assert.equal(ok.status, 303);
    assert.equal(ok.location, `${gh.url}/.auth/account`);
    const s = (await gh.gatehouse.store.sessions.get(idHash))!;
    assert.ok(s.authTime > Date.now() - 60_000, 'the auth time is now');

    const removed = await c.postJson('/.auth/account/totp/remove', {}, sameSite(gh));
    assert.equal(removed.status, 200, removed.text);
    assert.deepEqual(removed.json().factors, []);
  });

  test('a recovery code confirms too, and is then used up', async () => {
    const u = await userWithTotp(gh);
    const c = await passwordStep(gh, u.email);
    await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    await age(c);
    const ok = await c.postJson('/.auth/reauth', { method: 'code', code: u.codes[0] }, sameSite(gh));
    assert.equal(ok.status, 200, ok.text);
    await age(c);
    const again = await c.postJson('/.auth/reauth', { method: 'code', code: u.codes[0] }, sameSite(gh));
    assert.equal(again.status, 401);
  });
});
