import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Client, decodeEntities, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * An app under a path prefix: publicUrl http(s)://host/app/. Gatehouse is mounted below it:
 * its own routes at /app/.auth, every redirect and return target inside /app, cookies with
 * Path=/app. The front proxy forwards the prefix unchanged, and the app receives it.
 */

let gh: TestGatehouse;
let base: string;

before(async () => {
  gh = await startGatehouse(({ port }) => ({
    publicUrl: `http://127.0.0.1:${port}/app/`,
    routes: [{ path: '/app/public/**', access: 'public' }],
    accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
  }));
  base = `${gh.url}/app`;
});
after(() => gh.close());

describe('an app under /app/', () => {
  test('protected page → login under the prefix → register → back, with cookies scoped to /app', async () => {
    const c = new Client(gh.url);
    const first = await c.html('/app/reports?y=1');
    assert.equal(first.status, 302);
    assert.equal(first.location, `${base}/.auth/login?rd=${encodeURIComponent('/app/reports?y=1')}`);
    const login = await c.html(first.location!.slice(gh.url.length));
    assert.equal(login.status, 200);
    assert.match(login.text, /<form method="post" action="\/app\/\.auth\/login"/);
    const register = decodeEntities(/href="([^"]*register[^"]*)"/.exec(login.text)![1]!);
    assert.equal(register, '/app/.auth/register?rd=%2Fapp%2Freports%3Fy%3D1');
    const done = await c.submitForm(register, { email: uniqueEmail('prefix'), password: PASSWORD });
    assert.equal(done.status, 303);
    assert.equal(done.location, `${base}/reports?y=1`);
    for (const cookie of [...login.cookies, ...done.cookies]) assert.match(cookie, /; Path=\/app(;|$)/, cookie);
    const page = await c.get('/app/reports?y=1');
    assert.equal(page.status, 200);
    assert.equal(gh.upstream.last().url, '/app/reports?y=1', 'the app receives the prefix');
    assert.match(page.json().headers['x-user-id'], /^[0-9a-f-]{36}$/);
    assert.equal((await c.get('/app/.auth/me')).status, 200);

    const out = await c.submitForm('/app/.auth/logout', {});
    assert.equal(out.status, 303);
    assert.equal(out.location, `${base}/.auth/login?signed_out=1`);
    assert.ok(
      out.cookies.some((s) => s.startsWith('gatehouse=;') && s.includes('Path=/app')),
      out.cookies.join(' | '),
    );
  });

  test('return targets stay inside the prefix (security.md #8-12)', async () => {
    for (const rd of ['/other', '/app/../other', '/apple', '//evil.example/app/', 'http://evil.example/app/']) {
      const c = new Client(gh.url);
      const res = await c.postJson('/app/.auth/register', { email: uniqueEmail('rd'), password: PASSWORD, rd });
      assert.equal(res.json().redirect, '/app/', rd);
    }
    const c = new Client(gh.url);
    assert.equal(
      (
        await c.postJson('/app/.auth/register', { email: uniqueEmail('rd'), password: PASSWORD, rd: '/app/x?y=1' })
      ).json().redirect,
      '/app/x?y=1',
    );
  });

  test('nothing outside the prefix is served; a proxy that strips the prefix is named', async () => {
    const c = new Client(gh.url);
    const before = gh.upstream.requests.length;
    assert.equal((await c.html('/')).status, 404);
    assert.equal((await c.get('/apple/x')).status, 404);
    const stripped = await c.html('/.auth/login');
    assert.equal(stripped.status, 404);
    assert.match(stripped.text, /cause <code>prefix_stripped<\/code>/);
    assert.match(stripped.text, /proxy_pass http:\/\/gatehouse;/);
    assert.equal(gh.upstream.requests.length, before);
    assert.equal((await c.get('/app/public/x')).status, 200);
    assert.equal((await c.get('/app')).status, 401, '/app itself is inside');
  });

  test('over https (behind a trusted proxy): __Secure- cookies, since __Host- requires Path=/', async () => {
    const gh2 = await startGatehouse(() => ({
      publicUrl: 'https://app.example.test/app/',
      trustedProxies: ['loopback'],
    }));
    try {
      const c = new Client(gh2.url);
      c.defaultHeaders = { host: 'app.example.test', 'x-forwarded-proto': 'https' };
      const res = await c.postJson('/app/.auth/register', { email: uniqueEmail('sec'), password: PASSWORD });
      assert.equal(res.status, 201);
      const session = res.cookies.find((s) => s.startsWith('__Secure-gatehouse='));
      assert.match(session!, /; Path=\/app; .*HttpOnly; Secure; SameSite=Lax/);
      assert.ok(!res.cookies.some((s) => s.startsWith('__Host-')));
      assert.equal((await c.get('/app/x')).status, 200);
      const check = await c.fetch('/app/.auth/check', {
        headers: { 'x-original-uri': '/app/x', cookie: c.cookieHeader()! },
      });
      assert.equal(check.status, 200);
      assert.equal((await c.fetch('/app/.auth/check', { headers: { 'x-original-uri': '/elsewhere' } })).status, 404);
      // The JWKS lives below the base path too: gatehouse/verify looks for it at the issuer
      // (publicUrl) + /.well-known/jwks.json.
      const jwks = await c.get('/app/.well-known/jwks.json');
      assert.equal(jwks.status, 200);
      assert.ok(jwks.json().keys.length >= 1);
      assert.equal((await c.get('/.well-known/jwks.json')).status, 404);
      const { payload } = await jwtVerify(
        String(check.headers['x-gatehouse-assertion']),
        createLocalJWKSet(jwks.json()),
        { issuer: 'https://app.example.test/app', audience: 'app' },
      );
      assert.equal(payload.sub, res.json().user.id);
    } finally {
      await gh2.close();
    }
  });
});
