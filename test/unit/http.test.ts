import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TrustedProxies } from '../../src/http/client-ip.ts';
import { readCookie, serializeCookie } from '../../src/http/cookies.ts';
import { isSpoofable, stripCookies, upstreamRequestHeaders } from '../../src/proxy/headers.ts';

describe('cookies', () => {
  test('reads one cookie by exact name', () => {
    assert.equal(readCookie('a=1; gatehouse=abc; b=2', 'gatehouse'), 'abc');
    assert.equal(readCookie('gatehouse=abc', 'gatehouse'), 'abc');
    assert.equal(readCookie('gatehouse="abc"', 'gatehouse'), 'abc');
    assert.equal(readCookie('x=1', 'gatehouse'), undefined);
    assert.equal(readCookie(undefined, 'gatehouse'), undefined);
  });

  test('a duplicated name is ambiguous, never first- or last-wins (ATTACKS 23)', () => {
    assert.equal(readCookie('gatehouse=victim; gatehouse=attacker', 'gatehouse'), null);
    assert.equal(readCookie('__Host-gatehouse=a;__Host-gatehouse=b', '__Host-gatehouse'), null);
  });

  test('no case-folding or Unicode trimming makes another cookie ours (ATTACKS 24)', () => {
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

describe('trusted proxies', () => {
  test('nobody is trusted by default: X-Forwarded-For is ignored (ATTACKS 5)', () => {
    const t = new TrustedProxies([]);
    assert.equal(t.clientIp('127.0.0.1', '1.2.3.4'), '127.0.0.1');
    assert.equal(t.has('127.0.0.1'), false);
  });

  test('the chain is walked from the right past trusted hops only', () => {
    const t = new TrustedProxies(['10.0.0.0/8', 'loopback']);
    assert.equal(t.clientIp('10.0.0.5', '203.0.113.9'), '203.0.113.9');
    assert.equal(t.clientIp('10.0.0.5', '1.1.1.1, 203.0.113.9, 10.0.0.7'), '203.0.113.9');
    // A spoofed left-most entry does not win.
    assert.equal(t.clientIp('127.0.0.1', 'spoofed, 198.51.100.1'), '198.51.100.1');
    assert.equal(t.clientIp('::ffff:127.0.0.1', '198.51.100.1'), '198.51.100.1');
    // From an untrusted peer the header means nothing.
    assert.equal(t.clientIp('198.51.100.7', '10.0.0.1'), '198.51.100.7');
    // Garbage stops the walk at the last good hop.
    assert.equal(t.clientIp('10.0.0.5', 'not-an-ip'), '10.0.0.5');
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
  const fwd = { clientIp: '127.0.0.1', forwardedFor: '127.0.0.1', proto: 'https' as const, host: 'app.example.com', requestId: 'r1', upstreamHost: 'upstream:8080', ownCookies: ['__Host-gatehouse', '__Host-gatehouse-csrf'] };
  const build = (raw: string[], identity: string[] = ['X-User-Id', 'u1']) => {
    const connection = raw.filter((_, i) => i % 2 === 0 && raw[i]!.toLowerCase() === 'connection').length ? raw[raw.findIndex((h) => h.toLowerCase() === 'connection') + 1] : undefined;
    const out = upstreamRequestHeaders(raw, connection, fwd, identity);
    const pairs: [string, string][] = [];
    for (let i = 0; i < out.length; i += 2) pairs.push([out[i]!.toLowerCase(), out[i + 1]!]);
    return pairs;
  };

  test('every client copy of identity headers is dropped, in any spelling (ATTACKS 1-3)', () => {
    const pairs = build(['X-User-Id', 'evil', 'x-user-id', 'evil2', 'X_User_Id', 'evil3', 'X-User_Id', 'evil4', 'X-USER-EMAIL', 'a@evil', 'X-Gatehouse-Assertion', 'jwt', 'x-user-id', 'a, b', 'Accept', '*/*']);
    assert.deepEqual(pairs.filter(([n]) => n.replace(/_/g, '-').startsWith('x-user') || n.startsWith('x-gatehouse')), [['x-user-id', 'u1']]);
    assert.ok(pairs.some(([n, v]) => n === 'accept' && v === '*/*'));
  });

  test('Connection-listed headers go first; ours are added after (ATTACKS 4)', () => {
    const pairs = build(['Connection', 'close, X-User-Id, X-Forwarded-For, Accept', 'Accept', 'x', 'X-Keep', 'y']);
    assert.ok(!pairs.some(([n]) => n === 'accept' || n === 'connection'));
    assert.deepEqual(pairs.filter(([n]) => n === 'x-user-id'), [['x-user-id', 'u1']]);
    assert.deepEqual(pairs.find(([n]) => n === 'x-forwarded-for'), ['x-forwarded-for', '127.0.0.1']);
    assert.ok(pairs.some(([n]) => n === 'x-keep'));
  });

  test('forwarding headers are Gatehouse\'s own, never the client\'s (ATTACKS 5)', () => {
    const pairs = build(['X-Forwarded-Host', 'evil.com', 'X-Forwarded-Proto', 'http', 'Forwarded', 'for=1.2.3.4', 'X-Original-URL', '/admin', 'X-Rewrite-URL', '/admin', 'X-Real-IP', '1.2.3.4', 'Host', 'evil.com']);
    const names = pairs.map(([n]) => n);
    for (const n of ['forwarded', 'x-original-url', 'x-rewrite-url', 'x-real-ip']) assert.ok(!names.includes(n), n);
    assert.deepEqual(pairs.filter(([n]) => n === 'x-forwarded-host'), [['x-forwarded-host', 'app.example.com']]);
    assert.deepEqual(pairs.filter(([n]) => n === 'x-forwarded-proto'), [['x-forwarded-proto', 'https']]);
    assert.deepEqual(pairs.filter(([n]) => n === 'host'), [['host', 'upstream:8080']]);
  });

  test('hop-by-hop headers are not forwarded', () => {
    const pairs = build(['Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'Proxy-Authorization', 'Basic x', 'Expect', '100-continue']);
    assert.deepEqual(
      pairs.map(([n]) => n).filter((n) => !['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'x-user-id'].includes(n)),
      [],
    );
  });

  test("Gatehouse's cookies never reach the app", () => {
    assert.equal(stripCookies('a=1; __Host-gatehouse=secret; b=2', ['__Host-gatehouse']), 'a=1; b=2');
    assert.equal(stripCookies('__Host-gatehouse=secret', ['__Host-gatehouse']), null);
    const pairs = build(['Cookie', '__Host-gatehouse=secret; app=1; __Host-gatehouse-csrf=t']);
    assert.deepEqual(pairs.filter(([n]) => n === 'cookie'), [['cookie', 'app=1']]);
  });

  test('isSpoofable covers the families', () => {
    for (const n of ['x-user-id', 'x_user_groups', 'x-gatehouse-assertion', 'x-forwarded-prefix', 'forwarded', 'x-original-uri', 'x-auth-request-email', 'remote-user', 'x-http-method-override']) assert.ok(isSpoofable(n), n);
    for (const n of ['accept', 'authorization', 'x-userland', 'user-agent']) assert.ok(!isSpoofable(n), n);
  });
});
