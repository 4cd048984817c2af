import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { example, nginxSkip, startNginx, type TestNginx } from '../helpers/nginx.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { selfSigned, type TestCert } from '../helpers/tls.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * Real nginx running examples/nginx-forward-auth-cached.conf (loopback ports, the cache in the
 * run's temp dir instead of /run): nginx keeps Gatehouse's allowing answers for
 * forwardAuth.cacheFor, per Cookie and Authorization, and takes the identity headers from them.
 */

const NGINX_ADDR = '127.0.0.2';
const CACHE_FOR = 2;

let cert: TestCert;
let upstream: TestUpstream;
let gh: TestGatehouse;
let nginx: TestNginx;
let origin: string;

/** How many times nginx asked Gatehouse (its request log lines for /.auth/check). */
const checks = () =>
  gh.logs.filter((l) => l.msg === 'request' && (l.req as { path?: string } | undefined)?.path === '/.auth/check')
    .length;

/** The count once it reaches `least` (a log line is written just after the answer), within a second. */
async function checksAtLeast(least: number): Promise<number> {
  const deadline = Date.now() + 1000;
  while (checks() < least && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return checks();
}

/** The session cookie alone ("__Host-gatehouse=..."). */
const session = (c: Client) => `__Host-gatehouse=${c.jar.get('__Host-gatehouse')}`;

async function signUp(tag: string): Promise<{ c: Client; id: string }> {
  const c = new Client(origin, { dispatcher: cert.agent });
  const res = await c.postJson('/.auth/register', { email: uniqueEmail(tag), password: PASSWORD });
  assert.equal(res.status, 201, res.text);
  return { c, id: res.json().user.id };
}

describeOrSkip(
  'nginx caching forward-auth answers (examples/nginx-forward-auth-cached.conf)',
  { skip: nginxSkip() },
  () => {
    before(async () => {
      cert = selfSigned();
      upstream = await startUpstream();
      const https = await freePort();
      origin = `https://127.0.0.1:${https}`;
      gh = await startGatehouse(
        () => ({
          publicUrl: origin,
          trustedProxies: [NGINX_ADDR],
          forwardAuth: { cacheFor: `${CACHE_FOR}s` },
          headers: { email: true },
          accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
          routes: [
            { path: '/public/**', access: 'public' },
            { path: '/admin/**', allow: { groups: ['admins'] } },
          ],
        }),
        { upstream, logLevel: 'info' },
      );
      const conf = example('nginx-forward-auth-cached.conf', {
        https,
        http: await freePort(),
        cert: cert.cert,
        key: cert.key,
        gatehouse: gh.port,
        app: upstream.port,
        bindAddress: NGINX_ADDR,
        edit: (c) => c.replace('/run/nginx-gatehouse-auth', 'auth-cache'),
      });
      assert.match(conf, /proxy_cache_path auth-cache /);
      nginx = await startNginx(conf, [https]);
    });
    after(async () => {
      await nginx?.stop();
      await gh?.close();
      await upstream?.close();
    });

    test('repeated requests of a session are answered from the cache: Gatehouse is asked once, the app gets the identity and a valid assertion each time', async () => {
      const { c, id } = await signUp('cached');
      const before = checks();
      const seen: Record<string, string>[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await c.get(`/private/report?n=${i}`, { cookie: `theme=dark; ${session(c)}` });
        assert.equal(res.status, 200, nginx.errors());
        seen.push(res.json().headers);
      }
      const asked = (await checksAtLeast(before + 1)) - before;
      // Twenty requests within cacheFor: one question (two if the entry expired in between).
      assert.ok(asked >= 1 && asked <= 2, `Gatehouse was asked ${asked} times for 20 requests`);
      const jwks = createLocalJWKSet((await c.get('/.well-known/jwks.json')).json());
      for (const h of seen) {
        assert.equal(h['x-user-id'], id);
        assert.equal(h.cookie, 'theme=dark', "the app's cookies from the cached answer, never Gatehouse's");
        const { payload } = await jwtVerify(h['x-gatehouse-assertion']!, jwks, { issuer: origin, audience: 'app' });
        assert.equal(payload.sub, id);
      }
    });

    test('another cookie or token never gets a cached answer: other users, a forged cookie, other app cookies, other paths, WebSockets', async () => {
      const ann = await signUp('ann');
      const bob = await signUp('bob');
      const annCookie = session(ann.c);
      assert.equal((await ann.c.get('/private/x')).json().headers['x-user-id'], ann.id);
      // Bob, right after Ann's answer was cached for the same URL, is Bob.
      assert.equal((await bob.c.get('/private/x')).json().headers['x-user-id'], bob.id);
      assert.equal((await ann.c.get('/private/x')).json().headers['x-user-id'], ann.id);
      const anon = new Client(origin, { dispatcher: cert.agent });
      // A cookie one character off Ann's, and Ann's with its value cut short: asked, refused.
      const [name, value] = annCookie.split('=') as [string, string];
      const flipped = `${name}=${value.slice(0, -1)}${value.endsWith('A') ? 'B' : 'A'}`;
      for (const cookie of [flipped, `${name}=${value.slice(0, 20)}`, `${name}=`, annCookie.toUpperCase()])
        assert.equal((await anon.get('/private/x', { cookie })).status, 401, cookie);
      // Ann's session with other app cookies: Ann, with these cookies, not the cached ones.
      const other = await anon.get('/private/x', { cookie: `${annCookie}; cart=42` });
      assert.equal(other.json().headers['x-user-id'], ann.id);
      assert.equal(other.json().headers.cookie, 'cart=42');
      // An Authorization header beside Ann's cookie is another entry: Gatehouse is asked again.
      const asked = checks();
      await ann.c.get('/private/x', { authorization: 'Bearer not-a-token' });
      assert.equal(await checksAtLeast(asked + 1), asked + 1, 'asked about the token');
      // security.md #202: Ann's cached answer for /private/x does not open /admin/x (her groups) nor another method.
      assert.equal((await ann.c.get('/admin/x')).status, 403);
      assert.equal((await ann.c.get('/admin/x')).status, 403);
      // A WebSocket handshake from another origin on the cached path is asked about, and refused.
      const ws = { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };
      assert.equal((await ann.c.get('/private/x', { ...ws, origin: 'https://evil.example' })).status, 403);
      // A method override that is not a method is asked about too (Gatehouse: 400; nginx: 500).
      assert.notEqual((await ann.c.get('/private/x', { 'x-http-method-override': 'no way' })).status, 200);
      // Spoofed identity headers never survive the cached answer either.
      const spoofed = (
        await ann.c.get('/private/x', { 'x-user-id': bob.id, 'x-user-email': 'boss@example.com' })
      ).json().headers;
      assert.equal(spoofed['x-user-id'], ann.id);
      assert.equal(spoofed['x-user-email'], undefined);
    });

    test(`a change to the user reaches the app within cacheFor (${CACHE_FOR} s, +1 s), and the refreshed answer is kept again`, async () => {
      const { c: client, id } = await signUp('changed');
      const cookie = session(client);
      const email = () => client.get('/private/z', { cookie }).then((r) => r.json().headers['x-user-email']);
      assert.equal(await email(), undefined, 'not verified yet');
      await gh.gatehouse.store.users.update(id, { emailVerified: true });
      const changedAt = Date.now();
      while ((await email()) === undefined) {
        assert.ok(Date.now() - changedAt < (CACHE_FOR + 1.5) * 1000, 'the old answer outlived cacheFor');
        await new Promise((r) => setTimeout(r, 50));
      }
      // The refreshed answer (a new file in nginx's cache) is what the next requests get, from the cache.
      const before = await checksAtLeast(0);
      for (let i = 0; i < 10; i++) assert.match(String(await email()), /@/);
      const asked = (await checksAtLeast(before)) - before;
      assert.ok(asked <= 1, `Gatehouse was asked ${asked} times for 10 requests`);
    });

    test(`a revoked session stops passing within cacheFor (${CACHE_FOR} s, +1 s: nginx counts whole seconds), not at once`, async (t) => {
      const { c: client, id } = await signUp('revoked');
      const cookie = session(client);
      const c = { get: (path: string) => client.get(path, { cookie }) };
      assert.equal((await c.get('/private/y')).status, 200);
      const revokedAt = Date.now();
      assert.equal(await gh.gatehouse.store.sessions.deleteByUser(id), 1);
      let passed = 0;
      for (;;) {
        const res = await c.get('/private/y');
        if (res.status === 401) break;
        assert.equal(res.status, 200);
        passed++;
        assert.ok(
          Date.now() - revokedAt < (CACHE_FOR + 1.5) * 1000,
          `still let through after ${Date.now() - revokedAt} ms`,
        );
        await new Promise((r) => setTimeout(r, 50));
      }
      const delay = Date.now() - revokedAt;
      assert.ok(delay <= (CACHE_FOR + 1.5) * 1000, `${delay} ms`);
      assert.ok(passed > 0, 'the cached answer let it through for a while (else this test proves nothing)');
      // Once refused, never again let through.
      assert.equal((await c.get('/private/y')).status, 401);
      t.diagnostic(`revocation took effect after ${delay} ms (${passed} requests let through meanwhile)`);
    });
  },
);
