import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import { Client } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { forms, postForm, registerClient, signedInBrowser, withBearer } from './helpers.ts';

/**
 * The authorization code grant and the metadata around it, over HTTP (the Chromium run is
 * test/browser/mcp.test.ts): request validation (what is shown, what goes back to the
 * client), consent, the token exchange's checks, client ID metadata documents, dynamic
 * registration rules, a confidential configured client, the RFC 8414 / RFC 9728 documents.
 */

let gh: TestGatehouse;
let docs: http.Server;
let docsOrigin: string;
const documents = new Map<string, { status?: number; type?: string; body: string }>();
/** How often each document path was fetched. */
const fetched = new Map<string, number>();
const SECRET = 'a-confidential-client-secret-of-40-chars!';

before(async () => {
  docs = http.createServer((req, res) => {
    fetched.set(req.url!, (fetched.get(req.url!) ?? 0) + 1);
    const doc = documents.get(req.url!);
    res.writeHead(doc?.status ?? (doc ? 200 : 404), { 'content-type': doc?.type ?? 'application/json' });
    res.end(doc?.body ?? '{}');
  });
  await new Promise<void>((resolve) => docs.listen(0, '127.0.0.1', resolve));
  docsOrigin = `http://127.0.0.1:${(docs.address() as AddressInfo).port}`;
  gh = await startGatehouse(({ upstream }) => ({
    apps: [
      { name: 'mcp', title: 'Acme MCP', pathPrefix: '/mcp', upstream },
      { name: 'web', upstream },
    ],
    tokens: {
      scopes: ['tools'],
      clients: [{ id: 'backend', name: 'Acme Backend', redirectUris: ['https://backend.example/cb'], secret: SECRET }],
      rateLimits: { registerPerIp: 1000, registerFailuresPerIp: 1000 },
      privateUseSchemes: ['cursor'],
    },
  }));
});
after(async () => {
  await gh.close();
  docs.closeAllConnections();
  await new Promise((resolve) => docs.close(resolve));
});

const REDIRECT = 'http://127.0.0.1:9/callback';

const register = (metadata: Record<string, unknown> = {}) => registerClient(gh, metadata);

function authorizeUrl(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.append(k, v);
  return `/.auth/oauth/authorize?${q}`;
}

async function pkce() {
  const verifier = oauth.randomPKCECodeVerifier();
  return { verifier, challenge: await oauth.calculatePKCECodeChallenge(verifier) };
}

/** The consent page for a request, and its Allow/Deny forms, as the signed-in browser gets them. */
async function consent(browser: Client, params: Record<string, string | undefined>) {
  const page = await browser.html(authorizeUrl(params));
  return {
    page,
    allow: forms(page.text).find((f) => f.fields.decision === 'approve'),
    deny: forms(page.text).find((f) => f.fields.decision === 'deny'),
  };
}

const publicClient = (id: string) =>
  new oauth.Configuration(gh.gatehouse.oauth.serverMetadata() as oauth.ServerMetadata, id, undefined, oauth.None());

describe('authorization code flow', { concurrency: true }, () => {
  test('metadata: RFC 8414 at the issuer, RFC 9728 per app (and path-suffixed), CORS, and a 401 that points there', async () => {
    const as = (await (await fetch(`${gh.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(as.issuer, gh.url);
    assert.equal(as.token_endpoint, `${gh.url}/.auth/oauth/token`);
    assert.equal(as.registration_endpoint, `${gh.url}/.auth/oauth/register`);
    assert.deepEqual(as.grant_types_supported, [
      'authorization_code',
      'refresh_token',
      'urn:ietf:params:oauth:grant-type:device_code',
    ]);
    assert.deepEqual(as.scopes_supported, ['offline_access', 'tools']);
    assert.equal(as.client_id_metadata_document_supported, true);
    assert.equal(as.jwks_uri, `${gh.url}/.well-known/jwks.json`);

    const unauth = await fetch(`${gh.url}/mcp/tools`, { headers: { accept: 'application/json' } });
    assert.equal(unauth.status, 401);
    assert.equal(
      unauth.headers.get('www-authenticate'),
      `Bearer realm="${gh.url}", resource_metadata="${gh.url}/.well-known/oauth-protected-resource/mcp"`,
    );
    const prm = await fetch(`${gh.url}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(prm.headers.get('access-control-allow-origin'), '*');
    assert.deepEqual(await prm.json(), {
      resource: `${gh.url}/mcp`,
      authorization_servers: [gh.url],
      scopes_supported: ['offline_access', 'tools'],
      bearer_methods_supported: ['header'],
      resource_name: 'Acme MCP',
    });
    assert.equal(
      ((await (await fetch(`${gh.url}/.well-known/oauth-protected-resource`)).json()) as { resource: string }).resource,
      gh.url,
      'the root app',
    );
    assert.equal(
      ((await (await fetch(`${gh.url}/.well-known/oauth-protected-resource/mcp/v1`)).json()) as { resource: string })
        .resource,
      `${gh.url}/mcp/v1`,
      'a path the app serves: the identifier it was asked for (RFC 9728 §3.3)',
    );
    assert.equal((await fetch(`${gh.url}/.well-known/oauth-protected-resource/.auth`)).status, 404);
    const pre = await fetch(`${gh.url}/.well-known/oauth-authorization-server`, {
      method: 'OPTIONS',
      headers: { origin: 'https://inspector.example', 'access-control-request-method': 'GET' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.equal((await fetch(`${gh.url}/.auth/oauth/token`, { method: 'OPTIONS' })).status, 204);
    const before = gh.upstream.requests.length;
    await fetch(`${gh.url}/.well-known/oauth-protected-resource/x`);
    assert.equal(gh.upstream.requests.length, before, 'never forwarded to the app');
  });

  test('dynamic registration: public and confidential clients; bad redirect URIs and metadata are refused', async () => {
    const pub = await register();
    assert.equal(pub.status, 201);
    assert.match(String(pub.json.client_id), /^dcr_[A-Za-z0-9_-]{22}$/);
    assert.equal(pub.json.client_secret, undefined);
    assert.equal(pub.json.token_endpoint_auth_method, 'none');
    const conf = await register({ token_endpoint_auth_method: 'client_secret_basic' });
    assert.equal(conf.status, 201);
    assert.match(String(conf.json.client_secret), /^[A-Za-z0-9_-]{43}$/);
    const stored = await gh.gatehouse.store.oauth.clients.get(String(conf.json.client_id));
    assert.ok(stored?.secretHash && stored.secretHash !== conf.json.client_secret, 'the secret is stored as a hash');
    for (const [uri, why] of [
      ['http://evil.example/cb', 'http off loopback'],
      ['javascript:alert(1)//', 'javascript:'],
      ['https://app.example/cb#x', 'fragment'],
      ['https://*.example/cb', 'wildcard'],
      ['data:text/html,x', 'data:'],
      ['http2://evil.com/cb', 'a single-word private-use scheme (RFC 8252 §7.1: reverse DNS)'],
      ['slack://evil/cb', 'a scheme another app on the device may own'],
    ]) {
      const r = await register({ redirect_uris: [uri] });
      assert.equal(r.status, 400, why);
      assert.equal(r.json.error, 'invalid_redirect_uri', why);
    }
    for (const uri of [
      'com.example.app:/oauth',
      'cursor://anysphere.cursor-retrieval/oauth/callback',
      'http://localhost:33418/cb',
      'http://[::1]:8000/cb',
      'https://claude.ai/api/mcp/auth_callback',
    ]) {
      assert.equal((await register({ redirect_uris: [uri] })).status, 201, uri);
    }
    for (const [name, message] of [
      ['x'.repeat(10_000), 'client_name: Use at most 100 characters.'],
      ['x'.repeat(101), 'client_name: Use at most 100 characters.'],
      [
        'Claude\u202Eedualc',
        'client_name: The name contains a text-direction control (U+202E), which can make it display as something else. Remove it.',
      ],
      ['Good\u200BClient', 'client_name: The name contains an invisible character (U+200B). Remove it.'],
      ['Line\nbreak', 'client_name: Put the name on one line: it contains a line break.'],
      ['   ', 'client_name must not be blank'],
      [42, 'client_name must be a string'],
    ] as const) {
      const r = await register({ client_name: name });
      assert.equal(r.status, 400, String(name).slice(0, 20));
      assert.deepEqual(r.json, { error: 'invalid_client_metadata', error_description: message });
    }
    assert.equal((await register({ client_name: 'x'.repeat(100) })).status, 201);
    assert.equal((await register({ client_uri: `https://x.example/${'a'.repeat(600)}` })).status, 400);
    assert.equal((await register({ grant_types: ['client_credentials'] })).json.error, 'invalid_client_metadata');
    assert.equal(
      (await register({ token_endpoint_auth_method: 'private_key_jwt' })).json.error,
      'invalid_client_metadata',
    );
    const notJson = await fetch(`${gh.url}/.auth/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{nope',
    });
    assert.equal(notJson.status, 400);
  });

  test('request checks: unknown client and unregistered redirect URIs are shown, never redirected; the rest goes back with error, state and iss', async () => {
    const { browser } = await signedInBrowser(gh);
    const id = String((await register()).json.client_id);
    const { challenge } = await pkce();
    const base = {
      response_type: 'code',
      client_id: id,
      redirect_uri: REDIRECT,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 'st-1',
      resource: `${gh.url}/mcp`,
    };
    for (const [what, params] of [
      ['unknown client', { ...base, client_id: 'dcr_nobody' }],
      ['unregistered redirect', { ...base, redirect_uri: 'https://evil.example/cb' }],
      ['no redirect', { ...base, redirect_uri: undefined }],
    ] as const) {
      const r = await browser.html(authorizeUrl(params));
      assert.equal(r.status, 400, what);
      assert.equal(r.location, undefined, `${what}: not redirected`);
    }
    const dup = await browser.html(`${authorizeUrl(base)}&client_id=${id}`);
    assert.equal(dup.status, 400, 'a repeated parameter');
    for (const [what, params, error] of [
      ['no PKCE', { ...base, code_challenge: undefined }, 'invalid_request'],
      ['plain PKCE', { ...base, code_challenge_method: 'plain' }, 'invalid_request'],
      ['implicit', { ...base, response_type: 'token' }, 'unsupported_response_type'],
      ['unknown scope', { ...base, scope: 'admin' }, 'invalid_scope'],
      ['another site', { ...base, resource: 'https://other.example/mcp' }, 'invalid_target'],
      ['Gatehouse itself', { ...base, resource: `${gh.url}/.auth/me` }, 'invalid_target'],
      ['prompt=none', { ...base, prompt: 'none' }, 'consent_required'],
    ] as const) {
      const r = await browser.html(authorizeUrl(params));
      assert.equal(r.status, 302, what);
      const to = new URL(r.location!);
      assert.equal(`${to.origin}${to.pathname}`, REDIRECT, what);
      assert.equal(to.searchParams.get('error'), error, what);
      assert.equal(to.searchParams.get('state'), 'st-1', what);
      assert.equal(to.searchParams.get('iss'), gh.url, what);
    }
    const anonymous = await new Client(gh.url).html(authorizeUrl({ ...base, prompt: 'none' }));
    assert.equal(new URL(anonymous.location!).searchParams.get('error'), 'login_required');
  });

  test('consent: a CSRF-protected POST; Allow → 303 with code, state, iss; Deny → access_denied; the loopback port may differ (RFC 8252)', async () => {
    const { browser } = await signedInBrowser(gh);
    const id = String((await register()).json.client_id);
    const { verifier, challenge } = await pkce();
    const otherPort = 'http://127.0.0.1:54321/callback';
    const params = {
      response_type: 'code',
      client_id: id,
      redirect_uri: otherPort,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 'xyz',
      scope: 'tools offline_access',
      resource: `${gh.url}/mcp/anything`,
    };
    const anonymous = new Client(gh.url);
    const signIn = await anonymous.html(authorizeUrl(params));
    assert.equal(signIn.status, 302, 'not signed in: sign in first, and back');
    assert.match(
      (await anonymous.html(signIn.location!.slice(gh.url.length))).text,
      /<p class="notice" role="status">Sign in to continue: a program asks to use your account, and you will be asked whether to allow it\.<\/p>/,
    );
    const { page, allow, deny } = await consent(browser, params);
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-security-policy']), /form-action 'self' http:\/\/127\.0\.0\.1:54321;/);
    assert.equal(
      (await browser.postForm(allow!.action, allow!.fields, { origin: 'https://evil.example' })).status,
      403,
    );
    assert.equal(
      (await browser.postForm(allow!.action, { ...allow!.fields, csrf: 'x' }, { origin: gh.url })).status,
      403,
    );
    const denied = await browser.postForm(deny!.action, deny!.fields, { origin: gh.url });
    assert.equal(denied.status, 303);
    assert.equal(new URL(denied.location!).searchParams.get('error'), 'access_denied');
    const ok = await browser.postForm(allow!.action, allow!.fields, { origin: gh.url });
    assert.equal(ok.status, 303, 'never 307 after a credential POST (security.md #52)');
    const back = new URL(ok.location!);
    assert.equal(`${back.origin}${back.pathname}`, otherPort);
    assert.equal(back.searchParams.get('state'), 'xyz');
    const config = publicClient(id);
    oauth.allowInsecureRequests(config);
    const tokens = await oauth.authorizationCodeGrant(config, back, {
      pkceCodeVerifier: verifier,
      expectedState: 'xyz',
    });
    assert.equal(tokens.scope, 'offline_access tools');
    assert.equal(
      (await withBearer(gh, '/mcp/x', tokens.access_token)).status,
      200,
      'aud is the app, whichever of its URLs was named',
    );
    assert.equal((await withBearer(gh, '/x', tokens.access_token)).status, 401);
  });

  test('the token exchange checks the verifier, the redirect URI, the client and the resource; a code is single-use and short-lived', async () => {
    const { browser } = await signedInBrowser(gh);
    const id = String((await register()).json.client_id);
    const otherId = String((await register()).json.client_id);
    const { verifier, challenge } = await pkce();
    const codeFor = async () => {
      const { allow } = await consent(browser, {
        response_type: 'code',
        client_id: id,
        redirect_uri: REDIRECT,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: `${gh.url}/mcp`,
      });
      return new URL(
        (await browser.postForm(allow!.action, allow!.fields, { origin: gh.url })).location!,
      ).searchParams.get('code')!;
    };
    const token = (fields: Record<string, string>) =>
      postForm(`${gh.url}/.auth/oauth/token`, {
        grant_type: 'authorization_code',
        client_id: id,
        redirect_uri: REDIRECT,
        code_verifier: verifier,
        ...fields,
      });
    const code = await codeFor();
    assert.equal(
      (await token({ code, code_verifier: (await pkce()).verifier })).json.error,
      'invalid_grant',
      'another verifier (an injected code)',
    );
    assert.equal(
      (await token({ code, redirect_uri: 'http://127.0.0.1:9/other' })).json.error,
      'invalid_grant',
      'another redirect URI',
    );
    assert.equal((await token({ code, client_id: otherId })).json.error, 'invalid_grant', 'another client');
    assert.equal((await token({ code, resource: gh.url })).json.error, 'invalid_target', 'another resource');
    const good = await token({ code });
    assert.equal(good.status, 200, JSON.stringify(good.json));
    assert.equal(good.headers.get('cache-control'), 'no-store');
    assert.equal((await token({ code })).json.error, 'invalid_grant', 'used once');
    assert.equal(
      (await withBearer(gh, '/mcp/x', String(good.json.access_token))).status,
      401,
      'the second use revoked what the first got',
    );
  });

  test('client ID metadata documents: an https URL as client_id (loopback http here, in development), checked and shown', async () => {
    const { browser } = await signedInBrowser(gh);
    const clientId = `${docsOrigin}/mcp-client.json`;
    documents.set('/mcp-client.json', {
      body: JSON.stringify({
        client_id: clientId,
        client_name: 'Doc Client',
        redirect_uris: [REDIRECT],
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'none',
      }),
    });
    const { verifier, challenge } = await pkce();
    const params = {
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource: `${gh.url}/mcp`,
    };
    const { page, allow } = await consent(browser, params);
    assert.equal(page.status, 200, page.text);
    assert.match(page.text, /<strong>Doc Client<\/strong> <span class="tag">unverified/);
    assert.match(
      page.text,
      new RegExp(`<code>${clientId.replace(/[.:/]/g, '\\$&')}</code>`),
      'the document URL is shown',
    );
    const back = new URL((await browser.postForm(allow!.action, allow!.fields, { origin: gh.url })).location!);
    const config = publicClient(clientId);
    oauth.allowInsecureRequests(config);
    const tokens = await oauth.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier });
    assert.ok(tokens.refresh_token);
    assert.ok(
      (await oauth.refreshTokenGrant(config, tokens.refresh_token!)).access_token,
      'refresh needs no fetch of the document',
    );

    for (const [path, doc, why] of [
      [
        '/wrong-id.json',
        { body: JSON.stringify({ client_id: `${docsOrigin}/other.json`, redirect_uris: [REDIRECT] }) },
        'client_id differs',
      ],
      [
        '/secret.json',
        {
          body: JSON.stringify({
            client_id: `${docsOrigin}/secret.json`,
            redirect_uris: [REDIRECT],
            client_secret: 'x',
          }),
        },
        'a secret',
      ],
      ['/html.json', { type: 'text/html', body: '<html>' }, 'not JSON'],
      [
        '/big.json',
        {
          body: JSON.stringify({
            client_id: `${docsOrigin}/big.json`,
            redirect_uris: [REDIRECT],
            pad: 'x'.repeat(6000),
          }),
        },
        'too large',
      ],
      ['/gone.json', { status: 404, body: '{}' }, '404'],
    ] as const) {
      documents.set(path, doc);
      const r = await browser.html(authorizeUrl({ ...params, client_id: `${docsOrigin}${path}` }));
      assert.equal(r.status, 400, why);
      assert.equal(r.location, undefined, why);
    }
    for (const id of [
      'https://10.0.0.1/client.json',
      'https://[fd00::1]/client.json',
      'https://169.254.169.254/latest/meta-data',
      `${docsOrigin}/`,
      'https://example.com/a/../client.json',
    ]) {
      const r = await browser.html(authorizeUrl({ ...params, client_id: id }));
      assert.equal(r.status, 400, `${id}: refused before or at connect time`);
    }
  });

  test('client ID metadata documents on IPv6 addresses that embed or map to loopback or private IPv4 are refused without a connection (issue 10.18)', async () => {
    const { browser } = await signedInBrowser(gh);
    const port = new URL(docsOrigin).port;
    const hosts = [
      '[::7f00:1]', // IPv4-compatible 127.0.0.1
      '[::ffff:7f00:1]', // IPv4-mapped
      '[2002:7f00:1::]', // 6to4
      '[2001:0:4136:e378:8000:63bf:80ff:fffe]', // Teredo
      '[64:ff9b::7f00:1]', // NAT64, well-known prefix
      '[64:ff9b:1::a00:1]', // NAT64, local-use prefix
      '[fec0::1]', // site-local
      '[100::1]', // discard-only
    ];
    // Every connection undici (the fetcher's client) starts in this process is seen here.
    const connects: string[] = [];
    const seen = (m: unknown) => connects.push((m as { connectParams: { hostname: string } }).connectParams.hostname);
    diagnostics.subscribe('undici:client:beforeConnect', seen);
    try {
      for (const host of hosts) {
        const r = await browser.html(
          authorizeUrl({
            response_type: 'code',
            client_id: `https://${host}:${port}/embedded.json`,
            redirect_uri: REDIRECT,
            code_challenge: (await pkce()).challenge,
            code_challenge_method: 'S256',
            resource: `${gh.url}/mcp`,
          }),
        );
        assert.deepEqual(
          connects.filter((h) => h === host || `[${h}]` === host),
          [],
          `${host}: no connection was even attempted`,
        );
        assert.equal(r.status, 400, `${host}: refused`);
        assert.match(r.text, /non-public address/, host);
      }
    } finally {
      diagnostics.unsubscribe('undici:client:beforeConnect', seen);
    }
  });

  test('a configured confidential client authenticates with its secret (Basic), and cannot without it', async () => {
    const { browser } = await signedInBrowser(gh);
    const { verifier, challenge } = await pkce();
    const { allow } = await consent(browser, {
      response_type: 'code',
      client_id: 'backend',
      redirect_uri: 'https://backend.example/cb',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource: gh.url,
    });
    assert.ok(allow, 'a verified client: no "unverified" warning');
    const back = new URL((await browser.postForm(allow.action, allow.fields, { origin: gh.url })).location!);
    const code = back.searchParams.get('code')!;
    const anonymous = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: 'authorization_code',
      client_id: 'backend',
      code,
      redirect_uri: 'https://backend.example/cb',
      code_verifier: verifier,
    });
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.json.error, 'invalid_client');
    const wrong = new oauth.Configuration(
      gh.gatehouse.oauth.serverMetadata() as oauth.ServerMetadata,
      'backend',
      'not-the-secret-but-long-enough-to-try',
      oauth.ClientSecretBasic('not-the-secret-but-long-enough-to-try'),
    );
    oauth.allowInsecureRequests(wrong);
    await assert.rejects(
      oauth.refreshTokenGrant(wrong, 'grt.x'),
      (e: unknown) =>
        e instanceof oauth.WWWAuthenticateChallengeError && e.response.status === 401 && e.cause[0]?.scheme === 'basic',
      'a wrong secret: 401 with a Basic challenge (RFC 6749 §5.2)',
    );
    const config = new oauth.Configuration(
      gh.gatehouse.oauth.serverMetadata() as oauth.ServerMetadata,
      'backend',
      SECRET,
      oauth.ClientSecretBasic(SECRET),
    );
    oauth.allowInsecureRequests(config);
    const tokens = await oauth.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier });
    assert.equal((await withBearer(gh, '/x', tokens.access_token)).status, 200);
  });
});

test('an anonymous authorization request cannot make Gatehouse fetch client metadata documents without limit (429 per IP)', async () => {
  const limited = await startGatehouse(() => ({ tokens: { rateLimits: { clientDocumentsPerIp: 1 } } }));
  try {
    const ask = (path: string) =>
      fetch(
        `${limited.url}${authorizeUrl({ response_type: 'code', client_id: `${docsOrigin}${path}`, redirect_uri: REDIRECT, code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' })}`,
        { headers: { accept: 'text/html' }, redirect: 'manual' },
      );
    documents.set('/limited-1.json', {
      body: JSON.stringify({ client_id: `${docsOrigin}/limited-1.json`, redirect_uris: [REDIRECT] }),
    });
    documents.set('/limited-2.json', {
      body: JSON.stringify({ client_id: `${docsOrigin}/limited-2.json`, redirect_uris: [REDIRECT] }),
    });
    assert.equal((await ask('/limited-1.json')).status, 302, 'fetched: a valid client, so on to the login page');
    const refused = await ask('/limited-2.json');
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    assert.match(await refused.text(), /too many client metadata documents/);
    assert.equal(fetched.get('/limited-2.json'), undefined, 'the refused request fetched nothing');
    assert.equal((await ask('/limited-1.json')).status, 302, 'a document in memory costs no fetch and stays usable');
  } finally {
    await limited.close();
  }
});

test('dynamic registration can be turned off, and is rate-limited per IP', async () => {
  const off = await startGatehouse(() => ({ tokens: { dynamicRegistration: false } }));
  const limited = await startGatehouse(() => ({ tokens: { rateLimits: { registerPerIp: 2 } } }));
  try {
    const as = (await (await fetch(`${off.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(as.registration_endpoint, undefined);
    const r = await fetch(`${off.url}/.auth/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: [REDIRECT] }),
    });
    assert.equal(r.status, 404);
    const reg = (extra: Record<string, unknown> = {}, body?: string) =>
      fetch(`${limited.url}/.auth/oauth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: body ?? JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', ...extra }),
      });
    // Mistakes do not use up the allowance of registrations (issue 10.19) ...
    const mistakes = [
      await reg({ redirect_uris: ['http2://evil.com/cb'] }),
      await reg({ client_name: 'x'.repeat(10_000) }),
      await reg({}, '{nope'),
    ];
    assert.deepEqual(
      mistakes.map((r) => r.status),
      [400, 400, 400],
    );
    assert.deepEqual([(await reg()).status, (await reg()).status], [201, 201]);
    const third = await reg();
    assert.equal(third.status, 429);
    assert.ok(Number(third.headers.get('retry-after')) > 0);
    // ... but they have a bound of their own (larger by default: 100 an hour, 3 here).
    const flooded = await startGatehouse(() => ({ tokens: { rateLimits: { registerFailuresPerIp: 3 } } }));
    try {
      const at = (body: Record<string, unknown>) =>
        fetch(`${flooded.url}/.auth/oauth/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', ...body }),
        });
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await at({ grant_types: ['password'] })).status);
      assert.deepEqual(statuses, [400, 400, 400, 429]);
      const after = await at({});
      assert.equal(after.status, 429, 'past the failure bound, the address waits');
      assert.ok(Number(after.headers.get('retry-after')) > 0);
    } finally {
      await flooded.close();
    }
  } finally {
    await Promise.all([off.close(), limited.close()]);
  }
});
