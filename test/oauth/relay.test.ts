import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { after, before, test } from 'node:test';
import { Client } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { rawDb, startLab, type Lab } from '../helpers/providers.ts';
import { deviceLogin, withBearer } from './helpers.ts';

/**
 * A CLI login approved from a browser that signed in through a provider (a real IdP,
 * oidc-provider) carries that provider's tokens: tokenRelay works for its bearer requests
 * without the user present, after the browser has signed out.
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab({ gatehouses: 1 });
  gh = await startGatehouse(
    () => ({
      tokenRelay: 'a',
      routes: [{ path: '/api/**', unauthenticated: '401' }],
      providers: lab.providers(),
      tokens: { device: { interval: '1s' } },
    }),
    { port: lab.ports[0] },
  );
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

test("a device login approved from a provider session relays that provider's access token to the app, also once the browser signed out", async () => {
  lab.a.accounts.set('cli-user', { sub: 'cli-user', email: 'cli-user@example.com', email_verified: true });
  lab.a.autoLogin = 'cli-user';
  const browser = new Client(gh.url);
  assert.equal((await signIn(browser, 'a')).at(-1)!.res.status, 200);
  const tokens = await deviceLogin(gh, browser);
  const grantId = String(decodeJwt(tokens.access_token).sid);

  await browser.submitForm('/.auth/logout', {}, { origin: gh.url });
  const r = await withBearer(gh, '/api/orders', tokens.access_token);
  assert.equal(r.status, 200, r.body);
  const relayed = r.seen!.authorization!.replace(/^Bearer /, '');
  const issued = lab.a.issued.filter((t) => t.accountId === 'cli-user').map((t) => t.access_token);
  assert.ok(issued.includes(relayed), 'the app got the IdP access token, not the Gatehouse one');
  assert.notEqual(relayed, tokens.access_token);

  const db = rawDb(gh);
  try {
    const rows = await db.all<{ owner: string; data: string; session_hash: string | null }>(
      `SELECT owner, data, session_hash FROM provider_tokens WHERE owner = ?`,
      [`grant:${grantId}`],
    );
    assert.equal(rows.length, 1, 'the login holds its own copy');
    assert.equal(rows[0]!.session_hash, null, 'tied to no browser session');
    assert.match(rows[0]!.data, /^v1\./, 'encrypted at rest');
    assert.ok(!rows[0]!.data.includes(relayed));
  } finally {
    await db.close();
  }
});
