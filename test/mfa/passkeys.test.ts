import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { browserSkip, isolatedContext, launchBrowser } from '../browser/chromium.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { confirmTotp } from './helpers.ts';
import { rawDb } from '../helpers/providers.ts';

/**
 * Passkeys in real Chromium with its virtual authenticator (Chrome DevTools Protocol
 * WebAuthn.addVirtualAuthenticator through playwright-core): added on the account page, a passkey
 * alone signs in, a passkey as the second factor after a password, removal; and the attacks: an
 * assertion made with another user's credential, a challenge replayed. WebAuthn needs a secure
 * context and a domain for its RP ID: publicUrl is http://localhost.
 */

let gh: TestGatehouse;
let browser: Browser;

interface Tab {
  context: BrowserContext;
  page: Page;
  cdp: CDPSession;
  authenticatorId: string;
  foreign: string[];
}

/** A fresh profile with a platform authenticator that verifies the user (a fingerprint, a PIN). */
async function tab(): Promise<Tab> {
  const { context, page, foreign } = await isolatedContext(browser, gh.url);
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { context, page, cdp, authenticatorId, foreign };
}

/** Signs the tab's profile in with a password (registering the user first), as the forms do. */
async function signUp(t: Tab, email: string): Promise<void> {
  await registerJson(new Client(gh.url), email);
  await t.page.goto(`${gh.url}/.auth/login`);
  await t.page.fill('#email', email);
  await t.page.fill('#password', PASSWORD);
  await Promise.all([t.page.waitForURL(`${gh.url}/`), t.page.click('form button[type=submit]')]);
}

/** Adds a passkey on the account page; returns the recovery codes shown (the first factor's). */
async function addPasskey(t: Tab, name: string): Promise<string[]> {
  await t.page.goto(`${gh.url}/.auth/account`);
  await t.page.fill('#passkey-name', name);
  await t.page.click('[data-passkey="register"] button');
  await t.page.waitForSelector('ul.codes, .notice');
  return t.page.$$eval('ul.codes code', (els) => els.map((e) => e.textContent ?? ''));
}

// biome-ignore lint: what /.auth/me answers, as JSON
const me = (t: Tab): Promise<any> => t.page.evaluate(async () => (await fetch('/.auth/me')).json());

describeOrSkip('passkeys in Chromium', { skip: browserSkip(), timeout: 120_000 }, () => {
  before(async () => {
    browser = await launchBrowser();
    const port = await freePort();
    gh = await startGatehouse(
      () => ({
        publicUrl: `http://localhost:${port}`,
        title: 'Acme Portal',
        routes: [{ path: '/admin/**', allow: { mfa: true } }],
        accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
      }),
      { port },
    );
    gh.url = `http://localhost:${port}`;
  });
  after(async () => {
    await browser?.close();
    await gh?.close();
  });

  test('add a passkey on the account page: recovery codes shown once, then it is listed with its name; counter and backup flags stored', async () => {
    const t = await tab();
    try {
      const email = uniqueEmail('pk-add');
      await signUp(t, email);
      const codes = await addPasskey(t, 'Laptop');
      assert.equal(codes.length, 10, 'the first factor brings 10 recovery codes');
      await t.page.click('a.button');
      await t.page.waitForURL(/\/\.auth\/account/);
      assert.match((await t.page.textContent('ul.passkeys')) ?? '', /Laptop · added .* · last used never/);
      const body = await me(t);
      assert.deepEqual(body.factors, ['passkey', 'recovery_codes']);
      const db = rawDb(gh);
      const row = await db.get<{ counter: number; device_type: string; backed_up: number; public_key: string }>(
        `SELECT p.* FROM passkeys p JOIN users u ON u.id = p.user_id WHERE u.email = ?`,
        [email],
      );
      await db.close();
      assert.equal(row?.device_type, 'singleDevice');
      assert.equal(Number(row?.backed_up), 0);
      assert.ok(row?.public_key.length, 'the public key is stored');
      assert.deepEqual(t.foreign, [], 'no request to another origin (the script is served by Gatehouse)');
    } finally {
      await t.context.close();
    }
  });

  test("a passkey alone signs in from the email field's autofill (discoverable, user verified): amr hwk+mfa, and step-up pages open without another step", async () => {
    const t = await tab();
    try {
      await signUp(t, uniqueEmail('pk-alone'));
      await addPasskey(t, 'Laptop');
      await t.page.evaluate(() => fetch('/.auth/logout', { method: 'POST' }));
      // The virtual authenticator answers the sign-in page's conditional request at once, as a
      // user picking the passkey from the email field's suggestions does.
      await Promise.all([
        t.page.waitForURL(`${gh.url}/admin/panel`),
        t.page.goto(`${gh.url}/.auth/login?rd=%2Fadmin%2Fpanel`),
      ]);
      const body = await me(t);
      assert.deepEqual(body.session.amr, ['hwk', 'mfa']);
      const db = rawDb(gh);
      const row = await db.get<{ counter: number; last_used_at: number | null }>(
        `SELECT counter, last_used_at FROM passkeys WHERE user_id = ?`,
        [body.id],
      );
      await db.close();
      assert.ok(row?.last_used_at, 'last used is recorded');
      await gh.gatehouse.audit.flush();
      const audited = await gh.gatehouse.store.audit.list({ userId: body.id, limit: 100 });
      const signIn = audited.find((e) => e.event === 'login' && e.detail.method === 'passkey');
      assert.deepEqual([signIn?.outcome, signIn?.detail.passkeyOnly], ['success', true], 'in the audit trail');
      assert.ok(audited.some((e) => e.event === 'factor_added' && e.detail.type === 'passkey'));
    } finally {
      await t.context.close();
    }
  });

  test('the "Sign in with a passkey" button signs in too; the email field asks for passkeys (autocomplete webauthn)', async () => {
    const t = await tab();
    try {
      await signUp(t, uniqueEmail('pk-button'));
      await addPasskey(t, 'Laptop');
      await t.page.evaluate(() => fetch('/.auth/logout', { method: 'POST' }));
      // No presence for the conditional request: it waits, as for a user who types instead.
      await t.cdp.send('WebAuthn.setAutomaticPresenceSimulation', {
        authenticatorId: t.authenticatorId,
        enabled: false,
      });
      await t.page.goto(`${gh.url}/.auth/login?rd=%2Fdocs`);
      assert.equal(await t.page.getAttribute('#email', 'autocomplete'), 'username webauthn');
      // The autofill request is pending (the page marks it) before the user shows up and clicks.
      await t.page.waitForSelector('[data-passkey="signin"][data-autofill="waiting"]', { state: 'attached' });
      await t.cdp.send('WebAuthn.setAutomaticPresenceSimulation', {
        authenticatorId: t.authenticatorId,
        enabled: true,
      });
      await Promise.all([t.page.waitForURL(`${gh.url}/docs`), t.page.click('[data-passkey="signin"] button')]);
      assert.deepEqual((await me(t)).session.amr, ['hwk', 'mfa']);
    } finally {
      await t.context.close();
    }
  });

  test('a passkey as the second factor after a password, then removed on the account page: the password alone signs in again', async () => {
    const t = await tab();
    try {
      const email = uniqueEmail('pk-second');
      await signUp(t, email);
      await addPasskey(t, 'Phone');
      await t.page.evaluate(() => fetch('/.auth/logout', { method: 'POST' }));
      await t.cdp.send('WebAuthn.setAutomaticPresenceSimulation', {
        authenticatorId: t.authenticatorId,
        enabled: false,
      });
      await t.page.goto(`${gh.url}/.auth/login?rd=%2Fdocs`);
      await t.page.fill('#email', email);
      await t.page.fill('#password', PASSWORD);
      await Promise.all([t.page.waitForURL(`${gh.url}/.auth/second-factor`), t.page.click('form button[type=submit]')]);
      await t.cdp.send('WebAuthn.setAutomaticPresenceSimulation', {
        authenticatorId: t.authenticatorId,
        enabled: true,
      });
      await Promise.all([t.page.waitForURL(`${gh.url}/docs`), t.page.click('[data-passkey="second_factor"] button')]);
      assert.deepEqual((await me(t)).session.amr, ['pwd', 'hwk', 'mfa']);
      await t.page.goto(`${gh.url}/.auth/account`);
      await Promise.all([t.page.waitForURL(/mfa=removed/), t.page.click('button:has-text("Remove Phone")')]);
      assert.deepEqual((await me(t)).factors, []);
      const again = await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD });
      assert.ok(again.json().user, 'no second step any more');
      await gh.gatehouse.audit.flush();
      const audited = await gh.gatehouse.store.audit.list({ userId: again.json().user.id, limit: 100 });
      const second = audited.find((e) => e.event === 'login' && e.detail.method === 'passkey');
      assert.deepEqual([second?.outcome, second?.detail.amr], ['success', 'pwd hwk mfa'], 'in the audit trail');
      assert.deepEqual(
        audited
          .filter((e) => e.event === 'factor_removed')
          .map((e) => e.detail.type)
          .sort(),
        ['passkey', 'recovery_codes'],
      );
    } finally {
      await t.context.close();
    }
  });

  test('step-up: a password-only session is sent to the second-factor step and back to the page; an API call gets 401 insufficient_user_authentication', async () => {
    const t = await tab();
    try {
      const email = uniqueEmail('pk-stepup');
      await signUp(t, email);
      await addPasskey(t, 'Key');
      // This session signed in with the password alone (the passkey came after).
      const api = await t.page.evaluate(async () => {
        const r = await fetch('/admin/api', { headers: { accept: 'application/json' } });
        return {
          status: r.status,
          www: r.headers.get('www-authenticate'),
          body: (await r.json()) as { error: string },
        };
      });
      assert.equal(api.status, 401);
      assert.match(api.www!, /error="insufficient_user_authentication"/);
      assert.equal(api.body.error, 'insufficient_user_authentication');
      await t.page.goto(`${gh.url}/admin/panel?x=1`);
      assert.equal(new URL(t.page.url()).pathname, '/.auth/second-factor');
      await Promise.all([
        t.page.waitForURL(`${gh.url}/admin/panel?x=1`),
        t.page.click('[data-passkey="second_factor"] button'),
      ]);
      assert.deepEqual((await me(t)).session.amr, ['pwd', 'hwk', 'mfa']);
      const seen = gh.upstream.requests.filter((r) => r.url === '/admin/panel?x=1');
      assert.equal(seen.length, 1, 'the app saw the page only after the step-up');
    } finally {
      await t.context.close();
    }
  });

  test("attack: an assertion made with another user's passkey is refused at this user's second step (security.md #214)", async () => {
    const ann = await tab();
    try {
      await signUp(ann, uniqueEmail('pk-ann'));
      await addPasskey(ann, 'Ann');
      const bob = uniqueEmail('pk-bob');
      const b = new Client(gh.url);
      await registerJson(b, bob);
      // Bob gets a factor (an authenticator app) so that his sign-in asks for a second step.
      const start = await b.get('/.auth/account/totp', { accept: 'application/json' });
      assert.equal((await confirmTotp(b, gh, start.json().secret)).status, 200);
      // In Ann's browser, Bob's password, then Ann's passkey for Bob's second step.
      await ann.page.evaluate(() => fetch('/.auth/logout', { method: 'POST' }));
      const result = await ann.page.evaluate(async (email) => {
        const login = await fetch('/.auth/login', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email, password: 'a long enough passphrase' }),
        });
        const first = (await login.json()) as { secondFactor?: string };
        const opts: Record<string, unknown> = await fetch('/.auth/passkeys/login-options', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ mode: 'second_factor' }),
        }).then((r) => r.json() as Promise<Record<string, unknown>>);
        // Bob has no passkey: let the authenticator pick any (Ann's).
        const lib = (globalThis as unknown as { SimpleWebAuthnBrowser: any }).SimpleWebAuthnBrowser;
        const response = await lib.startAuthentication({ optionsJSON: { ...opts, allowCredentials: [] } });
        const r = await fetch('/.auth/passkeys/login', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ response }),
        });
        const me = await fetch('/.auth/me');
        return { first, status: r.status, body: (await r.json()) as { error: string }, me: me.status };
      }, bob);
      assert.equal(result.first.secondFactor, 'required');
      assert.equal(result.status, 401);
      assert.equal(result.body.error, 'passkey_invalid');
      assert.equal(result.me, 401, 'nobody is signed in');
    } finally {
      await ann.context.close();
    }
  });

  test('attack: a passkey answer replayed (same challenge, or under a new one) is refused and recorded as a failed sign-in (security.md #215)', async () => {
    const t = await tab();
    const started = Date.now();
    try {
      await signUp(t, uniqueEmail('pk-replay'));
      await addPasskey(t, 'Laptop');
      await t.page.evaluate(() => fetch('/.auth/logout', { method: 'POST' }));
      // A page of the site without the sign-in page's own (autofill) request, with the WebAuthn script.
      await t.page.goto(`${gh.url}/.auth/health`);
      await t.page.addScriptTag({ url: `${gh.url}/.auth/assets/webauthn.js` });
      const r = await t.page.evaluate(async () => {
        const post = (url: string, body: unknown) =>
          fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const lib = (globalThis as unknown as { SimpleWebAuthnBrowser: any }).SimpleWebAuthnBrowser;
        const opts = await (await post('/.auth/passkeys/login-options', { mode: 'signin' })).json();
        const response = await lib.startAuthentication({ optionsJSON: opts });
        const first = await post('/.auth/passkeys/login', { response });
        await fetch('/.auth/logout', { method: 'POST' });
        const again = await post('/.auth/passkeys/login', { response });
        await post('/.auth/passkeys/login-options', { mode: 'signin' });
        const fresh = await post('/.auth/passkeys/login', { response });
        const me = await fetch('/.auth/me');
        return {
          first: first.status,
          again: again.status,
          againBody: await again.json(),
          fresh: fresh.status,
          me: me.status,
        };
      });
      assert.equal(r.first, 200);
      assert.equal(r.again, 401, 'after sign-out the pending record is gone');
      assert.equal(r.fresh, 401, 'under a new challenge the old answer does not verify');
      assert.equal(r.me, 401);
      // The refused answer is in the audit trail as a failed passkey sign-in (nobody known yet).
      await gh.gatehouse.audit.flush();
      const failed = (await gh.gatehouse.store.audit.list({ event: 'login', since: started })).filter(
        (e) => e.outcome === 'failure' && e.detail.method === 'passkey',
      );
      assert.equal(failed.length, 1, JSON.stringify(failed));
      assert.equal(failed[0]!.userId, null);
      assert.equal(failed[0]!.detail.passkeyOnly, true);
      assert.ok(failed[0]!.ip, 'with the address it came from');
    } finally {
      await t.context.close();
    }
  });
  test('registration with a passkey instead of a password: the account is made only when the passkey verifies, signed in, codes shown', async () => {
    const t = await tab();
    try {
      const email = uniqueEmail('pk-signup');
      await t.page.goto(`${gh.url}/.auth/register?rd=%2Fwelcome`);
      await t.page.fill('#email', email);
      await t.page.fill('#name', 'Pat Key');
      await t.page.click('[data-passkey="signup"] button');
      await t.page.waitForSelector('ul.codes');
      assert.equal((await t.page.$$('ul.codes code')).length, 10);
      await Promise.all([t.page.waitForURL(`${gh.url}/welcome`), t.page.click('a.button')]);
      const body = await me(t);
      assert.equal(body.email, email);
      assert.equal(body.name, 'Pat Key');
      assert.deepEqual(body.session.amr, ['hwk', 'mfa']);
      assert.deepEqual(body.factors, ['passkey', 'recovery_codes']);
      const login = await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD });
      assert.equal(login.status, 401, 'no password to guess');
      // An address that is not one is refused before any ceremony.
      const again = await t.page.evaluate(async (email) => {
        const r = await fetch('/.auth/passkeys/register-options', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ mode: 'signup', email: 'not an address' }),
        });
        return r.status;
      }, email);
      assert.equal(again, 400);
    } finally {
      await t.context.close();
    }
  });

  test('attack: CSRF on passkey enrolment and removal: cross-site requests change nothing (security.md #213)', async () => {
    const t = await tab();
    try {
      const email = uniqueEmail('pk-csrf');
      await signUp(t, email);
      await addPasskey(t, 'Laptop');
      const cookie = (await t.context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
      const crossSite = { cookie, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' };
      const c = new Client(gh.url);
      for (const path of [
        '/.auth/passkeys/register-options',
        '/.auth/passkeys/register',
        '/.auth/account/passkeys/remove',
      ]) {
        const res = await c.postJson(path, { mode: 'register', id: 'x' }, crossSite);
        assert.equal(res.status, 403, path);
      }
      const form = await c.postForm('/.auth/account/passkeys/remove', { id: 'x' }, { cookie, origin: gh.url });
      assert.equal(form.status, 403, 'a form without its token');
      assert.deepEqual((await me(t)).factors, ['passkey', 'recovery_codes']);
    } finally {
      await t.context.close();
    }
  });
  test('re-authentication with a passkey: removing it from a stale session asks to confirm, the passkey confirms, then it is removed', async () => {
    const t = await tab();
    try {
      await signUp(t, uniqueEmail('pk-reauth'));
      await addPasskey(t, 'Laptop');
      const cookie = (await t.context.cookies()).find((c) => c.name === 'gatehouse')!;
      const { hashSessionId } = await import('../../src/sessions/index.ts');
      const idHash = hashSessionId(cookie.value);
      const s = (await gh.gatehouse.store.sessions.get(idHash))!;
      await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });
      await t.page.goto(`${gh.url}/.auth/account`);
      await Promise.all([t.page.waitForURL(/\/\.auth\/reauth/), t.page.click('button:has-text("Remove Laptop")')]);
      await Promise.all([t.page.waitForURL(`${gh.url}/.auth/account`), t.page.click('[data-passkey="reauth"] button')]);
      const after = (await gh.gatehouse.store.sessions.get(idHash))!;
      assert.ok(after.authTime > Date.now() - 60_000, 'confirmed now');
      assert.deepEqual(after.amr, ['pwd', 'hwk', 'mfa'], 'and the passkey counts as a second factor');
      await Promise.all([t.page.waitForURL(/mfa=removed/), t.page.click('button:has-text("Remove Laptop")')]);
      assert.deepEqual((await me(t)).factors, []);
    } finally {
      await t.context.close();
    }
  });
  test('an invitation accepted with a passkey instead of a password: signed in, verified, no password, recorded in the audit trail', async () => {
    const t = await tab();
    try {
      const { writeFileSync } = await import('node:fs');
      const { join } = await import('node:path');
      const { runCli } = await import('../helpers/cli.ts');
      const file = join(gh.dir, 'ops.yaml');
      writeFileSync(
        file,
        `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\n`,
      );
      const email = uniqueEmail('pk-invite');
      const r = await runCli(['users', 'invite', email, '--config', file]);
      const link = /(http:\/\/\S+\/\.auth\/invite\?token=[A-Za-z0-9_-]{43})/.exec(r.stdout)?.[1];
      assert.ok(link, r.stdout + r.stderr);
      await t.page.goto(link);
      await Promise.all([t.page.waitForURL(`${gh.url}/`), t.page.click('[data-passkey="invite"] button')]);
      const body = await me(t);
      assert.equal(body.email, email);
      assert.equal(body.emailVerified, true);
      assert.deepEqual(body.session.amr, ['hwk', 'mfa']);
      assert.deepEqual(body.factors, ['passkey']);
      await gh.gatehouse.audit.flush();
      const trail = await gh.gatehouse.store.audit.list({ userId: body.id });
      const accepted = trail.filter((e) => e.event === 'invitation_accepted');
      assert.deepEqual(
        accepted.map((e) => e.detail.method),
        ['passkey'],
        'the acceptance is recorded with how the invitee signed in',
      );
      assert.ok(trail.some((e) => e.event === 'factor_added' && e.detail.type === 'passkey'));
      const again = await t.page.evaluate(
        async () =>
          (
            await fetch('/.auth/invite', {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: '{}',
            })
          ).status,
      );
      assert.notEqual(again, 201, 'the link is used up');
    } finally {
      await t.context.close();
    }
  });
});

describe('passkey sign-up and accounts.registration', () => {
  test('attack: with registration by invitation only, a passkey sign-up is refused like a password one (no account made)', async () => {
    const port = await freePort();
    const invite = await startGatehouse(
      () => ({ publicUrl: `http://localhost:${port}`, accounts: { registration: 'invite' } }),
      { port },
    );
    try {
      const url = `http://localhost:${port}`;
      const email = uniqueEmail('pk-invite-only');
      const sameOrigin = { origin: url, 'sec-fetch-site': 'same-origin' };
      const c = new Client(url);
      const passkey = await c.postJson('/.auth/passkeys/register-options', { mode: 'signup', email }, sameOrigin);
      assert.equal(passkey.status, 403, passkey.text);
      assert.match(passkey.text, /invitation only/);
      const password = await c.postJson('/.auth/register', { email, password: PASSWORD }, sameOrigin);
      assert.equal(password.status, 403, password.text);
      assert.equal(await invite.gatehouse.store.users.getByEmail(email), undefined);
    } finally {
      await invite.close();
    }
  });
});

describe('passkey-only sign-in and the limits', () => {
  test('attack: failed passkey-only sign-ins from one address do not throttle everyone else; past its own limit that address is refused and recorded (security.md #221)', async () => {
    const port = await freePort();
    const limited = await startGatehouse(
      () => ({
        publicUrl: `http://localhost:${port}`,
        trustedProxies: ['loopback'],
        accounts: { rateLimits: { loginPerIp: 3, loginPerAccount: 2 } },
      }),
      { port },
    );
    try {
      const url = `http://localhost:${port}`;
      const started = Date.now();
      /** One passkey-only attempt from `ip` with an answer that cannot verify. */
      const attempt = async (ip: string) => {
        const c = new Client(url);
        const headers = { origin: url, 'sec-fetch-site': 'same-origin', 'x-forwarded-for': ip };
        const options = await c.postJson('/.auth/passkeys/login-options', { mode: 'signin' }, headers);
        assert.equal(options.status, 200, options.text);
        const forged = { id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: {}, clientExtensionResults: {} };
        return c.postJson('/.auth/passkeys/login', { response: forged }, headers);
      };
      for (let i = 0; i < 3; i++) assert.equal((await attempt('203.0.113.7')).status, 401);
      const other = await attempt('198.51.100.20');
      assert.equal(other.status, 401, `another address is not throttled by the first one's failures: ${other.text}`);
      const past = await attempt('203.0.113.7');
      assert.equal(past.status, 429, past.text);
      assert.equal(past.json().error, 'too_many_attempts');
      // It says what was counted: no code was typed here.
      assert.match(past.json().message, /passkey sign-ins that did not work/);
      assert.ok(Number(past.headers['retry-after']) > 0);

      await limited.gatehouse.audit.flush();
      const events = await limited.gatehouse.store.audit.list({ event: 'login', since: started });
      const of = (ip: string, outcome: string) =>
        events.filter((e) => e.ip === ip && e.outcome === outcome && e.detail.method === 'passkey').length;
      assert.deepEqual(
        [of('203.0.113.7', 'failure'), of('203.0.113.7', 'throttled'), of('198.51.100.20', 'failure')],
        [3, 1, 1],
      );
    } finally {
      await limited.close();
    }
  });
});
