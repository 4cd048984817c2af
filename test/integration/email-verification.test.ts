import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Client, decodeEntities, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, linkIn, mailTo, openLink, openLinkPage, sameOrigin, submit } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { csrfOf, rawDb, startLab, type Lab } from '../helpers/providers.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';

/**
 * Email verification against a real SMTP server (smtp-server on loopback) with nodemailer as
 * the client: registration mails a link; the link's GET changes nothing (mail scanners), a
 * CSRF-protected POST verifies; reused, superseded, expired and guessed links fail with a
 * clear page; a verified address lets a provider sign-in link by email; and with
 * accounts.requireVerifiedEmail an unverified user is kept out of the app.
 */

let smtp: TestSmtp;
let lab: Lab;
let gh: TestGatehouse;
let strict: TestGatehouse;
const tokens: string[] = [];

const VERIFY = /^Confirm your email address for Acme Portal$/;
const tokenOf = (link: string) => new URL(link).searchParams.get('token')!;

before(async () => {
  smtp = await startSmtp();
  lab = await startLab();
  const limits = {
    loginPerIp: 1000,
    loginPerAccount: 1000,
    registerPerIp: 1000,
    providerStartsPerIp: 1000,
    emailsPerAddress: 4,
  };
  gh = await startGatehouse(
    () => ({
      title: 'Acme Portal',
      email: emailConfig(smtp),
      providers: lab.providers({ b: { linkByEmail: true } }),
      accounts: { rateLimits: limits },
    }),
    { port: lab.ports[0] },
  );
  strict = await startGatehouse(() => ({
    title: 'Acme Portal',
    email: emailConfig(smtp),
    routes: [{ path: '/public/**', access: 'public' }],
    accounts: { requireVerifiedEmail: true, rateLimits: limits },
  }));
});
after(async () => {
  await Promise.all([gh?.close(), strict?.close()]);
  await Promise.all([smtp?.close(), lab?.close()]);
});

/** Registers in a fresh browser; returns it, the address, and the link of the message that came. */
async function registered(target = gh): Promise<{ c: Client; email: string; link: string }> {
  const c = new Client(target.url);
  const email = uniqueEmail('verify');
  await registerJson(c, email);
  const link = linkIn(await mailTo(smtp, email, VERIFY), '/.auth/verify-email');
  tokens.push(tokenOf(link));
  return { c, email, link };
}

const me = async (c: Client) => (await c.get('/.auth/me')).json();

describe('email verification', () => {
  test('register → the message arrives → its link → confirm → the address is verified', async () => {
    const { c, email, link } = await registered();
    const mail = smtp.to(email).find((m) => VERIFY.test(m.subject))!;
    assert.match(mail.headers.get('from')!, /Acme Portal <no-reply@acme\.example>/);
    assert.equal(mail.headers.get('auto-submitted'), 'auto-generated');
    assert.ok(link.startsWith(`${gh.url}/.auth/verify-email?token=`), 'the link is built from publicUrl');
    assert.match(tokenOf(link), /^[A-Za-z0-9_-]{43}$/, '256 random bits');
    assert.ok(mail.html.includes(link), 'the HTML part carries the same link');
    assert.match(mail.text, /within 24 hours/);
    assert.equal((await me(c)).emailVerified, false);

    // The link: a 303 that moves the token out of the URL into a cookie of this route only.
    const landing = await openLink(c, link);
    assert.equal(landing.status, 303);
    assert.equal(landing.location, `${gh.url}/.auth/verify-email`);
    assert.equal(landing.headers['referrer-policy'], 'no-referrer');
    const cookie = landing.cookies.find((v) => v.startsWith('gatehouse-verify='))!;
    assert.match(cookie, /; Path=\/\.auth\/verify-email; Max-Age=\d+; HttpOnly; SameSite=Lax/);
    const page = await c.html('/.auth/verify-email');
    assert.equal(page.status, 200);
    assert.match(
      decodeEntities(page.text),
      new RegExp(`Confirm that <strong class="who">${email}</strong> is your address`),
    );
    assert.doesNotMatch(page.text, /token/, 'the page holds no token');
    assert.match(page.headers['content-security-policy'] as string, /default-src 'none'/);
    assert.equal((await me(c)).emailVerified, false, 'opening the link changed nothing');

    const done = await submit(c, page, '/.auth/verify-email');
    assert.equal(done.status, 303);
    assert.equal(done.location, `${gh.url}/.auth/verify-email?verified=1`);
    assert.ok(
      done.cookies.some((v) => /^gatehouse-verify=;.*Max-Age=0/.test(v)),
      'the link cookie is cleared',
    );
    assert.equal((await me(c)).emailVerified, true);
    assert.match((await c.html('/.auth/verify-email?verified=1')).text, /your email address is verified/);
    const user = (await me(c)).id;
    assert.ok(gh.logs.some((l) => l.event === 'email_verified' && l.userId === user));
    assert.ok(gh.logs.some((l) => l.event === 'mail_sent' && l.kind === 'verify_email' && l.userId === user));

    // Used once: opening it again says so.
    const again = await openLink(new Client(gh.url), link);
    assert.equal(again.status, 410);
    assert.match(again.text, /This link was already used/);
    assert.equal(again.headers['referrer-policy'], 'no-referrer');
  });

  test('a mail scanner fetching the link (and its page) changes nothing; the user confirms afterwards', async () => {
    const { c, link } = await registered();
    const scanner = new Client(gh.url);
    for (let i = 0; i < 2; i++) assert.equal((await openLinkPage(scanner, link)).status, 200);
    assert.equal((await scanner.fetch(new URL(link).pathname + new URL(link).search, { method: 'HEAD' })).status, 303);
    assert.equal((await me(c)).emailVerified, false);
    const page = await openLinkPage(c, link);
    assert.equal((await submit(c, page, '/.auth/verify-email')).status, 303);
    assert.equal((await me(c)).emailVerified, true);
  });

  test('CSRF: a cross-site POST, or one without the form token, is refused and verifies nothing', async () => {
    const { c, link } = await registered();
    const page = await openLinkPage(c, link);
    const csrf = csrfOf(page);
    const tries: { headers: Record<string, string>; fields: Record<string, string> }[] = [
      { headers: { origin: 'https://evil.example' }, fields: { csrf } },
      { headers: { 'sec-fetch-site': 'cross-site' }, fields: { csrf } },
      { headers: { origin: 'null', 'sec-fetch-site': 'same-origin' }, fields: { csrf } },
      { headers: sameOrigin(c), fields: {} },
      { headers: sameOrigin(c), fields: { csrf: 'forged' } },
    ];
    for (const t of tries) {
      const res = await c.postForm('/.auth/verify-email', t.fields, t.headers);
      assert.equal(res.status, 403, `refused: ${JSON.stringify(t)}`);
    }
    assert.equal((await me(c)).emailVerified, false);
    assert.equal((await submit(c, page, '/.auth/verify-email')).status, 303, 'the link still works');
  });

  test('guessed, malformed, superseded and expired links fail with a clear page; JSON gets the same answer', async () => {
    const guessed = await openLink(
      new Client(gh.url),
      `${gh.url}/.auth/verify-email?token=${randomBytes(32).toString('base64url')}`,
    );
    assert.equal(guessed.status, 400);
    assert.match(guessed.text, /This link is not valid/);
    assert.match(guessed.text, /href="\/\.auth\/verify-email">Ask for a new link/);
    assert.equal((await openLink(new Client(gh.url), `${gh.url}/.auth/verify-email?token=abc`)).status, 400);
    const json = await new Client(gh.url).postJson('/.auth/verify-email', {
      token: randomBytes(32).toString('base64url'),
    });
    assert.deepEqual([json.status, json.json().error], [400, 'link_invalid']);

    // A newer link supersedes the first.
    const { c, email, link: first } = await registered();
    const n = smtp.messages.length;
    const account = await c.html('/.auth/account');
    assert.match(account.text, /not verified yet/);
    const resent = await submit(c, account, '/.auth/verify-email/resend');
    assert.equal(resent.status, 303);
    assert.equal(resent.location, `${gh.url}/.auth/verify-email?sent=1`);
    assert.match(
      decodeEntities((await c.html('/.auth/verify-email?sent=1')).text),
      new RegExp(`We sent a new link to ${email}`),
    );
    const second = linkIn(await mailTo(smtp, email, VERIFY, n), '/.auth/verify-email');
    tokens.push(tokenOf(second));
    assert.notEqual(second, first);
    const old = await openLink(c, first);
    assert.equal(old.status, 410);
    assert.match(old.text, /A newer link was sent since/);

    // Expired: its time in the store has passed.
    const db = rawDb(gh);
    try {
      await db.run(
        `UPDATE email_tokens SET expires_at = ? WHERE purpose = 'verify_email' AND used_at IS NULL AND superseded_at IS NULL AND user_id = (SELECT id FROM users WHERE email = ?)`,
        [Date.now() - 1, email],
      );
    } finally {
      await db.close();
    }
    const expired = await openLink(c, second);
    assert.equal(expired.status, 410);
    assert.match(expired.text, /This link has expired/);
    assert.equal((await me(c)).emailVerified, false);
    assert.ok(gh.logs.some((l) => l.event === 'email_link_refused' && l.problem === 'expired'));
  });

  test('resending needs a session and a same-site form; the account page then shows the address verified', async () => {
    const anonymous = await new Client(gh.url).postJson('/.auth/verify-email/resend', {});
    assert.equal(anonymous.status, 401);
    const { c, link } = await registered();
    const account = await c.html('/.auth/account');
    assert.match(account.text, /<h2 id="section-email-address">Email address<\/h2>/);
    assert.equal(
      (await c.postForm('/.auth/verify-email/resend', { csrf: csrfOf(account) }, { origin: 'https://evil.example' }))
        .status,
      403,
    );
    assert.match(
      (await c.html('/.auth/verify-email?verified=1')).text,
      /<h1>Verify your email address<\/h1>/,
      'a query cannot make the page claim a verified address',
    );
    const page = await openLinkPage(c, link);
    await submit(c, page, '/.auth/verify-email');
    const after = await c.html('/.auth/account');
    assert.match(after.text, /· verified/);
    assert.doesNotMatch(after.text, /Send verification email/);
    const json = await c.postJson('/.auth/verify-email/resend', {});
    assert.deepEqual([json.status, json.json().emailVerified], [200, true], 'nothing to send for a verified address');
  });

  test("resending needs no fields: a bodiless fetch() from the site's own pages sends the link again", async () => {
    const { c, email } = await registered();
    const fetchFrom = (site: string, origin: string) =>
      c.fetch('/.auth/verify-email/resend', { method: 'POST', headers: { origin, 'sec-fetch-site': site } });
    assert.equal((await fetchFrom('cross-site', 'https://evil.example')).status, 403);
    const res = await fetchFrom('same-origin', gh.url);
    assert.equal(res.status, 202, res.text);
    assert.equal(res.json().ok, true);
    await gh.gatehouse.mailer!.idle();
    assert.equal(smtp.to(email).length, 2, 'the one at registration and the one asked for');
    for (const m of smtp.to(email)) tokens.push(tokenOf(linkIn(m, '/.auth/verify-email')));
  });

  test('an address gets at most emailsPerAddress messages an hour (security.md #45)', async () => {
    const { c, email } = await registered();
    const sent = () => smtp.to(email).length;
    // 1 at registration, then resends up to the limit of 4; the next is refused with Retry-After.
    for (let i = 0; i < 3; i++) assert.equal((await c.postJson('/.auth/verify-email/resend', {})).status, 202);
    const refused = await c.postJson('/.auth/verify-email/resend', {});
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers['retry-after']) > 0);
    await gh.gatehouse.mailer!.idle();
    assert.equal(sent(), 4);
    for (const m of smtp.to(email)) tokens.push(tokenOf(linkIn(m, '/.auth/verify-email')));
  });
});

describe('a verified address and provider sign-in (linkByEmail)', () => {
  test('a password account is joined by a provider identity with the same address only once the address is verified', async () => {
    const { c, email, link } = await registered();
    lab.b.accounts.set(`b-${email}`, { sub: `b-${email}`, email, email_verified: true, name: 'Same person at B' });
    const browser = new Client(gh.url);
    lab.b.autoLogin = `b-${email}`;
    const before = await signIn(browser, 'b');
    assert.equal(
      before[before.length - 1]!.res.status,
      409,
      'unverified: not linked, the page says to sign in and link',
    );
    const page = await openLinkPage(c, link);
    await submit(c, page, '/.auth/verify-email');
    const hops = await signIn(browser, 'b');
    assert.equal(hops[hops.length - 1]!.res.status, 200);
    const profile = await me(browser);
    assert.equal(profile.id, (await me(c)).id, 'joined the verified password account');
    assert.deepEqual(
      profile.identities.map((i: { provider: string }) => i.provider),
      ['b'],
    );
  });
});

describe('accounts.requireVerifiedEmail', () => {
  test('an unverified user sees how to verify instead of the app (an API call gets 403); verified, the app', async () => {
    const { c, link } = await registered(strict);
    const page = await c.html('/reports');
    assert.equal(page.status, 403);
    assert.match(page.text, /<h1>Verify your email address<\/h1>/);
    assert.match(page.text, /action="\/\.auth\/verify-email\/resend"/);
    const api = await c.get('/api/x');
    assert.deepEqual([api.status, api.json().error], [403, 'email_unverified']);
    assert.equal((await c.html('/public/x')).status, 200, 'public routes stay open');
    assert.equal(
      strict.upstream.requests.filter((r) => r.url === '/reports' || r.url === '/api/x').length,
      0,
      'nothing reached the app',
    );
    assert.equal((await c.html('/.auth/account')).status, 200, 'the account page works');

    const confirm = await openLinkPage(c, link);
    await submit(c, confirm, '/.auth/verify-email');
    assert.equal((await c.html('/reports')).status, 200, 'at once after verifying');
  });

  test('users made by an operator are verified and pass', async () => {
    const email = uniqueEmail('op');
    await strict.gatehouse.store.users.create({ email, emailVerified: true, passwordHash: null });
    const user = (await strict.gatehouse.store.users.getByEmail(email))!;
    await strict.gatehouse.accounts.setPassword(user.id, PASSWORD);
    const c = new Client(strict.url);
    assert.equal((await c.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
    assert.equal((await c.html('/reports')).status, 200);
  });
});

describe('logs', () => {
  test('no token of any mailed link appears in a log line', () => {
    assert.ok(tokens.length >= 8, `${tokens.length} tokens seen`);
    for (const t of [gh, strict]) {
      const text = t.logText();
      for (const token of tokens) assert.ok(!text.includes(token), 'a token was logged');
    }
  });
});
