import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client, decodeEntities, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, linkIn, mailTo, openLink, openLinkPage, sameOrigin, submit } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { csrfOf } from '../helpers/providers.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';

/**
 * Change of email address against a real SMTP server: the account page's form (after a recent
 * sign-in) mails a link to the new address and a notice to the old one; the old address stays
 * until the link is used; the link works once and dies with a password change; the answer
 * never says whether the new address is another account's (security.md #205, #206).
 */

let smtp: TestSmtp;
let gh: TestGatehouse;
const high = {
  loginPerIp: 1000,
  loginPerAccount: 1000,
  registerPerIp: 1000,
  passwordResetPerIp: 1000,
  passwordResetPerAccount: 1000,
  emailsPerAddress: 1000,
};
const LINK = /^Confirm your new email address for Acme Portal$/;
const REQUESTED = /^A change of your email address for Acme Portal$/;
const CHANGED = /^The email address of your Acme Portal account was changed$/;
const IN_USE = /^Your email address and Acme Portal$/;

before(async () => {
  smtp = await startSmtp();
  gh = await startGatehouse(() => ({
    title: 'Acme Portal',
    email: emailConfig(smtp),
    accounts: { rateLimits: high },
  }));
});
after(async () => {
  await gh?.close();
  await smtp?.close();
});

async function signedIn(): Promise<{ c: Client; id: string; email: string }> {
  const c = new Client(gh.url);
  const email = uniqueEmail('old');
  const { id } = await registerJson(c, email);
  return { c, id, email };
}

/** Asks for the change with the account page's form, as a browser posts it. */
async function askForChange(c: Client, newEmail: string) {
  const page = await c.html('/.auth/account');
  assert.equal(page.status, 200);
  return submit(c, page, '/.auth/account/email', { newEmail });
}

const me = async (c: Client) => (await c.get('/.auth/me')).json();
const login = (email: string, password = PASSWORD) =>
  new Client(gh.url).postJson('/.auth/login', { email, password }).then((r) => r.status);

describe('change of email address', () => {
  test('form → link to the new address, notice to the old; the old address stays until the link is confirmed; then the new one signs in', async () => {
    const { c, id, email } = await signedIn();
    const page = await c.html('/.auth/account');
    assert.match(page.text, /<h2 id="section-change-email">Change email address<\/h2>/);
    assert.match(page.text, /<form method="post" action="\/\.auth\/account\/email"/);

    const newEmail = uniqueEmail('new');
    const n = smtp.messages.length;
    const asked = await askForChange(c, newEmail);
    assert.equal(asked.status, 303);
    assert.equal(asked.location, `${gh.url}/.auth/account?email=sent`);
    assert.match((await c.html('/.auth/account?email=sent')).text, /We sent a link to the new address/);

    const mail = await mailTo(smtp, newEmail, LINK, n);
    assert.match(mail.text, new RegExp(`account of ${email} asked to change its address to ${newEmail}`));
    const link = linkIn(mail, '/.auth/confirm-email');
    const notice = await mailTo(smtp, email, REQUESTED, n);
    assert.match(notice.text, new RegExp(`to ${newEmail}\\. Nothing changes until the link`));
    assert.doesNotMatch(notice.text, /token=/, 'the old address never gets the link');

    // Until the link is used, nothing changed.
    assert.equal((await me(c)).email, email);
    assert.equal(await login(email), 200);
    assert.equal(await login(newEmail), 401);

    // The link, opened in another browser (a phone's mail app): no session needed.
    const phone = new Client(gh.url);
    const confirmPage = await openLinkPage(phone, link);
    assert.equal(confirmPage.status, 200);
    assert.match(
      decodeEntities(confirmPage.text),
      new RegExp(
        `Make <strong class="who">${newEmail}</strong> the address of the account that is now <strong>${email}</strong>`,
      ),
    );
    assert.equal((await me(c)).email, email, 'opening the link changed nothing');
    const done = await submit(phone, confirmPage, '/.auth/confirm-email');
    assert.equal(done.status, 303);
    assert.equal(done.location, `${gh.url}/.auth/account?email=changed`);

    const now = await me(c);
    assert.deepEqual(
      [now.id, now.email, now.emailVerified],
      [id, newEmail, true],
      'the session goes on with the new, verified address',
    );
    assert.equal(await login(newEmail), 200);
    assert.equal(await login(email), 401, 'the old address signs in no more');
    const changed = await mailTo(smtp, email, CHANGED, n);
    assert.match(changed.text, new RegExp(`was changed to ${newEmail}`));

    // The link works once.
    const again = await openLink(new Client(gh.url), link);
    assert.equal(again.status, 410);
    assert.match(decodeEntities(again.text), /This link was already used/);
    assert.equal(again.headers['referrer-policy'], 'no-referrer');
    assert.ok(gh.logs.some((l) => l.event === 'email_changed' && l.userId === id));
    assert.ok(!gh.logText().includes(new URL(link).searchParams.get('token')!), 'the token is never logged');
  });

  test('JSON: {email} → 202; the link token in a JSON body confirms', async () => {
    const { c, email } = await signedIn();
    const newEmail = uniqueEmail('json');
    const n = smtp.messages.length;
    const asked = await c.postJson('/.auth/account/email', { email: newEmail }, sameOrigin(c));
    assert.equal(asked.status, 202, asked.text);
    assert.equal(
      asked.json().message,
      `A link is on its way to ${newEmail}. Your address stays ${email} until you open it.`,
    );
    const token = new URL(linkIn(await mailTo(smtp, newEmail, LINK, n), '/.auth/confirm-email')).searchParams.get(
      'token',
    )!;
    const bad = await new Client(gh.url).postJson('/.auth/confirm-email', { token: 'x'.repeat(43) });
    assert.deepEqual([bad.status, bad.json().error], [400, 'link_invalid']);
    const ok = await new Client(gh.url).postJson('/.auth/confirm-email', { token });
    assert.deepEqual([ok.status, ok.json()], [200, { ok: true, email: newEmail }]);
    const reused = await new Client(gh.url).postJson('/.auth/confirm-email', { token });
    assert.deepEqual([reused.status, reused.json().error], [410, 'link_used']);
  });

  test('past reauthenticateAfter the change needs the password again: browser to /reauth, JSON 401; nothing is mailed', async () => {
    const { c } = await signedIn();
    const idHash = hashSessionId(c.jar.get('gatehouse')!);
    const s = (await gh.gatehouse.store.sessions.get(idHash))!;
    await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });
    const newEmail = uniqueEmail('stale');
    const form = await askForChange(c, newEmail);
    assert.equal(form.status, 303);
    assert.equal(form.location, `${gh.url}/.auth/reauth?rd=%2F.auth%2Faccount`);
    const json = await c.postJson('/.auth/account/email', { email: newEmail }, sameOrigin(c));
    assert.deepEqual([json.status, json.json().error], [401, 'reauthentication_required']);
    await gh.gatehouse.mailer!.idle();
    assert.equal(smtp.to(newEmail).length, 0);

    const confirmed = await c.postJson('/.auth/reauth', { password: PASSWORD }, sameOrigin(c));
    assert.equal(confirmed.status, 200);
    assert.equal((await askForChange(c, newEmail)).status, 303);
    await mailTo(smtp, newEmail, LINK);
  });

  test("enumeration: another account's address gets the same answer; its owner gets a note without a link; nothing changes", async () => {
    const other = await signedIn();
    const { c, email } = await signedIn();
    const free = uniqueEmail('free');
    const n = smtp.messages.length;
    const [taken, open] = [
      await c.postJson('/.auth/account/email', { email: other.email }, sameOrigin(c)),
      await c.postJson('/.auth/account/email', { email: free }, sameOrigin(c)),
    ];
    assert.equal(taken.status, open.status);
    assert.equal(taken.text.replace(other.email, 'X'), open.text.replace(free, 'X'));
    const headerNames = (r: typeof taken) =>
      Object.keys(r.headers)
        .filter((h) => h !== 'date')
        .sort();
    assert.deepEqual(headerNames(taken), headerNames(open));

    const note = await mailTo(smtp, other.email, IN_USE, n);
    assert.doesNotMatch(note.text, /token=/);
    assert.match(note.text, /There is an account with this address already, so nothing changed/);
    assert.doesNotMatch(note.text, new RegExp(email), "the requester's address is not given away");
    await gh.gatehouse.mailer!.idle();
    assert.equal(smtp.to(other.email).filter((m) => LINK.test(m.subject)).length, 0);
    assert.equal((await me(c)).email, email);
    assert.equal((await me(other.c)).email, other.email);

    // The HTML form answers alike too.
    const a = await askForChange(c, other.email);
    const b = await askForChange(c, uniqueEmail('free'));
    assert.deepEqual([a.status, a.location], [b.status, b.location]);
  });

  test('a change of password cancels a pending change; a newer request supersedes the older link', async () => {
    const { c, email } = await signedIn();
    const first = uniqueEmail('first');
    let n = smtp.messages.length;
    await askForChange(c, first);
    const firstLink = linkIn(await mailTo(smtp, first, LINK, n), '/.auth/confirm-email');
    const second = uniqueEmail('second');
    n = smtp.messages.length;
    await askForChange(c, second);
    const secondLink = linkIn(await mailTo(smtp, second, LINK, n), '/.auth/confirm-email');
    const superseded = await openLink(new Client(gh.url), firstLink);
    assert.equal(superseded.status, 410);
    assert.match(decodeEntities(superseded.text), /A newer link was sent since/);

    const changed = await c.postJson(
      '/.auth/account/password',
      { currentPassword: PASSWORD, password: 'another fine passphrase' },
      sameOrigin(c),
    );
    assert.equal(changed.status, 200, changed.text);
    const dead = await openLink(new Client(gh.url), secondLink);
    assert.equal(dead.status, 410);
    assert.match(decodeEntities(dead.text), /The address or the password of this account has changed/);
    assert.equal((await me(c)).email, email);
  });

  test('the new address taken between the request and the link: 409, nothing changes', async () => {
    const { c, email } = await signedIn();
    const wanted = uniqueEmail('race');
    const n = smtp.messages.length;
    await askForChange(c, wanted);
    const token = new URL(linkIn(await mailTo(smtp, wanted, LINK, n), '/.auth/confirm-email')).searchParams.get(
      'token',
    )!;
    await registerJson(new Client(gh.url), wanted);
    const res = await new Client(gh.url).postJson('/.auth/confirm-email', { token });
    assert.deepEqual([res.status, res.json().error], [409, 'email_unavailable']);
    assert.equal((await me(c)).email, email);
  });

  test('input is checked: not an address, the same address; CSRF and cross-site POSTs are refused and mail nothing', async () => {
    const { c, email } = await signedIn();
    for (const [value, why] of [
      ['not an address', /Enter an email address/],
      [email.toUpperCase(), /This is your address already/],
    ] as const) {
      const r = await askForChange(c, value);
      assert.equal(r.status, 400);
      assert.match(decodeEntities(r.text), why);
      assert.match(r.text, /<li><a href="#newEmail">New email address: /);
    }
    const victim = uniqueEmail('csrf');
    const page = await c.html('/.auth/account');
    const noToken = await c.postForm('/.auth/account/email', { newEmail: victim }, sameOrigin(c));
    assert.equal(noToken.status, 403);
    const crossSite = await c.postForm(
      '/.auth/account/email',
      { csrf: csrfOf(page), newEmail: victim },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossSite.status, 403);
    const crossJson = await c.postJson(
      '/.auth/account/email',
      { email: victim },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossJson.status, 403);
    await gh.gatehouse.mailer!.idle();
    assert.equal(smtp.to(victim).length, 0);
    const anonymous = await new Client(gh.url).postJson('/.auth/account/email', { email: victim }, sameOrigin(c));
    assert.equal(anonymous.status, 401);
  });
});
