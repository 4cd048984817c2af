import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { consentPath } from '../oauth/helpers.ts';

/**
 * Every kind of page Gatehouse renders itself forbids framing (clickjacking the Allow or Sign out
 * button from another site), shared caching and content sniffing (security.md #128). Chromium's
 * refusal to frame them is in test/browser/framing.test.ts.
 */

let gh: TestGatehouse;
let signedIn: Client;
const REDIRECT = 'http://127.0.0.1:9/callback';

before(async () => {
  gh = await startGatehouse(({ upstream }) => ({
    apps: [
      { name: 'web', upstream, routes: [{ path: '/blocked/**', access: 'deny' }] },
      { name: 'down', pathPrefix: '/down', upstream: 'http://127.0.0.1:9' },
    ],
    tokens: { clients: [{ id: 'desk', name: 'Desk', redirectUris: [REDIRECT] }] },
  }));
  signedIn = new Client(gh.url);
  await registerJson(signedIn);
});
after(() => gh.close());

test('every page Gatehouse renders forbids framing, caching and sniffing: sign-in, account, consent, errors, explanations', async () => {
  const anon = new Client(gh.url);
  const consent = consentPath('desk', REDIRECT, gh.url);
  const pages: [string, Client, string, Record<string, string>?][] = [
    ['sign-in', anon, '/.auth/login'],
    ['registration', anon, '/.auth/register'],
    ['forgot password', anon, '/.auth/forgot-password'],
    ['sign-out', signedIn, '/.auth/logout'],
    ['account', signedIn, '/.auth/account'],
    ['device approval', signedIn, '/.auth/device'],
    ['consent', signedIn, consent],
    ['not found', anon, '/.auth/no-such-page'],
    ['denied by a rule', signedIn, '/blocked/x'],
    ['the app is down', signedIn, '/down/x'],
    ['an unknown host', anon, '/', { host: 'evil.example' }],
    ['an explanation (forward-auth from a peer that is not trusted)', anon, '/.auth/check'],
  ];
  const statuses: Record<string, number> = {};
  for (const [what, client, path, headers] of pages) {
    const res = await client.html(path, headers);
    statuses[what] = res.status;
    assert.match(String(res.headers['content-type']), /^text\/html/, `${what}: a page (${res.status} ${res.location})`);
    assert.equal(res.headers['x-frame-options'], 'DENY', what);
    assert.match(String(res.headers['content-security-policy']), /(^|; )frame-ancestors 'none'(;|$)/, what);
    assert.equal(res.headers['cache-control'], 'no-store', what);
    assert.equal(res.headers['x-content-type-options'], 'nosniff', what);
    assert.equal(res.headers['cross-origin-opener-policy'], 'same-origin', what);
  }
  assert.deepEqual(statuses, {
    'sign-in': 200,
    registration: 200,
    'forgot password': 200,
    'sign-out': 200,
    account: 200,
    'device approval': 200,
    consent: 200,
    'not found': 404,
    'denied by a rule': 403,
    'the app is down': 502,
    'an unknown host': 421,
    'an explanation (forward-auth from a peer that is not trusted)': 400,
  });
});
