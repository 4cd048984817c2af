import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { explain } from '../../src/cli/check.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { certificateWarnings, loadTls } from '../../src/server/tls.ts';
import { upstreamRequestHeaders } from '../../src/proxy/headers.ts';
import { selfSigned } from '../helpers/tls.ts';

/** `gatehouse check` about proxies, TLS and the base path; the TLS loader; HTTP/2 headers. */

const warnings = (yaml: string) => lintConfig(parseConfig(yaml, 'g.yaml', {}));
const keys = (yaml: string) => warnings(yaml).map((w) => w.key);
const app =
  'upstream: http://127.0.0.1:3000\nsecrets: {key: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk}\naccounts: {registration: closed}\n';

describe('gatehouse check: proxies and TLS', () => {
  test('https with neither a trusted proxy nor TLS: no sign-in can work, an error', () => {
    const w = warnings(`publicUrl: https://app.example.com\n${app}`);
    assert.deepEqual(
      w.map((x) => [x.key, x.severity]),
      [['trustedProxies', 'error']],
    );
    assert.match(w[0]!.message, /no sign-in can work.*explanation.*trustedProxies.*listen\.tls/);
    assert.deepEqual(keys(`publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.0/8]\n${app}`), []);
  });

  test('trusting everyone, and plain http where it is not local', () => {
    assert.deepEqual(
      keys(`publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.0/8, 0.0.0.0/0, "::/0"]\n${app}`),
      ['trustedProxies[1]', 'trustedProxies[2]'],
    );
    const open = warnings(`publicUrl: http://app.example.com\nlisten: {host: 0.0.0.0}\n${app}`);
    assert.deepEqual(
      open.map((x) => x.key),
      ['publicUrl'],
    );
    assert.match(open[0]!.message, /listens on 0\.0\.0\.0.*in clear/);
    assert.deepEqual(keys(`publicUrl: http://localhost:8080\nlisten: {host: 0.0.0.0}\n${app}`), ['listen.host']);
    assert.deepEqual(keys(`publicUrl: http://127.0.0.1:8080\n${app}`), []);
  });

  test('TLS files: missing, not a certificate, a key that does not match, wrong host, and http publicUrl', () => {
    const a = selfSigned({ cn: 'a' });
    const b = selfSigned({ cn: 'b' });
    const tls = (cert: string, key: string, url = 'https://127.0.0.1:8443') =>
      warnings(`publicUrl: ${url}\nlisten: {tls: {cert: ${cert}, key: ${key}}}\n${app}`);
    assert.deepEqual(tls(a.cert, a.key), []);
    const missing = tls(`${a.cert}.nope`, a.key);
    assert.deepEqual(
      missing.map((x) => [x.key, x.severity]),
      [['listen.tls.cert', 'error']],
      'Gatehouse would not start',
    );
    assert.match(missing[0]!.message, /cannot read .*\.nope \(no such file\): Gatehouse will not start/);
    const notPem = `${a.cert}.txt`;
    writeFileSync(notPem, 'hello');
    assert.match(tls(notPem, a.key)[0]!.message, /is not a PEM certificate/);
    const mismatch = tls(a.cert, b.key);
    assert.deepEqual(
      mismatch.map((x) => x.key),
      ['listen.tls.key'],
    );
    assert.match(mismatch[0]!.message, /is not the key of the certificate/);
    const host = tls(a.cert, a.key, 'https://app.example.com');
    assert.deepEqual(
      host.map((x) => [x.key, x.severity]),
      [['listen.tls.cert', undefined]],
      'a warning: browsers refuse it, but Gatehouse starts',
    );
    assert.match(host[0]!.message, /not valid for app\.example\.com .*IP Address:127\.0\.0\.1/);
    const plain = tls(a.cert, a.key, 'http://127.0.0.1:8443').find((x) => x.key === 'publicUrl');
    assert.match(plain!.message, /browsers would be sent to plain http, which this port does not serve/);
    assert.equal(plain!.severity, 'error', 'no proxy could say the browser used http');
    const proxied = warnings(
      `publicUrl: http://127.0.0.1:8443\ntrustedProxies: [loopback]\nlisten: {tls: {cert: ${a.cert}, key: ${a.key}}}\n${app}`,
    ).find((x) => x.key === 'publicUrl');
    assert.equal(proxied!.severity, undefined, 'behind a trusted proxy it is only a warning');
  });

  test('expiry: expired, expiring within 14 days, not yet valid (with an injected clock)', () => {
    const leaf = loadTls(selfSigned({ days: 30 })).leaf;
    const to = Date.parse(leaf.validTo);
    assert.deepEqual(certificateWarnings(leaf, '127.0.0.1'), []);
    assert.match(certificateWarnings(leaf, '127.0.0.1', to - 86_400_000).join(), /expires on .*renew it/);
    assert.match(certificateWarnings(leaf, '127.0.0.1', to + 1000).join(), /expired on/);
    assert.match(
      certificateWarnings(leaf, '127.0.0.1', Date.parse(leaf.validFrom) - 86_400_000).join(),
      /not valid before/,
    );
    assert.deepEqual(certificateWarnings(new X509Certificate(readFileSync(selfSigned().cert)), 'localhost'), []);
  });
});

describe('publicUrl with a path', () => {
  test('a plain path prefix is accepted; anything else names publicUrl', () => {
    assert.equal(
      parseConfig(`publicUrl: https://example.com/app/\n${app}`, 'g.yaml', {}).publicUrl,
      'https://example.com/app/',
    );
    for (const bad of ['https://example.com/a%20b/', 'https://example.com/a//b/', 'https://example.com/a;x/']) {
      assert.throws(
        () => parseConfig(`publicUrl: ${bad}\n${app}`, 'g.yaml', {}),
        (e: unknown) =>
          e instanceof ConfigError && /publicUrl: the path of publicUrl is a plain path prefix/.test(e.message),
        bad,
      );
    }
  });

  test('gatehouse check --explain knows the base path', () => {
    const c = parseConfig(
      `publicUrl: https://example.com/app/\n${app}routes:\n  - {path: /app/public/**, access: public}\n`,
      'g.yaml',
      {},
    );
    assert.match(explain(c, 'https://example.com/app/.auth/login', 'GET'), /own route \(\/app\/\.auth\)/);
    assert.match(explain(c, 'https://example.com/.auth/login', 'GET'), /outside publicUrl's path \/app\/ → 404/);
    assert.match(explain(c, 'https://example.com/app/public/x', 'GET'), /decision: public/);
    assert.match(explain(c, 'https://example.com/app/.well-known/jwks.json', 'GET'), /JWKS/);
  });

  test('rules by client address: --explain decides for the address given with --from, and check warns when no proxy is trusted', () => {
    const rules = `routes:\n  - {path: /intranet/**, from: [10.0.0.0/8], access: public}\n`;
    const c = parseConfig(`publicUrl: https://example.com\ntrustedProxies: [10.9.9.9]\n${app}${rules}`, 'g.yaml', {});
    const inside = explain(c, 'https://example.com/intranet/x', 'GET', '10.1.2.3');
    assert.match(inside, /→ rule 0: \/intranet\/\*\* from \[10\.0\.0\.0\/8\] → public: matches/);
    assert.match(inside, /decision: public/);
    const outside = explain(c, 'https://example.com/intranet/x', 'GET', '203.0.113.9');
    assert.match(outside, /rule 0: .* → public: client 203\.0\.113\.9 not in from/);
    assert.match(outside, /no rule matches; default: authenticated/);
    assert.match(
      explain(c, 'https://example.com/intranet/x', 'GET'),
      /only for clients in from \(give --from ADDRESS\)/,
    );
    assert.throws(
      () => explain(c, 'https://example.com/intranet/x', 'GET', 'office'),
      /--from: "office" is not an IP address/,
    );

    assert.ok(
      !keys(`publicUrl: https://example.com\ntrustedProxies: [10.9.9.9]\n${app}${rules}`).includes('routes[0].from'),
    );
    const untrusted = warnings(
      `publicUrl: https://example.com\nlisten: {tls: {cert: c.pem, key: k.pem}}\n${app}${rules}`,
    );
    const w = untrusted.find((x) => x.key === 'routes[0].from');
    assert.match(w?.message ?? '', /no trustedProxies are set: the address is the connection's/);
    assert.throws(
      () =>
        parseConfig(`publicUrl: https://example.com\n${app}routes:\n  - {path: /x, from: [office]}\n`, 'g.yaml', {}),
      (e: unknown) => e instanceof ConfigError && /routes\[0\]\.from\[0\]/.test(e.message),
    );
  });

  test("gatehouse check --explain names the OAuth well-known documents as Gatehouse's, like the proxy serves them", () => {
    const c = parseConfig(`publicUrl: https://example.com/app/\n${app}`, 'g.yaml', {});
    for (const path of [
      '/app/.well-known/oauth-authorization-server',
      '/app/.well-known/oauth-protected-resource',
      '/app/.well-known/oauth-protected-resource/app/api',
    ]) {
      const text = explain(c, `https://example.com${path}`, 'GET');
      assert.match(
        text,
        /Gatehouse's document \(\/\.well-known\/oauth-[a-z-]+\), on every site; never forwarded/,
        path,
      );
      assert.doesNotMatch(text, /app "|decision:/, path);
    }
    // Any other document under /.well-known/ is the app's, decided by its rules.
    assert.match(explain(c, 'https://example.com/app/.well-known/security.txt', 'GET'), /decision: sign-in required/);
    // The JWKS and the probes answer whatever the Host (apps fetch the keys by an internal address).
    assert.match(explain(c, 'http://10.0.0.7:8080/app/.well-known/jwks.json', 'GET'), /answered whatever the Host/);
    assert.match(explain(c, 'http://10.0.0.7:8080/app/.auth/login', 'GET'), /no site answers for this host → 421/);
  });

  test('rules and app prefixes outside the base path are named', () => {
    const w = keys(
      `publicUrl: https://example.com/app/\ntrustedProxies: [loopback]\n${app}routes:\n  - {path: /app/public/**, access: public}\n  - {path: /admin/**, access: deny}\n  - {path: '/*/x', access: public}\n  - {path: /APP/y, access: public}\n`,
    );
    assert.deepEqual(w, ['routes[1].path']);
  });
});

describe('request headers rebuilt for an HTTP/1.1 app', () => {
  const fwd = {
    clientIp: '127.0.0.1',
    forwardedFor: '127.0.0.1',
    proto: 'https' as const,
    host: 'app.example.com',
    requestId: 'r1',
    upstreamHost: 'upstream:8080',
    ownCookies: ['__Host-gatehouse'],
  };

  test('HTTP/2 pseudo-headers are never forwarded; split cookie fields become one Cookie header', () => {
    const raw = [
      ':method',
      'GET',
      ':path',
      '/x',
      ':scheme',
      'https',
      ':authority',
      'app.example.com',
      'cookie',
      'a=1',
      'cookie',
      '__Host-gatehouse=secret',
      'cookie',
      'b=2',
      'accept',
      '*/*',
    ];
    const out = upstreamRequestHeaders(raw, undefined, fwd, []);
    const names = out.filter((_, i) => i % 2 === 0);
    assert.ok(!names.some((n) => n.startsWith(':')), names.join());
    assert.deepEqual(
      names.filter((n) => n === 'cookie'),
      ['cookie'],
    );
    assert.equal(out[out.indexOf('cookie') + 1], 'a=1; b=2');
    assert.equal(out[out.indexOf('host') + 1], 'upstream:8080');
  });
});
