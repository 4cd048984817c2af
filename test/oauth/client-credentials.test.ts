import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oauth from 'openid-client';
import type { ConfigInput } from '../../src/config/schema.ts';
import { verifyAssertion } from '../../src/verify/index.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { Clock, cliClient, oauthError, postForm, signedInBrowser, withBearer } from './helpers.ts';

/**
 * Service clients (client_credentials, RFC 6749 §4.4): a configured confidential client with
 * `apps` gets, with its secret alone, a short-lived token for one of those apps and calls it as
 * the user "client:<id>" with its name and groups. Two apps: "api" under /api (the client's)
 * and "web" at the root (not). Addresses must be verified on this site: a service has none.
 */

const SECRET = 'a service secret of more than thirty-two characters';
const OTHER_SECRET = 'another service secret, also long enough to be valid';
let upstream: TestUpstream;
let gh: TestGatehouse;

const apps = (url: string): ConfigInput['apps'] => [
  {
    name: 'api',
    pathPrefix: '/api',
    upstream: url,
    headers: { email: true, name: true, groups: true },
    routes: [{ path: '/api/deploy/**', allow: { groups: ['deployers'] } }],
  },
  { name: 'web', upstream: url },
];
const tokens = (secret = SECRET, clientApps = ['api']): NonNullable<ConfigInput['tokens']> => ({
  scopes: ['read', 'write'],
  clients: [
    {
      id: 'ci',
      name: 'CI deployer',
      secret,
      grantTypes: ['client_credentials'],
      apps: clientApps,
      groups: ['deployers'],
      scopes: ['read'],
    },
    { id: 'reporter', name: 'Reporter', secret: OTHER_SECRET, grantTypes: ['client_credentials'], apps: ['api'] },
    {
      id: 'backend',
      name: 'Backend',
      secret: OTHER_SECRET,
      redirectUris: ['https://backend.example/cb'],
    },
  ],
});
const configOf = (u: string): Partial<ConfigInput> => ({
  apps: apps(u),
  tokens: tokens(),
  accounts: { requireVerifiedEmail: true },
  trustedProxies: ['loopback'],
});

before(async () => {
  upstream = await startUpstream();
  gh = await startGatehouse(({ upstream: u }) => configOf(u), { upstream });
});
after(async () => {
  await gh.close();
  await upstream.close();
});

const tokenFor = async (params: Record<string, string> = {}, g = gh) =>
  oauth.clientCredentialsGrant(await cliClient(g, 'ci', SECRET), { resource: `${g.url}/api`, ...params });

describe('service clients', { concurrency: true }, () => {
  test('a service client gets a token with its secret and calls its app as client:<id>, with its name and groups', async () => {
    const t = await tokenFor({ scope: 'read' });
    assert.equal(t.token_type, 'bearer');
    assert.equal(t.refresh_token, undefined, 'no refresh token: the client asks again with its secret');
    assert.equal(t.expires_in, 600);
    assert.equal(t.scope, 'read');
    const claims = decodeJwt(t.access_token);
    assert.equal(claims.sub, 'client:ci');
    assert.equal(claims.client_id, 'ci');
    assert.equal(claims.aud, `${gh.url}/api`);
    assert.equal(claims.sid, undefined);

    const r = await withBearer(gh, '/api/things', t.access_token);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.seen!['x-user-id'], 'client:ci');
    assert.equal(r.seen!['x-user-name'], 'CI deployer');
    assert.equal(r.seen!['x-user-groups'], 'deployers');
    assert.equal(r.seen!['x-user-email'], undefined, 'a service has no address');
    assert.equal(r.seen!.authorization, undefined, 'the token stays with Gatehouse');
    const assertion = r.seen!['x-gatehouse-assertion']!;
    const { payload } = await jwtVerify(assertion, createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`)), {
      issuer: gh.url,
      audience: 'api',
    });
    assert.equal(payload.sub, 'client:ci');
    assert.equal(payload.email_verified, false);
    assert.equal(payload.email, undefined);
    const verified = await verifyAssertion(assertion, { issuer: gh.url, audience: 'api' });
    assert.equal(verified.id, 'client:ci');

    // Its groups meet allow.groups; a service without them is refused there.
    assert.equal((await withBearer(gh, '/api/deploy/now', t.access_token)).status, 200);
    const reporter = await oauth.clientCredentialsGrant(await cliClient(gh, 'reporter', OTHER_SECRET), {
      resource: `${gh.url}/api`,
    });
    assert.equal((await withBearer(gh, '/api/things', reporter.access_token)).seen!['x-user-groups'], '');
    assert.equal((await withBearer(gh, '/api/deploy/now', reporter.access_token)).status, 403);
    // Addresses must be verified here: a user who has not is kept out, a service has none to verify.
    const { browser } = await signedInBrowser(gh);
    assert.equal((await browser.fetch('/api/things', { headers: { accept: 'application/json' } })).status, 403);
  });

  test('client_secret_post works as well as Basic, and the discovery document lists the grant', async () => {
    const ok = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: 'client_credentials',
      client_id: 'ci',
      client_secret: SECRET,
      resource: `${gh.url}/api/anything`,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal(ok.headers.get('cache-control'), 'no-store');
    assert.equal(decodeJwt(String(ok.json.access_token)).aud, `${gh.url}/api`);
    const meta = (await (await fetch(`${gh.url}/.well-known/oauth-authorization-server`)).json()) as {
      grant_types_supported: string[];
    };
    assert.ok(meta.grant_types_supported.includes('client_credentials'));
  });

  test('a wrong secret, no secret, another client and other apps and scopes get no token', async () => {
    const token = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
      postForm(`${gh.url}/.auth/oauth/token`, { grant_type: 'client_credentials', ...fields }, headers);
    const resource = `${gh.url}/api`;
    const wrong = await token({ client_id: 'ci', client_secret: `${SECRET}!`, resource });
    assert.deepEqual([wrong.status, wrong.json.error], [401, 'invalid_client']);
    const none = await token({ client_id: 'ci', resource });
    assert.deepEqual([none.status, none.json.error], [401, 'invalid_client']);
    // A confidential client without the grant, and the public CLI client.
    const other = await token({ client_id: 'backend', client_secret: OTHER_SECRET, resource });
    assert.deepEqual([other.status, other.json.error], [400, 'unauthorized_client']);
    const cli = await token({ client_id: 'gatehouse-cli', resource });
    assert.deepEqual([cli.status, cli.json.error], [400, 'unauthorized_client']);
    // Not one of its apps, no app at all, a refresh token, a scope it may not have.
    assert.equal(await oauthError(tokenFor({ resource: gh.url })), 'invalid_target');
    assert.equal(await oauthError(tokenFor({ resource: 'https://elsewhere.example/api' })), 'invalid_target');
    assert.equal(await oauthError(tokenFor({ scope: 'offline_access' })), 'invalid_scope');
    assert.equal(await oauthError(tokenFor({ scope: 'write' })), 'invalid_scope');
    // Several apps behind Gatehouse: the resource must say which.
    const bare = await token({ client_id: 'ci', client_secret: SECRET });
    assert.deepEqual([bare.status, bare.json.error], [400, 'invalid_target']);
  });

  test('behind a proxy that asks /.auth/check, a service is answered with its identity', async () => {
    const t = await tokenFor();
    const check = (uri: string) =>
      fetch(`${gh.url}/.auth/check`, {
        headers: {
          authorization: `Bearer ${t.access_token}`,
          'x-original-uri': uri,
          'x-original-method': 'GET',
          accept: 'application/json',
        },
      });
    const ok = await check('/api/deploy/now');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-user-id'), 'client:ci');
    assert.equal(ok.headers.get('x-user-groups'), 'deployers');
    assert.equal((await check('/home')).status, 401, 'not its app');
  });

  test("a service client's token is refused on an app not its own", async () => {
    const t = await tokenFor();
    const web = await withBearer(gh, '/home', t.access_token);
    assert.equal(web.status, 401);
    assert.match(web.wwwAuthenticate!, /error="invalid_token"/);
    assert.equal(web.seen, undefined, 'the app never saw it');
  });

  test("a token is a login's or a service's, never both or neither, even signed with Gatehouse's own key", async () => {
    const { secret_mark, scope } = decodeJwt((await tokenFor()).access_token);
    const signed = (claims: Record<string, unknown>, subject = 'client:ci') =>
      gh.gatehouse.keys.sign(
        { client_id: 'ci', scope, jti: 'x', ...claims },
        { typ: 'at+jwt', ttlMs: 60_000, audience: `${gh.url}/api`, subject },
      );
    const refused = async (token: string) => {
      const r = await withBearer(gh, '/api/things', token);
      assert.equal(r.status, 401, r.body);
      assert.equal(r.seen, undefined);
    };
    // The control: Gatehouse's own shape passes.
    assert.equal((await withBearer(gh, '/api/things', await signed({ secret_mark }))).status, 200);
    await refused(await signed({ secret_mark, sid: 'a-grant-id' })); // both
    await refused(await signed({})); // neither
    await refused(await signed({ secret_mark }, 'some-user-id')); // a service's mark under a user's id
    await refused(await signed({ secret_mark: 'another mark of 22 char' })); // not its secret's
  });
});

describe('service clients across a config change', () => {
  test("a new secret, the app taken off the client's list or the client removed ends its tokens at once", async () => {
    const t = await tokenFor();
    // Another node on the same store (its keys, master key and publicUrl), with the config changed.
    const host = new URL(gh.url).host;
    const get = async (g: TestGatehouse) => {
      const r = await rawRequest(
        g.port,
        `GET /api/x HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nAuthorization: Bearer ${t.access_token}\r\nConnection: close\r\n\r\n`,
      );
      return { status: r.status, text: r.text };
    };
    const node = async (change: Partial<ConfigInput>, clock?: Clock) =>
      startGatehouse(
        ({ upstream: u }) => ({
          ...configOf(u),
          publicUrl: gh.url,
          store: { type: 'sqlite', path: join(gh.dir, 'gatehouse.db') },
          ...change,
        }),
        { upstream, clock: clock?.now },
      );
    const clock = new Clock();
    const same = await node({}, clock);
    try {
      assert.equal((await get(same)).status, 200, 'the same config on another node takes it');
      clock.advance(11 * 60_000);
      const expired = await get(same);
      assert.equal(expired.status, 401);
      assert.match(expired.text, /the access token has expired/);
    } finally {
      await same.close();
    }
    for (const change of [
      { tokens: tokens(`${SECRET} rotated`) },
      { tokens: tokens(SECRET, ['web']) },
      { tokens: { scopes: ['read', 'write'] } },
    ]) {
      const changed = await node(change);
      try {
        const r = await get(changed);
        assert.equal(r.status, 401, JSON.stringify(change));
        assert.match(r.text, /the client may no longer call this app/);
      } finally {
        await changed.close();
      }
    }
  });
});
