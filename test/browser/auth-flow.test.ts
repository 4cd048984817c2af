import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { selfSigned } from '../helpers/tls.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';
import { descriptions, focusedId } from './inspect.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * A newcomer's path through a real Gatehouse in front of the real upstream echo app, in real
 * Chromium: protected page → login (with rd) → "Create an account" → back where they were,
 * signed in → sign out. Plain HTML forms; run once more with JavaScript off in the browser.
 */

const TITLE = 'Acme Portal';

let gh: TestGatehouse;
let browser: Browser;

describeOrSkip('in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    gh = await startGatehouse(() => ({
      title: TITLE,
      headers: { email: true, name: true },
      routes: [
        { path: '/public/**', access: 'public' },
        { path: '/api/**', unauthenticated: '401' },
      ],
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
    }));
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
  });

  const loginUrl = (rd: string) => `${gh.url}/.auth/login?rd=${encodeURIComponent(rd)}`;
  /** What the upstream app recorded for the page, by user. */
  const upstreamSaw = (path: string) => gh.upstream.requests.filter((r) => r.url === path);

  for (const javaScriptEnabled of [true, false]) {
    test(`newcomer: protected page → sign-up → back on the page as a user → sign out (JavaScript ${javaScriptEnabled ? 'on' : 'off'})`, async () => {
      const TARGET = `/reports/q3?year=2026&js=${javaScriptEnabled ? 'on' : 'off'}`;
      const { context, page, foreign } = await isolatedContext(browser, gh.url, { javaScriptEnabled });
      const email = uniqueEmail(javaScriptEnabled ? 'newcomer-js' : 'newcomer-nojs');
      try {
        // 1. The protected page sends them to sign in, remembering where they wanted to go.
        await page.goto(gh.url + TARGET);
        assert.equal(page.url(), loginUrl(TARGET));
        assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign in');
        assert.equal(await page.title(), `Sign in · ${TITLE}`);
        assert.ok(await page.getByText(TITLE, { exact: true }).isVisible(), "the app's title is on the login page");
        assert.equal(upstreamSaw(TARGET).length, 0, 'nothing reached the app before sign-in');

        // 2. "Create an account" keeps the return target.
        await page.getByRole('link', { name: 'Create an account' }).click();
        await page.waitForURL(`${gh.url}/.auth/register?rd=${encodeURIComponent(TARGET)}`);
        assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Create an account');

        // 3. Register with the form; the POST sets the session cookie.
        await page.getByLabel('Email', { exact: true }).fill(email);
        await page.getByLabel('Name', { exact: true }).fill('Ann Newcomer');
        await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
        const posted = page.waitForResponse(
          (r) => r.url() === `${gh.url}/.auth/register` && r.request().method() === 'POST',
        );
        const landed = page.waitForResponse((r) => r.url() === gh.url + TARGET);
        await page.getByRole('button', { name: 'Create account' }).click();
        const registerResponse = await posted;
        assert.equal(registerResponse.status(), 303);
        const setCookies = (await registerResponse.headersArray())
          .filter((h) => h.name.toLowerCase() === 'set-cookie')
          .map((h) => h.value);
        const sessionSetCookie = setCookies.find((c) => c.startsWith('gatehouse='));
        assert.ok(sessionSetCookie, `a session cookie is set: ${setCookies.join(' | ')}`);
        assert.doesNotMatch(sessionSetCookie, /;\s*domain=/i, 'host-only: no Domain attribute');

        // 4. Back on the page first asked for, and the app saw who they are.
        const appResponse = await landed;
        await page.waitForURL(gh.url + TARGET);
        assert.equal(appResponse.status(), 200);
        const echoed = JSON.parse(await page.locator('body').innerText()) as {
          url: string;
          headers: Record<string, string>;
        };
        assert.equal(echoed.url, TARGET);
        const userId = echoed.headers['x-user-id'];
        assert.match(userId ?? '', /^[0-9a-f-]{36}$/, 'the page shows the X-User-Id the app received');
        assert.equal(echoed.headers['x-user-email'], undefined, 'not verified yet: apps get verified addresses only');
        assert.equal(echoed.headers['x-user-name'], 'Ann Newcomer');
        assert.ok(!(echoed.headers.cookie ?? '').includes('gatehouse'), 'Gatehouse cookies never reach the app');
        const recorded = upstreamSaw(TARGET).at(-1)!;
        assert.equal(recorded.headers['x-user-id'], userId, 'the upstream recorded the same X-User-Id');

        // 5. The session cookie in the browser: HttpOnly, SameSite=Lax, host-only, Path=/.
        const cookies = await context.cookies(gh.url);
        const session = cookies.find((c) => c.name === 'gatehouse');
        assert.ok(session, `session cookie in the browser: ${cookies.map((c) => c.name).join(', ')}`);
        assert.equal(session.httpOnly, true);
        assert.equal(session.sameSite, 'Lax');
        assert.equal(session.path, '/');
        assert.equal(session.domain, '127.0.0.1', 'host-only (a Domain cookie would read ".127.0.0.1" or a parent)');
        if (javaScriptEnabled) {
          const scriptVisible = await page.evaluate(
            () => (globalThis as unknown as { document: { cookie: string } }).document.cookie,
          );
          assert.ok(!scriptVisible.includes('gatehouse='), 'scripts cannot read the session cookie');
        }
        const me = await page.goto(`${gh.url}/.auth/me`);
        assert.equal(((await me!.json()) as { id: string }).id, userId, '/.auth/me names the same user');

        // 6. Sign out through the logout page's button.
        await page.goto(`${gh.url}/.auth/logout`);
        assert.ok(await page.getByText(`You are signed in as ${email}.`).isVisible());
        await page.getByRole('button', { name: 'Sign out' }).click();
        await page.waitForURL(`${gh.url}/.auth/login?signed_out=1`);
        assert.equal(await page.getByRole('status').textContent(), 'You have signed out.');
        assert.equal(
          (await context.cookies(gh.url)).find((c) => c.name === 'gatehouse'),
          undefined,
          'the browser dropped the cookie',
        );

        // 7. The protected page asks for a sign-in again ...
        const seenBefore = upstreamSaw(TARGET).length;
        await page.goto(gh.url + TARGET);
        assert.equal(page.url(), loginUrl(TARGET));

        // ... and the old cookie, planted back into a browser, is dead.
        const { context: thief, page: thiefPage } = await isolatedContext(browser, gh.url, { javaScriptEnabled });
        await thief.addCookies([
          { name: 'gatehouse', value: session.value, url: gh.url, httpOnly: true, sameSite: 'Lax' },
        ]);
        await thiefPage.goto(gh.url + TARGET);
        assert.equal(thiefPage.url(), loginUrl(TARGET), 'the old cookie gets the login page');
        const api = await thiefPage.goto(`${gh.url}/.auth/me`);
        assert.equal(api!.status(), 401);
        await thief.close();
        assert.equal(upstreamSaw(TARGET).length, seenBefore, 'the app saw no request after sign-out');

        assert.deepEqual(foreign, [], 'no request left the origin');
      } finally {
        await context.close();
      }
    });
  }

  /** Submits the form with its button and waits for the POST's answer and the new page. */
  async function submit(page: Page, button: string): Promise<number> {
    const answer = page.waitForResponse((r) => r.request().method() === 'POST');
    await page.getByRole('button', { name: button }).click();
    const res = await answer;
    await page.waitForLoadState();
    return res.status();
  }

  test('wrong password: the error is announced above the form, fields kept, focus on the password', async () => {
    const email = uniqueEmail('wrong-pw');
    await registerJson(new Client(gh.url), email);
    const { context, page } = await isolatedContext(browser, gh.url);
    try {
      await page.goto(loginUrl('/reports/q4'));
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByLabel('Password', { exact: true }).fill('not the password at all');
      assert.equal(await submit(page, 'Sign in'), 401);

      const alert = page.getByRole('alert');
      assert.equal(await alert.innerText(), 'The email or password is not correct.');
      assert.match(await page.title(), /^Error: Sign in · /);
      assert.equal(await page.getByLabel('Email', { exact: true }).inputValue(), email, 'email kept');
      assert.equal(await page.getByLabel('Password', { exact: true }).inputValue(), '', 'password never echoed back');
      assert.equal(await focusedId(page), 'password', 'focus is on the password field');
      assert.deepEqual(
        await descriptions(page.locator('#password')),
        ['The email or password is not correct.'],
        'a screen reader reads the error with the field',
      );

      // "Next to the form": right above the first field, inside the card, visible without scrolling.
      const box = (await alert.boundingBox())!;
      const form = (await page.locator('form').boundingBox())!;
      const viewport = page.viewportSize()!;
      assert.ok(
        box.y + box.height <= form.y && form.y - (box.y + box.height) < 48,
        `alert ends at ${box.y + box.height}, form starts at ${form.y}`,
      );
      assert.ok(box.y >= 0 && box.y + box.height <= viewport.height, 'the error is on screen');

      // The right password from here still goes where the user was heading.
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      assert.equal(await submit(page, 'Sign in'), 303);
      await page.waitForURL(`${gh.url}/reports/q4`);
    } finally {
      await context.close();
    }
  });

  test('registration errors sit next to the right field, with aria-invalid and aria-describedby', async () => {
    const { context, page } = await isolatedContext(browser, gh.url);
    try {
      await page.goto(`${gh.url}/.auth/register`);
      await page.getByLabel('Email', { exact: true }).fill('not-an-email');
      await page.getByLabel('Name', { exact: true }).fill('Bo');
      await page.getByLabel('Password', { exact: true }).fill('password');
      assert.equal(await submit(page, 'Create account'), 400);

      assert.match(await page.title(), /^Error: Create an account · /);
      const email = page.getByLabel('Email', { exact: true });
      const password = page.getByLabel('Password', { exact: true });
      assert.equal(await email.getAttribute('aria-invalid'), 'true');
      assert.equal(await password.getAttribute('aria-invalid'), 'true');
      assert.equal(
        await page.getByLabel('Name', { exact: true }).getAttribute('aria-invalid'),
        null,
        'the valid field is not marked',
      );
      assert.deepEqual(await descriptions(page.locator('#email')), ['Enter an email address like name@example.com.']);
      const pwDescriptions = await descriptions(page.locator('#password'));
      assert.equal(pwDescriptions.length, 2);
      assert.match(pwDescriptions[0]!, /^At least 8 characters/, 'the hint first');
      assert.match(pwDescriptions[1]!, /too common/i, 'then the error');
      assert.equal(await email.inputValue(), 'not-an-email', 'input kept');
      assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'Bo');
      assert.equal(await focusedId(page), 'email', 'focus on the first field with an error');

      // Each message is rendered right under its own field, not somewhere else on the page.
      for (const [input, id] of [
        [email, 'email-error'],
        [password, 'password-error'],
      ] as const) {
        const field = (await input.boundingBox())!;
        const error = (await page.locator(`#${id}`).boundingBox())!;
        const gap = error.y - (field.y + field.height);
        assert.ok(gap >= 0 && gap < 16, `#${id} is ${gap}px under its field`);
      }

      // The summary is announced; each item names its field and links to it.
      const alert = page.getByRole('alert');
      assert.match(await alert.innerText(), /There are 2 problems/);
      assert.deepEqual(
        await alert
          .getByRole('link')
          .evaluateAll((as) => as.map((a) => [a.getAttribute('href'), a.textContent?.replace(/:.*/s, '')])),
        [
          ['#email', 'Email'],
          ['#password', 'Password'],
        ],
      );
      await alert.getByRole('link', { name: /^Password: / }).click();
      assert.equal(await focusedId(page), 'password', 'the link takes the keyboard to its field');

      // A taken address: the message moves to the email field, the password is fine.
      const taken = uniqueEmail('taken');
      await registerJson(new Client(gh.url), taken);
      await email.fill(taken);
      await password.fill(PASSWORD);
      assert.equal(await submit(page, 'Create account'), 409);
      assert.equal(await page.getByLabel('Email', { exact: true }).getAttribute('aria-invalid'), 'true');
      assert.equal(await page.getByLabel('Password', { exact: true }).getAttribute('aria-invalid'), null);
      assert.match((await descriptions(page.locator('#email')))[0]!, /cannot be used to register/);
    } finally {
      await context.close();
    }
  });
});

describe("cookie naming over https (Gatehouse's own TLS)", () => {
  let secure: TestGatehouse;
  const cert = selfSigned();
  before(async () => {
    secure = await startGatehouse(() => ({}), { tls: cert });
  });
  after(() => secure.close());

  test('__Host- prefix, Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain on every cookie', async () => {
    const c = new Client(secure.url, { dispatcher: cert.agent });
    const res = await c.postJson('/.auth/register', { email: uniqueEmail('https'), password: PASSWORD });
    assert.equal(res.status, 201, res.text);
    const login = await c.html('/.auth/login');
    // The loop-breaker's marker is the one exception, on purpose (diagnosis/).
    const all = [...res.cookies, ...login.cookies].filter((s) => !s.startsWith('gatehouse-signin='));
    const names = all.map((s) => s.slice(0, s.indexOf('=')));
    assert.ok(names.includes('__Host-gatehouse'), names.join(', '));
    for (const cookie of all) {
      assert.match(cookie, /^__Host-/, cookie);
      const attrs = cookie
        .split(';')
        .slice(1)
        .map((a) => a.trim().toLowerCase());
      assert.ok(attrs.includes('secure'), cookie);
      assert.ok(attrs.includes('httponly'), cookie);
      assert.ok(attrs.includes('samesite=lax'), cookie);
      assert.ok(attrs.includes('path=/'), cookie);
      assert.ok(!attrs.some((a) => a.startsWith('domain')), `no Domain: ${cookie}`);
    }
  });
});
