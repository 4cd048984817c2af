import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * /.auth/check asked the way nginx auth_request, Traefik ForwardAuth and Caddy forward_auth
 * ask it (the real proxies run in test/proxies/). The app behind the proxy is never reached
 * through Gatehouse here: the test's upstream must see nothing.
 */

const HOST = 'app.example.test';
let gh: TestGatehouse;
let cookie: string;
let userId: string;
let email: string;

before(async () => {
  gh = await startGatehouse(() => ({
    publicUrl: `https://${HOST}`,
    trustedProxies: ['loopback'],
    headers: { email: true, groups: true },
    routes: [
      { path: '/public/**', access: 'public' },
      { path: '/api/**', unauthenticated: '401' },
      { path: '/admin/**', allow: { groups: ['admins'] } },
      { path: '/blocked/**', access: 'deny' },
      { path: '/docs/**', methods: ['GET'], access: 'public' },
    ],
    accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
  }));
  const c = new Client(gh.url);
  email = uniqueEmail('fa');
  const res = await c.postJson(
    '/.auth/register',
    { email, password: PASSWORD },
    { host: HOST, 'x-forwarded-proto': 'https' },
  );
  assert.equal(res.status, 201, res.text);
  userId = res.json().user.id;
  cookie = c.cookieHeader()!;
});
after(() => gh.close());

const nginx = (uri: string, method = 'GET', extra: Record<string, string> = {}) => ({
  host: HOST,
  'x-original-uri': uri,
  'x-original-method': method,
  'x-forwarded-proto': 'https',
  ...extra,
});
const traefik = (uri: string, method = 'GET', extra: Record<string, string> = {}) => ({
  host: '127.0.0.1:9000',
  'x-forwarded-host': HOST,
  'x-forwarded-uri': uri,
  'x-forwarded-method': method,
  'x-forwarded-proto': 'https',
  ...extra,
});

async function check(headers: Record<string, string>, method = 'GET') {
  return new Client(gh.url).fetch('/.auth/check', { method, headers });
}

describe('forward-auth decisions', () => {
  test('signed in: 200 with X-User-Id and the opted-in X-User-*; nothing reaches the upstream', async () => {
    const before = gh.upstream.requests.length;
    const res = await check(nginx('/reports/q3?x=1', 'GET', { cookie }));
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-user-id'], userId);
    assert.equal(res.headers['x-user-email'], undefined, 'an unverified address is not presented (issue 10.14)');
    assert.equal(res.headers['x-user-groups'], '');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(res.text, '');
    assert.equal(gh.upstream.requests.length, before);
    // The signed assertion, the same one a proxied request carries, verifiable with the JWKS.
    const jwks = createLocalJWKSet((await new Client(gh.url).get('/.well-known/jwks.json', { host: HOST })).json());
    const { payload } = await jwtVerify(String(res.headers['x-gatehouse-assertion']), jwks, {
      issuer: `https://${HOST}`,
      audience: 'app',
    });
    assert.equal(payload.sub, userId);
    assert.equal(payload.email, undefined);
    assert.equal(payload.email_verified, false);
    // Verified (by the mailed link, a provider or an operator): the next answer carries it.
    await gh.gatehouse.store.users.update(userId, { emailVerified: true });
    const verified = await check(nginx('/reports/q3', 'GET', { cookie }));
    assert.equal(verified.headers['x-user-email'], email);
    const claims = await jwtVerify(String(verified.headers['x-gatehouse-assertion']), jwks, {
      issuer: `https://${HOST}`,
      audience: 'app',
    });
    assert.equal(claims.payload.email, email);
    assert.equal(claims.payload.email_verified, true);
  });

  test('anonymous, nginx style: always 401; the login URL rides in X-Gatehouse-Login for browsers only', async () => {
    const browser = await check(nginx('/reports/q3?x=1', 'GET', { accept: 'text/html' }));
    assert.equal(browser.status, 401);
    assert.equal(
      browser.headers['x-gatehouse-login'],
      `https://${HOST}/.auth/login?rd=${encodeURIComponent('/reports/q3?x=1')}`,
    );
    const api = await check(nginx('/reports/q3'));
    assert.equal(api.status, 401);
    assert.equal(api.headers['x-gatehouse-login'], undefined);
    assert.match(String(api.headers['www-authenticate']), /^Bearer realm="https:\/\/app\.example\.test"/);
  });

  test('anonymous, Traefik/Caddy style: a browser gets the 302 to login, an API 401', async () => {
    const browser = await check(traefik('/reports/q3', 'GET', { accept: 'text/html' }));
    assert.equal(browser.status, 302);
    assert.equal(browser.location, `https://${HOST}/.auth/login?rd=%2Freports%2Fq3`);
    assert.equal((await check(traefik('/reports/q3'))).status, 401);
    assert.equal(
      (await check(traefik('/api/x', 'GET', { accept: 'text/html' }))).status,
      401,
      'rules with unauthenticated: 401 never redirect',
    );
  });

  test('the same rules as proxied requests: public, deny, groups, methods (security.md #19)', async () => {
    assert.equal((await check(nginx('/public/x'))).status, 200);
    assert.equal(
      (await check(nginx('/public/x', 'GET', { cookie }))).headers['x-user-id'],
      userId,
      'public routes still say who is signed in',
    );
    assert.equal((await check(nginx('/blocked/x', 'GET', { cookie }))).status, 403);
    assert.equal((await check(nginx('/admin/x', 'GET', { cookie }))).status, 403);
    assert.equal((await check(nginx('/docs/a', 'GET'))).status, 200);
    assert.equal((await check(nginx('/docs/a', 'POST'))).status, 401);
    assert.equal((await check(traefik('/docs/a', 'DELETE'))).status, 401);
    // nginx's subrequest keeps the original method even without X-Original-Method.
    assert.equal(
      (await check({ host: HOST, 'x-original-uri': '/docs/a', 'x-forwarded-proto': 'https' }, 'POST')).status,
      401,
    );
  });

  test('a method-override header reaches the app past the proxy, so the rules must admit its method too (security.md #69)', async () => {
    // The proxy sends the request to the app as it came: an app that honours the header acts on
    // that method, one that does not on the original; a rule for one of them is not enough.
    for (const [name, value] of [
      ['x-http-method-override', 'DELETE'],
      ['x-http-method', 'POST'],
      ['x-method-override', 'put'],
      ['x_http_method_override', 'DELETE'],
    ] as const) {
      assert.equal((await check(nginx('/docs/a', 'GET', { [name]: value }))).status, 401, `${name}: ${value}`);
      assert.equal((await check(traefik('/docs/a', 'GET', { [name]: value }))).status, 401, `${name} (Traefik)`);
    }
    const both = await check(nginx('/docs/a', 'GET', { 'x-http-method-override': 'GET' }));
    assert.equal(both.status, 200, 'the same method: nothing else to decide');
    const signedIn = await check(nginx('/docs/a', 'GET', { cookie, 'x-http-method-override': 'DELETE' }));
    assert.equal(signedIn.status, 200, 'a signed-in user may DELETE there (default: authenticated)');
    assert.equal(signedIn.headers['x-user-id'], userId);
    assert.equal(
      (await check(nginx('/blocked/x', 'GET', { cookie, 'x-http-method-override': 'GET' }))).status,
      403,
      'an override never makes more pass than the original method',
    );
    assert.equal(
      (await check(nginx('/docs/a', 'GET', { 'x-http-method-override': 'DEL ETE' }))).status,
      400,
      'a value that is not a method is refused, not guessed',
    );
  });

  test('the original URL is normalized like any request: path tricks decide as the app would see them (security.md #14-16)', async () => {
    assert.equal((await check(nginx('/public/../admin/x', 'GET', { cookie }))).status, 403);
    assert.equal((await check(nginx('/public/%2e%2e/blocked/x'))).status, 403);
    assert.equal((await check(nginx('//blocked/x'))).status, 403);
    assert.equal((await check(nginx('/public/..%2fadmin'))).status, 400);
    assert.equal((await check(nginx('/public/..;/admin'))).status, 400);
    assert.equal((await check(nginx('/admin?x=/public/', 'GET', { cookie }))).status, 403);
    assert.equal((await check(nginx('/PUBLIC/x'))).status, 200);
    assert.equal(
      (await check(nginx('/.auth/login'))).status,
      200,
      "Gatehouse's own pages are never locked behind itself",
    );
    assert.equal((await check(nginx('/x', 'G E T'))).status, 400);
  });

  test("Gatehouse's well-known documents pass like its own pages, for a proxy that asks about those too; any other /.well-known/ path is the app's", async () => {
    for (const path of [
      '/.well-known/jwks.json',
      '/.well-known/oauth-authorization-server',
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/api/x',
    ]) {
      // Signed in: still no identity on this answer, which lets a request to Gatehouse through.
      const res = await check(traefik(path, 'GET', { cookie }));
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['x-user-id'], undefined, path);
      assert.equal(res.headers['x-gatehouse-assertion'], undefined, path);
    }
    assert.equal((await check(traefik('/.well-known/security.txt'))).status, 401, "the app's rules decide");
  });

  test("its own prefix passes in its exact case only: the proxy sends /.AUTH/x to the app, so the app's rules decide it", async () => {
    assert.equal((await check(traefik('/.auth/login'))).status, 200);
    for (const path of ['/.AUTH/login', '/.Auth/x', '/.WELL-KNOWN/jwks.json']) {
      const res = await check(traefik(path));
      assert.equal(res.status, 401, path);
      assert.equal(res.headers['x-user-id'], undefined, path);
    }
  });

  test('the original URL gets the strictness of any request: malformed UTF-8 in it is refused', async () => {
    for (const uri of ['/public/%C0%AE%C0%AE/admin', '/public/%ED%A0%80', '/public/%C3'])
      assert.equal((await check(nginx(uri))).status, 400, uri);
    assert.equal((await check(traefik('/public/%C0%AE'))).status, 400);
    assert.equal((await check(nginx('/public/caf%C3%A9'))).status, 200);
  });

  test('a WebSocket handshake (the proxy passes Sec-WebSocket-Key and Origin on) gets the Origin checks of own upgrades (security.md #57)', async () => {
    const ws = { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };
    const own = `https://${HOST}`;
    const ok = await check(nginx('/live', 'GET', { cookie, origin: own, ...ws }));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-user-id'], userId);
    for (const [what, headers] of [
      ['signed in by cookie, no Origin', nginx('/live', 'GET', { cookie, ...ws })],
      ['signed in by cookie, no Origin (Traefik/Caddy)', traefik('/live', 'GET', { cookie, ...ws })],
      ['signed in by cookie, on a public path', nginx('/public/live', 'GET', { cookie, ...ws })],
      ['another origin', nginx('/live', 'GET', { cookie, origin: 'https://evil.example', ...ws })],
      [
        'another origin, anonymous, public path',
        nginx('/public/live', 'GET', { origin: 'https://evil.example', ...ws }),
      ],
    ] as const) {
      const res = await check(headers);
      assert.equal(res.status, 403, what);
      assert.equal(res.headers['x-user-id'], undefined, what);
    }
    assert.equal(
      (await check(nginx('/public/live', 'GET', ws))).status,
      200,
      'anonymous without Origin: nothing to hijack',
    );
    assert.equal((await check(nginx('/live', 'GET', { cookie }))).status, 200, 'not a handshake: no Origin needed');
  });

  test('the host decides the site; an unknown one is refused (security.md #7)', async () => {
    assert.equal((await check(traefik('/x', 'GET', { cookie, 'x-forwarded-host': 'evil.example' }))).status, 421);
    assert.equal((await check(nginx('/x', 'GET', { cookie, host: 'evil.example' }))).status, 421);
  });

  test('only a trusted proxy is asked about: spoofed originals from anyone else are not believed (security.md #5)', async () => {
    const gh2 = await startGatehouse(() => ({ publicUrl: `https://${HOST}`, trustedProxies: ['10.0.0.0/8'] }));
    try {
      const res = await new Client(gh2.url).fetch('/.auth/check', {
        headers: { ...nginx('/public/x'), accept: 'text/html' },
      });
      assert.equal(res.status, 400);
      assert.match(res.text, /cause <code>forward_auth_untrusted<\/code>/);
      assert.match(res.text, /trustedProxies: \[127\.0\.0\.1\]/);
    } finally {
      await gh2.close();
    }
    const none = await check({ host: HOST, 'x-forwarded-proto': 'https' });
    assert.equal(none.status, 400);
    assert.equal(none.json().cause, 'forward_auth_no_uri');
  });

  test('spoofed identity headers on the asking request change nothing', async () => {
    const res = await check(nginx('/reports', 'GET', { 'x-user-id': 'admin', 'x-user-email': 'boss@example.com' }));
    assert.equal(res.status, 401);
    assert.equal(res.headers['x-user-id'], undefined);
  });
});
