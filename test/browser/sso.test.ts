import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';

/**
 * Single sign-on across hosts (apps[].sso) in real Chromium: its own cookie jar per host, its
 * SameSite rules on the redirects between them. The wiki, on wiki.localhost (which Chromium
 * resolves to loopback), signs its users in on publicUrl's host, 127.0.0.1.
 */

let gh: TestGatehouse;
let wikiApp: TestUpstream;
let browser: Browser;

describeOrSkip('single sign-on in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    wikiApp = await startUpstream();
    gh = await startGatehouse(({ port, upstream }) => ({
      apps: [
        { name: 'portal', title: 'Portal', host: `127.0.0.1:${port}`, upstream },
        { name: 'wiki', title: 'Wiki', host: `wiki.localhost:${port}`, upstream: wikiApp.url, sso: true },
      ],
    }));
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    await wikiApp?.close();
  });

  test('sign in once on publicUrl’s host, land on the wiki signed in; sign out on the wiki, signed out on both', async () => {
    const wiki = `http://wiki.localhost:${gh.port}`;
    const email = uniqueEmail('sso-browser');
    const user = await registerJson(new Client(gh.url), email);
    const { context, page, foreign } = await isolatedContext(browser, [gh.url, wiki]);
    try {
      await page.goto(`${wiki}/notes/today?x=1`);
      assert.equal(new URL(page.url()).origin, gh.url, 'sent to sign in on publicUrl’s host');
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign in');
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(`${wiki}/notes/today?x=1`);
      const seen = JSON.parse((await page.textContent('body'))!);
      assert.equal(seen.headers['x-user-id'], user.id);

      const cookies = await context.cookies();
      const sessions = cookies.filter((c) => c.name === 'gatehouse');
      assert.deepEqual(
        sessions.map((c) => c.domain).sort(),
        ['127.0.0.1', 'wiki.localhost'],
        'one per host, host-only',
      );
      assert.notEqual(sessions[0]!.value, sessions[1]!.value);

      // Another page of the wiki: no detour.
      await page.goto(`${wiki}/other`);
      assert.equal(page.url(), `${wiki}/other`);

      const out = await page.evaluate(async () => (await fetch('/.auth/logout', { method: 'POST' })).status);
      assert.equal(out, 200);
      await page.goto(`${wiki}/notes/today`);
      assert.equal(new URL(page.url()).origin, gh.url, 'signed out on publicUrl’s host too: asked to sign in');
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign in');
      assert.deepEqual(foreign, []);
    } finally {
      await context.close();
    }
  });
});
