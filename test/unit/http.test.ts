import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IncomingMessage } from 'node:http';
import http2 from 'node:http2';
import { Throttle } from '../../src/accounts/throttle.ts';
import { MemoryCache } from '../../src/cache/memory.ts';
import { parseConfig } from '../../src/config/load.ts';
import { rateLimitAddress, TrustedProxies } from '../../src/http/client-ip.ts';
import { secretsFromKey } from '../../src/keys/secrets.ts';
import { BASE_CONFIG } from '../helpers/config.ts';
import { Forwarding, parseForwarded } from '../../src/http/forwarded.ts';
import { readCookie, serializeCookie } from '../../src/http/cookies.ts';
import { isSpoofable } from '../../src/http/header-names.ts';
import { stripCookies, upstreamRequestHeaders } from '../../src/proxy/headers.ts';

describe('cookies', () => {
  test('reads one cookie by exact name', () => {
    assert.equal(readCookie('a=1; gatehouse=abc; b=2', 'gatehouse'), 'abc');
    assert.equal(readCookie('gatehouse=abc', 'gatehouse'), 'abc');
    assert.equal(readCookie('gatehouse="abc"', 'gatehouse'), 'abc');
    assert.equal(readCookie('x=1', 'gatehouse'), undefined);
    assert.equal(readCookie(undefined, 'gatehouse'), undefined);
  });

  test('a duplicated name is ambiguous, never first- or last-wins (security.md #23)', () => {
    assert.equal(readCookie('gatehouse=victim; gatehouse=attacker', 'gatehouse'), null);
    assert.equal(readCookie('__Host-gatehouse=a;__Host-gatehouse=b', '__Host-gatehouse'), null);
  });

  test('no case-folding or Unicode trimming makes another cookie ours (security.md #24)', () => {
    assert.equal(readCookie('__HOST-gatehouse=x', '__Host-gatehouse'), undefined);
    assert.equal(readCookie('\u2000__Host-gatehouse=x', '__Host-gatehouse'), undefined);
    assert.equal(readCookie('=x; gatehouse=y', 'gatehouse'), 'y');
    assert.equal(readCookie('xgatehouse=1; gatehousex=2', 'gatehouse'), undefined);
  });

  test('cookies are host-only, HttpOnly, SameSite=Lax', () => {
    const c = serializeCookie('__Host-gatehouse', 'v', { secure: true, maxAgeSeconds: 60 });
    assert.equal(c, '__Host-gatehouse=v; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax');
    assert.doesNotMatch(c, /Domain/i);
  });
});

/** A request as Node makes it; with :authority, one of an HTTP/2 stream (the object, not a version, says so). */
function req(peer: string, headers: Record<string, string> = {}): IncomingMessage {
  const proto = ':authority' in headers ? http2.Http2ServerRequest.prototype : Object.prototype;
  return Object.create(proto, {
    socket: { value: { remoteAddress: peer } },
    headers: { value: headers },
    stream: { value: {} },
  }) as IncomingMessage;
}

describe('trusted proxies and forwarding headers', () => {
  const clientIp = (t: TrustedProxies, peer: string, xff?: string) =>
    new Forwarding(t, 'x-forwarded', false).resolve(req(peer, xff ? { 'x-forwarded-for': xff } : {})).ip;

  test('nobody is trusted by default: X-Forwarded-* and Forwarded are ignored (security.md #5)', () => {
    const t = new TrustedProxies([]);
    assert.equal(t.has('127.0.0.1'), false);
    for (const mode of ['x-forwarded', 'forwarded'] as const) {
      const f = new Forwarding(t, mode, false).resolve(
        req('127.0.0.1', {
          host: 'app.example.com',
          'x-forwarded-for': '1.2.3.4',
          'x-forwarded-proto': 'https',
          'x-forwarded-host': 'evil.com',
          forwarded: 'for=1.2.3.4;proto=https;host=evil.com',
        }),
      );
      assert.deepEqual(f, { ip: '127.0.0.1', scheme: 'http', host: 'app.example.com', viaProxy: false });
    }
  });

  test('the chain is walked from the right past trusted hops only', () => {
    const t = new TrustedProxies(['10.0.0.0/8', 'loopback']);
    assert.equal(clientIp(t, '10.0.0.5', '203.0.113.9'), '203.0.113.9');
    assert.equal(clientIp(t, '10.0.0.5', '1.1.1.1, 203.0.113.9, 10.0.0.7'), '203.0.113.9');
    // A spoofed left-most entry does not win.
    assert.equal(clientIp(t, '127.0.0.1', 'spoofed, 198.51.100.1'), '198.51.100.1');
    assert.equal(clientIp(t, '::ffff:127.0.0.1', '198.51.100.1'), '198.51.100.1');
    // From an untrusted peer the header means nothing.
    assert.equal(clientIp(t, '198.51.100.7', '10.0.0.1'), '198.51.100.7');
    // Garbage stops the walk at the last good hop.
    assert.equal(clientIp(t, '10.0.0.5', 'not-an-ip'), '10.0.0.5');
  });

  test('scheme and host come from the same hop as the client, never from further left', () => {
    const f = new Forwarding(new TrustedProxies(['10.0.0.0/8']), 'x-forwarded', false);
    // One proxy that overwrites: its values.
    assert.deepEqual(
      f.resolve(
        req('10.0.0.5', {
          host: 'gatehouse:8080',
          'x-forwarded-for': '203.0.113.9',
          'x-forwarded-proto': 'https',
          'x-forwarded-host': 'app.example.com',
        }),
      ),
      {
        ip: '203.0.113.9',
        scheme: 'https',
        host: 'app.example.com',
        viaProxy: true,
      },
    );
    // Appended lists line up with X-Forwarded-For: the outermost trusted proxy's entry wins,
    // a client-written entry further left does not.
    const chain = f.resolve(
      req('10.0.0.5', {
        'x-forwarded-for': '6.6.6.6, 203.0.113.9, 10.0.0.7',
        'x-forwarded-proto': 'http, https, http',
        'x-forwarded-host': 'evil.com, app.example.com, inner',
      }),
    );
    assert.deepEqual([chain.ip, chain.scheme, chain.host], ['203.0.113.9', 'https', 'app.example.com']);
    // A trusted proxy that says nothing about the scheme: the socket's (plain http here).
    assert.equal(
      f.resolve(req('10.0.0.5', { host: 'app.example.com', 'x-forwarded-for': '203.0.113.9' })).scheme,
      'http',
    );
    assert.equal(
      new Forwarding(new TrustedProxies(['10.0.0.0/8']), 'x-forwarded', true).resolve(req('10.0.0.5', {})).scheme,
      'https',
    );
    // Nonsense values are ignored, not passed on.
    const junk = f.resolve(
      req('10.0.0.5', { host: 'app.example.com', 'x-forwarded-proto': 'gopher', 'x-forwarded-host': 'a b/c' }),
    );
    assert.deepEqual([junk.scheme, junk.host], ['http', 'app.example.com']);
    // HTTP/2: the Host is :authority.
    assert.equal(f.resolve(req('192.0.2.1', { ':authority': 'app.example.com' })).host, 'app.example.com');
  });

  test('Forwarded (RFC 7239): quoted IPv6 with ports, obfuscated nodes, several elements', () => {
    const f = new Forwarding(new TrustedProxies(['10.0.0.0/8', '2001:db8:cafe::/48']), 'forwarded', false);
    const one = f.resolve(req('10.0.0.5', { forwarded: 'for="[2001:db8::17]:4711";proto=https;host=app.example.com' }));
    assert.deepEqual(one, { ip: '2001:db8::17', scheme: 'https', host: 'app.example.com', viaProxy: true });
    const chain = f.resolve(
      req('10.0.0.5', {
        forwarded:
          'for=6.6.6.6;proto=http;host=evil.com, for=198.51.100.4:5000;proto=https;host="app.example.com", for="[2001:db8:cafe::9]";proto=http',
      }),
    );
    assert.deepEqual([chain.ip, chain.scheme, chain.host], ['198.51.100.4', 'https', 'app.example.com']);
    // "unknown" and obfuscated identifiers stop the walk at the last known hop.
    assert.equal(f.resolve(req('10.0.0.5', { forwarded: 'for=unknown, for=10.0.0.9' })).ip, '10.0.0.9');
    assert.equal(f.resolve(req('10.0.0.5', { forwarded: 'for=_hidden;proto=https' })).ip, '10.0.0.5');
    // A malformed element stops the walk too; a quoted comma is not a separator.
    assert.equal(
      f.resolve(req('10.0.0.5', { forwarded: 'for="1.2.3.4,5.6.7.8", for=198.51.100.4' })).ip,
      '198.51.100.4',
    );
    assert.equal(f.resolve(req('10.0.0.5', { forwarded: 'garbage, for=198.51.100.4' })).ip, '198.51.100.4');
    assert.equal(f.resolve(req('10.0.0.5', { forwarded: 'for=198.51.100.4;for=1.1.1.1' })).ip, '10.0.0.5');
    assert.deepEqual(parseForwarded('for=192.0.2.43, for="[2001:db8:cafe::17]";proto=https;by=203.0.113.43'), [
      { for: '192.0.2.43' },
      { for: '[2001:db8:cafe::17]', proto: 'https', by: '203.0.113.43' },
    ]);
  });

  test('one header family only: the other is ignored even from a trusted proxy', () => {
    const t = new TrustedProxies(['loopback']);
    const both = {
      'x-forwarded-for': '203.0.113.1',
      'x-forwarded-proto': 'https',
      forwarded: 'for=198.51.100.2;proto=http',
    };
    assert.equal(new Forwarding(t, 'x-forwarded', false).resolve(req('127.0.0.1', both)).ip, '203.0.113.1');
    assert.equal(new Forwarding(t, 'forwarded', false).resolve(req('127.0.0.1', both)).ip, '198.51.100.2');
    assert.equal(new Forwarding(t, 'forwarded', false).resolve(req('127.0.0.1', both)).scheme, 'http');
  });

  test('presets and single addresses', () => {
    const t = new TrustedProxies(['private', '192.0.2.1', '2001:db8::/32']);
    assert.ok(t.has('172.16.3.4'));
    assert.ok(t.has('192.0.2.1'));
    assert.ok(!t.has('192.0.2.2'));
    assert.ok(t.has('2001:db8::1'));
    assert.ok(!t.has('127.0.0.1'));
  });
});

describe('request headers to the app', () => {
  const fwd = {
    clientIp: '127.0.0.1',
    forwardedFor: '127.0.0.1',
    proto: 'https' as const,
    host: 'app.example.com',
    requestId: 'r1',
    upstreamHost: 'upstream:8080',
    ownCookies: ['__Host-gatehouse', '__Host-gatehouse-csrf'],
  };
  const build = (raw: string[], identity: string[] = ['X-User-Id', 'u1']) => {
    const connection = raw.filter((_, i) => i % 2 === 0 && raw[i]!.toLowerCase() === 'connection').length
      ? raw[raw.findIndex((h) => h.toLowerCase() === 'connection') + 1]
      : undefined;
    const out = upstreamRequestHeaders(raw, connection, fwd, identity);
    const pairs: [string, string][] = [];
    for (let i = 0; i < out.length; i += 2) pairs.push([out[i]!.toLowerCase(), out[i + 1]!]);
    return pairs;
  };

  test('every client copy of identity headers is dropped, in any spelling (security.md #1-3)', () => {
    const pairs = build([
      'X-User-Id',
      'evil',
      'x-user-id',
      'evil2',
      'X_User_Id',
      'evil3',
      'X-User_Id',
      'evil4',
      'X-USER-EMAIL',
      'a@evil',
      'X-Gatehouse-Assertion',
      'jwt',
      'x-user-id',
      'a, b',
      'Accept',
      '*/*',
    ]);
    assert.deepEqual(
      pairs.filter(([n]) => n.replace(/_/g, '-').startsWith('x-user') || n.startsWith('x-gatehouse')),
      [['x-user-id', 'u1']],
    );
    assert.ok(pairs.some(([n, v]) => n === 'accept' && v === '*/*'));
  });

  test('Connection-listed headers go first; ours are added after (security.md #4)', () => {
    const pairs = build(['Connection', 'close, X-User-Id, X-Forwarded-For, Accept', 'Accept', 'x', 'X-Keep', 'y']);
    assert.ok(!pairs.some(([n]) => n === 'accept' || n === 'connection'));
    assert.deepEqual(
      pairs.filter(([n]) => n === 'x-user-id'),
      [['x-user-id', 'u1']],
    );
    assert.deepEqual(
      pairs.find(([n]) => n === 'x-forwarded-for'),
      ['x-forwarded-for', '127.0.0.1'],
    );
    assert.ok(pairs.some(([n]) => n === 'x-keep'));
  });

  test("forwarding headers are Gatehouse's own, never the client's (security.md #5)", () => {
    const pairs = build([
      'X-Forwarded-Host',
      'evil.com',
      'X-Forwarded-Proto',
      'http',
      'Forwarded',
      'for=1.2.3.4',
      'X-Original-URL',
      '/admin',
      'X-Rewrite-URL',
      '/admin',
      'X-Real-IP',
      '1.2.3.4',
      'Host',
      'evil.com',
    ]);
    const names = pairs.map(([n]) => n);
    for (const n of ['forwarded', 'x-original-url', 'x-rewrite-url', 'x-real-ip']) assert.ok(!names.includes(n), n);
    assert.deepEqual(
      pairs.filter(([n]) => n === 'x-forwarded-host'),
      [['x-forwarded-host', 'app.example.com']],
    );
    assert.deepEqual(
      pairs.filter(([n]) => n === 'x-forwarded-proto'),
      [['x-forwarded-proto', 'https']],
    );
    assert.deepEqual(
      pairs.filter(([n]) => n === 'host'),
      [['host', 'upstream:8080']],
    );
  });

  test('hop-by-hop headers are not forwarded', () => {
    const pairs = build([
      'Keep-Alive',
      'timeout=5',
      'TE',
      'trailers',
      'Transfer-Encoding',
      'chunked',
      'Upgrade',
      'h2c',
      'Proxy-Authorization',
      'Basic x',
      'Expect',
      '100-continue',
    ]);
    assert.deepEqual(
      pairs
        .map(([n]) => n)
        .filter(
          (n) =>
            !['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'x-user-id'].includes(
              n,
            ),
        ),
      [],
    );
  });

  test("Gatehouse's cookies never reach the app", () => {
    assert.equal(stripCookies('a=1; __Host-gatehouse=secret; b=2', ['__Host-gatehouse']), 'a=1; b=2');
    assert.equal(stripCookies('__Host-gatehouse=secret', ['__Host-gatehouse']), null);
    const pairs = build(['Cookie', '__Host-gatehouse=secret; app=1; __Host-gatehouse-csrf=t']);
    assert.deepEqual(
      pairs.filter(([n]) => n === 'cookie'),
      [['cookie', 'app=1']],
    );
  });

  test('isSpoofable covers the families', () => {
    for (const n of [
      'x-user-id',
      'x_user_groups',
      'x-gatehouse-assertion',
      'x-forwarded-prefix',
      'forwarded',
      'x-original-uri',
      'x-auth-request-email',
      'remote-user',
      'x-http-method-override',
    ])
      assert.ok(isSpoofable(n), n);
    for (const n of ['accept', 'authorization', 'x-userland', 'user-agent']) assert.ok(!isSpoofable(n), n);
  });
});

describe('rate limits by address', () => {
  test('IPv4 counts per address, IPv6 per /64 in whatever spelling (a client there can rotate through 2^64 addresses)', () => {
    assert.equal(rateLimitAddress('192.0.2.7'), '192.0.2.7');
    for (const a of [
      '2001:db8:1:2::1',
      '2001:db8:1:2:ffff:ffff:ffff:ffff',
      '2001:0DB8:0001:0002:0:0:0:9',
      '2001:db8:1:2::1%eth0',
      '2001:db8:1:2::192.0.2.1',
    ])
      assert.equal(rateLimitAddress(a), '2001:db8:1:2::/64', a);
    assert.notEqual(rateLimitAddress('2001:db8:1:3::1'), rateLimitAddress('2001:db8:1:2::1'));
    assert.equal(rateLimitAddress('::1'), '0:0:0:0::/64');
    assert.equal(rateLimitAddress('fe80::1:2:3:4'), 'fe80:0:0:0::/64');
    assert.equal(rateLimitAddress('1:2:3:4:5::'), '1:2:3:4::/64');
  });

  test('failed logins from one IPv6 /64 share one allowance, however many addresses they come from', async () => {
    const config = parseConfig(`${BASE_CONFIG}accounts: { rateLimits: { loginPerIp: 3 } }\n`, 'g.yaml', {});
    const cache = new MemoryCache();
    const throttle = new Throttle(cache, secretsFromKey('k'.repeat(64)), config.accounts.rateLimits);
    try {
      const verdicts = [];
      for (let i = 1; i <= 4; i++)
        verdicts.push(
          (await throttle.attemptLogin(`2001:db8:7:7::${i.toString(16)}`, `user${i}@example.com`, undefined)).ok,
        );
      assert.deepEqual(verdicts, [true, true, true, false]);
      assert.equal(
        (await throttle.attemptLogin('2001:db8:7:8::1', 'user9@example.com', undefined)).ok,
        true,
        'the next /64 is another network',
      );
    } finally {
      await cache.close();
    }
  });
});
