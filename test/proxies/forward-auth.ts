import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { runCli, startCli, userCode, userEnv } from '../helpers/cli.ts';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';
import type { Config } from '../../src/config/schema.ts';
import type { TestCert } from '../helpers/tls.ts';
import { decideDevice } from '../oauth/helpers.ts';

/**
 * What a forward-auth example (nginx auth_request, Caddy forward_auth) must give clients, run
 * against the real proxy by test/proxies/nginx.test.ts and caddy.test.ts: Gatehouse's
 * well-known documents (not the app's), Gatehouse's own 401 and 403 answers (JSON and
 * WWW-Authenticate, not the proxy's error page), and a `gatehouse login` that works through it.
 *
 * The Gatehouse behind the proxy has the default rule (authenticated) and
 * `routes: [/public/** public, /admin/** allow groups [admins], /blocked/** deny]`.
 */
export interface Behind {
  /** The proxy's https origin, publicUrl. */
  origin: string;
  cert: TestCert;
  gh: TestGatehouse;
}

export function forwardAuthContract(get: () => Behind): void {
  test("Gatehouse's well-known documents, never the app's: protected-resource metadata, authorization server metadata, the JWKS that verifies the app's assertion", async () => {
    const { origin, cert, gh } = get();
    const c = new Client(origin, { dispatcher: cert.agent });
    const resource = await c.get('/.well-known/oauth-protected-resource');
    assert.equal(resource.status, 200, resource.text);
    assert.deepEqual(
      [resource.json().resource, resource.json().authorization_servers],
      [origin, [origin]],
      resource.text,
    );
    const below = await c.get('/.well-known/oauth-protected-resource/api/items');
    assert.equal(below.json().resource, `${origin}/api/items`, below.text);
    const server = await c.get('/.well-known/oauth-authorization-server');
    assert.equal(server.json().issuer, origin, server.text);
    assert.equal(server.json().device_authorization_endpoint, `${origin}/.auth/oauth/device_authorization`);
    const jwks = await c.get('/.well-known/jwks.json');
    assert.equal(jwks.status, 200, jwks.text);
    assert.equal(jwks.headers['content-type'], 'application/jwk-set+json');
    assert.deepEqual(
      gh.upstream.requests.filter((r) => r.url.startsWith('/.well-known/')).map((r) => r.url),
      [],
      'the app was never asked',
    );

    // An app behind the proxy fetches the keys there and verifies who the user is.
    const user = new Client(origin, { dispatcher: cert.agent });
    const { id } = await registerJson(user, uniqueEmail('keys'));
    const seen = (await user.get('/private/x')).json().headers;
    const { payload } = await jwtVerify(seen['x-gatehouse-assertion'], createLocalJWKSet(jwks.json()), {
      issuer: origin,
      audience: 'app',
    });
    assert.equal(payload.sub, id);
  });

  test("an API client gets Gatehouse's own answers: 401 JSON with WWW-Authenticate, 403 JSON or page; the app's own 401 and 403 pass unchanged", async () => {
    const { origin, cert } = get();
    const anon = new Client(origin, { dispatcher: cert.agent });
    const api = await anon.get('/api/items');
    assert.equal(api.status, 401);
    assert.match(String(api.headers['content-type']), /^application\/json/, api.text);
    assert.equal(api.json().error, 'unauthenticated');
    assert.equal(api.json().login, `${origin}/.auth/login?rd=%2Fapi%2Fitems`);
    assert.equal(
      api.headers['www-authenticate'],
      `Bearer realm="${origin}", resource_metadata="${origin}/.well-known/oauth-protected-resource"`,
    );
    const post = await anon.postJson('/api/items', { a: 1 });
    assert.equal(post.status, 401);
    assert.equal(post.json().error, 'unauthenticated', 'a POST with a body gets the same answer');

    const denied = await anon.get('/blocked/x');
    assert.equal(denied.status, 403);
    assert.deepEqual(denied.json(), { error: 'forbidden', message: 'Access to this page is not allowed.' });
    const page = await anon.html('/blocked/x');
    assert.equal(page.status, 403);
    assert.match(page.text, /<h1>Forbidden<\/h1>[\s\S]*Access to this page is not allowed\./, "Gatehouse's page");

    const user = new Client(origin, { dispatcher: cert.agent });
    await registerJson(user, uniqueEmail('answers'));
    const admin = await user.get('/admin/x');
    assert.equal(admin.status, 403);
    assert.equal(admin.json().message, 'Your account does not have access to this page.');
    for (const status of [401, 403]) {
      const own = await user.get(`/status/${status}`);
      assert.deepEqual([own.status, own.text], [status, 'status'], "the app's answer, as the app sent it");
    }
  });

  test('an app closed for maintenance: the client gets Gatehouse’s 503 page or JSON with Retry-After, the app nothing; reopened by a reload', async () => {
    const { origin, cert, gh } = get();
    const closed: Config = { ...gh.config, maintenance: { message: 'Back at 14:00 UTC.', retryAfter: 120_000 } };
    assert.equal((await gh.gatehouse.reload(closed)).outcome, 'ok');
    try {
      const before = gh.upstream.requests.length;
      const anon = new Client(origin, { dispatcher: cert.agent });
      const page = await anon.html('/reports');
      assert.equal(page.status, 503, page.text);
      assert.equal(page.headers['retry-after'], '120');
      assert.match(page.text, /down for maintenance/);
      assert.match(page.text, /Back at 14:00 UTC\./);
      const api = await anon.get('/public/x');
      assert.equal(api.status, 503, 'public routes too');
      assert.equal(api.json().error, 'maintenance');
      const user = new Client(origin, { dispatcher: cert.agent });
      await registerJson(user, uniqueEmail('maintenance'));
      assert.equal((await user.get('/api/items')).status, 503, 'signed in, not on the allow-list');
      assert.equal(gh.upstream.requests.length, before, 'nothing reached the app');
    } finally {
      assert.equal((await gh.gatehouse.reload(gh.config)).outcome, 'ok');
    }
    const anon = new Client(origin, { dispatcher: cert.agent });
    assert.equal((await anon.get('/public/x')).status, 200, 'open again');
  });

  test("gatehouse login <url> through the proxy: discovery on the app's origin, the device flow, then the API with the token", async () => {
    const { origin, cert } = get();
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-cli-home-'));
    try {
      const env = userEnv(home, { NODE_EXTRA_CA_CERTS: cert.cert });
      const browser = new Client(origin, { dispatcher: cert.agent });
      const user = await registerJson(browser, uniqueEmail('cli'));
      const login = startCli(['login', `${origin}/api/items`, '--no-browser'], env);
      await decideDevice({ url: origin }, browser, await userCode(login), 'approve');
      const done = await login.done;
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stderr, new RegExp(`Signed in to ${origin.replace(/[.:/]/g, '\\$&')}\\.`));

      const t = await runCli(['token', `${origin}/api/items`], undefined, env);
      assert.equal(t.code, 0, t.stderr);
      const token = t.stdout.trim();
      const client = new Client(origin, { dispatcher: cert.agent });
      const api = await client.get('/api/items', { authorization: `Bearer ${token}` });
      assert.equal(api.status, 200, api.text);
      assert.equal(api.json().url, '/api/items', 'the proxy sent it to the app');
      assert.equal(api.json().headers['x-user-id'], user.id);

      // tokens.bearerHeader (where the Gatehouse behind the proxy sets it): the token in its
      // header passes the check, the app gets its own Authorization and never the token.
      const { gh } = get();
      if (gh.config.tokens.bearerHeader) {
        const line = await runCli(['token', `${origin}/api/items`, '--header'], undefined, env);
        assert.equal(line.stdout, `${gh.config.tokens.bearerHeader}: ${token}\n`, line.stderr);
        const both = await client.get('/api/items', {
          [gh.config.tokens.bearerHeader]: token,
          authorization: 'Bearer the-apps-own',
        });
        assert.equal(both.status, 200, both.text);
        assert.equal(both.json().headers['x-user-id'], user.id);
        assert.equal(both.json().headers.authorization, 'Bearer the-apps-own');
        assert.equal(
          both.json().headers[gh.config.tokens.bearerHeader.toLowerCase()],
          undefined,
          'the proxy removed it',
        );
      }

      const forged = await client.get('/api/items', { authorization: `Bearer ${token.slice(0, -6)}AAAAAA` });
      assert.equal(forged.status, 401);
      assert.equal(forged.json().error, 'invalid_token');
      assert.match(String(forged.headers['www-authenticate']), /^Bearer realm=.*, error="invalid_token"/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
}
