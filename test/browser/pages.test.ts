import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { loginPage, logoutPage, registerPage } from '../../src/pages/index.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';
import { audit, tabThrough } from './inspect.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * Gatehouse's own pages as people see them: in light and dark colour schemes, on a desktop
 * and at 320 CSS pixels (a small phone, or 400% zoom). Each page must have its language,
 * one heading, the app's title, labelled fields with the right autocomplete, readable
 * contrast, visible keyboard focus, no sideways scrolling, its stylesheet applied under the
 * CSP, and no request to any other origin.
 *
 * GATEHOUSE_SCREENSHOTS=<dir> also saves a screenshot of every page in every variant.
 */

const TITLE = 'Acme Portal';
const SHOTS = process.env.GATEHOUSE_SCREENSHOTS;

let gh: TestGatehouse;
let browser: Browser;
let email: string;

interface PageState {
  name: string;
  heading: string;
  /** Brings a fresh page (own browser profile) to this state. */
  open(page: Page): Promise<void>;
  signedIn?: boolean;
  autocomplete?: Record<string, string>;
  /** Controls a keyboard user must reach, in order (a substring of the focus-stop description). */
  tabOrder?: string[];
}

async function submit(page: Page, button: string): Promise<void> {
  const answer = page.waitForResponse((r) => r.request().method() === 'POST');
  await page.getByRole('button', { name: button }).click();
  await answer;
  await page.waitForLoadState();
}

const LOGIN_FIELDS = { email: 'username', password: 'current-password' };
const REGISTER_FIELDS = { email: 'username', name: 'name', password: 'new-password' };

const STATES: PageState[] = [
  {
    name: 'login',
    heading: 'Sign in',
    open: async (p) => void (await p.goto(`${gh.url}/reports?q=1`)),
    autocomplete: LOGIN_FIELDS,
    tabOrder: ['input#email', 'input#password', 'button "Sign in"', 'a "Create an account"'],
  },
  {
    name: 'login-error',
    heading: 'Sign in',
    open: async (p) => {
      await p.goto(`${gh.url}/.auth/login`);
      await p.getByLabel('Email', { exact: true }).fill(email);
      await p.getByLabel('Password', { exact: true }).fill('not the right password');
      await submit(p, 'Sign in');
    },
    autocomplete: LOGIN_FIELDS,
    tabOrder: ['input#email', 'input#password', 'button "Sign in"'],
  },
  {
    name: 'register',
    heading: 'Create an account',
    open: async (p) => void (await p.goto(`${gh.url}/.auth/register?rd=%2Freports`)),
    autocomplete: REGISTER_FIELDS,
    tabOrder: ['input#email', 'input#name', 'input#password', 'button "Create account"', 'a "Sign in"'],
  },
  {
    name: 'register-error',
    heading: 'Create an account',
    open: async (p) => {
      await p.goto(`${gh.url}/.auth/register`);
      await p.getByLabel('Email', { exact: true }).fill('not-an-email');
      await p.getByLabel('Password', { exact: true }).fill('password');
      await submit(p, 'Create account');
    },
    autocomplete: REGISTER_FIELDS,
    tabOrder: [
      'a "Email: Enter an email address',
      'a "Password: This password is too',
      'input#email',
      'input#name',
      'input#password',
      'button "Create account"',
    ],
  },
  {
    name: 'login-for-device',
    heading: 'Sign in',
    open: async (p) => {
      await p.goto(`${gh.url}/.auth/device?user_code=BCDF-GHJK`);
      assert.ok(
        await p.getByRole('status').getByText('Sign in to approve the device login.', { exact: false }).isVisible(),
        'the sign-in page says a device login waits',
      );
    },
    autocomplete: LOGIN_FIELDS,
    tabOrder: ['input#email', 'input#password', 'button "Sign in"'],
  },
  {
    name: 'device-error',
    heading: 'Connect a device',
    signedIn: true,
    open: async (p) => {
      await p.goto(`${gh.url}/.auth/device`);
      await p.getByLabel('Code', { exact: true }).fill('ABCD-EFGH');
      await submit(p, 'Continue');
    },
    tabOrder: ['a "Code: This code has A and E', 'input#user_code', 'button "Continue"'],
  },
  {
    name: 'logout',
    heading: 'Sign out',
    signedIn: true,
    open: async (p) => void (await p.goto(`${gh.url}/.auth/logout`)),
    tabOrder: ['button "Sign out"'],
  },
  {
    name: 'signed-out',
    heading: 'Sign in',
    signedIn: true,
    open: async (p) => {
      await p.goto(`${gh.url}/.auth/logout`);
      await submit(p, 'Sign out');
    },
    autocomplete: LOGIN_FIELDS,
  },
  {
    name: 'logout-not-signed-in',
    heading: 'Sign out',
    open: async (p) => void (await p.goto(`${gh.url}/.auth/logout`)),
    tabOrder: ['a "Sign in"', 'button "Sign out"'],
  },
  {
    name: 'not-found',
    heading: 'Not Found',
    open: async (p) => void (await p.goto(`${gh.url}/.auth/no-such-page`)),
    tabOrder: ['a "Go to the start page"'],
  },
];

const VARIANTS = [
  { colorScheme: 'light', viewport: { width: 1280, height: 800 } },
  { colorScheme: 'dark', viewport: { width: 1280, height: 800 } },
  { colorScheme: 'light', viewport: { width: 320, height: 640 } },
  { colorScheme: 'dark', viewport: { width: 320, height: 640 } },
] as const;

describeOrSkip("Gatehouse's pages in Chromium", { skip: browserSkip(), timeout: 300_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    gh = await startGatehouse(() => ({
      title: TITLE,
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
    }));
    email = uniqueEmail('pages');
    await registerJson(new Client(gh.url), email);
    if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
  });

  for (const state of STATES) {
    test(state.name, async () => {
      for (const variant of VARIANTS) {
        const where = `${state.name}, ${variant.colorScheme}, ${variant.viewport.width}px`;
        const { context, page, foreign } = await isolatedContext(browser, gh.url, variant);
        const consoleErrors: string[] = [];
        page.on('console', (m) => {
          // A 4xx answer for the page itself (a wrong password is a 401) is not a page fault.
          if (
            m.type() === 'error' &&
            !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())
          )
            consoleErrors.push(m.text());
        });
        page.on('pageerror', (e) => consoleErrors.push(e.message));
        try {
          if (state.signedIn) {
            const c = new Client(gh.url);
            await c.postJson('/.auth/login', { email, password: PASSWORD });
            await context.addCookies([
              { name: 'gatehouse', value: c.jar.get('gatehouse')!, url: gh.url, httpOnly: true, sameSite: 'Lax' },
            ]);
          }
          await state.open(page);
          if (SHOTS)
            await page.screenshot({
              path: join(SHOTS, `${state.name}-${variant.colorScheme}-${variant.viewport.width}.png`),
              fullPage: true,
            });

          const a = await audit(page);
          assert.equal(a.lang, 'en', where);
          assert.deepEqual(a.h1, [state.heading], `${where}: one h1`);
          assert.match(
            a.title,
            new RegExp(`${state.heading} · ${TITLE}$`),
            `${where}: the title names the page and the app`,
          );
          assert.ok(await page.getByText(TITLE, { exact: true }).isVisible(), `${where}: the app's title is shown`);
          assert.deepEqual(a.unlabelled, [], `${where}: every field has a label`);
          if (state.autocomplete) assert.deepEqual(a.autocomplete, state.autocomplete, `${where}: autocomplete`);
          assert.deepEqual(a.lowContrast, [], `${where}: text contrast`);
          assert.deepEqual(a.faintFields, [], `${where}: field borders stand out`);
          assert.equal(a.overflowX, false, `${where}: no sideways scrolling`);
          assert.doesNotMatch(
            a.mainBackground,
            /^rgba\(0, 0, 0, 0\)$/,
            `${where}: the stylesheet applied (CSP hash matches)`,
          );

          const stops = await tabThrough(page);
          for (const s of stops)
            assert.ok(
              s.ratio >= 3,
              `${where}: focus on ${s.element} is hard to see (${s.outline}, ${s.ratio.toFixed(2)}:1)`,
            );
          if (state.tabOrder) {
            const names = stops.map((s) => s.element);
            let at = -1;
            for (const want of state.tabOrder) {
              const i = names.findIndex((n, j) => j > at && n.includes(want));
              assert.ok(i > at, `${where}: keyboard reaches ${want} in order; got ${names.join(' → ')}`);
              at = i;
            }
          }
          assert.deepEqual(consoleErrors, [], `${where}: no console errors (CSP violations show up here)`);
          assert.deepEqual(foreign, [], `${where}: no third-party requests`);
        } finally {
          await context.close();
        }
      }
    });
  }
});

describeOrSkip('escaping, as a browser parses it', { skip: browserSkip(), timeout: 60_000 }, () => {
  let b: Browser;
  before(async () => {
    b = await launchBrowser();
  });
  after(() => b?.close());

  test('titles, addresses, return targets and errors with markup in them stay text', async () => {
    const evil = `"><img src=x onerror="document.title='owned'"><script>document.title='owned'</script>'`;
    const pages = [
      loginPage({
        appTitle: evil,
        action: '/.auth/login',
        csrf: evil,
        rd: evil,
        email: evil,
        errors: { form: evil },
        notice: evil,
        registerUrl: `/.auth/register?rd=${evil}`,
      }),
      registerPage({
        appTitle: evil,
        action: '/.auth/register',
        loginUrl: evil,
        csrf: 't',
        rd: evil,
        email: evil,
        name: evil,
        errors: { email: evil, name: evil },
        minPasswordLength: 8,
      }),
      logoutPage({ appTitle: evil, action: '/.auth/logout', csrf: 't', rd: evil, email: evil }),
    ];
    const page = await b.newPage();
    try {
      for (const html of pages) {
        await page.setContent(html);
        assert.equal(await page.locator('img, script').count(), 0, 'no element came from the input');
        assert.notEqual(await page.title(), 'owned');
        assert.ok(await page.getByText(evil, { exact: true }).first().isVisible(), 'the text is shown as typed');
        for (const input of await page.locator('input[type=hidden][name=rd], input#email').all())
          assert.equal(await input.inputValue(), evil);
      }
    } finally {
      await page.close();
    }
  });
});
