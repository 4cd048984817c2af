import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { resign } from '../helpers/idp.ts';
import { signIn } from '../helpers/oauth.ts';
import { rawDb, startLab, type Lab } from '../helpers/providers.ts';
import { confirmTotp, sameSite, totpCode } from './helpers.ts';

/**
 * Second factors after a provider sign-in (providers[].mfa), against real OpenID Connect IdPs
 * (oidc-provider): trust counts the provider's amr "mfa"; without it the user's own factor is
 * asked; require asks for the local factor whatever the provider did. The provider's tokens wait
 * (encrypted) for the session.
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab();
  gh = await startGatehouse(
    () => ({
      providers: lab.providers({ b: { mfa: 'require' } }),
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
    }),
    { port: lab.ports[0] },
  );
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

const me = async (c: Client) => (await c.get('/.auth/me')).json();
const saidMfa = () => {
  lab.a.tamperNext = (body) => resign(lab.a, body, (claims) => ({ ...claims, amr: ['pwd', 'mfa'] }));
};

describe('provider sign-ins and second factors', { concurrency: false }, () => {
  let secret = '';

  test('a provider user adds an authenticator app; the next plain provider sign-in asks for it, then keeps the tokens', async () => {
    lab.a.autoLogin = 'bob';
    const c = new Client(gh.url);
    await signIn(c, 'a', '/start');
    assert.deepEqual((await me(c)).session.amr, ['idp:a']);
    const start = await c.get('/.auth/account/totp', { accept: 'application/json' });
    secret = start.json().secret;
    assert.equal((await confirmTotp(c, gh, secret)).status, 200);

    const again = new Client(gh.url);
    const hops = await signIn(again, 'a', '/start');
    assert.equal(hops.at(-1)!.url, `${gh.url}/.auth/second-factor`, 'the second step, not the app');
    assert.equal((await again.get('/.auth/me')).status, 401);
    const done = await again.postJson('/.auth/second-factor', { code: totpCode(secret) });
    assert.equal(done.status, 200, done.text);
    assert.equal(done.json().redirect, '/start');
    const body = await me(again);
    assert.deepEqual(body.session.amr, ['idp:a', 'otp', 'mfa']);
    const db = rawDb(gh);
    const kept = await db.all<{ provider: string }>(
      `SELECT t.provider FROM provider_tokens t JOIN sessions s ON s.id_hash = t.session_hash WHERE t.user_id = ?`,
      [body.id],
    );
    const recorded = await db.all<{ provider: string; subject: string }>(
      `SELECT provider, subject FROM session_providers WHERE session_hash = ?`,
      [hashSessionId(again.jar.get('gatehouse')!)],
    );
    await db.close();
    assert.ok(
      kept.some((k) => k.provider === 'a'),
      "the provider's ID token was kept for the session (logout at the IdP)",
    );
    assert.deepEqual(
      recorded.map((r) => ({ ...r })),
      [{ provider: 'a', subject: 'bob' }],
      "the provider's back-channel logout can end it",
    );
  });

  test('mfa: trust: when the ID token says amr mfa, no local second step; the session carries mfa', async () => {
    lab.a.autoLogin = 'bob';
    saidMfa();
    const c = new Client(gh.url);
    const hops = await signIn(c, 'a', '/start');
    assert.equal(hops.at(-1)!.url, `${gh.url}/start`);
    assert.deepEqual((await me(c)).session.amr, ['idp:a', 'mfa']);
  });

  test('mfa: require: the local factor is asked whatever the provider did; a user without one enrols', async () => {
    lab.b.autoLogin = 'b-alice';
    lab.b.tamperNext = (body) => resign(lab.b, body, (claims) => ({ ...claims, amr: ['mfa'] }));
    const c = new Client(gh.url);
    const hops = await signIn(c, 'b', '/start');
    assert.equal(hops.at(-1)!.url, `${gh.url}/.auth/second-factor`);
    const step = await c.get('/.auth/second-factor', { accept: 'application/json' });
    assert.equal(step.json().step, 'enrol');
    assert.equal((await c.get('/.auth/me')).status, 401);
  });
});
