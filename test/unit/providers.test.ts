import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Lazy } from '../../src/providers/client.ts';
import { providerRegistrations } from '../../src/providers/lint.ts';
import { claimAt, cleanText, groupsFrom, verifiedFrom } from '../../src/providers/profile.ts';
import { isLoopbackHost } from '../../src/http/loopback.ts';
import { refreshAt } from '../../src/providers/token-vault.ts';
import { BASE_CONFIG, problems } from '../helpers/config.ts';

const base = BASE_CONFIG;
const google =
  '  - id: google\n    type: oidc\n    issuer: https://accounts.google.com\n    clientId: abc\n    clientSecret: ${GOOGLE_SECRET}\n';

describe('providers: config', () => {
  test('an oidc and a github provider with defaults; the secret comes from the environment', () => {
    const c = parseConfig(
      `${base}providers:\n${google}  - id: github\n    type: github\n    clientId: Iv1.x\n    clientSecret: s\n`,
      'g.yaml',
      { GOOGLE_SECRET: 'from-env' },
    );
    const [g, h] = c.providers;
    assert.equal(g!.type, 'oidc');
    assert.equal(g!.clientSecret, 'from-env');
    assert.equal(g!.groupsClaim, 'groups');
    assert.equal(g!.linkByEmail, false);
    assert.equal(g!.trustEmail, false);
    assert.equal(g!.timeout, 10_000);
    assert.equal(g!.type === 'oidc' && g!.endSession, false);
    assert.equal(g!.type === 'oidc' && g!.backchannelLogout, true);
    assert.equal(h!.type === 'github' && h!.url, 'https://github.com');
    assert.equal(h!.type === 'github' && h!.apiUrl, 'https://api.github.com');
    assert.deepEqual(parseConfig(base, 'g.yaml', {}).providers, [], 'none by default');
  });

  test('every mistake names its key and line', () => {
    const byKey = (text: string) => Object.fromEntries(problems(text).map((p) => [p.key, p]));
    const p = byKey(
      `${base}providers:\n  - id: Google!\n    type: oidc\n    issuer: http://idp.example.com\n    clientId: a\n    scopes: [email]\n    authorizationParams: { redirect_uri: https://evil.example, prompt: consent }\n    icon: https://cdn.example.com/g.png\n    idTokenSigningAlg: none\n  - id: gh\n    type: github\n    clientId: x\n  - id: saml\n    type: saml\n`,
    );
    assert.match(p['providers[0].id']!.message, /lower-case/);
    assert.equal(p['providers[0].id']!.line, 4);
    assert.match(p['providers[0].issuer']!.message, /must use https; plain http is allowed only on loopback/);
    assert.equal(p['providers[0].issuer']!.line, 6);
    assert.match(p['providers[0].scopes']!.message, /must include "openid"/);
    assert.match(p['providers[0].authorizationParams.redirect_uri']!.message, /set by Gatehouse/);
    assert.match(p['providers[0].icon']!.message, /no third-party images/);
    assert.match(p['providers[0].idTokenSigningAlg']!.message, /never accepted/);
    assert.match(p['providers[1].clientSecret']!.message, /is required/);
    assert.match(p['providers[2].type']!.message, /expected one of oidc, github/);
    const typo = problems(`${base}providers:\n${google}    linkByEmial: true\n`, { GOOGLE_SECRET: 'x' });
    assert.match(typo[0]!.message, /did you mean "linkByEmail"/);
  });

  test('tokenRelay must name a configured provider, on the app, a route, or apps[]; ids are unique', () => {
    const env = { GOOGLE_SECRET: 'x' };
    assert.match(
      problems(`${base}tokenRelay: gitlab\nproviders:\n${google}`, env)[0]!.message,
      /tokenRelay names "gitlab", which is not one of providers\[\]\.id \(google\)/,
    );
    const [route] = problems(`${base}routes:\n  - path: /api/**\n    tokenRelay: gitlab\n`, env);
    assert.equal(route!.key, 'routes[0].tokenRelay');
    assert.equal(route!.line, 5);
    const [app] = problems(
      `publicUrl: https://a.example.com\nproviders:\n${google}apps:\n  - name: x\n    upstream: http://127.0.0.1:1\n    tokenRelay: nope\n`,
      env,
    );
    assert.equal(app!.key, 'apps[0].tokenRelay');
    assert.match(
      problems(`${base}providers:\n${google}${google}`, env)[0]!.message,
      /another provider already has the id "google"/,
    );
    const ok = parseConfig(
      `${base}tokenRelay: google\nroutes:\n  - path: /public/**\n    tokenRelay: false\nproviders:\n${google}`,
      'g.yaml',
      env,
    );
    assert.equal(ok.tokenRelay, 'google');
    assert.equal(ok.routes[0]!.tokenRelay, false);
  });

  test('gatehouse check warns about provider settings that will hurt', () => {
    const warnings = (yaml: string) => lintConfig(parseConfig(yaml, 'g.yaml', {}));
    const keys = (yaml: string) => warnings(yaml).map((w) => w.key);
    assert.ok(
      keys(
        `${base}providers:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: a\n`,
      ).includes('providers[0].clientSecret'),
    );
    assert.ok(
      keys(
        `${base}providers:\n  - id: kc\n    type: oidc\n    issuer: http://localhost:8081/realms/x\n    clientId: a\n    clientSecret: s\n`,
      ).includes('providers[0].issuer'),
    );
    const relay = warnings(
      `${base}tokenRelay: kc\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: a\n    clientSecret: s\n`,
    );
    assert.match(relay.find((w) => w.key === 'providers[0].scopes')!.message, /no refresh token/);
    assert.ok(
      !keys(
        `${base}tokenRelay: kc\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: a\n    clientSecret: s\n    scopes: [openid, offline_access]\n`,
      ).includes('providers[0].scopes'),
    );
    assert.ok(
      keys(
        `${base}providers:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: a\n    clientSecret: s\n    linkByEmail: true\n    trustEmail: true\n`,
      ).includes('providers[0].linkByEmail'),
    );
    assert.ok(
      keys(
        `${base}accounts: { registration: closed }\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: a\n    clientSecret: s\n    registration: open\n`,
      ).includes('providers[0].registration'),
    );
    const invite = lintConfig(
      parseConfig(
        `${base}accounts: { registration: invite }\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: a\n    clientSecret: s\n    registration: open\n`,
        'g.yaml',
        {},
      ),
    ).find((w) => w.key === 'providers[0].registration');
    assert.match(invite!.message, /gets an account, though accounts\.registration is invite/);
  });

  test('the redirect URIs to register: one per site, and the post-logout URI where endSession is on', () => {
    const c = parseConfig(
      `publicUrl: https://example.com\nauthPrefix: /_auth\napps:\n  - name: crm\n    host: crm.example.com\n    upstream: http://127.0.0.1:1\n    tokenRelay: kc\n  - name: wiki\n    host: wiki.example.com\n    upstream: http://127.0.0.1:2\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com/realms/acme\n    clientId: a\n    clientSecret: s\n    endSession: true\n`,
      'g.yaml',
      {},
    );
    const text = providerRegistrations(c).join('\n');
    assert.match(text, /redirect URI: +https:\/\/crm\.example\.com\/_auth\/callback\/kc/);
    assert.match(text, /redirect URI: +https:\/\/wiki\.example\.com\/_auth\/callback\/kc/);
    assert.match(text, /post-logout redirect URI: https:\/\/crm\.example\.com\/_auth\/signed-out/);
    assert.match(text, /access token relayed to: +crm/);
    assert.match(text, /back-channel logout URI: +https:\/\/example\.com\/_auth\/backchannel-logout\/kc$/m);
    assert.equal(text.match(/back-channel/g)?.length, 1, "one, on publicUrl's site: it ends sessions on every site");
    const off = parseConfig(
      `publicUrl: https://example.com\nupstream: http://127.0.0.1:1\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: a\n    backchannelLogout: false\n  - id: gh\n    type: github\n    clientId: x\n    clientSecret: s\n`,
      'g.yaml',
      {},
    );
    assert.doesNotMatch(providerRegistrations(off).join('\n'), /back-channel/, 'off, and never for GitHub');
  });

  test('under a publicUrl path the redirect URIs to register include it (the callback is below it)', () => {
    const c = parseConfig(
      `publicUrl: https://example.com/app/\nupstream: http://127.0.0.1:1\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com/realms/acme\n    clientId: a\n    clientSecret: s\n    endSession: true\n`,
      'g.yaml',
      {},
    );
    const text = providerRegistrations(c).join('\n');
    assert.match(text, /redirect URI: +https:\/\/example\.com\/app\/\.auth\/callback\/kc$/m);
    assert.match(text, /post-logout redirect URI: https:\/\/example\.com\/app\/\.auth\/signed-out$/m);
  });
});

describe('providers: claims and helpers', () => {
  test('claims: dotted paths, groups cleaned and bounded, email_verified as the spec and as some IdPs send it', () => {
    const claims = {
      groups: ['a', 'b', 'a', 'x\ny', 7, ' c '],
      realm_access: { roles: ['admin'] },
      'https://example.com/roles': ['r'],
    };
    assert.deepEqual(
      groupsFrom(claimAt(claims, 'groups')),
      ['a', 'b', 'c'],
      'duplicates, control characters and non-strings go',
    );
    assert.deepEqual(groupsFrom(claimAt(claims, 'realm_access.roles')), ['admin']);
    assert.deepEqual(
      groupsFrom(claimAt(claims, 'https://example.com/roles')),
      ['r'],
      'a claim name with dots is looked up whole first',
    );
    assert.deepEqual(groupsFrom(claimAt(claims, 'nope.nothing')), []);
    assert.deepEqual(groupsFrom('single'), ['single']);
    assert.equal(groupsFrom(Array.from({ length: 500 }, (_, i) => `g${i}`)).length, 200);
    assert.equal(verifiedFrom(true), true);
    assert.equal(verifiedFrom('true'), true);
    assert.equal(verifiedFrom('false'), false);
    assert.equal(verifiedFrom(1), false);
    assert.equal(
      cleanText('Ann\r\nX-User-Id: admin', 100),
      null,
      'CR/LF in a claim never reaches a header (security.md #54)',
    );
    assert.equal(cleanText('x'.repeat(101), 100), null);
  });

  test('loopback hosts, for the http rule', () => {
    for (const h of ['127.0.0.1', '127.9.9.9', 'localhost', 'idp.localhost', '[::1]']) assert.ok(isLoopbackHost(h), h);
    for (const h of ['10.0.0.1', 'example.com', 'localhost.example.com', '[::2]']) assert.ok(!isLoopbackHost(h), h);
  });

  test('refresh when a quarter of the lifetime is left, at most a minute early', () => {
    assert.equal(refreshAt({ obtainedAt: 0, expiresAt: 3_600_000 }), 3_540_000);
    assert.equal(refreshAt({ obtainedAt: 0, expiresAt: 4000 }), 3000);
    assert.equal(refreshAt({ obtainedAt: 0, expiresAt: null }), Infinity);
  });

  test('Lazy: a success is kept; a failure is remembered for a back-off instead of retried at once', async () => {
    let calls = 0;
    const ok = new Lazy(async () => ++calls);
    assert.deepEqual(await Promise.all([ok.get(), ok.get()]), [1, 1], 'concurrent callers share one load');
    assert.equal(await ok.get(), 1);
    let failing = 0;
    const down = new Lazy(async () => {
      failing++;
      throw new Error('down');
    });
    await assert.rejects(down.get(), /down/);
    await assert.rejects(down.get(), /down/);
    assert.equal(failing, 1, 'within the back-off the last error is answered without a new attempt');
  });
});
