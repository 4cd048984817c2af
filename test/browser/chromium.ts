import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';
import { requirement } from '../helpers/requirements.ts';

/**
 * Debian's Chromium, driven by playwright-core. Never downloads a browser. Where Chromium is
 * missing the browser tests are skipped, loudly, and under CI=true they fail
 * (helpers/requirements.ts).
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/** For `describeOrSkip(name, { skip: browserSkip() }, ...)`: false when the tests must run. */
export function browserSkip(): false | string {
  return requirement(
    'Chromium',
    existsSync(CHROMIUM_PATH) ? undefined : `Chromium not found at ${CHROMIUM_PATH}`,
    "install Debian's chromium package, or set CHROMIUM_PATH",
  );
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: install Debian's chromium package (see .ci/run), or set CHROMIUM_PATH.`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ARGS });
}

/**
 * A fresh browser profile that may talk to `origin` only (or to each of a list, e.g.
 * Gatehouse and its identity providers): any request elsewhere (a third-party font, script,
 * image) is recorded in `foreign` and aborted. Playwright's routing answers CORS preflights itself,
 * allowing any origin: a test of CORS uses a plain context (test/browser/cors.test.ts).
 */
export async function isolatedContext(
  browser: Browser,
  origin: string | readonly string[],
  options: BrowserContextOptions = {},
): Promise<{ context: BrowserContext; page: Page; foreign: string[] }> {
  const context = await browser.newContext(options);
  const foreign: string[] = [];
  const allowed = (typeof origin === 'string' ? [origin] : origin).map((o) => `${o}/`);
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (allowed.some((o) => url.startsWith(o)) || url.startsWith('data:')) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  return { context, page, foreign };
}

/** WCAG contrast ratio of two CSS colours as the browser computes them ("rgb(r, g, b)"). */
export function contrast(a: string, b: string): number {
  const lum = (c: string) => {
    const [r, g, bl] = (c.match(/[\d.]+/g) ?? []).slice(0, 3).map((v) => {
      const s = Number(v) / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r! + 0.7152 * g! + 0.0722 * bl!;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi! + 0.05) / (lo! + 0.05);
}
