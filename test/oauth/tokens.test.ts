import assert from 'node:assert/strict';
import {
  generateKeyPair,
  SignJWT,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  jwtVerify,
  base64url,
} from 'jose';
import { hash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import WebSocket from 'ws';
import type { ConfigInput } from '../../src/config/schema.ts';
import { pgSchema, postgres } from '../faults/services.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { Clock, cliClient, deviceLogin, forms, oauthError, postForm, signedInBrowser, withBearer } from './helpers.ts';

/**
 * Access and refresh tokens: bearer access with the identity of a session, the audience
 * and every other check, rotation, reuse detection, the retry grace, concurrent refreshes,
 * and revocation by the user and by the client. Two apps behind one Gatehouse: "api"
 * under /api (its resource is <origin>/api) and "web" at the root.
 */

const pg = await postgres();
let upstream: TestUpstream;
let gh: TestGatehouse;
const sha256 = (s: string) => hash('sha256', s, 'base64url');

const apps = (url: string): ConfigInput['apps'] => [
  {
    name: 'api',
    title: 'Acme API',
    pathPrefix: '/api',
    upstream: url,
    headers: { email: true },
    routes: [{ path: '/api/public/**', access: 'public' }],
  },
  { name: 'web', upstream: url, routes: [{ path: '/public/**', access: 'public' }] },
];
const tokensConfig: NonNullable<ConfigInput['tokens']> = {
  device: { interval: '1s' },
  scopes: ['read', 'write'],
  clients: [{ id: 'other-cli', name: 'Other CLI', grantTypes: ['device_code', 'refresh_token'] }],
};

before(async () => {
  upstream = await startUpstream();
  gh = await startGatehouse(({ upstream: u }) => ({ apps: apps(u), tokens: tokensConfig }), { upstream });
});
after(async () => {
  await gh.close();
  await upstream.close();
});

const apiLogin = async (g = gh, scope = 'offline_access') => {
  const { browser, user } = await signedInBrowser(g);
  const config = await cliClient(g);
  const tokens = await deviceLogin(g, browser, config, { resource: `${g.url}/api`, scope });
  return { browser, user, config, tokens };
};

/** A Gatehouse of its own (same apps) whose clock the test moves. */
async function withOwnClock(fn: (g: TestGatehouse, clock: Clock) => Promise<void>): Promise<void> {
  const clock = new Clock();
  const own = await startGatehouse(({ upstream: u }) => ({ apps: apps(u), tokens: tokensConfig }), {
    upstream,
    clock: clock.now,
  });
  try {
    await fn(own, clock);
  } finally {
    await own.close();
  }
}

describe('bearer tokens on app routes', { concurrency: true }, () => {
  test('the app gets the same identity as for a browser session (X-User-Id, opted-in headers, the assertion), never the token', async () => {
    const { user, tokens } = await apiLogin();
    const r = await withBearer(gh, '/api/items?x=1', tokens.access_token, {
      'x-user-id': 'forged',
      'x-gatehouse-assertion': 'forged',
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.seen!['x-user-id'], user.id);
    assert.equal(r.seen!['x-user-email'], undefined, 'an unverified address is not presented (issue 10.14)');
    assert.equal(r.seen!.authorization, undefined, 'the token is not forwarded');
    const { payload } = await jwtVerify(
      r.seen!['x-gatehouse-assertion']!,
      createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`)),
      { issuer: gh.url, audience: 'api' },
    );
    assert.equal(payload.sub, user.id);
    assert.equal(payload.email, undefined);
    assert.equal(payload.email_verified, false);
    assert.deepEqual(payload.amr, ['pwd'], 'how the user signed in when approving');
    assert.match(String(payload.sid), /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(
      payload.sid,
      decodeJwt(tokens.access_token).sid,
      'the assertion names the login by a keyed hash, not its id',
    );
    assert.ok(
      !gh.logText().includes(tokens.access_token) && !gh.logText().includes(tokens.refresh_token!),
      'tokens are never logged',
    );
    // Verified (by the mailed link, a provider or an operator): the next request carries it.
    await gh.gatehouse.store.users.update(user.id, { emailVerified: true });
    const verified = await withBearer(gh, '/api/items', tokens.access_token);
    assert.equal(verified.seen!['x-user-email'], user.email);
    assert.equal(decodeJwt(verified.seen!['x-gatehouse-assertion']!).email, user.email);
    assert.equal(decodeJwt(verified.seen!['x-gatehouse-assertion']!).email_verified, true);
  });

  test('the access token is a JWT for this app (aud = its resource URL) that the JWKS verifies; it is refused at another app', async () => {
    const { user, tokens } = await apiLogin();
    const { payload } = await jwtVerify(
      tokens.access_token,
      createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`)),
      { issuer: gh.url, audience: `${gh.url}/api`, typ: 'at+jwt' },
    );
    assert.equal(payload.sub, user.id);
    const r = await withBearer(gh, '/private', tokens.access_token);
    assert.equal(r.status, 401);
    assert.equal(r.seen, undefined, 'the app behind / never saw the request');
    assert.match(
      r.wwwAuthenticate!,
      /^Bearer realm="[^"]+", resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource", error="invalid_token", error_description="[^"]+"$/,
    );
    assert.equal(JSON.parse(r.body).error, 'invalid_token');
  });

  test('forged tokens are refused: tampered claims, alg none, a foreign key under our kid, a refresh token as an access token, garbage', async () => {
    const { tokens } = await apiLogin();
    const [h, p, sig] = tokens.access_token.split('.');
    const claims = decodeJwt(tokens.access_token);
    const tampered = `${h}.${base64url.encode(JSON.stringify({ ...claims, sub: '00000000-0000-0000-0000-000000000000' }))}.${sig}`;
    const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'at+jwt' }))}.${p}.`;
    const { privateKey } = await generateKeyPair('EdDSA');
    const foreign = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: decodeProtectedHeader(tokens.access_token).kid! })
      .sign(privateKey);
    const wrongTyp = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: 'x' }).sign(privateKey);
    for (const [what, token] of [
      ['tampered', tampered],
      ['alg none', none],
      ['foreign key', foreign],
      ['no typ, unknown kid', wrongTyp],
      ['refresh token', tokens.refresh_token!],
      ['garbage', 'a b c'],
      ['empty', ''],
    ] as const) {
      const r = await withBearer(gh, '/api/items', token);
      assert.equal(r.status, 401, what);
      assert.equal(r.seen, undefined, `${what}: the app never saw it`);
    }
    assert.equal((await withBearer(gh, '/api/items', tokens.access_token)).status, 200, 'the real one still works');
  });

  test('a public route: a valid token identifies the user, ours never reach the app, a foreign bearer passes untouched', async () => {
    const { user, tokens } = await apiLogin();
    const mine = await withBearer(gh, '/api/public/x', tokens.access_token);
    assert.equal(mine.seen!['x-user-id'], user.id);
    assert.equal(mine.seen!.authorization, undefined);
    const forOtherApp = await withBearer(gh, '/public/x', tokens.access_token);
    assert.equal(forOtherApp.status, 200);
    assert.equal(forOtherApp.seen!['x-user-id'], undefined);
    assert.equal(
      forOtherApp.seen!.authorization,
      undefined,
      'a Gatehouse token for another app is not handed to this one',
    );
    const foreign = await withBearer(gh, '/public/x', 'app-own-api-key');
    assert.equal(
      foreign.seen!.authorization,
      'Bearer app-own-api-key',
      "the app's own bearer scheme on a public route is its business",
    );
  });

  test('a WebSocket upgrade with a bearer token: the app gets the identity, not the token', async () => {
    const { user, tokens } = await apiLogin();
    const ws = new WebSocket(`${gh.url.replace('http', 'ws')}/api/ws`, {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    const hello = await new Promise<{ headers: Record<string, string> }>((resolve, reject) => {
      ws.once('message', (m) => resolve(JSON.parse(String(m))));
      ws.once('error', reject);
    });
    ws.close();
    assert.equal(hello.headers['x-user-id'], user.id);
    assert.equal(hello.headers.authorization, undefined);
    assert.equal(hello.headers.origin, undefined, 'a program sends no Origin, and a bearer token needs none');
    const refused = new WebSocket(`${gh.url.replace('http', 'ws')}/api/ws`, {
      headers: { authorization: 'Bearer nope' },
    });
    const status = await new Promise<number>((resolve) =>
      refused.once('unexpected-response', (_req, res) => resolve(res.statusCode!)),
    );
    assert.equal(status, 401);
  });

  test('rotation: each refresh gives a new refresh token; a retry within the grace gets the same one; the family keeps one live token', async () => {
    const { config, tokens } = await apiLogin();
    const first = await oauth.refreshTokenGrant(config, tokens.refresh_token!);
    assert.notEqual(first.refresh_token, tokens.refresh_token);
    assert.notEqual(first.access_token, tokens.access_token);
    const retry = await oauth.refreshTokenGrant(config, tokens.refresh_token!);
    assert.equal(
      retry.refresh_token,
      first.refresh_token,
      'a lost answer retried within reuseGrace: the same successor, not a logout',
    );
    const second = await oauth.refreshTokenGrant(config, first.refresh_token!);
    assert.equal((await withBearer(gh, '/api/items', second.access_token)).status, 200);
    const grant = (await gh.gatehouse.store.oauth.grants.get(String(decodeJwt(second.access_token).sid)))!;
    assert.equal(grant.generation, 2);
    assert.equal(grant.refreshHash, sha256(second.refresh_token!));
    assert.ok(
      !JSON.stringify(grant).includes(second.refresh_token!),
      'the live refresh token is stored only as a hash',
    );
  });

  test('scope escalation and another client refreshing are refused and change nothing; a narrower scope is fine', async () => {
    const { config, tokens } = await apiLogin(gh, 'offline_access read');
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(config, tokens.refresh_token!, { scope: 'read write' })),
      'invalid_scope',
    );
    const other = await cliClient(gh, 'other-cli');
    assert.equal(await oauthError(oauth.refreshTokenGrant(other, tokens.refresh_token!)), 'invalid_grant');
    const narrow = await oauth.refreshTokenGrant(config, tokens.refresh_token!, { scope: 'read' });
    assert.equal(narrow.scope, 'read');
    assert.equal(decodeJwt(narrow.access_token).scope, 'read');
    const wide = await oauth.refreshTokenGrant(config, narrow.refresh_token!);
    assert.equal(wide.scope, 'offline_access read', 'the grant keeps its scope');
  });

  test('revocation by the user: the account page lists the login and its sign-out ends it at the next request', async () => {
    const { browser, config, tokens } = await apiLogin();
    const page = await browser.html('/.auth/account');
    assert.equal(page.status, 200);
    assert.match(page.text, /<strong>Gatehouse CLI<\/strong> · Acme API · <span class="kind">device sign-in<\/span>/);
    assert.match(page.text, /Signed in \d{4}-\d\d-\d\d \d\d:\d\d UTC · last used just now from 127\.0\.0\.1/);
    const form = forms(page.text).find((f) => f.action === '/.auth/account/grants/revoke')!;
    assert.equal(
      (await browser.postForm(form.action, form.fields, { origin: 'https://evil.example' })).status,
      403,
      'cross-site: refused',
    );
    const stranger = await signedInBrowser(gh);
    const theirs = forms((await stranger.browser.html('/.auth/account')).text).filter(
      (f) => f.action === '/.auth/account/grants/revoke',
    );
    assert.deepEqual(theirs, [], 'another user sees none of it');
    const sneaky = await stranger.browser.postForm(
      form.action,
      { ...form.fields, csrf: forms((await stranger.browser.html('/.auth/device')).text)[0]!.fields.csrf! },
      { origin: gh.url },
    );
    assert.equal(sneaky.status, 303);
    assert.equal(
      (await withBearer(gh, '/api/items', tokens.access_token)).status,
      200,
      "another user cannot sign out someone else's login",
    );
    const done = await browser.postForm(form.action, form.fields, { origin: gh.url });
    assert.equal(done.status, 303);
    assert.equal(done.location, `${gh.url}/.auth/account?grant_signed_out=1`);
    assert.match(
      (await browser.html(done.location!.slice(gh.url.length))).text,
      /Signed out\. That program needs to sign in again/,
    );
    const r = await withBearer(gh, '/api/items', tokens.access_token);
    assert.equal(r.status, 401, 'the access token dies with its login, before it expires');
    assert.match(r.wwwAuthenticate!, /error="invalid_token", error_description="the login was revoked"/);
    assert.equal(await oauthError(oauth.refreshTokenGrant(config, tokens.refresh_token!)), 'invalid_grant');
    assert.doesNotMatch((await browser.html('/.auth/account')).text, /Gatehouse CLI/);
  });

  test("revocation by the client (RFC 7009): its refresh or access token ends the login; another client's token and unknown tokens: 200, no effect", async () => {
    const a = await apiLogin();
    const b = await apiLogin();
    const other = await cliClient(gh, 'other-cli');
    await oauth.tokenRevocation(other, a.tokens.refresh_token!);
    await oauth.tokenRevocation(other, a.tokens.access_token);
    assert.equal(
      (await withBearer(gh, '/api/items', a.tokens.access_token)).status,
      200,
      "another client's revocation changed nothing",
    );
    await oauth.tokenRevocation(a.config, 'not-a-token');
    await oauth.tokenRevocation(a.config, `grt.${'A'.repeat(22)}.${'B'.repeat(43)}.${'C'.repeat(22)}`);
    const raw = await postForm(`${gh.url}/.auth/oauth/revoke`, { token: 'unknown', client_id: 'gatehouse-cli' });
    assert.equal(raw.status, 200);
    assert.equal(
      (await postForm(`${gh.url}/.auth/oauth/revoke`, { token: 'x', client_id: 'nobody' })).status,
      401,
      'an unknown client is invalid_client',
    );

    await oauth.tokenRevocation(a.config, a.tokens.refresh_token!);
    assert.equal(
      (await withBearer(gh, '/api/items', a.tokens.access_token)).status,
      401,
      'revoking the refresh token ends its access tokens too',
    );
    assert.equal(await oauthError(oauth.refreshTokenGrant(a.config, a.tokens.refresh_token!)), 'invalid_grant');
    await oauth.tokenRevocation(b.config, b.tokens.access_token);
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(b.config, b.tokens.refresh_token!)),
      'invalid_grant',
      'revoking an access token ends the login it came from',
    );
  });

  test('a password change or a disabled account ends CLI logins', async () => {
    const a = await apiLogin();
    assert.ok((await gh.gatehouse.accounts.setPassword(a.user.id, 'another long passphrase')).ok);
    assert.equal((await withBearer(gh, '/api/items', a.tokens.access_token)).status, 401);
    assert.equal(await oauthError(oauth.refreshTokenGrant(a.config, a.tokens.refresh_token!)), 'invalid_grant');
    const b = await apiLogin();
    await gh.gatehouse.accounts.setDisabled(b.user.id, true);
    assert.equal((await withBearer(gh, '/api/items', b.tokens.access_token)).status, 401);
  });
});

test('reuse of a rotated refresh token after the grace revokes the whole family: every token of it dies', () =>
  withOwnClock(async (g, clock) => {
    const { config, tokens } = await apiLogin(g);
    const next = await oauth.refreshTokenGrant(config, tokens.refresh_token!);
    clock.advance(6000);
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(config, tokens.refresh_token!)),
      'invalid_grant',
      'the replayed old token',
    );
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(config, next.refresh_token!)),
      'invalid_grant',
      'the live one dies with its family (RFC 9700 §4.14)',
    );
    assert.equal((await withBearer(g, '/api/items', next.access_token)).status, 401);
    const warn = g.logs.find((l) => l.event === 'oauth_refresh_reuse');
    assert.ok(warn, 'the reuse is logged for the operator');
    const other = await apiLogin(g);
    const otherForged = `grt.${String(decodeJwt(other.tokens.access_token).sid)}.${'x'.repeat(43)}.${'y'.repeat(22)}`;
    assert.equal(await oauthError(oauth.refreshTokenGrant(other.config, otherForged)), 'invalid_grant');
    assert.equal(
      (await withBearer(g, '/api/items', other.tokens.access_token)).status,
      200,
      'a forged "old token" (knowing only the sid) revokes nothing',
    );
  }));

test('expiry: access tokens die at exp; refresh tokens at refreshIdleTtl of disuse and at refreshTokenTtl, whatever their rotation', () =>
  withOwnClock(async (g, clock) => {
    const a = await apiLogin(g);
    clock.advance(600_000);
    const r = await withBearer(g, '/api/items', a.tokens.access_token);
    assert.equal(r.status, 401);
    assert.match(r.wwwAuthenticate!, /error="invalid_token"/);
    const fresh = await oauth.refreshTokenGrant(a.config, a.tokens.refresh_token!);
    assert.equal((await withBearer(g, '/api/items', fresh.access_token)).status, 200);
    clock.advance(30 * 86_400_000);
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(a.config, fresh.refresh_token!)),
      'invalid_grant',
      '30 days unused (refreshIdleTtl)',
    );

    const b = await apiLogin(g);
    let rt = b.tokens.refresh_token!;
    for (let i = 0; i < 3; i++) {
      clock.advance(29 * 86_400_000);
      rt = (await oauth.refreshTokenGrant(b.config, rt)).refresh_token!;
    }
    clock.advance(3 * 86_400_000);
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(b.config, rt)),
      'invalid_grant',
      'used every 29 days, it still ends after 90 (refreshTokenTtl)',
    );
  }));

for (const backend of [
  { name: 'SQLite', skip: false as const },
  { name: 'PostgreSQL', skip: pg.skip },
]) {
  test(`concurrent refreshes of one token never fork the family: one live successor (${backend.name})`, {
    skip: backend.skip,
  }, async () => {
    const db = backend.name === 'PostgreSQL' ? await pgSchema('refresh') : undefined;
    const g = await startGatehouse(
      ({ upstream: u }) => ({
        apps: apps(u),
        tokens: tokensConfig,
        ...(db ? { store: { type: 'postgres' as const, url: db.url(), poolSize: 8 } } : {}),
      }),
      { upstream },
    );
    try {
      const { config, tokens } = await apiLogin(g);
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, () => oauth.refreshTokenGrant(config, tokens.refresh_token!)),
      );
      const ok = results.filter(
        (r): r is PromiseFulfilledResult<oauth.TokenEndpointResponse & oauth.TokenEndpointResponseHelpers> =>
          r.status === 'fulfilled',
      );
      assert.equal(
        ok.length,
        12,
        `every concurrent refresh is answered: ${results
          .filter((r) => r.status === 'rejected')
          .map((r) => String((r as PromiseRejectedResult).reason))
          .join('; ')}`,
      );
      const successors = new Set(ok.map((r) => r.value.refresh_token));
      assert.equal(successors.size, 1, 'all got the same successor');
      const [successor] = [...successors];
      const grant = (await g.gatehouse.store.oauth.grants.get(String(decodeJwt(tokens.access_token).sid)))!;
      assert.equal(grant.generation, 1, 'rotated exactly once');
      assert.equal(grant.refreshHash, sha256(successor!));
      assert.equal(grant.revokedAt, null);
      assert.ok((await oauth.refreshTokenGrant(config, successor!)).access_token, 'and the successor works');
    } finally {
      await g.close();
      await db?.drop();
    }
  });
}
