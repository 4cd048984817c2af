import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import { isRecent } from '../../src/accounts/reauth.ts';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client, decodeEntities, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { csrfOf } from '../helpers/providers.ts';
import { Clock, cliClient, consentPath, forms, postForm } from '../oauth/helpers.ts';

/**
 * Re-authentication before sensitive actions (accounts.reauthenticateAfter, security.md #204):
 * a session whose sign-in is older than the window is sent to /.auth/reauth (browser) or gets
 * 401 reauthentication_required (JSON) when it approves a device or a client; the password
 * proves it again, throttled like sign-in; a direct POST of the action skips nothing; CSRF.
 * Time is moved by the Gatehouse's clock, never slept.
 */

let gh: TestGatehouse;
const clock = new Clock();
const WINDOW = 10 * 60_000;
const sameOrigin = (c: Client) => ({ origin: c.base, 'sec-fetch-site': 'same-origin' });

before(async () => {
  gh = await startGatehouse(
    () => ({
      title: 'Acme Portal',
      tokens: {
        device: { interval: '1s' },
        clients: [
          {
            id: 'web',
            name: 'Web client',
            redirectUris: ['https://client.example/cb'],
            grantTypes: ['authorization_code'],
          },
        ],
      },
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 3, registerPerIp: 1000 } },
    }),
    { clock: clock.now },
  );
});
after(() => gh?.close());

/** A registered, signed-in browser whose sign-in is `ago` ms old by the Gatehouse's clock. */
async function browserSignedIn(ago = 0): Promise<{ c: Client; id: string; email: string; idHash: string }> {
  const c = new Client(gh.url);
  const email = uniqueEmail('reauth');
  const { id } = await registerJson(c, email);
  const idHash = hashSessionId(c.jar.get('gatehouse')!);
  if (ago) {
    const s = (await gh.gatehouse.store.sessions.get(idHash))!;
    await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: clock.now() - ago, amr: s.amr });
  }
  return { c, id, email, idHash };
}

const authTime = async (idHash: string) => (await gh.gatehouse.store.sessions.get(idHash))!.authTime;

/** Confirms with the password on the /reauth page the browser was sent to; returns the final answer. */
async function confirm(c: Client, location: string, password = PASSWORD) {
  const page = await c.html(new URL(location).pathname + new URL(location).search);
  assert.equal(page.status, 200, page.text);
  const [form] = forms(page.text);
  return c.postForm(form!.action, { ...form!.fields, password }, sameOrigin(c));
}

describe('re-authentication', () => {
  test('isRecent: within the window, at its edge, past it; an auth time from the future is not trusted', () => {
    const now = 1_000_000_000;
    assert.equal(isRecent({ authTime: now - WINDOW }, now, WINDOW), true);
    assert.equal(isRecent({ authTime: now - WINDOW - 1 }, now, WINDOW), false);
    assert.equal(isRecent({ authTime: now }, now, 0), true, 'reauthenticateAfter 0: right after the proof only');
    assert.equal(isRecent({ authTime: now + 3_600_000 }, now, WINDOW), false);
  });

  test('a fresh sign-in approves a device at once; past the window the browser confirms its password first, then approves', async () => {
    const fresh = await browserSignedIn();
    const entry = await fresh.c.html('/.auth/device');
    assert.equal(entry.status, 200, 'signed in a moment ago: no question asked');

    const { c, idHash } = await browserSignedIn(WINDOW + 1000);
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
    const page = await c.html(`/.auth/device?user_code=${device.user_code}`);
    assert.equal(page.status, 303);
    const back = `/.auth/device?user_code=${device.user_code}`;
    assert.equal(page.location, `${gh.url}/.auth/reauth?rd=${encodeURIComponent(back)}`);

    const reauth = await c.html(new URL(page.location!).pathname + new URL(page.location!).search);
    assert.equal(reauth.status, 200);
    const text = decodeEntities(reauth.text);
    assert.match(text, /<h1[^>]*>Confirm it's you<\/h1>/);
    assert.match(text, /autocomplete="current-password"/);
    assert.match(text, /<input type="hidden" name="method" value="password">/);
    assert.equal(reauth.headers['x-frame-options'], 'DENY');

    const before = await authTime(idHash);
    const wrong = await confirm(c, page.location!, 'not the password at all');
    assert.equal(wrong.status, 401);
    assert.match(decodeEntities(wrong.text), /The password is not correct/);
    assert.equal(await authTime(idHash), before, 'a wrong password proves nothing');

    const ok = await confirm(c, page.location!);
    assert.equal(ok.status, 303);
    assert.equal(ok.location, `${gh.url}${back}`, 'back to the page of the action');
    assert.ok((await authTime(idHash)) >= clock.now() - 1000, 'the auth time is now');
    assert.ok(gh.logs.some((l) => l.event === 'reauthenticated' && l.method === 'password'));

    const entryAgain = await c.html(back);
    assert.equal(entryAgain.status, 200);
    const [form] = forms(entryAgain.text);
    const shown = await c.postForm(form!.action, { ...form!.fields, user_code: device.user_code }, sameOrigin(c));
    const allow = forms(shown.text).find((f) => f.fields.decision === 'approve')!;
    const done = await c.postForm(allow.action, allow.fields, sameOrigin(c));
    assert.equal(done.location, `${gh.url}/.auth/device?done=approved`);
    const tokens = await oauth.pollDeviceAuthorizationGrant(config, device);
    assert.ok(tokens.access_token);
  });

  test('bypass: a stale session POSTs the approval straight away (form or JSON): nothing is approved; denying needs no proof', async () => {
    const fresh = await browserSignedIn();
    const { c, idHash } = await browserSignedIn();
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
    // The form was shown while the session was fresh; the approval comes after the window.
    const entry = forms((await c.html('/.auth/device')).text)[0]!;
    const shown = await c.postForm(entry.action, { ...entry.fields, user_code: device.user_code }, sameOrigin(c));
    const allow = forms(shown.text).find((f) => f.fields.decision === 'approve')!;
    const s = (await gh.gatehouse.store.sessions.get(idHash))!;
    await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: clock.now() - WINDOW - 1, amr: s.amr });

    const form = await c.postForm(allow.action, allow.fields, sameOrigin(c));
    assert.equal(form.status, 303);
    assert.match(form.location!, /\/\.auth\/reauth\?rd=%2F\.auth%2Fdevice%3Fuser_code%3D/);
    const json = await c.postJson('/.auth/device', { user_code: device.user_code, decision: 'approve' }, sameOrigin(c));
    assert.equal(json.status, 401);
    const body = json.json();
    assert.equal(body.error, 'reauthentication_required');
    assert.equal(body.maxAge, 600);
    assert.match(body.reauthenticate, /^http:\/\/127\.0\.0\.1:\d+\/\.auth\/reauth\?rd=/);
    assert.match(
      String(json.headers['www-authenticate']),
      /^Bearer realm="[^"]+", error="insufficient_user_authentication", error_description="[^"]+", max_age=600$/,
    );
    const poll = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: device.device_code,
      client_id: 'gatehouse-cli',
    });
    assert.equal(poll.json.error, 'authorization_pending', 'the device is not approved');

    // Denying only takes access away: no proof needed. (Another user's browser, fresh, is not involved.)
    const deny = await c.postJson('/.auth/device', { user_code: device.user_code, decision: 'deny' }, sameOrigin(c));
    assert.equal(deny.status, 200, deny.text);
    assert.equal(deny.json().result, 'denied');
    assert.equal((await fresh.c.get('/.auth/me')).status, 200);
  });

  test('JSON: /reauth says whether the session is recent and which proofs there are; {password} confirms', async () => {
    const { c, idHash } = await browserSignedIn(WINDOW * 2);
    const state = await c.get('/.auth/reauth');
    assert.equal(state.status, 200);
    assert.deepEqual(
      { ...(state.json() as object), authTime: undefined },
      {
        recent: false,
        authTime: undefined,
        maxAge: 600,
        methods: ['password'],
      },
    );
    const bad = await c.postJson('/.auth/reauth', { password: 'nope nope nope' }, sameOrigin(c));
    assert.deepEqual([bad.status, bad.json().error], [401, 'invalid_credentials']);
    const empty = await c.postJson('/.auth/reauth', {}, sameOrigin(c));
    assert.deepEqual([empty.status, empty.json().error], [400, 'invalid_request']);
    const other = await c.postJson('/.auth/reauth', { method: 'carrier-pigeon' }, sameOrigin(c));
    assert.deepEqual([other.status, other.json().error], [400, 'unsupported_method']);
    const ok = await c.postJson('/.auth/reauth', { password: PASSWORD, rd: '/.auth/account' }, sameOrigin(c));
    assert.equal(ok.status, 200);
    assert.equal(ok.json().redirect, '/.auth/account');
    assert.equal(new Date(ok.json().authTime).getTime(), await authTime(idHash));
    assert.equal((await c.get('/.auth/reauth')).json().recent, true);
  });

  test('consent to an OAuth client: a stale session confirms first and comes back to the same consent page', async () => {
    const { c } = await browserSignedIn(WINDOW + 1);
    const path = consentPath('web', 'https://client.example/cb', gh.url);
    const start = await c.html(path);
    assert.equal(start.status, 303);
    assert.equal(start.location, `${gh.url}/.auth/reauth?rd=${encodeURIComponent(path)}`);
    const done = await confirm(c, start.location!);
    assert.equal(done.location, `${gh.url}${path}`);
    const consent = await c.html(path);
    assert.equal(consent.status, 200);
    assert.match(consent.text, /Web client/);
  });

  test('return targets stay on this site: /reauth?rd=https://evil.example goes home after the proof', async () => {
    const { c } = await browserSignedIn(WINDOW + 1);
    for (const rd of ['https://evil.example/', '//evil.example/x', '/\\evil.example']) {
      const done = await confirm(c, `${gh.url}/.auth/reauth?rd=${encodeURIComponent(rd)}`);
      assert.equal(done.status, 303);
      assert.equal(done.location, `${gh.url}/`, rd);
    }
  });

  test('CSRF: the form needs its token and a same-origin POST; nothing is confirmed otherwise', async () => {
    const { c, idHash } = await browserSignedIn(WINDOW + 1);
    const page = await c.html('/.auth/reauth');
    const before = await authTime(idHash);
    const noToken = await c.postForm('/.auth/reauth', { method: 'password', password: PASSWORD }, sameOrigin(c));
    assert.equal(noToken.status, 403);
    const crossSite = await c.postForm(
      '/.auth/reauth',
      { csrf: csrfOf(page), method: 'password', password: PASSWORD },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossSite.status, 403);
    const crossJson = await c.postJson(
      '/.auth/reauth',
      { password: PASSWORD },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossJson.status, 403);
    assert.equal(await authTime(idHash), before);
  });

  test('throttled like sign-in: a stolen session cookie cannot guess the password; the owner keeps their allowance', async () => {
    const { c, email, idHash } = await browserSignedIn(WINDOW + 1);
    // The thief has the session cookie only, not the owner's device cookie.
    const thief = new Client(gh.url);
    thief.jar.set('gatehouse', c.jar.get('gatehouse')!);
    for (let i = 0; i < 3; i++) {
      const r = await thief.postJson('/.auth/reauth', { password: `guess number ${i}` }, sameOrigin(thief));
      assert.equal(r.status, 401);
    }
    const blocked = await thief.postJson('/.auth/reauth', { password: PASSWORD }, sameOrigin(thief));
    assert.equal(blocked.status, 429, 'even the right password, once the allowance is used up');
    assert.ok(Number(blocked.headers['retry-after']) > 0);
    const login = await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD });
    assert.equal(login.status, 429, 'the guesses counted against the account, as sign-in attempts do');
    const owner = await c.postJson('/.auth/reauth', { password: PASSWORD }, sameOrigin(c));
    assert.equal(owner.status, 200, "the owner's browser (device cookie) still confirms");
    assert.ok((await authTime(idHash)) > clock.now() - 1000);
  });

  test('not signed in: /reauth sends to sign-in (which is a proof itself) and back', async () => {
    const c = new Client(gh.url);
    const page = await c.html('/.auth/reauth?rd=%2F.auth%2Fdevice');
    assert.equal(page.status, 303);
    assert.equal(page.location, `${gh.url}/.auth/login?rd=%2F.auth%2Fdevice`);
    const json = await c.get('/.auth/reauth');
    assert.equal(json.status, 401);
  });

  test('an account without a password or provider is told to sign in again', async () => {
    const email = uniqueEmail('nopass');
    const user = await gh.gatehouse.store.users.create({ email });
    const site = [...gh.gatehouse.sites.values()][0]!;
    const { setCookie } = await gh.gatehouse.sessions.create(user, site.origin, site.session, {
      amr: ['pwd'],
      ip: null,
      userAgent: null,
      authTime: clock.now() - WINDOW - 1,
    });
    const c = new Client(gh.url);
    c.jar.set('gatehouse', setCookie.split(';')[0]!.split('=')[1]!);
    const page = await c.html('/.auth/reauth?rd=%2F.auth%2Fdevice');
    assert.equal(page.status, 409);
    assert.match(decodeEntities(page.text), /has no password or linked provider to confirm it with here/);
    assert.match(decodeEntities(page.text), /href="\/\.auth\/logout\?rd=/);
  });
});
