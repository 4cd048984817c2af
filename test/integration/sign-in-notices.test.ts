import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { type Lab, startLab, labGatehouse } from '../helpers/providers.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { passwordStep, sameSite, totpCode, userWithTotp } from '../mfa/helpers.ts';

/**
 * "New sign-in to your account" (accounts/sign-in-notices.ts) against a real SMTP server and a
 * real IdP: a sign-in from a browser the account never signed in with mails its owner; the same
 * browser again, the browser that registered, and first sign-ins do not (security.md #239).
 */

let smtp: TestSmtp;
let lab: Lab;
let gh: TestGatehouse;
const NOTICE = /^New sign-in to your Acme Portal account$/;
const CHROME_ON_WINDOWS =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

before(async () => {
  smtp = await startSmtp();
  lab = await startLab();
  gh = await labGatehouse(lab, {
    title: 'Acme Portal',
    email: emailConfig(smtp),
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
  await smtp?.close();
});

/** Notices to `email` so far, once the mailer has nothing left to send. */
async function notices(email: string) {
  await gh.gatehouse.mailer!.idle();
  return smtp.to(email).filter((m) => NOTICE.test(m.subject));
}

/** A registered user whose address is verified (notices go to verified addresses only). */
async function verifiedUser(tag: string): Promise<{ first: Client; email: string; id: string }> {
  const first = new Client(gh.url);
  const email = uniqueEmail(tag);
  const { id } = await registerJson(first, email);
  await gh.gatehouse.store.users.update(id, { emailVerified: true });
  return { first, email, id };
}

const login = (c: Client, email: string, headers: Record<string, string> = {}) =>
  c.postJson('/.auth/login', { email, password: PASSWORD }, headers);
const logout = (c: Client) => c.postJson('/.auth/logout', {}, sameSite(gh));

describe('new sign-in notices', () => {
  test('a sign-in from a browser new to the account mails its owner when, from where and how; that browser again, and the one that registered, do not', async () => {
    const { first, email, id } = await verifiedUser('notice');
    assert.equal((await notices(email)).length, 0, 'registering is no new sign-in');

    const other = new Client(gh.url);
    assert.equal((await login(other, email, { 'user-agent': CHROME_ON_WINDOWS })).status, 200);
    const [mail, ...more] = await notices(email);
    assert.equal(more.length, 0);
    assert.ok(mail, 'the notice is mailed');
    assert.match(mail.text, /signed in to from a browser it had not signed in with before: Chrome on Windows/);
    assert.match(mail.text, /from the address 127\.0\.0\.1, with the password\./);
    assert.match(mail.text, new RegExp(`end that session on your account page \\(${gh.url}/\\.auth/account\\)`));
    assert.match(mail.text, new RegExp(`choose a new password \\(${gh.url}/\\.auth/forgot-password\\)`));
    const line = gh.logs.find((l) => l.event === 'new_sign_in_notice' && l.userId === id);
    assert.ok(line, 'logged, by user id');
    assert.doesNotMatch(JSON.stringify(line), new RegExp(email.replace(/[.+]/g, '\\$&')), 'never the address');

    await logout(other);
    assert.equal((await login(other, email)).status, 200, 'the same browser again');
    await logout(first);
    assert.equal((await login(first, email)).status, 200, 'the browser that registered');
    assert.equal((await notices(email)).length, 1, 'no more notices');
  });

  test("the browser's tag is the account's alone: another account's, a forged one, or none is a new browser", async () => {
    const a = await verifiedUser('tag-a');
    const b = await verifiedUser('tag-b');
    // b signs in where a registered (a shared computer): new to b, and then known for both.
    assert.equal((await login(a.first, b.email)).status, 200);
    assert.equal((await notices(b.email)).length, 1);
    assert.equal((await login(a.first, a.email)).status, 200);
    assert.equal((await login(a.first, b.email)).status, 200);
    assert.equal((await notices(a.email)).length, 0);
    assert.equal((await notices(b.email)).length, 1, 'both accounts are remembered in that browser');

    // a's tag copied into another browser signs b in as from a new browser; a made-up one too.
    const copied = new Client(gh.url);
    const tags = a.first.jar.get('gatehouse-known')!;
    const aTag = tags.split('.').find((t) => !(b.first.jar.get('gatehouse-known') ?? '').includes(t))!;
    copied.jar.set('gatehouse-known', aTag);
    assert.equal((await login(copied, b.email)).status, 200);
    assert.equal((await notices(b.email)).length, 2);
    const forged = new Client(gh.url);
    forged.jar.set('gatehouse-known', `${'A'.repeat(16)}.${'x'.repeat(300)}`);
    assert.equal((await login(forged, b.email)).status, 200);
    assert.equal((await notices(b.email)).length, 3);
  });

  test('a browser that signed in with the password before notices existed (its device cookie) is known; an unverified address gets none', async () => {
    const { first, email } = await verifiedUser('legacy');
    first.jar.delete('gatehouse-known');
    await logout(first);
    assert.ok(first.jar.has('gatehouse-device'));
    assert.equal((await login(first, email)).status, 200);
    assert.equal((await notices(email)).length, 0);
    assert.ok(first.jar.has('gatehouse-known'), 'and it gets the tag now');

    const unverified = new Client(gh.url);
    const other = uniqueEmail('unverified');
    await registerJson(unverified, other);
    assert.equal((await login(new Client(gh.url), other)).status, 200);
    assert.equal((await notices(other)).length, 0, 'not to an address nobody has proved');
  });

  test('a provider sign-in that makes the account sends none; a later one from another browser names the provider', async () => {
    lab.a.autoLogin = 'bob';
    const made = new Client(gh.url);
    await signIn(made, 'a');
    assert.equal((await made.get('/.auth/me')).status, 200);
    assert.equal((await notices('bob@example.com')).length, 0);
    await signIn(made, 'a');
    assert.equal((await notices('bob@example.com')).length, 0, 'the browser it was made in');

    await signIn(new Client(gh.url), 'a');
    const [mail] = await notices('bob@example.com');
    assert.match(mail?.text ?? '', /with a sign-in at IdP A\./);
  });

  test('with a second factor the notice comes once the sign-in is complete, once, and says both factors', async () => {
    const { email, id, secret } = await userWithTotp(gh);
    await gh.gatehouse.store.users.update(id, { emailVerified: true });
    const c = await passwordStep(gh, email);
    assert.equal((await notices(email)).length, 0, 'not after the password alone');
    const done = await c.postJson('/.auth/second-factor', { code: totpCode(secret) }, sameSite(gh));
    assert.equal(done.status, 200, done.text);
    const mails = await notices(email);
    assert.equal(mails.length, 1);
    assert.match(mails[0]!.text, /with the password and an authenticator app code\./);
  });
});

describe('with accounts.newSignInNotice: false', () => {
  let quiet: TestGatehouse;
  before(async () => {
    quiet = await startGatehouse(() => ({ email: emailConfig(smtp), accounts: { newSignInNotice: false } }));
  });
  after(() => quiet?.close());

  test('no notice is mailed, and the browser is still remembered', async () => {
    const c = new Client(quiet.url);
    const email = uniqueEmail('quiet');
    const { id } = await registerJson(c, email);
    await quiet.gatehouse.store.users.update(id, { emailVerified: true });
    const other = new Client(quiet.url);
    assert.equal((await other.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
    assert.ok(other.jar.has('gatehouse-known'));
    await quiet.gatehouse.mailer!.idle();
    assert.equal(smtp.to(email).filter((m) => NOTICE.test(m.subject)).length, 0);
  });
});
