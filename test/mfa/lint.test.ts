import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { providerDidMfa } from '../../src/providers/profile.ts';

/** `gatehouse check` about second factors, and when a provider's ID token says it did MFA. */

const key = 'secrets: {key: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk}\n';
const base = `upstream: http://127.0.0.1:3000\n${key}`;
const mfa = (yaml: string, head = base) =>
  lintConfig(parseConfig(head + yaml, 'g.yaml', {})).filter(
    (w) => w.key.startsWith('accounts.mfa') || w.key.includes('passkeys') || w.key.endsWith('allow.mfa'),
  );

describe('gatehouse check: second factors', () => {
  test('apps on hosts outside the RP ID are named; an rpId publicUrl is not in is an error; a shared domain is fine', () => {
    const apps =
      'apps:\n  - {name: crm, host: crm.example.com, upstream: "http://127.0.0.1:1"}\n  - {name: wiki, host: wiki.other.org, upstream: "http://127.0.0.1:2"}\n';
    const w = mfa(
      `publicUrl: https://login.example.com\ntrustedProxies: [loopback]\naccounts: {registration: closed}\n${apps}`,
      key,
    );
    assert.equal(w.length, 1);
    assert.equal(w[0]!.key, 'accounts.passkeys.rpId');
    assert.match(w[0]!.message, /crm\.example\.com, wiki\.other\.org are outside it/);
    const shared = mfa(
      `publicUrl: https://login.example.com\ntrustedProxies: [loopback]\naccounts: {registration: closed, passkeys: {rpId: example.com}}\napps:\n  - {name: crm, host: crm.example.com, upstream: "http://127.0.0.1:1"}\n`,
      key,
    );
    assert.deepEqual(shared, []);
    const wrong = mfa(
      `publicUrl: https://login.example.com\ntrustedProxies: [loopback]\naccounts: {registration: closed, passkeys: {rpId: other.org}}\n`,
    );
    assert.deepEqual(
      wrong.map((x) => [x.key, x.severity]),
      [['accounts.passkeys.rpId', 'error']],
    );
  });

  test('an IP address: quiet while second factors are optional, said when required; allow.mfa while mfa is off', () => {
    assert.deepEqual(mfa('publicUrl: http://127.0.0.1:8080\n'), []);
    const required = mfa('publicUrl: http://127.0.0.1:8080\naccounts: {mfa: required, registration: closed}\n');
    assert.equal(required.length, 1);
    assert.match(required[0]!.message, /only an authenticator app/);
    const off = mfa(
      'publicUrl: http://127.0.0.1:8080\naccounts: {mfa: off}\nroutes:\n  - {path: /admin/**, allow: {mfa: true}}\n',
    );
    assert.deepEqual(
      off.map((x) => x.key),
      ['routes[0].allow.mfa'],
    );
  });

  test("a provider's ID token says MFA by amr mfa or a multi-factor acr", () => {
    assert.equal(providerDidMfa({ amr: ['pwd', 'mfa'] }), true);
    assert.equal(providerDidMfa({ amr: ['pwd', 'otp'] }), false);
    assert.equal(providerDidMfa({ acr: 'http://schemas.openid.net/pape/policies/2007/06/multi-factor' }), true);
    assert.equal(providerDidMfa({ acr: 'phrh' }), true);
    assert.equal(providerDidMfa({ acr: 'urn:mace:incommon:iap:silver' }), false);
    assert.equal(providerDidMfa({ acr: '1' }), false);
    assert.equal(providerDidMfa({}), false);
  });
});
