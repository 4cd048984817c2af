import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { EmailTokens } from '../../src/accounts/email-tokens.ts';
import { Invitations } from '../../src/accounts/invitations.ts';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, mailTo } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { linkIn, startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { Clock } from '../oauth/helpers.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';

/**
 * Issue 14's account pages in real Chromium, with mail over real SMTP: a change of email address
 * asked for after the sign-in has grown old (the browser confirms its password on /.auth/reauth
 * and comes back), confirmed with the link from the message; and an invitation accepted from its
 * link, signed in at the end. No request leaves Gatehouse's origin.
 */

const TITLE = 'Acme Portal';
let gh: TestGatehouse;
let smtp: TestSmtp;
let browser: Browser;
const clock = new Clock();

/** Signs in with the login page's form, as a user does, landing on the app's home. */
async function signIn(page: Page, email: string): Promise<void> {
  await page.goto(`${gh.url}/.auth/login`);
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${gh.url}/`);
}

describeOrSkip('account pages in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    smtp = await startSmtp();
    gh = await startGatehouse(
      () => ({
        title: TITLE,
        email: emailConfig(smtp),
        accounts: {
          registration: 'invite',
          rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 },
        },
      }),
      { clock: clock.now },
    );
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    await smtp?.close();
  });

  test('a sign-in grown old: the email change asks for the password first, comes back, and the link from the message makes the new address the account’s', async () => {
    const email = uniqueEmail('browser-old');
    const newEmail = uniqueEmail('browser-new');
    const user = await gh.gatehouse.store.users.create({ email, emailVerified: true });
    await gh.gatehouse.accounts.setPassword(user.id, PASSWORD);
    const { context, page, foreign } = await isolatedContext(browser, gh.url);
    try {
      await signIn(page, email);

      clock.advance(11 * 60_000);
      await page.goto(`${gh.url}/.auth/account`);
      await page.getByLabel('New email address').fill(newEmail);
      await page.getByRole('button', { name: 'Change email address' }).click();
      await page.waitForURL(`${gh.url}/.auth/reauth?rd=%2F.auth%2Faccount`);
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), "Confirm it's you");
      await page.getByLabel('Password', { exact: true }).fill('not my password at all');
      await page.getByRole('button', { name: 'Continue' }).click();
      assert.ok(await page.getByText('The password is not correct.').first().isVisible());
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.waitForURL(`${gh.url}/.auth/account`);

      const n = smtp.messages.length;
      await page.getByLabel('New email address').fill(newEmail);
      await page.getByRole('button', { name: 'Change email address' }).click();
      await page.waitForURL(`${gh.url}/.auth/account?email=sent`);
      assert.ok(await page.getByText('We sent a link to the new address.').isVisible());
      assert.ok(await page.getByText(`Signed in as ${email}`).isVisible(), 'the old address stays');

      const link = linkIn(await mailTo(smtp, newEmail, /^Confirm your new email address/, n), '/.auth/confirm-email');
      await page.goto(link);
      await page.waitForURL(`${gh.url}/.auth/confirm-email`);
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Confirm your new email address');
      await page.getByRole('button', { name: 'Confirm' }).click();
      await page.waitForURL(`${gh.url}/.auth/account?email=changed`);
      assert.ok(await page.getByText('Your email address was changed.').isVisible());
      assert.ok(await page.getByText(`Signed in as ${newEmail}`).isVisible());
      assert.deepEqual(foreign, []);
    } finally {
      clock.advance(-11 * 60_000);
      await context.close();
    }
  });

  test('an invitation: the link from the message, a password, and the invitee is signed in; the register page says accounts are by invitation', async () => {
    const email = uniqueEmail('browser-invitee');
    const invitations = new Invitations(gh.gatehouse.store, new EmailTokens(gh.gatehouse.store), gh.config);
    const invited = await invitations.invite({ email, groups: ['staff'] });
    assert.ok(invited.ok);
    const n = smtp.messages.length;
    gh.gatehouse.mailer!.send(invitations.mail(invited.user, invited.link, TITLE));
    const link = linkIn(await mailTo(smtp, email, /^You are invited to Acme Portal$/, n), '/.auth/invite');
    const { context, page, foreign } = await isolatedContext(browser, gh.url);
    try {
      await page.goto(`${gh.url}/.auth/register`);
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Accounts are by invitation');

      await page.goto(link);
      await page.waitForURL(`${gh.url}/.auth/invite`);
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), `Welcome to ${TITLE}`);
      assert.ok(await page.getByText(email).isVisible());
      await page.getByLabel('Name').fill('Ivy Invitee');
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.waitForURL(`${gh.url}/`);
      const me = await page.request.get(`${gh.url}/.auth/me`);
      const body = await me.json();
      assert.deepEqual(
        [body.email, body.emailVerified, body.name, body.groups],
        [email, true, 'Ivy Invitee', ['staff']],
      );
      assert.deepEqual(foreign, []);
    } finally {
      await context.close();
    }
    assert.equal((await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
  });

  test('delete the account from the account page: a wrong address is refused with the form again, the right one signs the browser out and the address gets a notice', async () => {
    const email = uniqueEmail('browser-leave');
    const user = await gh.gatehouse.store.users.create({ email, emailVerified: true });
    await gh.gatehouse.accounts.setPassword(user.id, PASSWORD);
    const { context, page, foreign } = await isolatedContext(browser, gh.url);
    try {
      await signIn(page, email);

      await page.goto(`${gh.url}/.auth/account`);
      assert.ok(await page.getByRole('heading', { name: 'Delete account' }).isVisible());
      await page.getByLabel(`Type your email address (${email}) to confirm`).fill('someone@example.com');
      await page.getByRole('button', { name: 'Delete my account' }).click();
      await page.waitForURL(`${gh.url}/.auth/account/delete`);
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Delete your account');
      assert.ok(await page.getByText(`Type your email address, ${email}, to confirm`).first().isVisible());

      const n = smtp.messages.length;
      await page.getByLabel(`Type your email address (${email}) to confirm`).fill(email);
      await page.getByRole('button', { name: 'Delete my account' }).click();
      await page.waitForURL(`${gh.url}/.auth/account/delete`);
      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Your account was deleted');
      const cookies = await context.cookies(gh.url);
      assert.deepEqual(
        cookies.filter((c) => c.name === 'gatehouse'),
        [],
        'the session cookie is gone',
      );
      await page.getByRole('link', { name: `Go to ${TITLE}` }).click();
      await page.waitForURL(/\/\.auth\/login/);
      await mailTo(smtp, email, /^Your Acme Portal account was deleted$/, n);
      assert.equal(await gh.gatehouse.store.users.get(user.id), undefined);
      assert.deepEqual(foreign, []);
    } finally {
      await context.close();
    }
  });
});
