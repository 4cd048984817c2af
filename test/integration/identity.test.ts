import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { WebSocket } from 'ws';
import { verifyAssertion } from '../../src/verify/index.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * What an app learns about its user beyond X-User-Id (issue 10.14, 10.15): only verified
 * addresses unless the app opts into unverified ones, and one cleaned name in the header and
 * the claim. Proxied requests and WebSocket upgrades here; forward-auth in forward-auth.test.ts,
 * bearer tokens in test/oauth/tokens.test.ts, provider sign-ins in providers.test.ts.
 */

let gh: TestGatehouse;

before(async () => {
  gh = await startGatehouse(({ upstream }) => ({
    apps: [
      { name: 'strict', upstream, headers: { email: true, name: true } },
      { name: 'lenient', pathPrefix: '/lenient', upstream, headers: { email: true, unverifiedEmail: true } },
      { name: 'plain', pathPrefix: '/plain', upstream },
    ],
    accounts: { rateLimits: { registerPerIp: 1000 } },
  }));
});
after(() => gh.close());

const jwks = () => createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`));

/** What the app behind `path` received: its headers and the verified assertion's claims. */
async function seen(c: Client, path: string, audience: string) {
  const res = await c.get(path);
  assert.equal(res.status, 200, res.text);
  const h = gh.upstream.last().headers;
  const { payload } = await jwtVerify(String(h['x-gatehouse-assertion']), jwks(), { issuer: gh.url, audience });
  return { h, claims: payload };
}

async function overWebSocket(c: Client): Promise<{ h: Record<string, string>; claims: JWTPayload }> {
  const h = await new Promise<Record<string, string>>((resolve, reject) => {
    const ws = new WebSocket(`${gh.url.replace('http', 'ws')}/ws`, {
      headers: { cookie: c.cookieHeader()!, origin: gh.url, 'x-user-email': 'boss@example.com' },
    });
    ws.once('message', (m) => {
      resolve(JSON.parse(String(m)).headers);
      ws.close();
    });
    ws.once('error', reject);
  });
  const { payload } = await jwtVerify(h['x-gatehouse-assertion']!, jwks(), { issuer: gh.url, audience: 'strict' });
  return { h, claims: payload };
}

describe('addresses apps can trust (issue 10.14)', () => {
  test('an address nobody verified reaches no app by default: X-User-Id and the assertion with email_verified: false only', async () => {
    const c = new Client(gh.url);
    // The attacker registers the victim's address first; nobody can verify it but the victim.
    const email = uniqueEmail('admin');
    const me = await registerJson(c, email);
    for (const { h, claims } of [await seen(c, '/x', 'strict'), await overWebSocket(c)]) {
      assert.equal(h['x-user-id'], me.id, 'the user is still signed in and known by id');
      assert.equal(h['x-user-email'], undefined, 'no unverified address in the header (nor the forged one)');
      assert.equal(claims.sub, me.id);
      assert.equal(claims.email, undefined, 'nor in the assertion');
      assert.equal(claims.email_verified, false, 'which says why');
    }
    await c.get('/x');
    const user = await verifyAssertion(String(gh.upstream.last().headers['x-gatehouse-assertion']), {
      issuer: gh.url,
      audience: 'strict',
    });
    assert.equal(user.email, undefined);
    assert.equal(user.emailVerified, false, 'gatehouse/verify exposes email_verified without an email');

    // Once verified (the mailed link, a provider or an operator vouches), it is presented at once.
    await gh.gatehouse.store.users.update(me.id, { emailVerified: true });
    for (const { h, claims } of [await seen(c, '/y', 'strict'), await overWebSocket(c)]) {
      assert.equal(h['x-user-email'], email);
      assert.equal(claims.email, email);
      assert.equal(claims.email_verified, true);
    }
  });

  test('headers.unverifiedEmail: true sends it anyway, with email_verified: false; an app without headers.email gets neither', async () => {
    const c = new Client(gh.url);
    const me = await registerJson(c);
    const lenient = await seen(c, '/lenient/x', 'lenient');
    assert.equal(lenient.h['x-user-email'], me.email);
    assert.equal(lenient.claims.email, me.email);
    assert.equal(lenient.claims.email_verified, false);
    const plain = await seen(c, '/plain/x', 'plain');
    assert.equal(plain.h['x-user-email'], undefined);
    assert.equal('email' in plain.claims || 'email_verified' in plain.claims, false);
  });
});

describe('display names apps can show (issue 10.15)', () => {
  test('registration refuses bidi, invisible, control and line-break characters and says which', async () => {
    const c = new Client(gh.url);
    for (const [name, message] of [
      ['Ann\nLee', 'Put the name on one line: it contains a line break.'],
      ['Ann\rLee', 'Put the name on one line: it contains a line break.'],
      ['Ann\u0000Lee', 'The name contains a control character (U+0000). Remove it.'],
      ['Ann\u2028Lee', 'Put the name on one line: it contains a line break.'],
      ['Ann\u0085Lee', 'Put the name on one line: it contains a line break.'],
      [
        'admin\u202Egnp.exe',
        'The name contains a text-direction control (U+202E), which can make it display as something else. Remove it.',
      ],
      ['ad\u200Bmin', 'The name contains an invisible character (U+200B). Remove it.'],
    ]) {
      const email = uniqueEmail('name');
      const res = await c.postJson('/.auth/register', { email, password: PASSWORD, name });
      assert.equal(res.status, 400, JSON.stringify(name));
      assert.equal(res.json().fields.name, message, JSON.stringify(name));
      assert.equal(await gh.gatehouse.store.users.getByEmail(email), undefined, 'nothing created');
    }
    const form = await c.submitForm('/.auth/register', {
      email: uniqueEmail('name'),
      password: PASSWORD,
      name: 'x\u202Ey',
    });
    assert.equal(form.status, 400);
    assert.match(form.text, /text-direction control \(U\+202E\)/, 'the form says it too');
    const ok = await c.postJson('/.auth/register', {
      email: uniqueEmail('name'),
      password: PASSWORD,
      name: 'Zoe\u0308',
    });
    assert.equal(ok.status, 201);
    assert.equal(ok.json().user.name, 'Zo\u00eb', 'stored in NFC');
  });

  test('names stored before these rules reach the app cleaned, and the header decodes to exactly the claim', async () => {
    const c = new Client(gh.url);
    const me = await registerJson(c);
    for (const [stored, shown] of [
      ['Ann\u0085Lee', 'Ann Lee'],
      ['Ann\u2028Lee', 'Ann Lee'],
      ['Ann\u2029', 'Ann'],
      ['evil\u202Egnp.exe', 'evilgnp.exe'],
      ['ad\u200Bmin\u2066', 'admin'],
      ['%41dmin', '%41dmin'],
      ['50% off', '50% off'],
      ['Zoe\u0308', 'Zo\u00eb'],
    ]) {
      await gh.gatehouse.store.users.update(me.id, { name: stored });
      const { h, claims } = await seen(c, '/n', 'strict');
      assert.equal(claims.name, shown, JSON.stringify(stored));
      const header = String(h['x-user-name']);
      assert.match(header, /^[\x20-\x7e]+$/, 'a header value is printable ASCII');
      assert.equal(
        Buffer.compare(Buffer.from(decodeURIComponent(header)), Buffer.from(String(claims.name))),
        0,
        `header ${header} and claim carry byte-identical names`,
      );
    }
  });
});
