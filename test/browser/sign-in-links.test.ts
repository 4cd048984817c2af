import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, mailTo } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { linkIn, startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';

/**
 * A sign-in link in real Chromium, the message over real SMTP: the sign-in page's "Email me a
 * sign-in link", the form, the link opened on another device (the token leaves the address bar
 * before the page shows), its button, and the page the user was going to, with the user's id.
 */

let gh: TestGatehouse;
let smtp: TestSmtp;
let browser: Browser;

describeOrSkip('sign-in links in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    smtp = await startSmtp();
    gh = await startGatehouse(() => ({
      title: 'Acme Portal',
      email: emailConfig(smtp),
      accounts: { signInLinks: true, rateLimits: { registerPerIp: 1000 } },
    }));
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    await smtp?.close();
  });

  test('the sign-in page → a link by email → opened on another device → Sign in → the page the user was going to', async () => {
    const email = uniqueEmail('link-browser');
    const { id } = await registerJson(new Client(gh.url), email);
    const laptop = await isolatedContext(browser, gh.url);
    const phone = await isolatedContext(browser, gh.url);
    try {
      const { page } = laptop;
      await page.goto(`${gh.url}/dashboard`);
      await page.getByRole('link', { name: 'Email me a sign-in link' }).click();
      await page.waitForURL(`${gh.url}/.auth/sign-in-link?rd=%2Fdashboard`);
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByRole('button', { name: 'Email me a link' }).click();
      await page.waitForURL(`${gh.url}/.auth/sign-in-link?sent=1`);
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Check your inbox');

      const link = linkIn(await mailTo(smtp, email, /^Your sign-in link for Acme Portal$/), '/.auth/sign-in-link/open');
      await phone.page.goto(link);
      await phone.page.waitForURL(`${gh.url}/.auth/sign-in-link/open?rd=%2Fdashboard`);
      assert.equal(await phone.page.getByRole('heading', { level: 1 }).textContent(), 'Sign in to Acme Portal');
      assert.ok(await phone.page.getByText(email).isVisible());
      await phone.page.getByRole('button', { name: 'Sign in' }).click();
      await phone.page.waitForURL(`${gh.url}/dashboard`);
      const echoed = JSON.parse(await phone.page.locator('body').innerText()) as { headers: Record<string, string> };
      assert.equal(echoed.headers['x-user-id'], id);
      assert.deepEqual([...laptop.foreign, ...phone.foreign], [], 'no request left the origin');
    } finally {
      await Promise.all([laptop.context.close(), phone.context.close()]);
    }
  });
});
