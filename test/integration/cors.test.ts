import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { deviceLogin, signedInBrowser } from '../oauth/helpers.ts';

/**
 * An app's `cors:` (docs/cors.md, security.md "Cross-origin browser clients"): Gatehouse answers
 * genuine preflights itself, for listed origins only, and puts the CORS headers on the app's
 * answers (the app's own replaced) and on its own 401s. The clients here are Node's fetch, which
 * sends any Origin; test/browser/cors.test.ts has Chromium enforce the answers.
 */

const PAGE = 'http://127.0.0.1:6274';
let gh: TestGatehouse;
/** The MCP app: answers with CORS headers of its own, which Gatehouse must replace. */
let mcp: http.Server;
const mcpSeen: { method: string; url: string; headers: http.IncomingHttpHeaders }[] = [];
let token: string;

describe('cors: for an app with browser clients on other origins', () => {
  before(async () => {
    mcp = http.createServer((req, res) => {
      mcpSeen.push({ method: req.method!, url: req.url!, headers: req.headers });
      req.resume();
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': 'application/json',
          'access-control-allow-origin': '*',
          'access-control-allow-credentials': 'true',
          'access-control-allow-methods': 'GET, POST, PUT, DELETE, PATCH',
          vary: 'Accept-Encoding',
          'mcp-session-id': 'session-1',
        });
        res.end(JSON.stringify({ user: req.headers['x-user-id'] ?? null, method: req.method }));
      });
    });
    await new Promise<void>((resolve) => mcp.listen(0, '127.0.0.1', resolve));
    const mcpUrl = `http://127.0.0.1:${(mcp.address() as AddressInfo).port}`;
    const dead = `http://127.0.0.1:${await freePort()}`;
    gh = await startGatehouse(({ upstream }) => ({
      apps: [
        {
          name: 'dead',
          pathPrefix: '/dead',
          upstream: dead,
          routes: [{ path: '/dead/**', access: 'public' }],
          cors: { origins: [PAGE] },
        },
        {
          name: 'mcp',
          pathPrefix: '/mcp',
          upstream: mcpUrl,
          routes: [{ path: '/mcp/status', access: 'public' }],
          cors: {
            origins: [PAGE, 'HTTPS://Inspector.Example.com:443'],
            headers: ['Authorization', 'Content-Type', 'Mcp-Protocol-Version', 'Mcp-Session-Id'],
            exposeHeaders: ['Mcp-Session-Id'],
          },
        },
        { name: 'web', upstream },
      ],
    }));
    const { browser } = await signedInBrowser(gh);
    token = (await deviceLogin(gh, browser, undefined, { resource: `${gh.url}/mcp` })).access_token;
  });
  after(async () => {
    await gh?.close();
    mcp?.closeAllConnections();
    await new Promise((resolve) => mcp?.close(resolve));
  });

  const preflight = (path: string, origin: string, extra: Record<string, string> = {}) =>
    fetch(`${gh.url}${path}`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,mcp-protocol-version',
        ...extra,
      },
    });

  test('a preflight from a listed origin is answered by Gatehouse (204, what the page may send, for 10 minutes) and never reaches the app', async () => {
    const before = mcpSeen.length;
    const res = await preflight('/mcp', PAGE);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    assert.equal(res.headers.get('access-control-allow-methods'), 'GET, HEAD, POST, PUT, PATCH, DELETE');
    assert.equal(
      res.headers.get('access-control-allow-headers'),
      'authorization, content-type, mcp-protocol-version, mcp-session-id',
    );
    assert.equal(res.headers.get('access-control-max-age'), '600');
    assert.equal(res.headers.get('access-control-allow-credentials'), null, 'credentials is off by default');
    assert.match(res.headers.get('vary') ?? '', /^Origin\b/);
    assert.equal(res.headers.get('set-cookie'), null);
    assert.equal(await res.text(), '');
    // The listed origin was written in another case with its default port: browsers send it bare.
    const inspector = await preflight('/mcp/tools', 'https://inspector.example.com');
    assert.equal(inspector.headers.get('access-control-allow-origin'), 'https://inspector.example.com');
    assert.equal(mcpSeen.length, before, 'the app saw no OPTIONS');
  });

  test('an origin that is not listed gets no Access-Control-Allow-Origin, on the preflight and on the answer, whatever it looks like', async () => {
    for (const origin of [
      'http://127.0.0.1:6275',
      'https://127.0.0.1:6274',
      'http://127.0.0.1:6274.evil.example',
      'http://evil.example/http://127.0.0.1:6274',
      'null',
      '*',
    ]) {
      const pre = await preflight('/mcp', origin);
      assert.equal(pre.status, 204, origin);
      assert.equal(pre.headers.get('access-control-allow-origin'), null, origin);
      assert.equal(pre.headers.get('access-control-allow-methods'), null, origin);
      const res = await fetch(`${gh.url}/mcp`, {
        method: 'POST',
        headers: { origin, authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200, origin);
      assert.equal(res.headers.get('access-control-allow-origin'), null, `${origin}: the app's "*" is dropped too`);
      assert.equal(res.headers.get('access-control-allow-credentials'), null, origin);
      assert.match(res.headers.get('vary') ?? '', /Origin/, origin);
    }
  });

  test("Gatehouse's 401 names the OAuth metadata where a page may read it", async () => {
    const res = await fetch(`${gh.url}/mcp`, {
      method: 'POST',
      headers: { origin: PAGE, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    assert.equal(res.headers.get('access-control-expose-headers'), 'www-authenticate, mcp-session-id');
    assert.match(
      res.headers.get('www-authenticate') ?? '',
      /resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"/,
    );
    assert.match(res.headers.get('vary') ?? '', /Origin/);
    // A token that is no good is refused the same way, readable too.
    const bad = await fetch(`${gh.url}/mcp`, { headers: { origin: PAGE, authorization: 'Bearer not-a-token' } });
    assert.equal(bad.status, 401);
    assert.equal(bad.headers.get('access-control-allow-origin'), PAGE);
    assert.match(bad.headers.get('www-authenticate') ?? '', /resource_metadata=/);
  });

  test("the app's answer goes out with Gatehouse's CORS headers in place of its own, its Vary kept", async () => {
    const before = mcpSeen.length;
    const res = await fetch(`${gh.url}/mcp`, {
      method: 'POST',
      headers: { origin: PAGE, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 200);
    assert.equal(
      res.headers.get('access-control-allow-origin'),
      PAGE,
      'one value: the listed origin, not the app\'s "*"',
    );
    assert.equal(res.headers.get('access-control-allow-credentials'), null, 'the app cannot turn credentials on');
    assert.equal(res.headers.get('access-control-allow-methods'), null);
    assert.equal(res.headers.get('access-control-expose-headers'), 'www-authenticate, mcp-session-id');
    assert.equal(res.headers.get('vary'), 'Accept-Encoding, Origin');
    assert.equal(res.headers.get('mcp-session-id'), 'session-1');
    assert.ok(((await res.json()) as { user: string | null }).user, 'the app got the user');
    assert.equal(mcpSeen.length, before + 1);
    assert.equal(mcpSeen.at(-1)!.method, 'POST');
  });

  test('a public route of the app carries the headers too; a request without Origin gets none but Vary', async () => {
    const res = await fetch(`${gh.url}/mcp/status`, { headers: { origin: PAGE } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), PAGE);
    const plain = await fetch(`${gh.url}/mcp/status`);
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get('access-control-allow-origin'), null);
    assert.equal(plain.headers.get('vary'), 'Accept-Encoding, Origin');
  });

  test('an OPTIONS that is not a preflight is decided like any request: no way past sign-in', async () => {
    const before = mcpSeen.length;
    for (const headers of [{ origin: PAGE }, { 'access-control-request-method': 'POST' }, {}]) {
      const res = await fetch(`${gh.url}/mcp`, { method: 'OPTIONS', headers });
      assert.equal(res.status, 401, JSON.stringify(headers));
    }
    const signed = await fetch(`${gh.url}/mcp`, { method: 'OPTIONS', headers: { authorization: `Bearer ${token}` } });
    assert.equal(signed.status, 200);
    assert.equal(mcpSeen.length, before + 1, 'only the signed-in OPTIONS reached the app');
  });

  test("Gatehouse's own answers for the app carry the headers (502 here); its own routes never do", async () => {
    const down = await fetch(`${gh.url}/dead/x`, { headers: { origin: PAGE } });
    assert.equal(down.status, 502);
    assert.equal(down.headers.get('access-control-allow-origin'), PAGE);
    const { browser } = await signedInBrowser(gh);
    for (const path of ['/.auth/me', '/.auth/login', '/.well-known/oauth-protected-resource/mcp']) {
      const own = await browser.get(path, { origin: PAGE });
      assert.notEqual(own.headers['access-control-allow-origin'], PAGE, path);
    }
    const pre = await preflight('/.auth/me', PAGE);
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
  });

  test('an app without cors: is as before: a preflight is an anonymous request (401) and no CORS header is added', async () => {
    const res = await preflight('/other', PAGE);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    assert.equal(res.headers.get('vary'), null);
  });
});
