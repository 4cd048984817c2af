import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * Route rules by client address (`from`): a rule meets only requests from its addresses, the
 * client address being the one trustedProxies lets Gatehouse see (X-Forwarded-For from a trusted
 * peer, else the connection's). Others go on to the next rules (security.md #238).
 */

const routes = [
  // No sign-in from the office network; everyone else signs in.
  { path: '/intranet/**', from: ['10.0.0.0/8', '2001:db8::/32'], access: 'public' as const },
  // Operations pages only from the VPN, signed in; nowhere else.
  { path: '/ops/**', from: ['192.168.1.0/24'] },
  { path: '/ops/**', access: 'deny' as const },
];

let upstream: TestUpstream;
let behindProxy: TestGatehouse;
let direct: TestGatehouse;
let user: Client;

before(async () => {
  upstream = await startUpstream();
  // Behind a proxy on loopback (the test client plays it): X-Forwarded-For names the client.
  behindProxy = await startGatehouse(
    () => ({ routes, trustedProxies: ['loopback'], forwardAuth: { cacheFor: '5s' } }),
    {
      upstream,
    },
  );
  // Facing clients itself: nobody's X-Forwarded-For is believed.
  direct = await startGatehouse(() => ({ routes }), { upstream });
  user = new Client(behindProxy.url);
  await registerJson(user);
});
after(async () => {
  await behindProxy?.close();
  await direct?.close();
  await upstream?.close();
});

const from = (ip: string) => ({ 'x-forwarded-for': ip, accept: 'application/json' });

describe('rules by client address', () => {
  test('a rule with from meets only its addresses (IPv4 and IPv6 ranges); others go on to the next rule', async () => {
    const anonymous = new Client(behindProxy.url);
    assert.equal((await anonymous.get('/intranet/wiki', from('10.20.30.40'))).status, 200, 'public in the office');
    assert.equal((await anonymous.get('/intranet/wiki', from('2001:db8::5'))).status, 200);
    assert.equal(
      (await anonymous.get('/intranet/wiki', from('::ffff:10.1.1.1'))).status,
      200,
      'an IPv4-mapped address is its IPv4 one',
    );
    const outside = await anonymous.get('/intranet/wiki', from('203.0.113.9'));
    assert.equal(outside.status, 401, 'elsewhere the default rule asks for a sign-in');
    assert.equal(outside.json().error, 'unauthenticated');
    assert.equal((await user.get('/intranet/wiki', from('203.0.113.9'))).status, 200, 'signed in, from anywhere');

    assert.equal((await user.get('/ops/deploy', from('192.168.1.20'))).status, 200, 'signed in, on the VPN');
    assert.equal((await anonymous.get('/ops/deploy', from('192.168.1.20'))).status, 401, 'on the VPN, still signed in');
    assert.equal((await user.get('/ops/deploy', from('192.168.2.20'))).status, 403, 'signed in, off the VPN: denied');
    assert.equal((await user.get('/ops/deploy', from('10.20.30.40'))).status, 403);
  });

  test("the address is the trusted proxy's X-Forwarded-For, the nearest untrusted hop: a client cannot claim one", async () => {
    const anonymous = new Client(behindProxy.url);
    // A client that sends its own X-Forwarded-For through the proxy: the proxy appends the real address.
    assert.equal((await anonymous.get('/intranet/wiki', from('10.0.0.1, 203.0.113.9'))).status, 401);
    // Without trusted proxies, X-Forwarded-For is the client's own claim, and ignored: the
    // connection's address (127.0.0.1) is in no `from`.
    const claimed = await new Client(direct.url).get('/intranet/wiki', from('10.20.30.40'));
    assert.equal(claimed.status, 401);
  });

  test('forward-auth decides by the client address the proxy passes, and never lets a proxy cache an answer of such an app', async () => {
    const check = (ip: string, c: Client = new Client(behindProxy.url)) =>
      c.get('/.auth/check', { 'x-original-uri': '/intranet/wiki', 'x-original-method': 'GET', ...from(ip) });
    const inside = await check('10.20.30.40');
    assert.equal(inside.status, 200);
    assert.equal(inside.headers['cache-control'], 'no-store', 'the answer depends on the address: never cached');
    assert.equal(inside.headers['x-accel-expires'], '0');
    assert.equal((await check('203.0.113.9')).status, 401);
    const signedIn = await check('203.0.113.9', user);
    assert.equal(signedIn.status, 200);
    assert.equal(signedIn.headers['cache-control'], 'no-store');
  });

  test('a WebSocket upgrade is decided by the same address: opened on the VPN, refused elsewhere', async () => {
    const upgrade = (ip: string) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${behindProxy.url.replace('http', 'ws')}/ops/live`, {
          headers: { cookie: user.cookieHeader()!, origin: behindProxy.url, 'x-forwarded-for': ip },
        });
        ws.once('open', () => {
          ws.close();
          resolve(101);
        });
        ws.once('unexpected-response', (_req, res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        ws.once('error', reject);
      });
    assert.equal(await upgrade('192.168.1.20'), 101);
    assert.equal(await upgrade('10.20.30.40'), 403);
  });
});
