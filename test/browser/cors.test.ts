import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { deviceLogin } from '../oauth/helpers.ts';
import { browserSkip, launchBrowser } from './chromium.ts';

/**
 * A browser-based client on another origin (a SPA, an MCP inspector) calling an app behind
 * Gatehouse, with Chromium enforcing CORS (docs/cors.md): the listed page reads the 401's
 * WWW-Authenticate, calls with a bearer token (preflighted: Authorization, JSON, an MCP header)
 * and reads the answer and an exposed header; with credentials, the signed-in user's cookie goes
 * along from a page on the same site. A page on an origin that is not listed can do none of it,
 * nor can the listed one at an app without cors:.
 */

let gh: TestGatehouse;
let browser: Browser;
let listed: http.Server;
let other: http.Server;
let listedOrigin: string;
let otherOrigin: string;
let token: string;
let session: string;

/** A blank page on its own loopback origin, where the test's script runs. */
async function pageServer(): Promise<[http.Server, string]> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>client</title>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return [server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`];
}

type Outcome =
  | { ok: true; status: number; wwwAuthenticate: string | null; sessionId: string | null; body: string }
  | { ok: false; error: string };

/** fetch() run by the page itself: what its script can see of the answer. */
function call(page: Page, url: string, init: { method?: string; headers?: Record<string, string>; cookies?: boolean }) {
  return page.evaluate(
    async ({ url, init }): Promise<Outcome> => {
      try {
        const res = await fetch(url, {
          method: init.method ?? 'GET',
          headers: init.headers,
          body: init.method === 'POST' ? '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' : undefined,
          credentials: init.cookies ? 'include' : 'omit',
        });
        return {
          ok: true,
          status: res.status,
          wwwAuthenticate: res.headers.get('www-authenticate'),
          sessionId: res.headers.get('mcp-session-id'),
          body: await res.text(),
        };
      } catch (err) {
        return { ok: false, error: String(err) };
      }
    },
    { url, init },
  );
}

/**
 * A plain browser profile: no request interception (Playwright's routing answers CORS preflights
 * itself, with every origin allowed, so they would never reach Gatehouse).
 */
async function profile(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  return { context, page: await context.newPage() };
}

/** The statuses of the OPTIONS requests Gatehouse logged after its first `from` log lines. */
const preflights = (from: number) =>
  gh.logs
    .slice(from)
    .filter((l) => (l.req as { method?: string } | undefined)?.method === 'OPTIONS')
    .map((l) => l.status);

const MCP_HEADERS = { 'content-type': 'application/json', 'mcp-protocol-version': '2025-06-18' };

describeOrSkip('cross-origin browser clients, in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    [listed, listedOrigin] = await pageServer();
    [other, otherOrigin] = await pageServer();
    browser = await launchBrowser();
    gh = await startGatehouse(({ upstream }) => ({
      apps: [
        {
          name: 'mcp',
          pathPrefix: '/mcp',
          upstream,
          cors: {
            origins: [listedOrigin],
            credentials: true,
            headers: ['Authorization', 'Content-Type', 'Mcp-Protocol-Version'],
            exposeHeaders: ['Mcp-Session-Id'],
          },
        },
        { name: 'web', upstream },
      ],
    }));
    const signedIn = new Client(gh.url);
    await registerJson(signedIn);
    session = signedIn.jar.get('gatehouse')!;
    token = (await deviceLogin(gh, signedIn, undefined, { resource: `${gh.url}/mcp` })).access_token;
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    for (const s of [listed, other]) {
      s?.closeAllConnections();
      await new Promise((resolve) => s?.close(resolve));
    }
  });

  test("the listed page reads the 401's challenge, then calls with its token and reads the answer; the preflight never reaches the app", async () => {
    const { context, page } = await profile();
    try {
      await page.goto(`${listedOrigin}/`);
      const logged = gh.logs.length;
      const anonymous = await call(page, `${gh.url}/mcp`, { method: 'POST', headers: MCP_HEADERS });
      assert.ok(anonymous.ok, JSON.stringify(anonymous));
      assert.equal(anonymous.status, 401);
      assert.match(
        anonymous.wwwAuthenticate ?? '',
        /resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"/,
      );

      const seenBefore = gh.upstream.requests.length;
      const authorized = await call(page, `${gh.url}/mcp`, {
        method: 'POST',
        headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
      });
      assert.ok(authorized.ok, JSON.stringify(authorized));
      assert.equal(authorized.status, 200);
      const seen = JSON.parse(authorized.body) as { method: string; headers: Record<string, string> };
      assert.equal(seen.method, 'POST');
      assert.ok(seen.headers['x-user-id'], 'the app got the user');
      assert.equal(seen.headers.authorization, undefined, "Gatehouse's token stays with Gatehouse");
      assert.equal(seen.headers['mcp-protocol-version'], '2025-06-18');
      const methods = gh.upstream.requests.slice(seenBefore).map((r) => r.method);
      assert.deepEqual(methods, ['POST'], 'the app got the POST alone');
      assert.deepEqual(
        preflights(logged),
        [204],
        'Chromium asked once, Gatehouse answered, and the answer (Access-Control-Max-Age) covered the second POST',
      );
    } finally {
      await context.close();
    }
  });

  test("with credentials: true the signed-in user's cookie goes along from the listed page (same site)", async () => {
    const { context, page } = await profile();
    try {
      await context.addCookies([{ name: 'gatehouse', value: session, url: gh.url }]);
      await page.goto(`${listedOrigin}/`);
      const res = await call(page, `${gh.url}/mcp/me`, {
        cookies: true,
        headers: { 'content-type': 'application/json' },
      });
      assert.ok(res.ok, JSON.stringify(res));
      assert.equal(res.status, 200);
      assert.ok((JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-user-id']);
      // Without `credentials: 'include'` the page is anonymous, and may read that it is.
      const anonymous = await call(page, `${gh.url}/mcp/me`, { headers: { 'content-type': 'application/json' } });
      assert.ok(anonymous.ok && anonymous.status === 401, JSON.stringify(anonymous));
    } finally {
      await context.close();
    }
  });

  test('a page on an origin that is not listed reads nothing, signed in or not; nor does the listed one at an app without cors:', async () => {
    const { context, page } = await profile();
    try {
      await context.addCookies([{ name: 'gatehouse', value: session, url: gh.url }]);
      await page.goto(`${otherOrigin}/`);
      const seenBefore = gh.upstream.requests.length;
      const logged = gh.logs.length;
      for (const init of [
        { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` } },
        { cookies: true },
        {},
      ]) {
        const res = await call(page, `${gh.url}/mcp/me`, init);
        assert.equal(res.ok, false, `${JSON.stringify(init)}: ${JSON.stringify(res)}`);
        assert.match((res as { error: string }).error, /TypeError: Failed to fetch/);
      }
      // The two simple requests were sent (CORS hides answers, it does not stop simple
      // requests); the preflighted one was not.
      assert.deepEqual(
        gh.upstream.requests.slice(seenBefore).map((r) => r.method),
        ['GET'],
        'the signed-in GET reached the app; the anonymous one got the 401; the POST never left the browser',
      );
      assert.deepEqual(preflights(logged), [204], "the POST's preflight got no Access-Control-Allow-Origin");

      await page.goto(`${listedOrigin}/`);
      const noCors = await call(page, `${gh.url}/web`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(noCors.ok, false, JSON.stringify(noCors));
    } finally {
      await context.close();
    }
  });
});
