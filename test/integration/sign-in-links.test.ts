import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, decodeEntities, registerJson, uniqueEmail, type Response } from '../helpers/client.ts';
import { emailConfig, linkIn, mailTo, openLink, openLinkPage, sameOrigin, submit } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { totpCode, userWithTotp } from '../mfa/helpers.ts';

/**
 * Sign-in by a mailed link (accounts.signInLinks) against a real SMTP server: the link signs in
 * (after the button, never on GET), once, back where the user was going, and proves the address;
 * a second factor is still asked for; every address gets the same answer and only an account
 * gets mail; throttled; refused cross-site; off unless configured.
 */

let smtp: TestSmtp;
let gh: TestGatehouse;
/** Tight limits. */
let tight: TestGatehouse;
/** email: but no signInLinks. */
let off: TestGatehouse;

const SUBJECT = /^Your sign-in link for Acme Portal$/;
const ROUTE = '/.auth/sign-in-link/open';
const high = {
  loginPerIp: 1000,
  loginPerAccount: 1000,
  registerPerIp: 1000,
  signInLinkPerIp: 1000,
  signInLinkPerAccount: 1000,
  emailsPerAddress: 1000,
};

before(async () => {
  smtp = await startSmtp();
  [gh, tight, off] = await Promise.all([
    startGatehouse(() => ({
      title: 'Acme Portal',
      email: emailConfig(smtp, { signInLinkTtl: '10m' }),
      accounts: { signInLinks: true, rateLimits: high },
    })),
    startGatehouse(() => ({
      title: 'Acme Portal',
      email: emailConfig(smtp),
      accounts: { signInLinks: true, rateLimits: { ...high, signInLinkPerAccount: 2 } },
    })),
    startGatehouse(() => ({ title: 'Acme Portal', email: emailConfig(smtp), accounts: { rateLimits: high } })),
  ]);
});
after(async () => {
  await Promise.all([gh, tight, off].map((g) => g?.close()));
  await smtp?.close();
});

/** Asks for a link by JSON and returns the one mailed. */
async function linkFor(target: TestGatehouse, email: string, rd?: string): Promise<string> {
  const n = smtp.messages.length;
  const res = await new Client(target.url).postJson('/.auth/sign-in-link', { email, ...(rd ? { rd } : {}) });
  assert.equal(res.status, 202, res.text);
  return linkIn(await mailTo(smtp, email, SUBJECT, n), ROUTE);
}

const me = (c: Client) => c.get('/.auth/me');

describe('sign-in links', () => {
  test('the link signs in on another device after its button, back where the user was going, and proves the address', async () => {
    const email = uniqueEmail('link');
    const { id } = await registerJson(new Client(gh.url), email);

    // The sign-in page offers it, keeping where the user was going.
    const login = await new Client(gh.url).html('/.auth/login?rd=%2Fdocs%2Fx');
    assert.match(
      decodeEntities(login.text),
      /<a href="\/\.auth\/sign-in-link\?rd=%2Fdocs%2Fx">Email me a sign-in link<\/a>/,
    );
    const laptop = new Client(gh.url);
    const form = await laptop.html('/.auth/sign-in-link?rd=%2Fdocs%2Fx');
    assert.equal(form.status, 200);
    assert.match(form.text, /works once, for 10 minutes/);
    const n = smtp.messages.length;
    const asked = await submit(laptop, form, '/.auth/sign-in-link', { email, rd: '/docs/x' });
    assert.equal(asked.status, 303);
    assert.equal(asked.location, `${gh.url}/.auth/sign-in-link?sent=1`);
    assert.match((await laptop.html('/.auth/sign-in-link?sent=1')).text, /Check your inbox/);
    const mail = await mailTo(smtp, email, SUBJECT, n);
    assert.match(mail.text, /within 10 minutes/);
    const link = linkIn(mail, ROUTE);
    assert.equal(new URL(link).searchParams.get('rd'), '/docs/x');

    // Opened on the phone: a page that names the account; nothing happens on GET (mail scanners).
    const phone = new Client(gh.url);
    const landing = await openLink(phone, link);
    assert.equal(landing.status, 303);
    assert.equal(landing.location, `${gh.url}${ROUTE}?rd=%2Fdocs%2Fx`);
    const page = await openLinkPage(phone, link);
    assert.equal(page.status, 200);
    assert.match(decodeEntities(page.text), new RegExp(`signs you in as <strong class="who">${email}</strong>`));
    assert.doesNotMatch(page.text, /token/);
    assert.equal((await me(phone)).status, 401, 'opening the link signed nobody in');

    const done = await submit(phone, page, ROUTE, { rd: '/docs/x' });
    assert.equal(done.status, 303, done.text);
    assert.equal(done.location, `${gh.url}/docs/x`);
    const who = (await me(phone)).json();
    assert.equal(who.id, id);
    assert.equal(who.emailVerified, true, 'the link proved the address');
    assert.deepEqual(who.session.amr, ['email']);
    assert.equal((await me(laptop)).status, 401, 'the browser that asked is not signed in by it');

    // Once only.
    const again = await openLinkPage(new Client(gh.url), link);
    assert.equal(again.status, 410);
    assert.match(again.text, /already used/);
    const activity = (await phone.get('/.auth/account/activity', { accept: 'application/json' })).json();
    for (const said of ['Signed in with a link mailed to you', 'Email address verified'])
      assert.ok(JSON.stringify(activity).includes(said), `the account page says: ${said}`);
  });

  test('an SPA: JSON in, JSON out, and only the newest link works', async () => {
    const email = uniqueEmail('spa');
    await registerJson(new Client(gh.url), email);
    const first = await linkFor(gh, email);
    const second = await linkFor(gh, email, '/app');
    const token = (link: string) => new URL(link).searchParams.get('token')!;
    const c = new Client(gh.url);
    const stale = await c.postJson(ROUTE, { token: token(first) }, sameOrigin(c));
    assert.deepEqual([stale.status, stale.json().error], [410, 'link_superseded']);
    const res = await c.postJson(ROUTE, { token: token(second), rd: '/app' }, sameOrigin(c));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json().user.email, email);
    assert.equal(res.json().redirect, '/app');
    assert.equal((await me(c)).status, 200);
  });

  test('a user with an authenticator app is asked for it after the link, as after a password', async () => {
    const u = await userWithTotp(gh);
    const link = await linkFor(gh, u.email);
    const c = new Client(gh.url);
    const step = await c.postJson(ROUTE, { token: new URL(link).searchParams.get('token') }, sameOrigin(c));
    assert.equal(step.status, 200, step.text);
    assert.equal(step.json().secondFactor, 'required');
    assert.equal((await me(c)).status, 401, 'no session before the second factor');
    const done = await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    assert.equal(done.status, 200, done.text);
    assert.deepEqual(done.json().amr, ['email', 'otp', 'mfa']);
    assert.equal((await me(c)).status, 200);
  });

  test('a cross-site POST of a good link is refused and leaves the link unused', async () => {
    const email = uniqueEmail('csrf');
    await registerJson(new Client(gh.url), email);
    const link = await linkFor(gh, email);
    const victim = new Client(gh.url);
    const token = new URL(link).searchParams.get('token')!;
    for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }] as Record<
      string,
      string
    >[]) {
      const res = await victim.postJson(ROUTE, { token }, headers);
      assert.equal(res.status, 403, JSON.stringify(headers));
    }
    assert.equal((await me(victim)).status, 401);
    assert.equal((await openLinkPage(new Client(gh.url), link)).status, 200, 'the link still works');
  });
});

describe('asking for a link tells nobody whether an address has an account', () => {
  const comparable = (r: Response) => {
    const { date, ...headers } = r.headers;
    return { status: r.status, headers, text: r.text };
  };

  test('known, unknown and disabled addresses get the same answer; only the account gets mail', async () => {
    const known = uniqueEmail('known');
    await registerJson(new Client(gh.url), known);
    const disabled = uniqueEmail('disabled');
    const d = await registerJson(new Client(gh.url), disabled);
    await gh.gatehouse.accounts.setDisabled(d.id, true);
    const ghost = uniqueEmail('ghost');
    const json = async (email: string) =>
      comparable(await new Client(gh.url).postJson('/.auth/sign-in-link', { email }));
    const a = await json(known);
    assert.equal(a.status, 202);
    assert.deepEqual(await json(ghost), a);
    assert.deepEqual(await json(disabled), a);
    await gh.gatehouse.mailer!.idle();
    assert.equal(smtp.to(known).filter((m) => SUBJECT.test(m.subject)).length, 1);
    assert.equal(smtp.to(ghost).length + smtp.to(disabled).filter((m) => SUBJECT.test(m.subject)).length, 0);
    assert.ok(gh.logs.some((l) => l.event === 'sign_in_link_requested' && l.known === false));
  });

  test('too many links for one address: 429 with Retry-After, known or not', async () => {
    for (const email of [uniqueEmail('flood'), uniqueEmail('flood-ghost')]) {
      const ask = () => new Client(tight.url).postJson('/.auth/sign-in-link', { email });
      assert.equal((await ask()).status, 202);
      assert.equal((await ask()).status, 202);
      const third = await ask();
      assert.equal(third.status, 429);
      assert.equal(third.json().error, 'too_many_attempts');
      assert.ok(Number(third.headers['retry-after']) > 0);
    }
  });

  test('off unless accounts.signInLinks: 404, and the sign-in page does not offer it', async () => {
    const c = new Client(off.url);
    assert.doesNotMatch((await c.html('/.auth/login')).text, /sign-in-link/);
    assert.equal((await c.html('/.auth/sign-in-link')).status, 404);
    const res = await c.postJson('/.auth/sign-in-link', { email: uniqueEmail('off') });
    assert.equal(res.status, 404);
    assert.equal((await c.html(`${ROUTE}?token=${'a'.repeat(43)}`)).status, 404);
  });
});
