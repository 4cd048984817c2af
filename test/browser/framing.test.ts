import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { consentPath } from '../oauth/helpers.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';

/**
 * Clickjacking (security.md #128): a page of another origin frames Gatehouse's sign-in, account
 * or consent page under its own content, so the user clicks Allow or Sign out without seeing it.
 * The other origin here is another port of the same host (same site, so the SameSite=Lax session
 * cookie goes along): Chromium must show none of them in the frame. The headers on every page
 * are in test/integration/framing.test.ts.
 */

const REDIRECT = 'http://127.0.0.1:9/callback';
let gh: TestGatehouse;
let browser: Browser;
let attacker: http.Server;
let attackerUrl: string;

describeOrSkip('framing by another site in Chromium', { skip: browserSkip(), timeout: 60_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    gh = await startGatehouse(() => ({
      tokens: { clients: [{ id: 'desk', name: 'Desk', redirectUris: [REDIRECT] }] },
    }));
    attacker = http.createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      if (url.pathname === '/inner') return res.end('<!doctype html><title>inner</title><h1>Framed fine</h1>');
      const src = url.searchParams.get('src')!.replaceAll('&', '&amp;').replaceAll('"', '&quot;');
      res.end(`<!doctype html><title>prize</title><h1>Click to win</h1><iframe src="${src}"></iframe>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    attacker?.close();
  });

  /** What the frame shows: its document's address and heading. */
  async function framed(src: string, cookie?: string): Promise<{ heading: string | null; url: string }> {
    const { context, page } = await isolatedContext(browser, [gh.url, attackerUrl]);
    try {
      if (cookie)
        await context.addCookies([{ name: 'gatehouse', value: cookie, url: gh.url, httpOnly: true, sameSite: 'Lax' }]);
      await page.goto(`${attackerUrl}/?src=${encodeURIComponent(src)}`, { waitUntil: 'load' });
      const frame = page.frames().find((f) => f !== page.mainFrame())!;
      const heading = await frame
        .locator('h1')
        .first()
        .textContent({ timeout: 5000 })
        .catch(() => null);
      return { heading, url: frame.url() };
    } finally {
      await context.close();
    }
  }

  test("Gatehouse's sign-in, account and consent pages are never shown inside another site's page", async () => {
    assert.deepEqual(
      await framed(`${attackerUrl}/inner`),
      { heading: 'Framed fine', url: `${attackerUrl}/inner` },
      'the control: a page that allows framing is shown in the frame',
    );
    const c = new Client(gh.url);
    await registerJson(c);
    const cookie = c.jar.get('gatehouse')!;
    const consent = `${gh.url}${consentPath('desk', REDIRECT, gh.url)}`;
    assert.match((await c.html(consent)).text, /<button[^>]*>Allow<\/button>/, 'the consent page, outside a frame');
    for (const [what, src, signedIn] of [
      ['sign-in', `${gh.url}/.auth/login`, false],
      ['account', `${gh.url}/.auth/account`, true],
      ['consent', consent, true],
    ] as const) {
      const shown = await framed(src, signedIn ? cookie : undefined);
      assert.ok(
        !shown.url.startsWith(gh.url),
        `${what}: Chromium shows its error page in the frame, not the page (${shown.url}: ${shown.heading})`,
      );
    }
  });
});
