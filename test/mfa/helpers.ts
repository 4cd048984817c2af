import assert from 'node:assert/strict';
import { Secret, TOTP } from 'otpauth';
import { Client, PASSWORD, type Response, registerJson, uniqueEmail } from '../helpers/client.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';

/** The code an authenticator app shows `steps` time steps from now (RFC 6238, SHA-1, 6 digits, 30 s). */
export function totpCode(secret: string, steps = 0): string {
  return new TOTP({ secret: Secret.fromBase32(secret), digits: 6, period: 30, algorithm: 'SHA1' }).generate({
    timestamp: Date.now() + steps * 30_000,
  });
}

/** Same-origin headers a browser sends with a form or fetch of the page. */
export const sameSite = (gh: { url: string }) => ({ origin: gh.url, 'sec-fetch-site': 'same-origin' });

const stepNow = () => Math.floor(Date.now() / 30_000);

/**
 * Confirms an authenticator app with the previous step's code (so the current and next ones stay
 * unused). The code is one step old when sent; if a step boundary passed before the answer it was
 * two steps old and rightly refused, so then, and only then, it is sent once more from the new step.
 */
export async function confirmTotp(browser: Client, gh: { url: string }, secret: string): Promise<Response> {
  const step = stepNow();
  const res = await browser.postJson('/.auth/account/totp', { code: totpCode(secret, -1) }, sameSite(gh));
  if (res.status === 200 || stepNow() === step) return res;
  return browser.postJson('/.auth/account/totp', { code: totpCode(secret, -1) }, sameSite(gh));
}

/**
 * A registered user who added an authenticator app (confirmed with the previous step's code, so
 * the current and next ones are still unused) and got their recovery codes. Signed out after.
 */
export async function userWithTotp(
  gh: TestGatehouse,
): Promise<{ email: string; id: string; secret: string; codes: string[]; browser: Client }> {
  const browser = new Client(gh.url);
  const email = uniqueEmail('mfa');
  const user = await registerJson(browser, email);
  const start = await browser.get('/.auth/account/totp', { accept: 'application/json' });
  assert.equal(start.status, 200, start.text);
  const { secret } = start.json();
  const done = await confirmTotp(browser, gh, secret);
  assert.equal(done.status, 200, done.text);
  const codes = done.json().recoveryCodes as string[];
  assert.equal(codes.length, 10);
  await browser.postJson('/.auth/logout', {}, sameSite(gh));
  return { email, id: user.id, secret, codes, browser };
}

/** Signs in with the password only: the browser is then half-signed-in, waiting for its second factor. */
export async function passwordStep(gh: TestGatehouse, email: string, rd = '/'): Promise<Client> {
  const c = new Client(gh.url);
  const res = await c.postJson('/.auth/login', { email, password: PASSWORD, rd });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json().secondFactor, 'required');
  return c;
}
