import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { MemoryCache } from '../../src/cache/memory.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import {
  MetadataDocumentError,
  MetadataDocuments,
  metadataUrlProblem,
  publicAddress,
} from '../../src/oauth/client-metadata.ts';
import { looksIssuedBy } from '../../src/oauth/bearer.ts';
import { Limits } from '../../src/oauth/limits.ts';
import type { Client } from '../../src/oauth/clients.ts';
import {
  privateUseSchemeProblem,
  redirectCspSource,
  redirectUriMatches,
  redirectUriProblem,
} from '../../src/http/redirect-uri.ts';
import { Resources } from '../../src/oauth/resources.ts';
import { Scopes } from '../../src/oauth/scopes.ts';
import {
  formatUserCode,
  newUserCode,
  normalizeUserCode,
  USER_CODE_ALPHABET,
  userCodeProblem,
} from '../../src/oauth/user-code.ts';
import { buildSites } from '../../src/sites/index.ts';
import { BASE_CONFIG, problems } from '../helpers/config.ts';

const base = BASE_CONFIG;

describe('user codes (RFC 8628 §6.1)', () => {
  test('8 letters of the 20 unambiguous consonants, shown as XXXX-XXXX; typed in any case, dash and spaces optional', () => {
    assert.equal(USER_CODE_ALPHABET, 'BCDFGHJKLMNPQRSTVWXZ');
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const c = newUserCode();
      assert.match(c, /^[BCDFGHJKLMNPQRSTVWXZ]{8}$/);
      seen.add(c);
    }
    assert.ok(seen.size > 1990, 'random, not repeating');
    fc.assert(
      fc.property(fc.stringMatching(/^[BCDFGHJKLMNPQRSTVWXZ]{8}$/), (code) => {
        const shown = formatUserCode(code);
        for (const typed of [
          shown,
          shown.toLowerCase(),
          code,
          ` ${code.slice(0, 4)} ${code.slice(4)} `,
          shown.replace('-', '_'),
        ])
          assert.equal(normalizeUserCode(typed), code);
      }),
    );
    for (const bad of ['BCDF-GHJ', 'BCDF-GHJKL', 'BCDA-GHJK', 'BCD1-GHJK', 'BCDF/GHJK', '', undefined, 'B'.repeat(100)])
      assert.equal(normalizeUserCode(bad), undefined, String(bad));
  });

  test('a refused entry is told why: the letters (and digits) codes never use, else the length', () => {
    const never = 'codes have no A, E, I, O, U or Y';
    assert.equal(
      userCodeProblem('ABCD-EFGH'),
      `This code has A and E, which codes never use: ${never}. Check the code your program shows, like BCDF-GHJK.`,
    );
    assert.equal(
      userCodeProblem('bcd0-fghy'),
      `This code has 0 and Y, which codes never use: ${never}, and no digits. Check the code your program shows, like BCDF-GHJK.`,
    );
    assert.match(userCodeProblem('1234-5678'), /has 1, 2, 3, 4, 5, 6, 7 and 8, which codes never use: .*and no digits/);
    assert.equal(userCodeProblem('BCDF-GHJ'), 'A code has 8 letters, like BCDF-GHJK; this one has 7.');
    assert.equal(userCodeProblem('BCDF/GHJK'), 'A code has only letters and a dash, like BCDF-GHJK.');
    for (const empty of ['', ' - ', undefined])
      assert.equal(userCodeProblem(empty), 'Enter the code your program shows, like BCDF-GHJK.');
    // Every letter outside the alphabet is named when typed, and only those.
    for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') {
      const problem = userCodeProblem(`${c}BCD-FGHJ`);
      assert.equal(problem.startsWith(`This code has ${c},`), !USER_CODE_ALPHABET.includes(c), problem);
    }
  });
});

describe('redirect URIs (RFC 9700 §2.1, RFC 8252)', () => {
  test('https anywhere, http on loopback only, private-use schemes; never fragments, wildcards, scripts or files', () => {
    for (const ok of [
      'https://client.example/cb',
      'http://127.0.0.1:8080/cb',
      'http://[::1]/cb',
      'http://localhost:3000/callback',
      'com.example.app:/oauth2redirect',
      'com.example.my-app:/cb',
      'io.github.someone.tool://callback',
    ]) {
      assert.equal(redirectUriProblem(ok), undefined, ok);
    }
    // RFC 8252 §7.1: a private-use scheme is a reverse domain name; a single word only where the operator lists it.
    for (const bad of [
      'http2://evil.com/cb',
      'cursor://anysphere.cursor-retrieval/oauth/callback',
      'myapp:/cb',
      'slack://x',
      'com.:/cb',
      '1com.example:/cb',
      'com.1example:/cb',
    ])
      assert.match(redirectUriProblem(bad) ?? '', /is not a reverse domain name|not an absolute URI/, bad);
    assert.equal(redirectUriProblem('cursor://anysphere.cursor-retrieval/oauth/callback', ['cursor']), undefined);
    assert.match(redirectUriProblem('javascript:alert(1)', ['javascript']) ?? '', /javascript/);
    assert.equal(privateUseSchemeProblem('cursor'), undefined);
    for (const s of ['https', 'http', 'javascript', 'data', 'file', 'Cursor', 'cur sor', ''])
      assert.ok(privateUseSchemeProblem(s), s);
    for (const [bad, why] of [
      ['http://client.example/cb', /loopback/],
      ['https://client.example/cb#frag', /fragment/],
      ['https://*.example/cb', /wildcard/],
      ['javascript:alert(1)', /javascript/],
      ['data:text/html,x', /data/],
      ['file:///etc/passwd', /file/],
      ['https://user:pw@client.example/cb', /credentials/],
      ['https://client.example/c b', /spaces/],
      ['/relative', /absolute/],
    ] as const) {
      assert.match(redirectUriProblem(bad) ?? '', why, bad);
    }
  });

  test('matching is exact, except the port of a loopback IP literal (RFC 8252 §7.3)', () => {
    const reg = ['http://127.0.0.1/cb', 'https://client.example/cb?x=1', 'http://localhost:3000/cb'];
    assert.ok(redirectUriMatches(reg, 'https://client.example/cb?x=1'));
    assert.ok(redirectUriMatches(reg, 'http://127.0.0.1:51234/cb'));
    assert.ok(!redirectUriMatches(reg, 'http://127.0.0.1:51234/cb/other'));
    assert.ok(!redirectUriMatches(reg, 'http://127.0.0.1:51234/cb?extra=1'));
    assert.ok(!redirectUriMatches(reg, 'https://client.example/cb'));
    assert.ok(!redirectUriMatches(reg, 'https://client.example/cb?x=1&y=2'));
    assert.ok(!redirectUriMatches(reg, 'http://localhost:4000/cb'), 'a host name is not an IP literal: exact');
    assert.ok(!redirectUriMatches(reg, 'http://127.0.0.2:51234/cb'));
    assert.ok(!redirectUriMatches(reg, 'http://user@127.0.0.1:51234/cb'));
  });

  test('the consent page allows the redirect in its CSP by origin or scheme, nothing that could end a directive', () => {
    assert.equal(redirectCspSource('http://127.0.0.1:5555/cb?x=1'), 'http://127.0.0.1:5555');
    assert.equal(redirectCspSource('com.example.app:/cb'), 'com.example.app:');
    assert.equal(redirectCspSource('https://client.example/a;b'), 'https://client.example');
  });
});

describe('client ID metadata document URLs (SSRF)', () => {
  test('https with a path, in normal form; loopback http only where Gatehouse itself runs on loopback', () => {
    assert.equal(metadataUrlProblem('https://client.example/oauth/metadata.json', false), undefined);
    for (const bad of [
      'http://client.example/m.json',
      'https://client.example/',
      'https://client.example',
      'https://client.example/m.json?x=1',
      'https://client.example/a/../m.json',
      'https://u:p@client.example/m',
      'https://client.example/m#f',
      'not a url',
    ]) {
      assert.ok(metadataUrlProblem(bad, false), bad);
    }
    assert.ok(metadataUrlProblem('http://127.0.0.1:8080/m.json', false));
    assert.equal(metadataUrlProblem('http://127.0.0.1:8080/m.json', true), undefined);
    assert.ok(metadataUrlProblem('http://10.0.0.1/m.json', true), 'dev mode allows loopback, not private networks');
  });

  test('every IPv6 form that embeds or maps to a non-public IPv4 address, and the rest of the special-purpose registries, are not public (issue 10.18)', () => {
    const refused: [string, string][] = [
      ['::7f00:1', 'IPv4-compatible ::/96 of 127.0.0.1'],
      ['::a00:1', 'IPv4-compatible of 10.0.0.1'],
      ['::808:808', 'IPv4-compatible of a public address: deprecated, never a real destination'],
      ['::', 'unspecified'],
      ['::1', 'loopback'],
      ['::ffff:7f00:1', 'IPv4-mapped, hex'],
      ['::ffff:127.0.0.1', 'IPv4-mapped, dotted'],
      ['::ffff:10.0.0.1', 'IPv4-mapped private'],
      ['::ffff:808:808', 'IPv4-mapped public: still not a form to connect to'],
      ['::ffff:0:a9fe:a9fe', 'IPv4-translated ::ffff:0:0:0/96 of 169.254.169.254'],
      ['2002:7f00:1::', '6to4 of 127.0.0.1'],
      ['2002:a00:1::1', '6to4 of 10.0.0.1'],
      ['2002:a9fe:a9fe::', '6to4 of 169.254.169.254'],
      ['2002:c0a8:101:1::1', '6to4 of 192.168.1.1'],
      ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'Teredo (client 127.0.0.1 as ~80ff:fffe)'],
      ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo with a public client: all of 2001::/32'],
      ['2001:2::1', 'benchmarking 2001:2::/48'],
      ['2001:10::1', 'ORCHID'],
      ['64:ff9b::7f00:1', 'NAT64 of 127.0.0.1'],
      ['64:ff9b::10.0.0.1', 'NAT64 of 10.0.0.1, dotted'],
      ['64:ff9b::a9fe:a9fe', 'NAT64 of 169.254.169.254'],
      ['64:ff9b:1::808:808', 'local-use NAT64 64:ff9b:1::/48, whatever it embeds'],
      ['64:ff9b:1:ffff::1', 'local-use NAT64'],
      ['fc00::1', 'ULA'],
      ['fd12:3456::1', 'ULA'],
      ['fe80::1', 'link-local'],
      ['fe80::1%eth0', 'link-local with a zone'],
      ['fec0::1', 'site-local'],
      ['ff02::1', 'multicast'],
      ['ff0e::1', 'global multicast'],
      ['2001:db8::1', 'documentation'],
      ['3fff::1', 'documentation 3fff::/20'],
      ['100::1', 'discard-only 100::/64'],
      ['5f00::1', 'SRv6'],
      ['4000::1', 'outside global unicast 2000::/3'],
      ['10.0.0.1', 'private'],
      ['127.0.0.1', 'loopback'],
      ['169.254.169.254', 'link-local (cloud metadata)'],
      ['100.64.0.1', 'shared address space'],
      ['192.88.99.1', '6to4 relay anycast'],
      ['0.0.0.0', 'this network'],
      ['255.255.255.255', 'broadcast'],
      ['not an address', 'not an address'],
    ];
    for (const [a, why] of refused) assert.equal(publicAddress(a, false), false, `${a}: ${why}`);
    for (const a of [
      '8.8.8.8',
      '2606:4700:4700::1111',
      '2a00:1450:4001:80b::200e',
      '64:ff9b::808:808',
      '64:ff9b::8.8.8.8',
      '2002:808:808::1',
      '2001:4860:4860::8888',
    ])
      assert.equal(publicAddress(a, false), true, a);
    // Where Gatehouse itself runs on loopback: loopback itself, never loopback wrapped in another form.
    assert.equal(publicAddress('127.0.0.1', true), true);
    assert.equal(publicAddress('::1', true), true);
    for (const a of ['::7f00:1', '::ffff:7f00:1', '2002:7f00:1::', '64:ff9b::7f00:1', '10.0.0.1', 'fd00::1'])
      assert.equal(publicAddress(a, true), false, `${a} in development mode`);
  });

  test('addresses are checked where the socket connects: a name that resolves to loopback, and private IP literals, are never fetched', async () => {
    const docs = new MetadataDocuments({ allowLoopback: false, now: Date.now });
    try {
      for (const url of [
        'https://localhost:9/m.json',
        'https://127.0.0.1:9/m.json',
        'https://10.0.0.1/m.json',
        'https://[::1]:9/m.json',
        'https://169.254.169.254/latest',
        'https://[::7f00:1]:9/m.json',
        'https://[::ffff:7f00:1]:9/m.json',
        'https://[2002:7f00:1::]:9/m.json',
        'https://[2001:0:4136:e378:8000:63bf:80ff:fffe]:9/m.json',
        'https://[64:ff9b::7f00:1]:9/m.json',
        'https://[64:ff9b:1::1]:9/m.json',
      ]) {
        await assert.rejects(
          docs.get(url),
          (e: unknown) => e instanceof MetadataDocumentError && /non-public address/.test(e.message),
          url,
        );
      }
    } finally {
      await docs.close();
    }
  });
});

test('client ID metadata documents: parallel requests for one URL share one fetch; past its allowance a client IP gets 429 and causes no fetch', async () => {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ client_id: `${origin}${req.url}`, redirect_uris: ['http://127.0.0.1:9/cb'] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const cache = new MemoryCache();
  const limits = new Limits(cache, { ...parseConfig(base, 'g.yaml', {}).tokens.rateLimits, clientDocumentsPerIp: 5 });
  const docs = new MetadataDocuments({ allowLoopback: true, now: Date.now, admit: (ip) => limits.clientDocument(ip) });
  try {
    const got = await Promise.all([1, 2, 3, 4].map(() => docs.get(`${origin}/a.json`, '192.0.2.1')));
    assert.equal(hits, 1, 'one fetch for four parallel requests');
    assert.ok(got.every((d) => d === got[0]));
    await docs.get(`${origin}/a.json`, '192.0.2.1');
    assert.equal(hits, 1, 'then from memory, which counts nothing');
    await docs.get(`${origin}/b.json`, '192.0.2.1');
    await assert.rejects(
      docs.get(`${origin}/c.json`, '192.0.2.1'),
      (e: unknown) => e instanceof MetadataDocumentError && e.status === 429 && e.retryAfterSeconds! > 0,
    );
    assert.equal(hits, 2, 'the refused request fetched nothing');
    await docs.get(`${origin}/c.json`, '192.0.2.2');
    assert.equal(hits, 3, 'another address has its own allowance');
  } finally {
    await docs.close();
    await cache.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("a bearer token is Gatehouse's to decide only when it names Gatehouse as issuer, or is a Gatehouse refresh token", () => {
  const jwt = (payload: object) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;
  assert.ok(looksIssuedBy(jwt({ iss: 'https://app.example.com' }), 'https://app.example.com'));
  assert.ok(looksIssuedBy('grt.x.y.z', 'https://app.example.com'));
  assert.ok(
    !looksIssuedBy(jwt({ iss: 'https://idp.example.com' }), 'https://app.example.com'),
    "another issuer's JWT belongs to the app",
  );
  for (const other of ['app-api-key', 'a.b', 'x.y.z', '', `e30.${'A'.repeat(5000)}.s`])
    assert.ok(!looksIssuedBy(other, 'https://app.example.com'), other);
});

test('scopes: offline_access and the configured names; unknown, malformed or not-for-this-client refused; refresh only narrows', () => {
  const scopes = new Scopes(['read', 'write']);
  const any = { scopes: null } as unknown as Client;
  const readOnly = { scopes: new Set(['read']) } as unknown as Client;
  assert.deepEqual(scopes.supported, ['offline_access', 'read', 'write']);
  assert.equal(scopes.request('write read read offline_access', any), 'offline_access read write');
  assert.equal(scopes.request(undefined, any), '');
  assert.equal(scopes.request('offline_access read', readOnly), 'offline_access read');
  for (const [raw, client] of [
    ['admin', any],
    ['read  write', any],
    ['read"', any],
    ['write', readOnly],
  ] as const)
    assert.throws(() => scopes.request(raw, client), { error: 'invalid_scope' }, raw);
  assert.equal(scopes.narrow('read', 'offline_access read'), 'read');
  assert.equal(scopes.narrow(undefined, 'offline_access read'), 'offline_access read');
  assert.throws(() => scopes.narrow('read write', 'offline_access read'), { error: 'invalid_scope' });
});

test("resources: an app is named by its URL or any URL it serves; other origins, queries and Gatehouse's own routes are no resource", () => {
  const config = parseConfig(
    `publicUrl: https://example.com\napps:\n  - {name: api, pathPrefix: /api, upstream: "http://127.0.0.1:1"}\n  - {name: web, upstream: "http://127.0.0.1:2"}\n  - {name: crm, host: crm.example.com, upstream: "http://127.0.0.1:3"}\n`,
    'g.yaml',
    {},
  );
  const r = new Resources(buildSites(config), '/.auth');
  const name = (u: string) => r.resolve(u)?.name;
  assert.equal(name('https://example.com/api'), 'api');
  assert.equal(name('https://example.com/api/v1/tools'), 'api');
  assert.equal(name('https://example.com'), 'web');
  assert.equal(name('https://example.com/'), 'web');
  assert.equal(name('https://EXAMPLE.com:443/x'), 'web');
  assert.equal(name('https://crm.example.com/'), 'crm');
  for (const none of [
    'http://example.com/',
    'https://other.example/',
    'https://example.com/api?x=1',
    'https://example.com/.auth/me',
    'https://example.com/.AUTH',
    'https://example.com/a#b',
    'ftp://example.com/',
    'nope',
  ])
    assert.equal(name(none), undefined, none);
  const [api, web] = [r.resolve('https://example.com/api')!, r.resolve('https://example.com')!];
  assert.equal(r.idOf(api), 'https://example.com/api');
  assert.equal(r.idOf(web), 'https://example.com');
  assert.equal(r.metadataUrl(api), 'https://example.com/.well-known/oauth-protected-resource/api');
  assert.equal(r.sole(), undefined, 'several apps: a request must name one');
});

describe('tokens config', () => {
  test('defaults', () => {
    const t = parseConfig(base, 'g.yaml', {}).tokens;
    assert.equal(t.accessTokenTtl, 600_000);
    assert.equal(t.refreshTokenTtl, 90 * 86_400_000);
    assert.equal(t.refreshIdleTtl, 30 * 86_400_000);
    assert.equal(t.reuseGrace, 5000);
    assert.deepEqual(t.device, { codeTtl: 600_000, interval: 5000 });
    assert.equal(t.dynamicRegistration, true);
    assert.equal(t.clientIdMetadataDocuments, true);
    assert.deepEqual(t.clients, []);
  });

  test('mistakes are named with their key and line', () => {
    const at = (yaml: string) => problems(base + yaml).map((p) => `${p.line ?? ''} ${p.key}`);
    assert.deepEqual(at('tokens:\n  clients:\n    - {id: gatehouse-cli, name: Mine, grantTypes: [device_code]}\n'), [
      '5 tokens.clients[0].id',
    ]);
    assert.deepEqual(
      at('tokens:\n  clients:\n    - id: web\n      name: Web\n      redirectUris: ["http://web.example/cb"]\n'),
      ['7 tokens.clients[0].redirectUris[0]'],
    );
    assert.deepEqual(at('tokens:\n  clients:\n    - {id: web, name: Web}\n'), ['5 tokens.clients[0].redirectUris']);
    assert.deepEqual(
      at(
        'tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [device_code]}\n    - {id: a, name: B, grantTypes: [device_code]}\n',
      ),
      ['6 tokens.clients[1].id'],
    );
    assert.deepEqual(at('tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [device_code], secret: short}\n'), [
      '5 tokens.clients[0].secret',
    ]);
    assert.deepEqual(at('tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [device_code], scopes: [admin]}\n'), [
      '5 tokens.clients[0].scopes',
    ]);
    assert.deepEqual(at('tokens:\n  refreshTokenTtl: 7d\n  refreshIdleTtl: 30d\n'), ['5 tokens.refreshIdleTtl']);
    assert.deepEqual(at('tokens:\n  device:\n    interval: 100ms\n'), ['5 tokens.device.interval']);
    assert.deepEqual(at('tokens:\n  scopes: ["has space"]\n'), ['4 tokens.scopes[0]']);
  });

  test('gatehouse check warns about OAuth settings that will hurt', () => {
    const keys = (yaml: string) => lintConfig(parseConfig(base + yaml, 'g.yaml', {})).map((w) => w.key);
    assert.ok(
      keys('tokens:\n  accessTokenTtl: 2h\n').includes('tokens.accessTokenTtl'),
      'longer than maxLifetime (1h)',
    );
    assert.ok(keys('tokens:\n  refreshTokenTtl: 400d\n  refreshIdleTtl: 30d\n').includes('tokens.refreshTokenTtl'));
    assert.ok(keys('tokens:\n  device: {interval: 2s}\n').includes('tokens.device.interval'));
    assert.ok(keys('tokens:\n  reuseGrace: 45s\n').includes('tokens.reuseGrace'));
    assert.ok(
      keys('tokens:\n  clients: [{id: r, name: R, grantTypes: [refresh_token]}]\n').includes(
        'tokens.clients[0].grantTypes',
      ),
    );
    const elsewhere = lintConfig(
      parseConfig(
        'publicUrl: https://auth.example.com\napps:\n  - {name: a, host: a.example.com, upstream: "http://127.0.0.1:1"}\n',
        'g.yaml',
        {},
      ),
    );
    assert.ok(elsewhere.some((w) => w.key === 'publicUrl' && /OAuth endpoints/.test(w.message)));
    assert.ok(!keys('').some((k) => k.startsWith('tokens.')), 'the defaults draw no warning');
  });
});
