import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';

/**
 * An SPA signs out with `fetch(url, {method: 'POST', credentials: 'include'})`: no body and no
 * Content-Type, just what Chromium adds (Origin, Sec-Fetch-*). That must sign out from a page of
 * the site, and must not from a page of another origin on the same site (another port of the
 * same host), whose requests carry the SameSite=Lax session cookie too.
 */

let gh: TestGatehouse;
let browser: Browser;
let sibling: http.Server;
let siblingUrl: string;

describe('logout by fetch() in Chromium', { skip: browserSkip(), timeout: 60_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    gh = await startGatehouse(() => ({ routes: [{ path: '/public/**', access: 'public' }] }));
    sibling = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<p>other app'));
    await new Promise<void>((resolve) => sibling.listen(0, '127.0.0.1', resolve));
    siblingUrl = `http://127.0.0.1:${(sibling.address() as AddressInfo).port}`;
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    sibling?.close();
  });

  async function signedInContext() {
    const c = new Client(gh.url);
    const user = await registerJson(c);
    const { context, page } = await isolatedContext(browser, [gh.url, siblingUrl]);
    await context.addCookies([
      { name: 'gatehouse', value: c.jar.get('gatehouse')!, url: gh.url, httpOnly: true, sameSite: 'Lax' },
    ]);
    return { c, user, context, page };
  }

  /** Runs in the page: the SPA's sign-out call (or any credentialed fetch), and what the page may read of it. */
  const call = ({ url, method, mode }: { url: string; method: string; mode: 'cors' | 'no-cors' }) =>
    fetch(url, { method, credentials: 'include', mode }).then(
      async (r) => ({ status: r.status, body: mode === 'cors' ? await r.text() : '' }),
      (e: Error) => ({ status: 0, body: e.message }),
    );
  const logout = (mode: 'cors' | 'no-cors' = 'cors') => ({ url: `${gh.url}/.auth/logout`, method: 'POST', mode });

  test('from a page of the site: signed out, with JSON to read', async () => {
    const { c, context, page } = await signedInContext();
    try {
      await page.goto(`${gh.url}/public/spa`);
      const sent = page.waitForRequest((r) => r.url() === `${gh.url}/.auth/logout`);
      const res = await page.evaluate(call, logout());
      const headers = (await sent).headers();
      assert.equal(headers['content-type'], undefined, 'Chromium sends no Content-Type for a bodiless POST');
      assert.deepEqual(res, { status: 200, body: '{"ok":true}' });
      assert.equal((await c.get('/.auth/me')).status, 401, 'the session is gone on the server');
    } finally {
      await context.close();
    }
  });

  test('from a page of another origin on the same site: refused, still signed in', async () => {
    const { c, user, context, page } = await signedInContext();
    try {
      await page.goto(`${siblingUrl}/`);
      const before = gh.logs.length;
      for (const mode of ['no-cors', 'cors'] as const) await page.evaluate(call, logout(mode));
      // The control: this origin's requests do carry the session cookie (the log says whose).
      await page.evaluate(call, { url: `${gh.url}/.auth/me`, method: 'GET', mode: 'no-cors' as const });
      const seen = gh.logs
        .slice(before)
        .filter((l) => l.msg === 'request')
        .map((l) => [(l.req as { path: string }).path, l.status, l.user]);
      assert.deepEqual(seen, [
        ['/.auth/logout', 403, undefined],
        ['/.auth/logout', 403, undefined],
        ['/.auth/me', 200, user.id],
      ]);
      assert.equal((await c.get('/.auth/me')).status, 200, 'still signed in');
    } finally {
      await context.close();
    }
  });
});
