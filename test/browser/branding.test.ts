import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { runCli } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { browserSkip, contrast, isolatedContext, launchBrowser } from './chromium.ts';

/**
 * branding: {logo, color}: a consultancy's client sees its own logo and colour on the sign-in
 * pages. Real Chromium checks what only a browser can: that the page's CSP lets the branded
 * stylesheet and the logo in (a wrong hash would leave the plain blue and a console error).
 */

// In the page (evaluate): what the DOM offers, declared for TypeScript without the DOM library.
declare function getComputedStyle(el: unknown): { backgroundColor: string; color: string };

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-brand-'));
const BRAND = '#0b6e4f';
const logo = join(dir, 'acme.svg');
writeFileSync(
  logo,
  '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#0b6e4f"/></svg>\n',
);

const LINKS = [
  { text: 'Privacy', url: 'https://acme.example/privacy' },
  { text: 'Terms & "conditions"', url: '/terms' },
];
let gh: TestGatehouse;
let browser: Browser;
before(async () => {
  gh = await startGatehouse(() => ({
    title: 'Acme Portal',
    branding: { logo, color: BRAND, links: LINKS },
    routes: [{ path: '/closed/**', access: 'deny' }],
  }));
});
after(async () => {
  await gh?.close();
  rmSync(dir, { recursive: true, force: true });
});

describeOrSkip('branded pages in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  test('the sign-in page shows the logo and the colour, light and dark, with nothing refused by its CSP', async () => {
    const { page, context } = await isolatedContext(browser, gh.url);
    const refused: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) refused.push(m.text());
    });
    try {
      await page.goto(`${gh.url}/dashboard`);
      await page.waitForURL(/\/\.auth\/login\?rd=%2Fdashboard$/);
      const img = page.locator('img.logo');
      assert.match((await img.getAttribute('src'))!, /^\/\.auth\/brand\/logo-[\w-]{16}\.svg$/);
      assert.equal(
        await img.evaluate((i: { complete: boolean; naturalWidth: number }) => i.complete && i.naturalWidth),
        120,
        'the logo loaded',
      );
      const button = page.getByRole('button', { name: 'Sign in', exact: true });
      const light = await button.evaluate((b) => getComputedStyle(b).backgroundColor);
      assert.equal(light, 'rgb(11, 110, 79)', 'the button in the brand colour');
      const lightText = await button.evaluate((b) => getComputedStyle(b).color);
      assert.ok(contrast(light, lightText) >= 4.5, `button text ${lightText} reads on ${light}`);

      await page.emulateMedia({ colorScheme: 'dark' });
      const dark = await button.evaluate((b) => getComputedStyle(b).backgroundColor);
      const card = await page.locator('main').evaluate((m) => getComputedStyle(m).backgroundColor);
      assert.notEqual(dark, light, 'dark mode has its own shade');
      assert.ok(contrast(dark, card) >= 4.5, `links in ${dark} read on the dark card ${card}`);
      const darkText = await button.evaluate((b) => getComputedStyle(b).color);
      assert.ok(contrast(dark, darkText) >= 4.5, `button text ${darkText} reads on ${dark}`);
      assert.deepEqual(refused, []);
    } finally {
      await context.close();
    }
  });
});

describe('branding over HTTP', () => {
  test("every page of the site, Gatehouse's error pages too, allows exactly its own stylesheet; the logo is served for good under its hash", async () => {
    for (const path of ['/.auth/login', '/.auth/register', '/closed/x']) {
      const res = await fetch(`${gh.url}${path}`, { headers: { accept: 'text/html' } });
      const text = await res.text();
      const css = /<style>([\s\S]*?)<\/style>/.exec(text)![1]!;
      assert.ok(css.includes('--accent:#0b6e4f'), `${path}: the brand colour`);
      const hash = `'sha256-${createHash('sha256').update(css).digest('base64')}'`;
      assert.match(
        res.headers.get('content-security-policy')!,
        new RegExp(`style-src ${hash.replace(/[+/]/g, '\\$&')};`),
        path,
      );
      assert.match(text, /<img class="logo" src="\/\.auth\/brand\/logo-[\w-]{16}\.svg" alt="">/, path);
      assert.ok(
        text.includes(
          '<footer class="links"><a href="https://acme.example/privacy" rel="noopener">Privacy</a> · <a href="/terms" rel="noopener">Terms &amp; &quot;conditions&quot;</a></footer>\n</main>',
        ),
        `${path}: the links, escaped, at the foot of the page`,
      );
    }
    const src = /src="(\/\.auth\/brand\/[^"]+)"/.exec(await (await fetch(`${gh.url}/.auth/login`)).text())![1]!;
    const served = await fetch(`${gh.url}${src}`);
    assert.equal(served.status, 200);
    assert.equal(served.headers.get('content-type'), 'image/svg+xml');
    assert.equal(served.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.match(
      served.headers.get('content-security-policy')!,
      /default-src 'none'.*sandbox/,
      'an SVG opened alone runs nothing',
    );
    assert.equal(await served.text(), readFileSync(logo, 'utf8'));
    assert.equal((await fetch(`${gh.url}/.auth/brand/logo-AAAAAAAAAAAAAAAA.svg`)).status, 404, 'another name');
    assert.equal(
      (await fetch(`${gh.url}/.auth/brand/..%2f..%2f..%2fetc%2fpasswd`)).status,
      400,
      'an encoded slash is refused before any route',
    );
  });

  test('a logo that cannot be used and a pale colour: check names the key, serve does not start', async () => {
    const config = (branding: Record<string, string>) => {
      const file = join(dir, `g-${Object.values(branding).join('').replace(/\W/g, '')}.yaml`);
      writeFileSync(
        file,
        JSON.stringify({
          publicUrl: 'http://127.0.0.1:8080',
          upstream: 'http://127.0.0.1:3000',
          store: { type: 'sqlite', path: join(dir, 'g.db') },
          branding,
        }),
      );
      return file;
    };
    const good = await runCli(['check', '--config', config({ logo, color: BRAND })]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(
      good.stdout,
      new RegExp(
        `http://127\\.0\\.0\\.1:8080 pages: logo ${logo.replace(/\./g, '\\.')}, colour #0b6e4f \\(branding\\)`,
      ),
    );

    const missing = config({ logo: join(dir, 'nope.png') });
    const checked = await runCli(['check', '--config', missing]);
    assert.equal(checked.code, 2);
    assert.match(
      checked.stderr,
      /error: branding\.logo: cannot read .*nope\.png \(no such file\): Gatehouse will not start/,
    );
    const served = await runCli(['serve', '--config', missing]);
    assert.equal(served.code, 1);
    assert.match(served.stderr, /cannot start: branding\.logo: cannot read .*nope\.png/);

    const text = join(dir, 'logo.png');
    writeFileSync(text, '<html><script>alert(1)</script></html>');
    assert.match(
      (await runCli(['check', '--config', config({ logo: text })])).stderr,
      /error: branding\.logo: .*logo\.png is not a PNG, JPEG, WebP, GIF or SVG image/,
    );
    const big = join(dir, 'big.svg');
    writeFileSync(big, `<svg xmlns="http://www.w3.org/2000/svg">${' '.repeat(300 * 1024)}</svg>`);
    assert.match(
      (await runCli(['check', '--config', config({ logo: big })])).stderr,
      /error: branding\.logo: .*big\.svg is 301 KiB: at most 256 KiB/,
    );

    const script = join(dir, 'g-script.yaml');
    writeFileSync(
      script,
      `publicUrl: http://127.0.0.1:8080\nupstream: http://127.0.0.1:3000\nbranding:\n  links: [{text: x, url: "javascript:alert(1)"}]\n`,
    );
    const refused = await runCli(['check', '--config', script]);
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /branding\.links\[0\]\.url: an https:\/\/ URL or a path on this site such as \/privacy/,
    );

    const pale = await runCli(['check', '--config', config({ color: '#ffd500' })]);
    assert.equal(pale.code, 0);
    assert.match(
      pale.stderr,
      /warning: branding\.color: links in #ffd500 on the white page have a contrast of 1\.\d:1, below the 4\.5:1/,
    );
  });
});
