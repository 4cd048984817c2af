import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import { hashSessionId } from '../../src/sessions/index.ts';
import { runCli } from '../helpers/cli.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, mailTo, sameOrigin, submit } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { csrfOf, type Lab, rawDb, startLab, labGatehouse } from '../helpers/providers.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { cliClient, deviceLogin, oauthError, withBearer } from '../oauth/helpers.ts';

/**
 * A user deletes their own account on the account page (accounts/deletion.ts): after a recent
 * sign-in or "Confirm it's you", with their address typed as confirmation, from a same-origin
 * form. Everything of theirs goes (every session, CLI/MCP logins, provider links), the address
 * is told by mail, and it can register again as a new account (security.md #235-#237).
 */

let smtp: TestSmtp;
let lab: Lab;
let gh: TestGatehouse;
const DELETED = /^Your Acme Portal account was deleted$/;

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

const me = (c: Client) => c.get('/.auth/me');

async function signedIn(tag: string): Promise<{ c: Client; id: string; email: string }> {
  const c = new Client(gh.url);
  const email = uniqueEmail(tag);
  const { id } = await registerJson(c, email);
  return { c, id, email };
}

/** The account page's "Delete account" form, posted as a browser does, with `confirm` typed. */
async function deleteWithForm(c: Client, confirm: string) {
  const page = await c.html('/.auth/account');
  assert.equal(page.status, 200);
  return submit(c, page, '/.auth/account/delete', { confirm });
}

/** Rows of the user left in the tables the deletion must empty. */
async function rowsOf(userId: string): Promise<Record<string, number>> {
  const db = rawDb(gh);
  try {
    const count = async (sql: string) => Number((await db.get<{ n: number }>(sql, [userId]))!.n);
    const byUser = (table: string) => count(`SELECT count(*) AS n FROM ${table} WHERE user_id = ?`);
    return {
      users: await count('SELECT count(*) AS n FROM users WHERE id = ?'),
      sessions: await byUser('sessions'),
      identities: await byUser('identities'),
      oauth_grants: await byUser('oauth_grants'),
      provider_tokens: await byUser('provider_tokens'),
    };
  } finally {
    await db.close();
  }
}

describe('deleting your own account', () => {
  test('on the account page: signed out everywhere, CLI login refused, rows gone, told by mail; the address can register again as a new account', async () => {
    const { c, id, email } = await signedIn('leaver');
    const other = new Client(gh.url);
    assert.equal((await other.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
    const cli = await cliClient(gh);
    const tokens = await deviceLogin(gh, c, cli);
    assert.equal((await withBearer(gh, '/api/x', tokens.access_token)).status, 200);

    const page = await c.html('/.auth/account');
    assert.match(page.text, /<h2[^>]*>Delete account<\/h2>/);
    assert.match(page.text, /<form method="post" action="\/\.auth\/account\/delete" novalidate>/);
    assert.match(page.text, new RegExp(`Type your email address \\(${email.replace(/[.+]/g, '\\$&')}\\) to confirm`));

    const done = await deleteWithForm(c, `  ${email.toUpperCase()} `);
    assert.equal(done.status, 200, done.text);
    assert.match(done.text, /Your account was deleted/);
    assert.ok(
      done.cookies.some((k) => /^gatehouse=;/.test(k) && /max-age=0/i.test(k)),
      'the session cookie is cleared',
    );
    assert.equal((await me(c)).status, 401);
    assert.equal((await me(other)).status, 401, 'the other browser is signed out at its next request');
    const r = await other.html('/app/page');
    assert.equal(r.status, 302, r.text);
    assert.equal((await withBearer(gh, '/api/x', tokens.access_token)).status, 401, 'the access token is refused');
    assert.equal(await oauthError(oauth.refreshTokenGrant(cli, tokens.refresh_token!)), 'invalid_grant');
    assert.deepEqual(await rowsOf(id), { users: 0, sessions: 0, identities: 0, oauth_grants: 0, provider_tokens: 0 });
    assert.equal(
      (await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD })).status,
      401,
      'the password no longer signs in',
    );

    const notice = await mailTo(smtp, email, DELETED);
    assert.match(notice.text, /was deleted from its account page, after its owner confirmed who they were/);
    await gh.gatehouse.audit.flush();
    const trail = await gh.gatehouse.store.audit.list({ userId: id, limit: 50 });
    const deleted = trail.filter((e) => e.event === 'account_deleted');
    assert.deepEqual(
      deleted.map((e) => [e.outcome, e.actor]),
      [['success', null]],
      'audited once, by the user themselves; the trail keeps it',
    );
    const line = gh.logs.find((l) => l.event === 'account_deleted');
    assert.equal(line?.userId, id);
    await gh.gatehouse.mailer!.idle();
    const deletionLines = gh
      .logText()
      .split('\n')
      .filter((l) => l.includes('account_deleted'));
    assert.deepEqual(
      deletionLines.map((l) => (JSON.parse(l) as { event: string }).event).sort(),
      ['account_deleted', 'audit', 'mail_sent'],
      'the event, its audit line and the mail sent',
    );
    for (const l of deletionLines) assert.ok(!l.includes(email), `the address is not logged: ${l}`);

    const again = new Client(gh.url);
    const fresh = await registerJson(again, email);
    assert.notEqual(fresh.id, id, 'a new account, not the old one back');
    assert.equal((await me(again)).json().id, fresh.id);
  });

  test('it needs a recent sign-in, the typed address and a same-origin request; anything else deletes nothing', async () => {
    const { c, id, email } = await signedIn('careful');
    const idHash = hashSessionId(c.jar.get('gatehouse')!);
    const s = (await gh.gatehouse.store.sessions.get(idHash))!;
    await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });

    const stale = await deleteWithForm(c, email);
    assert.equal(stale.status, 303);
    assert.equal(stale.location, `${gh.url}/.auth/reauth?rd=%2F.auth%2Faccount`);
    const staleJson = await c.postJson('/.auth/account/delete', { confirm: email }, sameOrigin(c));
    assert.deepEqual([staleJson.status, staleJson.json().error], [401, 'reauthentication_required']);

    assert.equal((await c.postJson('/.auth/reauth', { password: PASSWORD }, sameOrigin(c))).status, 200);
    const wrong = await deleteWithForm(c, 'someone-else@example.com');
    assert.equal(wrong.status, 400);
    assert.match(wrong.text, /Type your email address, .*, to confirm that the account is to be deleted\./);
    assert.match(wrong.text, /<form method="post" action="\/\.auth\/account\/delete"/, 'the form is shown again');
    const missing = await c.postJson('/.auth/account/delete', {}, sameOrigin(c));
    assert.deepEqual([missing.status, missing.json().error], [400, 'invalid_request']);
    const notString = await c.postJson('/.auth/account/delete', { confirm: [email] }, sameOrigin(c));
    assert.equal(notString.status, 400);

    const csrf = csrfOf(await c.html('/.auth/account'));
    const crossSite = await c.postForm(
      '/.auth/account/delete',
      { csrf, confirm: email },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossSite.status, 403);
    const noToken = await c.postForm('/.auth/account/delete', { confirm: email }, sameOrigin(c));
    assert.equal(noToken.status, 403);
    const anonymous = await new Client(gh.url).postJson(
      '/.auth/account/delete',
      { confirm: email },
      { origin: gh.url, 'sec-fetch-site': 'same-origin' },
    );
    assert.equal(anonymous.status, 401);

    assert.equal((await me(c)).status, 200, 'still signed in');
    assert.equal((await rowsOf(id)).users, 1, 'the account is still there');
    await gh.gatehouse.mailer!.idle();
    assert.equal(smtp.to(email).filter((m) => DELETED.test(m.subject)).length, 0, 'no notice was sent');

    const ok = await c.postJson('/.auth/account/delete', { confirm: email }, sameOrigin(c));
    assert.deepEqual([ok.status, ok.json()], [200, { ok: true, deleted: true }]);
    assert.equal((await rowsOf(id)).users, 0);
  });

  test('a user who signed in with a provider deletes the account; signing in there again makes a new account, not the old one', async () => {
    const c = new Client(gh.url);
    lab.a.autoLogin = 'bob';
    await signIn(c, 'a');
    const before = (await me(c)).json() as { id: string; email: string };
    assert.equal((await rowsOf(before.id)).identities, 1);

    const done = await c.postJson('/.auth/account/delete', { confirm: before.email }, sameOrigin(c));
    assert.equal(done.status, 200, done.text);
    assert.deepEqual(await rowsOf(before.id), {
      users: 0,
      sessions: 0,
      identities: 0,
      oauth_grants: 0,
      provider_tokens: 0,
    });

    const back = new Client(gh.url);
    await signIn(back, 'a');
    const after = (await me(back)).json() as { id: string; email: string };
    assert.equal(after.email, before.email);
    assert.notEqual(after.id, before.id);
  });
});

describe('gatehouse users delete', () => {
  test('an operator deletes an account: its browser is signed out at the next request, and the address gets the notice that says who did it', async () => {
    const { c, id, email } = await signedIn('operated');
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-delete-'));
    try {
      const file = join(dir, 'gatehouse.yaml');
      writeFileSync(
        file,
        `publicUrl: ${gh.url}\ntitle: Acme Portal\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\nemail: {from: "Acme Portal <no-reply@acme.example>", smtp: {host: 127.0.0.1, port: ${smtp.port}}}\n`,
      );
      const r = await runCli(['users', 'delete', email, '--yes', '--config', file]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `deleted ${email} (${id}); a notice was mailed to the address\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal((await me(c)).status, 401);
    const notice = await mailTo(smtp, email, DELETED);
    assert.match(notice.text, /an administrator of Acme Portal deleted the account of/);
    const trail = await gh.gatehouse.store.audit.list({ userId: id, event: 'account_deleted', limit: 5 });
    assert.match(String(trail[0]?.actor), /^operator:/);
  });
});

describe('with accounts.selfDeletion: false', () => {
  let closed: TestGatehouse;
  before(async () => {
    closed = await startGatehouse(() => ({ accounts: { selfDeletion: false } }));
  });
  after(() => closed?.close());

  test('the account page has no "Delete account" and the route answers 403; the account stays', async () => {
    const c = new Client(closed.url);
    const email = uniqueEmail('kept');
    const { id } = await registerJson(c, email);
    const page = await c.html('/.auth/account');
    assert.equal(page.status, 200);
    assert.doesNotMatch(page.text, /Delete account/);
    const json = await c.postJson('/.auth/account/delete', { confirm: email }, sameOrigin(c));
    assert.deepEqual([json.status, json.json().error], [403, 'self_deletion_disabled']);
    const form = await submit(c, page, '/.auth/account/delete', { confirm: email });
    assert.equal(form.status, 403);
    assert.match(form.text, /deleted by an administrator/);
    assert.ok(await closed.gatehouse.store.users.get(id));
    assert.equal((await me(c)).status, 200);
  });
});
