import assert from 'node:assert/strict';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
import { createLogger } from '../../src/log/index.ts';
import { Gatehouse } from '../../src/server/gatehouse.ts';
import { Client, PASSWORD } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import {
  Clock,
  cliClient,
  decideDevice,
  deviceLogin,
  forms,
  oauthError,
  postForm,
  signedInBrowser,
} from './helpers.ts';

/** The device authorization grant (RFC 8628) end to end: openid-client polls, a signed-in user decides over HTTP. */

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
let gh: TestGatehouse;

/** A Gatehouse of its own whose clock the test moves. */
async function withOwnClock(fn: (gh: TestGatehouse, clock: Clock) => Promise<void>): Promise<void> {
  const clock = new Clock();
  const own = await startGatehouse(() => ({ tokens: { device: { interval: '1s' } } }), { clock: clock.now });
  try {
    await fn(own, clock);
  } finally {
    await own.close();
  }
}

before(async () => {
  gh = await startGatehouse(() => ({
    title: 'Acme API',
    tokens: {
      device: { interval: '1s' },
      clients: [
        {
          id: 'web-only',
          name: 'Web only',
          redirectUris: ['https://client.example/cb'],
          grantTypes: ['authorization_code'],
        },
        { id: 'other-cli', name: 'Other CLI', grantTypes: ['device_code', 'refresh_token'] },
      ],
    },
  }));
});
after(() => gh.close());

describe('device flow', { concurrency: true }, () => {
  test('approve: the user types the code in any case, with or without the dash, sees who asks for what, and openid-client gets tokens', async () => {
    const { browser, user } = await signedInBrowser(gh);
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { scope: 'offline_access', resource: gh.url });
    assert.match(device.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    assert.equal(device.verification_uri, `${gh.url}/.auth/device`);
    assert.equal(device.verification_uri_complete, `${gh.url}/.auth/device?user_code=${device.user_code}`);
    assert.equal(device.interval, 1);
    assert.equal(device.expires_in, 600);
    assert.equal(device.device_code.length, 43);

    const { confirm } = await decideDevice(gh, browser, device.user_code.toLowerCase().replace('-', ''), 'approve');
    assert.match(
      confirm,
      /<strong>Gatehouse CLI<\/strong> asks to use <strong>Acme API<\/strong> as <strong class="who">[^<]+<\/strong>/,
    );
    assert.match(confirm, new RegExp(`<code class="usercode">${device.user_code}</code>`));
    assert.match(confirm, /Stay signed in/);
    assert.match(confirm, /from 127\.0\.0\.1/);
    assert.doesNotMatch(confirm, /unverified/, 'the built-in client is verified');

    const tokens = await oauth.pollDeviceAuthorizationGrant(config, device);
    assert.equal(tokens.token_type, 'bearer');
    assert.equal(tokens.scope, 'offline_access');
    assert.equal(tokens.expires_in, 600);
    assert.match(tokens.refresh_token!, /^grt\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{22}$/);

    // An RFC 9068 access token, verifiable with the same JWKS as the assertion.
    assert.equal(decodeProtectedHeader(tokens.access_token).typ, 'at+jwt');
    const { payload, protectedHeader } = await jwtVerify(
      tokens.access_token,
      createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`)),
      {
        issuer: gh.url,
        audience: gh.url,
        typ: 'at+jwt',
      },
    );
    assert.equal(protectedHeader.alg, 'EdDSA');
    assert.ok(protectedHeader.kid);
    assert.equal(payload.sub, user.id);
    assert.equal(payload.client_id, 'gatehouse-cli');
    assert.equal(payload.scope, 'offline_access');
    assert.equal(payload.exp! - payload.iat!, 600);
    assert.ok(
      typeof payload.sid === 'string' && typeof payload.jti === 'string' && typeof payload.auth_time === 'number',
    );
  });

  test('deny: the polling client gets access_denied and nothing is issued', async () => {
    const { browser, user } = await signedInBrowser(gh);
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
    await decideDevice(gh, browser, device.user_code, 'deny');
    assert.equal(await oauthError(oauth.pollDeviceAuthorizationGrant(config, device)), 'access_denied');
    assert.deepEqual(await gh.gatehouse.store.oauth.grants.listByUser(user.id, Date.now()), []);
    const entry = forms((await browser.html('/.auth/device')).text)[0]!;
    const again = await browser.postForm(
      entry.action,
      { ...entry.fields, user_code: device.user_code, decision: 'approve' },
      { origin: gh.url },
    );
    assert.equal(again.status, 400, 'a decision is final');
  });

  test('expire: after expires_in the client gets expired_token and the code is no longer accepted', () =>
    withOwnClock(async (gh, clock) => {
      const { browser } = await signedInBrowser(gh);
      const config = await cliClient(gh);
      const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
      clock.advance(600_000);
      assert.equal(await oauthError(oauth.pollDeviceAuthorizationGrant(config, device)), 'expired_token');
      // Ten minutes on, the sign-in is too old to approve anything: the user confirms it first (security.md #204).
      const confirmed = await browser.postJson('/.auth/reauth', { password: PASSWORD }, { origin: gh.url });
      assert.equal(confirmed.status, 200, confirmed.text);
      const entry = forms((await browser.html('/.auth/device')).text)[0]!;
      const late = await browser.postForm(
        entry.action,
        { ...entry.fields, user_code: device.user_code },
        { origin: gh.url },
      );
      assert.equal(late.status, 400);
      assert.match(late.text, /This code is not valid/);
    }));

  test('slow_down: a poll sooner than the interval adds 5 s to it, for this and later polls; then openid-client completes', () =>
    withOwnClock(async (gh, clock) => {
      const { browser } = await signedInBrowser(gh);
      const config = await cliClient(gh);
      const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
      const token = `${gh.url}/.auth/oauth/token`;
      const poll = () =>
        postForm(token, { grant_type: DEVICE_GRANT, device_code: device.device_code, client_id: 'gatehouse-cli' });
      assert.equal((await poll()).json.error, 'authorization_pending');
      const fast = await poll();
      assert.equal(fast.status, 400);
      assert.equal(fast.json.error, 'slow_down');
      clock.advance(1500);
      assert.equal((await poll()).json.error, 'slow_down', 'the interval is now 6 s: 1.5 s is too soon');
      clock.advance(10_000);
      assert.equal((await poll()).json.error, 'slow_down', 'and now 11 s: 10 s is too soon');
      clock.advance(16_000);
      assert.equal((await poll()).json.error, 'authorization_pending', 'at 16 s the client is on time again');
      await decideDevice(gh, browser, device.user_code, 'approve');
      clock.advance(20_000);
      const tokens = await oauth.pollDeviceAuthorizationGrant(config, device);
      assert.ok(tokens.access_token);
    }));

  test('a device code works once: a second exchange is invalid_grant', async () => {
    const { browser } = await signedInBrowser(gh);
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
    await decideDevice(gh, browser, device.user_code, 'approve');
    assert.ok((await oauth.pollDeviceAuthorizationGrant(config, device)).access_token);
    assert.equal(await oauthError(oauth.pollDeviceAuthorizationGrant(config, device)), 'invalid_grant');
    const raw = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: DEVICE_GRANT,
      device_code: device.device_code,
      client_id: 'gatehouse-cli',
    });
    assert.deepEqual([raw.status, raw.json.error], [400, 'invalid_grant']);
  });

  test('signing in first: the device page sends an anonymous browser to sign in and back, code kept; the sign-in page says a device waits', async () => {
    const browser = new Client(gh.url);
    const page = await browser.html('/.auth/device?user_code=bcdf-ghjk');
    assert.equal(page.status, 302);
    const login = `${gh.url}/.auth/login?rd=${encodeURIComponent('/.auth/device?user_code=BCDF-GHJK')}`;
    assert.equal(page.location, login);
    const waiting =
      /<p class="notice" role="status">Sign in to approve the device login\. The program that showed you the code waits until you do\.<\/p>/;
    assert.match((await browser.html(page.location!.slice(gh.url.length))).text, waiting);
    assert.doesNotMatch(
      (await browser.html('/.auth/login')).text,
      /device login/,
      'only on the way to the device page',
    );
    // JSON (a script, an API client) gets the same as a 401, the sign-in URL included.
    for (const res of [
      await browser.get('/.auth/device?user_code=bcdf-ghjk', { accept: 'application/json' }),
      await browser.postJson('/.auth/device', { user_code: 'bcdf-ghjk' }, { origin: gh.url }),
    ]) {
      assert.equal(res.status, 401);
      assert.deepEqual(res.json(), {
        error: 'unauthenticated',
        message: 'Sign in to approve the device login. The program that showed you the code waits until you do.',
        login,
      });
    }
    const { user } = await signedInBrowser(gh);
    const signIn = await browser.submitForm(
      page.location!.slice(gh.url.length),
      { email: user.email, password: PASSWORD },
      { origin: gh.url },
    );
    assert.equal(signIn.status, 303);
    assert.equal(signIn.location, `${gh.url}/.auth/device?user_code=BCDF-GHJK`);
    const entry = await browser.html('/.auth/device?user_code=BCDF-GHJK');
    assert.match(entry.text, /name="user_code"[^>]* value="BCDF-GHJK"/);
  });

  test('the account page lists an approved device login at once, before its program collects it; Cancel (its user only) makes the poll access_denied', async () => {
    const { browser, user } = await signedInBrowser(gh);
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
    await decideDevice(gh, browser, device.user_code, 'approve');
    const page = (await browser.html('/.auth/account')).text;
    assert.match(
      page,
      /<strong>Gatehouse CLI<\/strong> · Acme API · <span class="kind">device sign-in, waiting for the device<\/span>/,
    );
    assert.match(page, /Approved just now \(asked from 127\.0\.0\.1\): the program signs in the next time it checks/);
    const cancel = forms(page).find((f) => f.fields.device)!;
    assert.equal(cancel.action, '/.auth/account/grants/revoke');
    assert.match(page, /<button type="submit" class="secondary">Cancel Gatehouse CLI<\/button>/);

    assert.equal(
      (await browser.postForm(cancel.action, cancel.fields, { origin: 'https://evil.example' })).status,
      403,
      'cross-site: refused',
    );
    const stranger = await signedInBrowser(gh);
    const theirCsrf = forms((await stranger.browser.html('/.auth/device')).text)[0]!.fields.csrf!;
    const sneaky = await stranger.browser.postForm(
      cancel.action,
      { ...cancel.fields, csrf: theirCsrf },
      { origin: gh.url },
    );
    assert.deepEqual([sneaky.status, sneaky.location], [303, `${gh.url}/.auth/account`]);
    assert.doesNotMatch((await stranger.browser.html('/.auth/account')).text, /waiting for the device/);
    const stillApproved = await gh.gatehouse.store.oauth.devices.listApproved(user.id, Date.now());
    assert.equal(stillApproved.length, 1, "another user cannot cancel someone else's device login");

    const done = await browser.postForm(cancel.action, cancel.fields, { origin: gh.url });
    assert.deepEqual([done.status, done.location], [303, `${gh.url}/.auth/account?device_cancelled=1`]);
    const after = (await browser.html('/.auth/account?device_cancelled=1')).text;
    assert.match(after, /Cancelled\. That program was not signed in\./);
    assert.doesNotMatch(after, /Gatehouse CLI/);
    assert.equal(await oauthError(oauth.pollDeviceAuthorizationGrant(config, device)), 'access_denied');
    assert.deepEqual(await gh.gatehouse.store.oauth.grants.listByUser(user.id, Date.now()), []);
    const again = await browser.postJson(
      '/.auth/account/grants/revoke',
      { device: cancel.fields.device },
      { origin: gh.url },
    );
    assert.deepEqual(
      [again.status, again.json().error],
      [409, 'not_waiting'],
      'a cancelled login cannot be cancelled twice',
    );

    // Collected by its program: listed as a login with Sign out, no longer as waiting.
    await deviceLogin(gh, browser);
    const collected = (await browser.html('/.auth/account')).text;
    assert.match(collected, /<span class="kind">device sign-in<\/span>/);
    assert.doesNotMatch(collected, /waiting for the device/);
  });

  test('approval is a same-origin POST with the form token; GET never decides (security.md #28, #29, #48)', async () => {
    const { browser } = await signedInBrowser(gh);
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
    const entry = forms((await browser.html('/.auth/device')).text)[0]!;
    const fields = { ...entry.fields, user_code: device.user_code, decision: 'approve' };
    assert.equal((await browser.postForm('/.auth/device', fields, { origin: 'https://evil.example' })).status, 403);
    assert.equal((await browser.postForm('/.auth/device', fields, { 'sec-fetch-site': 'cross-site' })).status, 403);
    assert.equal(
      (await browser.postForm('/.auth/device', { ...fields, csrf: 'forged' }, { origin: gh.url })).status,
      403,
    );
    assert.equal(
      (await new Client(gh.url).postForm('/.auth/device', fields, { origin: gh.url })).status,
      403,
      "another browser's form token",
    );
    await browser.html(`/.auth/device?user_code=${device.user_code}&decision=approve`);
    const d = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: DEVICE_GRANT,
      device_code: device.device_code,
      client_id: 'gatehouse-cli',
    });
    assert.equal(d.json.error, 'authorization_pending', 'nothing was approved');
  });

  test('clients: one without the device grant is refused; a device code is bound to its client; bad scope and resource', async () => {
    const web = await cliClient(gh, 'web-only');
    assert.equal(await oauthError(oauth.initiateDeviceAuthorization(web, {})), 'unauthorized_client');
    const cli = await cliClient(gh);
    assert.equal(await oauthError(oauth.initiateDeviceAuthorization(cli, { scope: 'admin' })), 'invalid_scope');
    assert.equal(
      await oauthError(oauth.initiateDeviceAuthorization(cli, { resource: 'https://elsewhere.example' })),
      'invalid_target',
    );
    assert.equal(
      await oauthError(oauth.initiateDeviceAuthorization(cli, { resource: `${gh.url}/.auth/me` })),
      'invalid_target',
    );
    const unknown = await cliClient(gh, 'no-such-client');
    assert.equal(await oauthError(oauth.initiateDeviceAuthorization(unknown, {})), 'invalid_client');

    const { browser } = await signedInBrowser(gh);
    const device = await oauth.initiateDeviceAuthorization(cli, { resource: gh.url });
    await decideDevice(gh, browser, device.user_code, 'approve');
    const other = await cliClient(gh, 'other-cli');
    assert.equal(
      await oauthError(oauth.pollDeviceAuthorizationGrant(other, device)),
      'invalid_grant',
      "another client cannot redeem the CLI's code",
    );
    assert.ok((await oauth.pollDeviceAuthorizationGrant(cli, device)).access_token, 'the right client still can');
  });
});

test('user-code guessing is throttled per account and per IP, with Retry-After; the right code waits too (security.md #46)', async () => {
  const gh = await startGatehouse(() => ({ tokens: { rateLimits: { userCodePerAccount: 3, userCodePerIp: 5 } } }));
  try {
    const first = await signedInBrowser(gh);
    const guess = async (b: Client, code: string) => {
      const entry = forms((await b.html('/.auth/device')).text)[0]!;
      return b.postForm(entry.action, { ...entry.fields, user_code: code }, { origin: gh.url });
    };
    for (let i = 0; i < 3; i++) assert.equal((await guess(first.browser, 'BBBB-BBBB')).status, 400);
    const limited = await guess(first.browser, 'BBBB-BBBB');
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers['retry-after']) > 0);
    assert.match(limited.text, /Too many wrong codes/);
    const config = await cliClient(gh);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: gh.url });
    assert.equal((await guess(first.browser, device.user_code)).status, 429, 'no exception for a right guess');
    const second = await signedInBrowser(gh);
    let status = 0;
    for (let i = 0; i < 6 && status !== 429; i++) status = (await guess(second.browser, 'CCCC-CCCC')).status;
    assert.equal(status, 429, 'the per-IP limit (5) stops a second account from the same address');
  } finally {
    await gh.close();
  }
});

test('a code with letters codes never use is told which (and that digits are never used), in the page and in JSON', async () => {
  const { browser } = await signedInBrowser(gh);
  const entry = forms((await browser.html('/.auth/device')).text)[0]!;
  const page = await browser.postForm(entry.action, { ...entry.fields, user_code: 'ABCD-EFGH' }, { origin: gh.url });
  assert.equal(page.status, 400);
  assert.match(
    page.text,
    /<li><a href="#user_code">Code: This code has A and E, which codes never use: codes have no A, E, I, O, U or Y\./,
    'in the summary, naming the field and linking to it',
  );
  assert.match(page.text, /name="user_code"[^>]* value="ABCD-EFGH"/, 'what was typed stays in the field');
  const json = await browser.postJson('/.auth/device', { user_code: 'BCD0-FGHJ' }, { origin: gh.url });
  assert.equal(json.status, 400);
  assert.equal(json.json().error, 'invalid_code');
  assert.match(json.json().message, /has 0, which codes never use: codes have no A, E, I, O, U or Y, and no digits/);
});

test('a restart in the middle of a device flow loses nothing: the code, the approval and the poll continue on the new process', async () => {
  const one = await startGatehouse(() => ({ tokens: { device: { interval: '1s' } } }));
  let two: Gatehouse | undefined;
  try {
    const { browser } = await signedInBrowser(one);
    const config = await cliClient(one);
    const device = await oauth.initiateDeviceAuthorization(config, { resource: one.url });
    await one.gatehouse.close();
    two = await Gatehouse.create(one.config, { logger: createLogger('silent') });
    await two.listen(one.port, '127.0.0.1');
    // The same browser (its session cookie) on new connections: the old ones died with the process.
    const fresh = new Agent();
    const reconnected = new Client(one.url, { dispatcher: fresh });
    for (const [k, v] of browser.jar) reconnected.jar.set(k, v);
    await decideDevice(one, reconnected, device.user_code, 'approve');
    config[oauth.customFetch] = (url, options) =>
      undiciFetch(url, { ...options, dispatcher: fresh } as Parameters<
        typeof undiciFetch
      >[1]) as unknown as Promise<Response>;
    const tokens = await oauth.pollDeviceAuthorizationGrant(config, device);
    const app = await reconnected.get('/x', { authorization: `Bearer ${tokens.access_token}` });
    assert.equal(app.status, 200);
  } finally {
    await two?.close();
    await one.close();
  }
});

test('each device login is a grant of its own: a second laptop does not replace the first', async () => {
  const { browser, user } = await signedInBrowser(gh);
  await deviceLogin(gh, browser);
  await deviceLogin(gh, browser);
  assert.equal((await gh.gatehouse.store.oauth.grants.listByUser(user.id, Date.now())).length, 2);
});
