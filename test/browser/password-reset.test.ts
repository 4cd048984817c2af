import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, mailTo } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { linkIn, startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * Forgot → mail → reset → sign in, in real Chromium, with the message delivered over real
 * SMTP: the login page's "Forgot your password?", the form, the link from the message (the
 * token leaves the address bar before the page shows), the new password, the old session
 * gone, and signing in with the new password. JavaScript on and off.
 */

const TITLE = 'Acme Portal';
const NEW_PASSWORD = 'correct horse battery staple again';

let gh: TestGatehouse;
let smtp: TestSmtp;
let browser: Browser;

describeOrSkip('password reset in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    smtp = await startSmtp();
    gh = await startGatehouse(() => ({
      title: TITLE,
      email: emailConfig(smtp),
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
    }));
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    await smtp?.close();
  });

  for (const javaScriptEnabled of [true, false]) {
    test(`forgot → the message → the link → a new password → the old session is gone → sign in with it (JavaScript ${javaScriptEnabled ? 'on' : 'off'})`, async () => {
      const email = uniqueEmail(javaScriptEnabled ? 'reset-js' : 'reset-nojs');
      await registerJson(new Client(gh.url), email);
      // A browser already signed in somewhere else (the laptop left at work).
      const laptop = await isolatedContext(browser, gh.url, { javaScriptEnabled });
      const { context, page, foreign } = await isolatedContext(browser, gh.url, { javaScriptEnabled });
      try {
        await laptop.page.goto(`${gh.url}/.auth/login`);
        await laptop.page.getByLabel('Email', { exact: true }).fill(email);
        await laptop.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
        await laptop.page.getByRole('button', { name: 'Sign in' }).click();
        await laptop.page.waitForURL(`${gh.url}/`);

        // 1. From the login page to the form, and the answer that says nothing about the address.
        await page.goto(`${gh.url}/dashboard`);
        await page.getByRole('link', { name: 'Forgot your password?' }).click();
        await page.waitForURL(`${gh.url}/.auth/forgot-password`);
        assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Reset your password');
        await page.getByLabel('Email', { exact: true }).fill(email);
        await page.getByRole('button', { name: 'Send the link' }).click();
        await page.waitForURL(`${gh.url}/.auth/forgot-password?sent=1`);
        assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Check your inbox');

        // 2. The message, and its link opened in the browser: the token leaves the address bar.
        const mail = await mailTo(smtp, email, /^Reset your password for Acme Portal$/);
        const link = linkIn(mail, '/.auth/reset-password');
        const landing = page.waitForResponse((r) => r.url() === link);
        await page.goto(link);
        const first = await landing;
        assert.equal(first.status(), 303);
        assert.equal(first.headers()['referrer-policy'], 'no-referrer');
        await page.waitForURL(`${gh.url}/.auth/reset-password`);
        assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Choose a new password');
        assert.ok(await page.getByText(email).isVisible());
        const history = javaScriptEnabled
          ? await page.evaluate(() => (globalThis as unknown as { location: { href: string } }).location.href)
          : page.url();
        assert.ok(!history.includes('token'), 'no token in the page address');

        // 3. A weak password is refused with the registration rules; a good one is set.
        await page.getByLabel('New password', { exact: true }).fill('password1');
        await page.getByRole('button', { name: 'Set the new password' }).click();
        await page.waitForLoadState();
        assert.match((await page.getByRole('alert').textContent()) ?? '', /too common/);
        await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
        const posted = page.waitForResponse(
          (r) => r.url() === `${gh.url}/.auth/reset-password` && r.request().method() === 'POST' && r.status() === 303,
        );
        await page.getByRole('button', { name: 'Set the new password' }).click();
        await posted;
        await page.waitForURL(`${gh.url}/.auth/login?reset=1`);
        assert.match((await page.getByRole('status').textContent()) ?? '', /Your password was changed/);
        assert.equal(
          (await context.cookies(gh.url)).find((c) => c.name === 'gatehouse'),
          undefined,
          'not signed in (security.md #44)',
        );

        // 4. The laptop's session ended. (Its one-minute sign-in marker goes first: within that
        // minute a session that vanished is explained as a cookie problem, diagnosis/.)
        await laptop.context.clearCookies({ name: 'gatehouse-signin' });
        await laptop.page.goto(`${gh.url}/dashboard`);
        assert.equal(laptop.page.url(), `${gh.url}/.auth/login?rd=%2Fdashboard`);

        // 5. Signing in with the new password works.
        await page.getByLabel('Email', { exact: true }).fill(email);
        await page.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForURL(`${gh.url}/`);
        const echoed = JSON.parse(await page.locator('body').innerText()) as { headers: Record<string, string> };
        assert.match(echoed.headers['x-user-id'] ?? '', /^[0-9a-f-]{36}$/);

        // 6. The link is spent.
        const again = await page.goto(link);
        assert.equal(again!.status(), 410);
        assert.deepEqual(foreign, [], 'no request left the origin');
      } finally {
        await Promise.all([context.close(), laptop.context.close()]);
      }
    });
  }
});
