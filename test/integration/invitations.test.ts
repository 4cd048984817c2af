import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { Client, decodeEntities, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { linkIn, mailTo, openLink, openLinkPage, sameOrigin, submit } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { csrfOf, rawDb } from '../helpers/providers.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { Clock } from '../oauth/helpers.ts';

/**
 * Invitations (accounts.registration: invite) end to end: `gatehouse users invite` (the real CLI)
 * mails a single-use link through a real SMTP server, or prints it without email; the invitee
 * chooses a password and lands signed in with a verified address and the groups; the link works
 * once, expires, is superseded by a new invitation; an address with an account is refused;
 * public registration is closed and says so (security.md #207, #208).
 */

let smtp: TestSmtp;
let gh: TestGatehouse;
let bare: TestGatehouse;
let mailConfig: string;
let bareConfig: string;
const clock = new Clock();
const INVITED = /^You are invited to Acme Portal$/;

function configFile(g: TestGatehouse, name: string, extra = ''): string {
  const file = join(g.dir, name);
  writeFileSync(
    file,
    `publicUrl: ${g.url}\ntitle: Acme Portal\nupstream: ${g.upstream.url}\nstore: {type: sqlite, path: ${join(g.dir, 'gatehouse.db')}}\naccounts: {registration: invite}\n${extra}`,
  );
  return file;
}

before(async () => {
  smtp = await startSmtp();
  const email = {
    from: 'Acme Portal <no-reply@acme.example>',
    smtp: { host: '127.0.0.1', port: smtp.port },
  };
  [gh, bare] = await Promise.all([
    startGatehouse(
      () => ({
        title: 'Acme Portal',
        email,
        accounts: { registration: 'invite' },
        routes: [{ path: '/admin/**', allow: { groups: ['admins'] } }],
      }),
      { clock: clock.now },
    ),
    startGatehouse(() => ({ title: 'Acme Portal', accounts: { registration: 'invite' } })),
  ]);
  mailConfig = configFile(
    gh,
    'mail.yaml',
    `email: {from: "Acme Portal <no-reply@acme.example>", smtp: {host: 127.0.0.1, port: ${smtp.port}}}\n`,
  );
  bareConfig = configFile(bare, 'bare.yaml');
});
after(async () => {
  await Promise.all([gh?.close(), bare?.close()]);
  await smtp?.close();
});

const invite = (file: string, ...args: string[]) => runCli(['users', 'invite', ...args, '--config', file]);
const me = async (c: Client) => (await c.get('/.auth/me')).json();

describe('invitations', () => {
  test('gatehouse users invite mails a link; the invitee chooses a password and lands signed in, verified, in the groups', async () => {
    const email = uniqueEmail('ann');
    const n = smtp.messages.length;
    const r = await invite(mailConfig, email.toUpperCase(), '--groups', 'admins, ops');
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`^invited ${email} \\(groups: admins, ops\\): the link is mailed; it works once, for 7 days\\n$`),
    );
    assert.doesNotMatch(r.stdout, /token=/, 'mailed links are not printed');

    const mail = await mailTo(smtp, email, INVITED, n);
    assert.match(
      mail.text,
      new RegExp(`You are invited to Acme Portal, with the account ${email}\\. Open this link within 7 days`),
    );
    const link = linkIn(mail, '/.auth/invite');
    assert.ok(link.startsWith(`${gh.url}/.auth/invite?token=`));

    const c = new Client(gh.url);
    const page = await openLinkPage(c, link);
    assert.equal(page.status, 200);
    assert.match(decodeEntities(page.text), /<h1[^>]*>Welcome to Acme Portal<\/h1>/);
    assert.match(
      decodeEntities(page.text),
      new RegExp(`invited with the address <strong class="who">${email}</strong>`),
    );
    assert.match(page.text, /autocomplete="new-password"/);
    assert.doesNotMatch(page.text, /token/);
    assert.equal((await c.get('/.auth/me')).status, 401, 'opening the link signs nobody in');

    const weak = await submit(c, page, '/.auth/invite', { password: 'password123' });
    assert.equal(weak.status, 400);
    assert.match(decodeEntities(weak.text), /too common/);

    const done = await submit(c, page, '/.auth/invite', { password: PASSWORD, name: 'Ann Example' });
    assert.equal(done.status, 303, done.text);
    assert.equal(done.location, `${gh.url}/`);
    const user = await me(c);
    assert.deepEqual(
      [user.email, user.emailVerified, user.name, user.groups, user.session.amr],
      [email, true, 'Ann Example', ['admins', 'ops'], ['pwd']],
    );
    assert.equal((await c.get('/admin/panel')).status, 200, 'the groups apply at once');
    assert.ok(c.jar.get('gatehouse-device'), "the browser that accepted is the owner's (device cookie)");
    assert.equal(
      (await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD })).status,
      200,
      'the password signs in from anywhere',
    );

    const reused = await openLink(new Client(gh.url), link);
    assert.equal(reused.status, 410);
    assert.match(decodeEntities(reused.text), /This link was already used/);
    assert.ok(gh.logs.some((l) => l.event === 'invitation_accepted' && l.userId === user.id));
    assert.ok(!gh.logText().includes(new URL(link).searchParams.get('token')!), 'the token is never logged');
  });

  test('without email the CLI prints the link; `users list` says invited until JSON {token, password} accepts it', async () => {
    const email = uniqueEmail('bob');
    const r = await invite(bareConfig, email);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /No email is configured: hand over this link yourself \(it works once, for 7 days\):/);
    const link = /http:\/\/\S+\/\.auth\/invite\?token=([A-Za-z0-9_-]{43})/.exec(r.stdout);
    assert.ok(link, r.stdout);
    const status = async () => {
      const list = await runCli(['users', 'list', '--json', '--config', bareConfig]);
      return (JSON.parse(list.stdout) as { email: string; status: string }[]).find((u) => u.email === email)?.status;
    };
    assert.equal(await status(), 'invited', '`users list` shows the invitation pending');
    const c = new Client(bare.url);
    const short = await c.postJson('/.auth/invite', { token: link[1], password: 'short' }, sameOrigin(c));
    assert.deepEqual([short.status, short.json().error], [400, 'invalid_request']);
    const ok = await c.postJson('/.auth/invite', { token: link[1], password: PASSWORD }, sameOrigin(c));
    assert.equal(ok.status, 201, ok.text);
    assert.deepEqual([ok.json().user.email, ok.json().user.emailVerified, ok.json().redirect], [email, true, '/']);
    assert.equal((await me(c)).email, email);
    assert.equal(await status(), 'active', 'accepted');
    const again = await new Client(bare.url).postJson('/.auth/invite', { token: link[1], password: PASSWORD });
    assert.deepEqual([again.status, again.json().error], [410, 'link_used']);
  });

  test('an address with an account is refused clearly; a pending invitation is sent again, and only the newest link works', async () => {
    const taken = uniqueEmail('taken');
    const owner = new Client(bare.url);
    await bare.gatehouse.store.users.create({ email: taken, passwordHash: null, emailVerified: true });
    const refused = await invite(bareConfig, taken);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, new RegExp(`users invite: ${taken} already has an account`));
    const bad = await invite(bareConfig, 'not-an-address');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /give a valid email address/);

    const email = uniqueEmail('pending');
    const first = /token=([A-Za-z0-9_-]{43})/.exec((await invite(bareConfig, email)).stdout)![1]!;
    const second = await invite(bareConfig, email, '--groups', 'staff', '--json');
    assert.equal(second.code, 0, second.stderr);
    const out = JSON.parse(second.stdout);
    assert.deepEqual(
      [out.email, out.groups, out.mailed, out.verified, out.status],
      [email, 'staff', false, 'no', 'invited'],
    );
    const token = /token=([A-Za-z0-9_-]{43})/.exec(out.link)![1]!;
    const old = await owner.postJson('/.auth/invite', { token: first, password: PASSWORD });
    assert.deepEqual([old.status, old.json().error], [410, 'link_superseded']);
    const ok = await owner.postJson('/.auth/invite', { token, password: PASSWORD });
    assert.equal(ok.status, 201);
    assert.deepEqual(ok.json().user.groups, ['staff']);
    const accepted = await invite(bareConfig, email);
    assert.equal(accepted.code, 2, 'once accepted, the address has an account');
  });

  test('a link expires (accounts.invitationTtl) and dies when the account gets a password another way', async () => {
    const email = uniqueEmail('late');
    const n = smtp.messages.length;
    assert.equal((await invite(mailConfig, email)).code, 0);
    const link = linkIn(await mailTo(smtp, email, INVITED, n), '/.auth/invite');
    clock.advance(7 * 86_400_000 + 1000);
    try {
      const late = await openLink(new Client(gh.url), link);
      assert.equal(late.status, 410);
      assert.match(decodeEntities(late.text), /This link has expired/);
      assert.match(decodeEntities(late.text), /Ask the administrator who invited you for a new invitation/);
    } finally {
      clock.advance(-(7 * 86_400_000 + 1000));
    }
    // `users list` (its own process, the real clock) tells an expired invitation from a live one.
    const statusOf = async () => {
      const list = await runCli(['users', 'list', '--json', '--config', mailConfig]);
      return (JSON.parse(list.stdout) as { email: string; status: string }[]).find((u) => u.email === email)?.status;
    };
    assert.equal(await statusOf(), 'invited');
    const db = rawDb(gh);
    try {
      await db.run(
        `UPDATE email_tokens SET expires_at = ? WHERE purpose = 'invite' AND user_id = (SELECT id FROM users WHERE email = ?)`,
        [Date.now() - 1, email],
      );
    } finally {
      await db.close();
    }
    assert.equal(await statusOf(), 'invitation expired', 'never accepted, and the link no longer works');
    assert.equal((await invite(mailConfig, email)).code, 0, 'invited again');
    assert.equal(await statusOf(), 'invited');

    const other = uniqueEmail('outlived');
    const m = smtp.messages.length;
    assert.equal((await invite(mailConfig, other)).code, 0);
    const token = new URL(linkIn(await mailTo(smtp, other, INVITED, m), '/.auth/invite')).searchParams.get('token')!;
    const set = await runCli(['users', 'set-password', other, '--config', mailConfig], `${PASSWORD}\n`);
    assert.equal(set.code, 0, set.stderr);
    const dead = await new Client(gh.url).postJson('/.auth/invite', { token, password: 'a different passphrase' });
    assert.deepEqual([dead.status, dead.json().error], [410, 'link_changed']);
  });

  test('registration is by invitation: the register page says so, a registration is refused, the sign-in page offers none', async () => {
    const c = new Client(gh.url);
    const page = await c.html('/.auth/register');
    assert.equal(page.status, 403);
    assert.match(decodeEntities(page.text), /<h1[^>]*>Accounts are by invitation<\/h1>/);
    assert.match(decodeEntities(page.text), /Ask an administrator to invite you/);
    const res = await c.postJson('/.auth/register', { email: uniqueEmail('walk-in'), password: PASSWORD });
    assert.deepEqual([res.status, res.json().error], [403, 'registration_closed']);
    assert.match(res.json().message, /by invitation only/);
    assert.doesNotMatch((await c.html('/.auth/login')).text, /Create an account/);
  });

  test('CSRF: the invitation form needs its token and a same-origin POST; nothing is used up', async () => {
    const email = uniqueEmail('csrf');
    const token = /token=([A-Za-z0-9_-]{43})/.exec((await invite(bareConfig, email)).stdout)![1]!;
    const c = new Client(bare.url);
    const page = await openLinkPage(c, `${bare.url}/.auth/invite?token=${token}`);
    assert.equal(page.status, 200);
    const noToken = await c.postForm('/.auth/invite', { password: PASSWORD }, sameOrigin(c));
    assert.equal(noToken.status, 403);
    const crossSite = await c.postForm(
      '/.auth/invite',
      { csrf: csrfOf(page), password: PASSWORD },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossSite.status, 403);
    const crossJson = await new Client(bare.url).postJson(
      '/.auth/invite',
      { token, password: PASSWORD },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossJson.status, 403);
    const ok = await submit(c, page, '/.auth/invite', { password: PASSWORD });
    assert.equal(ok.status, 303, 'the link still works');
  });
});
