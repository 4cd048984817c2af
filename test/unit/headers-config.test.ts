import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { lintConfig } from '../../src/cli/lint.ts';
import { headerNames } from '../../src/config/headers.ts';
import { parseConfig } from '../../src/config/load.ts';
import { buildSites } from '../../src/sites/index.ts';
import { BASE_CONFIG, problems } from '../helpers/config.ts';

/**
 * headers: presets, the id header's name, the assertion as a Bearer, where a relayed token goes,
 * and tokens.bearerHeader (config/headers.ts): what each setting comes to, and every name that
 * would change the request's meaning or clash with another refused at load, with the key and
 * line and a reason (security.md #178).
 */

const base = BASE_CONFIG;
const relay =
  'providers:\n  - {id: kc, type: oidc, issuer: "https://kc.example.com", clientId: c, clientSecret: s}\ntokenRelay: kc\n';

function names(yaml: string) {
  return headerNames(parseConfig(base + yaml, 'g.yaml', {}).headers);
}

function one(yaml: string) {
  const p = problems(base + yaml);
  assert.equal(p.length, 1, JSON.stringify(p));
  return p[0]!;
}

describe('headers: presets and names', () => {
  test('the gatehouse preset: X-User-Id and the assertion; email, name and groups only on request', () => {
    assert.deepEqual(names(''), {
      id: 'X-User-Id',
      email: null,
      name: null,
      groups: null,
      assertion: 'X-Gatehouse-Assertion',
      assertionBearer: null,
      accessToken: 'Authorization',
    });
    assert.equal(names('headers: {email: true, groups: X-Teams}\n').groups, 'X-Teams');
  });

  test("the oauth2-proxy preset: oauth2-proxy's names, all sent; a relayed token in X-Forwarded-Access-Token; each key still overrides", () => {
    assert.deepEqual(names('headers: {preset: oauth2-proxy}\n'), {
      id: 'X-Forwarded-User',
      email: 'X-Forwarded-Email',
      name: 'X-Forwarded-Preferred-Username',
      groups: 'X-Forwarded-Groups',
      assertion: 'X-Gatehouse-Assertion',
      assertionBearer: null,
      accessToken: 'X-Forwarded-Access-Token',
    });
    const custom = names(
      'headers: {preset: oauth2-proxy, groups: false, id: X-Auth-Request-User, assertion: false, assertionBearer: X-OAUTH2-PROXY-ID-TOKEN}\n',
    );
    assert.equal(custom.groups, null);
    assert.equal(custom.id, 'X-Auth-Request-User');
    assert.equal(custom.assertion, null);
    assert.equal(custom.assertionBearer, 'X-OAUTH2-PROXY-ID-TOKEN');
    // unverifiedEmail applies to the preset's email header.
    assert.equal(
      parseConfig(`${base}headers: {preset: oauth2-proxy, unverifiedEmail: true}\n`, 'g.yaml', {}).headers
        .unverifiedEmail,
      true,
    );
    assert.match(
      one('headers: {preset: oauth2-proxy, email: false, unverifiedEmail: true}\n').message,
      /only applies when email is sent/,
    );
  });

  test('every configured name is stripped from clients, in any case; X-Forwarded-* and X-User-* by their prefix anyway', () => {
    const c = parseConfig(
      `${base}headers: {id: Remote-Id, email: X-Mail, assertionBearer: Authorization, accessToken: X-Relayed}\ntokens: {bearerHeader: My-Token}\n`,
      'g.yaml',
      {},
    );
    const [site] = buildSites(c).values();
    const app = site!.apps[0]!;
    assert.deepEqual(
      [...app.ownIdentityHeaders!].sort(),
      ['authorization', 'my-token', 'remote-id', 'x-mail', 'x-relayed'],
      'X-Gatehouse-Assertion is covered by its prefix',
    );
    assert.equal(app.signed, true);
    const none = parseConfig(`${base}headers: {assertion: false}\n`, 'g.yaml', {});
    assert.equal([...buildSites(none).values()][0]!.apps[0]!.signed, false);
  });
});

describe('headers: refused at load', () => {
  test('names that would change the request or the forward-auth answer: each refused with key, line and why', () => {
    for (const name of [
      'Host',
      'cookie',
      'Content-Length',
      'Transfer-Encoding',
      'Connection',
      'X-Forwarded-For',
      'x-forwarded-proto',
      'X-Forwarded-Host',
      'Forwarded',
      'X-Request-Id',
      'Set-Cookie',
      'Location',
      'Sec-WebSocket-Key',
      'Proxy-Authorization',
      'If-None-Match',
      'X-Gatehouse-Cookie',
      'Authorization',
    ]) {
      const p = one(`headers:\n  id: ${name}\n`);
      assert.deepEqual([p.key, p.line], ['headers.id', 4], name);
      assert.match(p.message, /part of the request itself/, name);
    }
    // Not a token, or text that would split a header: refused before any check of meaning.
    for (const name of ['"X User"', '"X-User\\r\\nX-Evil: 1"', 'X_User', '"X:User"', '-X', `X${'a'.repeat(70)}`]) {
      const p = one(`headers:\n  name: ${name}\n`);
      assert.equal(p.key, 'headers.name', name);
      assert.match(p.message, /letters, digits and "-"|starts and ends|at most 64/, `${name}: ${p.message}`);
    }
    assert.match(one('headers: {id: false}\n').message, /the user id is always sent/);
    assert.match(one('headers: {preset: oauth2}\n').message, /gatehouse, oauth2-proxy/);
    assert.match(one('tokens: {bearerHeader: Authorization}\n').message, /part of the request itself/);
  });

  test('two headers under one name, in any case, or one of them under tokens.bearerHeader: refused, naming both', () => {
    const same = one('headers: {id: X-Who, email: x-who}\n');
    assert.deepEqual([same.key, same.line], ['headers.email', 3]);
    assert.match(same.message, /x-who is already the id header of this app/);
    // The preset's names count: X-Forwarded-User is the oauth2-proxy id.
    assert.match(
      one('headers: {preset: oauth2-proxy, name: X-Forwarded-User}\n').message,
      /X-Forwarded-User is already the id header/,
    );
    const token = one('headers: {assertionBearer: X-Gatehouse-Token}\ntokens: {bearerHeader: X-GATEHOUSE-TOKEN}\n');
    assert.equal(token.key, 'headers.assertionBearer');
    assert.match(token.message, /is tokens\.bearerHeader, where clients send Gatehouse's tokens/);
    const apps = problems(
      'publicUrl: https://app.example.com\napps:\n  - name: a\n    upstream: http://127.0.0.1:3000\n  - name: b\n    pathPrefix: /b\n    upstream: http://127.0.0.1:3001\n    headers: {groups: X-User-Id}\n',
    );
    assert.deepEqual(
      apps.map((p) => [p.key, p.line]),
      [['apps[1].headers.groups', 8]],
    );
  });

  test('Authorization carries the assertion only where no tokenRelay puts a provider token there', () => {
    const clash = one(`${relay}headers: {assertionBearer: Authorization}\n`);
    assert.equal(clash.key, 'headers.assertionBearer');
    assert.match(clash.message, /already carries the provider token that tokenRelay sends.*X-OAUTH2-PROXY-ID-TOKEN/);
    // A route's relay counts too.
    assert.equal(
      one(
        `providers:\n  - {id: kc, type: oidc, issuer: "https://kc.example.com", clientId: c, clientSecret: s}\nroutes:\n  - {path: /api/**, tokenRelay: kc}\nheaders: {assertionBearer: Authorization}\n`,
      ).key,
      'headers.assertionBearer',
    );
    // Relayed elsewhere, or not at all: allowed, and check says what it costs.
    const elsewhere = parseConfig(
      `${base}${relay}headers: {assertionBearer: Authorization, accessToken: X-Forwarded-Access-Token}\n`,
      'g.yaml',
      {},
    );
    assert.equal(headerNames(elsewhere.headers).accessToken, 'X-Forwarded-Access-Token');
    const warned = lintConfig(parseConfig(`${base}headers: {assertionBearer: Authorization}\n`, 'g.yaml', {}));
    assert.match(
      warned.find((w) => w.key === 'headers.assertionBearer')?.message ?? '',
      /replaces whatever Authorization a client sends/,
    );
    const idle = lintConfig(parseConfig(`${base}headers: {accessToken: X-Token}\n`, 'g.yaml', {}));
    assert.match(idle.find((w) => w.key === 'headers.accessToken')?.message ?? '', /relays no provider token/);
    // The assertion as a Bearer only is still an assertion: no "gets no signed assertion" warning.
    const bearerOnly = lintConfig(
      parseConfig(`${base}headers: {assertion: false, assertionBearer: X-Id-Token}\n`, 'g.yaml', {}),
    );
    assert.equal(
      bearerOnly.some((w) => w.key === 'headers.assertion'),
      false,
    );
  });
});
