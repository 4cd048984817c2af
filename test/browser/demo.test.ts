import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { freePort } from '../helpers/gatehouse.ts';
import { browserSkip, isolatedContext, launchBrowser } from './chromium.ts';
import { audit, backgroundOf } from './inspect.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * The README's first step, for real: `npm start` (demo/run.ts: the demo app, and Gatehouse
 * in front of it with demo/gatehouse.yaml), on free ports and with its SQLite file in a
 * temporary directory, then a newcomer signs up in Chromium and sees X-User-Id.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHOTS = process.env.GATEHOUSE_SCREENSHOTS;

let demo: ChildProcess;
let exited: Promise<unknown>;
let url: string;
let ports: { gatehouse: number; app: number };
let dataDir: string;
let browser: Browser;
const output: string[] = [];

/** Resolves once Gatehouse logs that it serves; rejects if the process ends first. */
function started(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      output.push(line);
      if (line.includes('"event":"start"')) resolve();
    });
    createInterface({ input: child.stderr! }).on('line', (line) => output.push(line));
    child.once('exit', (code) =>
      reject(new Error(`npm start exited (${code}) before Gatehouse was serving:\n${output.join('\n')}`)),
    );
  });
}

/** Whether something accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

describeOrSkip('the demo, started with npm start', { skip: browserSkip(), timeout: 180_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    ports = { gatehouse: await freePort(), app: await freePort() };
    url = `http://127.0.0.1:${ports.gatehouse}`;
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-demo-'));
    demo = spawn('npm', ['start', '--silent'], {
      cwd: ROOT,
      // Its own process group, so that "Ctrl-C" below reaches npm and node alike, as in a terminal.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        // The npm script's `node` is the Node running these tests (24), whatever PATH says.
        PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
        GATEHOUSE_PORT: String(ports.gatehouse),
        DEMO_APP_PORT: String(ports.app),
        GATEHOUSE_PUBLIC_URL: url,
        GATEHOUSE_DATA_DIR: dataDir,
        npm_config_update_notifier: 'false',
      },
    });
    exited = once(demo, 'exit');
    await started(demo);
  });
  after(async () => {
    await browser?.close();
    if (demo && demo.exitCode === null && demo.signalCode === null) {
      process.kill(-demo.pid!, 'SIGKILL');
      await exited;
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  test('a newcomer signs up in Chromium and the demo page shows the X-User-Id it received', async () => {
    const { context, page, foreign } = await isolatedContext(browser, url);
    const email = uniqueEmail('demo');
    try {
      await page.goto(`${url}/`);
      assert.equal(page.url(), `${url}/.auth/login?rd=%2F`, 'the protected home page sends them to sign in');
      assert.ok(await page.getByText('Demo app', { exact: true }).isVisible(), "the login page shows the demo's title");
      await page.getByRole('link', { name: 'Create an account' }).click();
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.waitForURL(`${url}/`);

      assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Demo app');
      assert.equal(
        await page.getByRole('heading', { level: 2, name: /signed in/ }).textContent(),
        `You are signed in as ${email}`,
      );
      const shownId = (await page.locator('dl.identity dt:text-is("X-User-Id") + dd code').textContent())!;
      assert.match(shownId, /^[0-9a-f-]{36}$/);
      assert.equal(await page.locator('dl.identity dt:text-is("X-User-Email") + dd code').textContent(), email);

      // The raw header is in the table too, highlighted and listed first.
      const row = page.locator('tr', { has: page.locator('th:text-is("x-user-id")') });
      assert.equal(await row.locator('td').textContent(), shownId);
      assert.equal(await row.getAttribute('class'), 'identity');
      assert.notEqual(
        await backgroundOf(row),
        await backgroundOf(page.locator('tr', { has: page.locator('th:text-is("user-agent")') })),
        'X-User-* rows stand out',
      );
      assert.match(
        (await page.locator('table tr').first().locator('th').textContent())!,
        /^x-(user|gatehouse)-/,
        'identity headers come first',
      );

      // Gatehouse's own view agrees, and the store is where GATEHOUSE_DATA_DIR said.
      await page.getByRole('link', { name: `What Gatehouse knows: /.auth/me` }).click();
      await page.waitForURL(`${url}/.auth/me`);
      assert.equal((JSON.parse(await page.locator('body').innerText()) as { id: string }).id, shownId);
      assert.ok(existsSync(join(dataDir, 'gatehouse.db')), 'SQLite file in GATEHOUSE_DATA_DIR');

      // The page's "Sign out" link leads to the logout button.
      await page.goBack();
      await page.getByRole('link', { name: 'Sign out' }).first().click();
      await page.waitForURL(`${url}/.auth/logout`);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(`${url}/.auth/login?signed_out=1`);
      assert.deepEqual(foreign, []);
    } finally {
      await context.close();
    }
  });

  test('signed out, the public page says nobody is signed in and offers to sign in', async () => {
    const { context, page } = await isolatedContext(browser, url);
    try {
      await page.goto(`${url}/public/`);
      assert.equal(
        await page.getByRole('heading', { level: 2, name: /signed in/ }).textContent(),
        'Nobody is signed in',
      );
      assert.equal(
        await page.getByRole('link', { name: 'Sign in', exact: true }).getAttribute('href'),
        '/.auth/login?rd=%2Fpublic%2F',
      );
      assert.equal(await page.locator('th:text-is("x-user-id")').count(), 0);
    } finally {
      await context.close();
    }
  });

  test('what the page says about faking a user holds: a client-sent X-User-Id never arrives', async () => {
    const res = await new Client(url).get('/public/', { 'x-user-id': 'admin', 'x-user-email': 'admin@example.com' });
    assert.equal(res.status, 200);
    assert.deepEqual([res.json().userId, res.json().email], [null, null]);
  });

  test('opened past Gatehouse, the app warns that nothing is protected there', async () => {
    const appUrl = `http://127.0.0.1:${ports.app}`;
    const { context, page } = await isolatedContext(browser, appUrl);
    try {
      await page.goto(`${appUrl}/`);
      assert.equal(
        await page.getByRole('heading', { level: 2 }).first().textContent(),
        'You reached the app directly, not through Gatehouse',
      );
      assert.equal(await page.getByRole('link', { name: url }).getAttribute('href'), `${url}/`);
    } finally {
      await context.close();
    }
  });

  test('the demo page reads well: light and dark, desktop and phone', async () => {
    if (SHOTS) mkdirSync(SHOTS, { recursive: true });
    const email = uniqueEmail('demo-look');
    const c = new Client(url);
    const reg = await c.postJson('/.auth/register', { email, password: PASSWORD, name: 'Dee Demo' });
    assert.equal(reg.status, 201, reg.text);
    for (const colorScheme of ['light', 'dark'] as const) {
      for (const width of [1280, 320]) {
        const where = `demo page, ${colorScheme}, ${width}px`;
        const { context, page } = await isolatedContext(browser, url, {
          colorScheme,
          viewport: { width, height: 800 },
        });
        try {
          await context.addCookies([
            { name: 'gatehouse', value: c.jar.get('gatehouse')!, url, httpOnly: true, sameSite: 'Lax' },
          ]);
          await page.goto(`${url}/`);
          if (SHOTS) await page.screenshot({ path: join(SHOTS, `demo-${colorScheme}-${width}.png`), fullPage: true });
          const a = await audit(page);
          assert.equal(a.lang, 'en');
          assert.deepEqual(a.h1, ['Demo app']);
          assert.deepEqual(a.lowContrast, [], `${where}: text contrast`);
          assert.equal(a.overflowX, false, `${where}: no sideways scrolling`);
          assert.equal(
            await page.getByRole('heading', { level: 2, name: /signed in/ }).textContent(),
            'You are signed in as Dee Demo',
          );
          // And as someone who is not signed in.
          await context.clearCookies();
          await page.goto(`${url}/public/`);
          if (SHOTS)
            await page.screenshot({ path: join(SHOTS, `demo-public-${colorScheme}-${width}.png`), fullPage: true });
          const anonymous = await audit(page);
          assert.deepEqual(anonymous.lowContrast, [], `${where}, signed out: text contrast`);
          assert.equal(anonymous.overflowX, false, `${where}, signed out: no sideways scrolling`);
        } finally {
          await context.close();
        }
      }
    }
  });

  test('Ctrl-C stops Gatehouse and the demo app', async () => {
    assert.ok(await listening(ports.gatehouse));
    assert.ok(await listening(ports.app));
    process.kill(-demo.pid!, 'SIGINT');
    await exited;
    assert.equal(await listening(ports.gatehouse), false, 'Gatehouse port released');
    assert.equal(await listening(ports.app), false, 'demo app port released');
  });
});
