import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startLab, type Lab } from '../helpers/providers.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * A user's whole journey with providers in real Chromium, against two real IdPs whose own
 * login forms are filled in: protected page → "Continue with IdP A" → back on the page;
 * link IdP B from the account page; sign out of Gatehouse and of IdP A (RP-initiated
 * logout); sign in with B as the same user; unlink A. Plain forms and links, so it runs with
 * JavaScript off as well. Only Gatehouse and the two IdPs are ever contacted.
 */

const TITLE = 'Acme Portal';
let lab: Lab;
let gh: TestGatehouse;
let browser: Browser;

describeOrSkip('providers in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    lab = await startLab();
    gh = await startGatehouse(() => ({ title: TITLE, headers: { email: true }, providers: lab.providers() }), {
      port: lab.ports[0],
    });
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
    await lab?.close();
  });

  for (const javaScriptEnabled of [true, false]) {
    test(`sign in, link, sign out everywhere, sign in with the other provider, unlink (JavaScript ${javaScriptEnabled ? 'on' : 'off'})`, async () => {
      const who = javaScriptEnabled ? 'js' : 'nojs';
      lab.a.accounts.set(`alice-${who}`, {
        sub: `alice-${who}`,
        email: `alice-${who}@example.com`,
        email_verified: true,
        name: `Alice ${who}`,
      });
      lab.b.accounts.set(`b-alice-${who}`, {
        sub: `b-alice-${who}`,
        email: `alice-${who}@example.com`,
        email_verified: true,
      });
      const { context, page, foreign } = await isolatedContext(browser, [gh.url, lab.a.issuer, lab.b.issuer], {
        javaScriptEnabled,
      });
      const target = `/reports/q3?year=2026&who=${who}`;
      const h1 = () => page.getByRole('heading', { level: 1 }).textContent();
      try {
        // 1. A protected page → the login page, with a button per provider.
        await page.goto(gh.url + target);
        assert.equal(page.url(), `${gh.url}/.auth/login?rd=${encodeURIComponent(target)}`);
        assert.ok(await page.getByRole('link', { name: 'Continue with IdP A' }).isVisible());
        assert.ok(await page.getByRole('link', { name: 'Continue with IdP B' }).isVisible());
        assert.ok(await page.getByLabel('Password', { exact: true }).isVisible(), 'password sign-in stays');

        // 2. IdP A's own login form, then back on the page first asked for.
        await page.getByRole('link', { name: 'Continue with IdP A' }).click();
        await page.waitForURL((u) => u.href.startsWith(`${lab.a.issuer}/interaction/`));
        assert.equal(await h1(), 'Sign in to idpa');
        const loginCookie = (await context.cookies(gh.url)).find((c) => c.name === 'gatehouse-login');
        assert.ok(
          loginCookie?.httpOnly && loginCookie.sameSite === 'Lax',
          'the flow is bound to this browser by an HttpOnly cookie',
        );
        await page.getByLabel('Username').fill(`alice-${who}`);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForURL(gh.url + target);
        const echoed = JSON.parse(await page.locator('body').innerText()) as { headers: Record<string, string> };
        const userId = echoed.headers['x-user-id']!;
        assert.match(userId, /^[0-9a-f-]{36}$/);
        assert.equal(echoed.headers['x-user-email'], `alice-${who}@example.com`);
        assert.ok(
          !JSON.stringify(await context.cookies()).includes(lab.a.issued.at(-1)!.access_token!),
          'no provider token in any cookie',
        );

        // 3. The account page: link IdP B through B's login form.
        await page.goto(`${gh.url}/.auth/account`);
        assert.equal(await h1(), 'Your account');
        assert.ok(await page.getByText('Your only way to sign in').isVisible());
        await page.getByRole('button', { name: 'Link IdP B' }).click();
        await page.waitForURL((u) => u.href.startsWith(`${lab.b.issuer}/interaction/`));
        await page.getByLabel('Username').fill(`b-alice-${who}`);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForURL(`${gh.url}/.auth/account?linked=b`);
        assert.equal(await page.getByRole('status').textContent(), 'IdP B is linked to your account.');
        assert.equal(await page.getByRole('button', { name: /^Unlink/ }).count(), 2, 'two ways in: either may go');

        // 4. Sign out: Gatehouse, then IdP A (it asks), then back on the sign-in page.
        await page.goto(`${gh.url}/.auth/logout`);
        await page.getByRole('button', { name: 'Sign out' }).click();
        await page.waitForURL((u) => u.href.startsWith(`${lab.a.issuer}/session/end`));
        assert.equal(await h1(), 'Sign out of idpa?');
        await page.getByRole('button', { name: 'Yes, sign me out' }).click();
        await page.waitForURL(`${gh.url}/.auth/login?signed_out=1`);
        assert.equal(await page.getByRole('status').textContent(), 'You have signed out.');
        assert.equal(
          (await context.cookies(gh.url)).find((c) => c.name === 'gatehouse'),
          undefined,
        );

        // 5. IdP B (still signed in there) brings back the same user, without a form.
        await page.goto(`${gh.url}/.auth/login?rd=%2Fhome`);
        await page.getByRole('link', { name: 'Continue with IdP B' }).click();
        await page.waitForURL(`${gh.url}/home`);
        assert.equal(
          (JSON.parse(await page.locator('body').innerText()) as { headers: Record<string, string> }).headers[
            'x-user-id'
          ],
          userId,
        );

        // 6. Unlink IdP A; B is then the only way in.
        await page.goto(`${gh.url}/.auth/account`);
        await page.getByRole('button', { name: 'Unlink IdP A' }).click();
        await page.waitForURL(`${gh.url}/.auth/account?unlinked=a`);
        assert.equal(await page.getByRole('status').textContent(), 'IdP A is no longer linked.');
        assert.ok(await page.getByText('Your only way to sign in').isVisible());
        assert.equal(await page.getByRole('button', { name: /^Unlink/ }).count(), 0);

        // 7. Signed out (B has no RP-initiated logout: Gatehouse only), IdP A's session
        // really ended: it asks who you are again.
        await page.goto(`${gh.url}/.auth/logout`);
        await page.getByRole('button', { name: 'Sign out' }).click();
        await page.waitForURL(`${gh.url}/.auth/login?signed_out=1`);
        await page.getByRole('link', { name: 'Continue with IdP A' }).click();
        await page.waitForURL((u) => u.href.startsWith(`${lab.a.issuer}/interaction/`));
        assert.equal(await h1(), 'Sign in to idpa');
        assert.deepEqual(foreign, [], 'nothing but Gatehouse and the two IdPs was contacted');
      } finally {
        await context.close();
      }
    });
  }
});
