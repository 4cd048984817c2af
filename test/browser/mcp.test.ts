import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import * as oauth from 'openid-client';
import type { Browser } from 'playwright-core';
import { PASSWORD, registerJson, uniqueEmail, Client } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { withBearer } from '../oauth/helpers.ts';
import { browserSkip, launchBrowser } from './chromium.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * An MCP client's path to an MCP server behind Gatehouse (the MCP authorization spec): a
 * 401 names the protected-resource metadata (RFC 9728), that names the authorization
 * server (RFC 8414), the client registers itself (RFC 7591), and runs the authorization
 * code flow with PKCE and a resource indicator (RFC 8707) through Gatehouse's login and
 * consent pages in real Chromium, to its loopback redirect URI; then refresh. The client
 * side is openid-client.
 */

let gh: TestGatehouse;
let browser: Browser;
/** The MCP client's loopback redirect listener (RFC 8252 §7.3). */
let callback: http.Server;
let callbackUrl: string;
const arrived: string[] = [];

describeOrSkip('MCP client with dynamic registration, in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    gh = await startGatehouse(() => ({ title: 'Acme MCP', routes: [{ path: '/mcp', unauthenticated: '401' }] }));
    callback = http.createServer((req, res) => {
      arrived.push(req.url!);
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>Signed in</title><p>You can close this window.</p>');
    });
    await new Promise<void>((resolve) => callback.listen(0, '127.0.0.1', resolve));
    callbackUrl = `http://127.0.0.1:${(callback.address() as AddressInfo).port}/callback`;
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    callback?.closeAllConnections();
    await new Promise((resolve) => callback?.close(resolve));
  });

  test('401 → metadata → registration → login and consent in Chromium → code + PKCE + resource → tokens → the MCP server sees the user; refresh rotates; a reused code revokes', async () => {
    const email = uniqueEmail('mcp');
    await registerJson(new Client(gh.url), email);

    // 1. The MCP server's 401 says where its metadata is (RFC 9728 §5.1).
    const first = await fetch(`${gh.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{"jsonrpc":"2.0","id":1,"method":"initialize"}',
    });
    assert.equal(first.status, 401);
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(first.headers.get('www-authenticate') ?? '')?.[1];
    assert.equal(metadataUrl, `${gh.url}/.well-known/oauth-protected-resource`);
    const prm = (await (await fetch(metadataUrl!)).json()) as {
      resource: string;
      authorization_servers: string[];
      scopes_supported: string[];
    };
    assert.equal(prm.resource, gh.url);
    assert.deepEqual(prm.authorization_servers, [gh.url]);
    assert.ok(prm.scopes_supported.includes('offline_access'));

    // 2. RFC 8414 discovery and RFC 7591 registration, by openid-client.
    const registered = await oauth.dynamicClientRegistration(
      new URL(prm.authorization_servers[0]!),
      {
        redirect_uris: [callbackUrl],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        client_name: 'Claude-ish <MCP> client',
      },
      oauth.None(),
      { algorithm: 'oauth2', execute: [oauth.allowInsecureRequests] },
    );
    const meta = registered.serverMetadata();
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.ok(meta.scopes_supported?.includes('offline_access'));
    assert.equal(meta.authorization_response_iss_parameter_supported, true);
    const clientId = registered.clientMetadata().client_id;
    assert.match(clientId, /^dcr_/);

    // 3. The authorization request, with PKCE (S256) and the resource.
    const verifier = oauth.randomPKCECodeVerifier();
    const state = oauth.randomState();
    const authorize = oauth.buildAuthorizationUrl(registered, {
      redirect_uri: callbackUrl,
      scope: 'offline_access',
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      resource: prm.resource,
    });

    // 4. In Chromium: Gatehouse's login, then its consent page, then back to the client.
    const allowed = [gh.url, new URL(callbackUrl).origin];
    const context = await browser.newContext();
    const foreign: string[] = [];
    await context.route('**/*', (route) =>
      allowed.some((o) => route.request().url().startsWith(`${o}/`))
        ? route.continue()
        : (foreign.push(route.request().url()), route.abort()),
    );
    const page = await context.newPage();
    try {
      await page.goto(authorize.href);
      assert.match(page.url(), /\/\.auth\/login\?rd=%2F\.auth%2Foauth%2Fauthorize%3F/);
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL((u) => u.pathname === '/.auth/oauth/authorize');
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Allow access?');
      const text = await page.locator('main').innerText();
      assert.match(text, /Claude-ish <MCP> client/, 'the name, as text (no markup from a self-registered client)');
      assert.match(text, /unverified: this name is the client's own claim/);
      assert.match(text, new RegExp(`Returns you to\\s+${new URL(callbackUrl).origin.replace(/[.:/]/g, '\\$&')}`));
      assert.match(text, /App\s+Acme MCP/);
      assert.match(text, /Stay signed in/);
      assert.match(text, new RegExp(email.replace(/[.+]/g, '\\$&')));
      const redirected = page.waitForURL((u) => u.href.startsWith(callbackUrl));
      await page.getByRole('button', { name: 'Allow' }).click();
      await redirected;
    } finally {
      await context.close();
    }
    assert.deepEqual(foreign, [], 'no third-party requests');
    // Only the redirect counts: Chromium may also ask the callback's origin for /favicon.ico.
    const back = new URL(arrived.filter((u) => u.startsWith('/callback?')).at(-1)!, callbackUrl);
    assert.equal(back.searchParams.get('state'), state);
    assert.equal(back.searchParams.get('iss'), gh.url, 'RFC 9207');

    // 5. The code for tokens (openid-client checks state, iss and PKCE).
    const tokens = await oauth.authorizationCodeGrant(
      registered,
      back,
      { pkceCodeVerifier: verifier, expectedState: state },
      { resource: prm.resource },
    );
    assert.ok(tokens.refresh_token, 'offline_access: a rotating refresh token');
    assert.equal(tokens.scope, 'offline_access');
    const call = await withBearer(gh, '/mcp', tokens.access_token);
    assert.equal(call.status, 200);
    assert.match(call.seen!['x-user-id']!, /^[0-9a-f-]{36}$/);
    assert.equal(call.seen!.authorization, undefined);

    const refreshed = await oauth.refreshTokenGrant(registered, tokens.refresh_token!);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    assert.equal((await withBearer(gh, '/mcp', refreshed.access_token)).status, 200);

    // 6. The same code again (a stolen or replayed one): refused, and what it issued is revoked.
    await assert.rejects(
      oauth.authorizationCodeGrant(registered, back, { pkceCodeVerifier: verifier, expectedState: state }),
      (e: unknown) => e instanceof oauth.ResponseBodyError && e.error === 'invalid_grant',
    );
    assert.equal((await withBearer(gh, '/mcp', refreshed.access_token)).status, 401);
    assert.ok(gh.logs.some((l) => l.event === 'oauth_code_reuse'));
  });
});
