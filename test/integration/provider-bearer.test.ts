import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { Client } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { type Lab, startLab } from '../helpers/providers.ts';
import { withBearer } from '../oauth/helpers.ts';
import { refusal } from '../helpers/config.ts';
import { parseConfig } from '../../src/config/load.ts';
import { providerRegistrations } from '../../src/providers/lint.ts';

/**
 * providers[].bearerTokens: the company IdP's own JWT access tokens (RFC 9068) on the apps'
 * routes. IdP A (oidc-provider) issues them for the API `api://gatehouse` through a real
 * authorization code flow of another client of it (a program that holds the IdP's token); IdP B's
 * tokens are not accepted. Forgeries are signed with the IdP's real key (its signIdToken) or with
 * an attacker's.
 */

const API = 'api://gatehouse';
let lab: Lab;
let gh: TestGatehouse;
let dead: string;

before(async () => {
  lab = await startLab({ a: { apiResource: API } });
  // A provider whose issuer cannot be reached: its keys cannot be had.
  dead = `http://127.0.0.1:${await freePort()}`;
  gh = await startGatehouse(
    ({ upstream }) => ({
      trustedProxies: ['loopback'],
      metrics: { listen: '127.0.0.1:0' },
      accounts: {
        rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000, providerStartsPerIp: 1000 },
      },
      apps: [
        {
          name: 'main',
          upstream,
          routes: [
            { path: '/relay/**', tokenRelay: 'a' },
            { path: '/**', unauthenticated: '401' },
          ],
          headers: { email: 'X-User-Email' },
        },
        { name: 'other', pathPrefix: '/other', upstream, routes: [{ path: '/other/**', unauthenticated: '401' }] },
      ],
      providers: [
        ...lab.providers({ a: { bearerTokens: { audience: [API, 'api://second'], apps: ['main'] } } }),
        { id: 'dead', type: 'oidc', issuer: dead, clientId: 'x', clientSecret: 'y', bearerTokens: { audience: API } },
      ],
    }),
    { port: lab.ports[0] },
  );
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

let lock: Promise<unknown> = Promise.resolve();
/** One at a time: autoLogin names the IdP account. */
function serial<T>(run: () => Promise<T>): Promise<T> {
  const p = lock.then(run);
  lock = p.catch(() => {});
  return p;
}

/** A user who signed in once through IdP A (so Gatehouse links the account): their Gatehouse user id. */
function linkedUser(account: string): Promise<string> {
  return serial(async () => {
    lab.a.accounts.set(account, { sub: account, email: `${account}@example.com`, email_verified: true });
    lab.a.autoLogin = account;
    const c = new Client(gh.url);
    assert.equal((await signIn(c, 'a')).at(-1)!.res.status, 200);
    return (await c.get('/.auth/me')).json().id as string;
  });
}

/** The IdP's access token for the API, as a program gets it: the code flow of its own client, with `resource`. */
function idpToken(account: string): Promise<string> {
  return serial(async () => {
    lab.a.autoLogin = account;
    const verifier = randomBytes(32).toString('base64url');
    const redirect = 'http://127.0.0.1:9/cb';
    const browser = new Client(lab.a.issuer);
    let url = `${lab.a.issuer}/auth?${new URLSearchParams({
      client_id: 'other-client',
      response_type: 'code',
      redirect_uri: redirect,
      scope: 'openid api:read',
      resource: API,
      state: 'st',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    })}`;
    for (let i = 0; i < 10 && !url.startsWith(redirect); i++) {
      const res = await browser.fetch(url, { headers: { accept: 'text/html' } });
      assert.ok(res.location, `the IdP answered ${res.status}: ${res.text.slice(0, 200)}`);
      url = new URL(res.location, url).href;
    }
    const code = new URL(url).searchParams.get('code');
    assert.ok(code, url);
    const res = await fetch(`${lab.a.issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`other-client:other-${lab.secretA}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: redirect,
        code_verifier: verifier,
        resource: API,
      }),
    });
    const body = (await res.json()) as { access_token?: string };
    assert.equal(res.status, 200, JSON.stringify(body));
    return body.access_token!;
  });
}

/** A token signed with IdP A's real key (claims over a good token's). */
function forged(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return lab.a.signIdToken(
    { iss: lab.a.issuer, aud: API, iat: now, exp: now + 300, client_id: 'other-client', ...claims },
    { typ: 'at+jwt', ...header },
  );
}

/** gatehouse_provider_bearer_tokens_total of a provider and outcome. */
async function counted(provider: string, outcome: string): Promise<number> {
  const metric = await gh.gatehouse.metrics!.providerBearer.get();
  return metric.values.find((v) => v.labels.provider === provider && v.labels.outcome === outcome)?.value ?? 0;
}

describe('providers[].bearerTokens', () => {
  test("the IdP's own access token for the API reaches the app as its user, the token itself never", async () => {
    const userId = await linkedUser('bearer-one');
    const token = await idpToken('bearer-one');
    assert.equal(decodeProtectedHeader(token).typ, 'at+jwt', 'an RFC 9068 token of the IdP');
    assert.equal(decodeJwt(token).aud, API);

    const r = await withBearer(gh, '/api/x', token);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.seen!['x-user-id'], userId);
    assert.equal(r.seen!['x-user-email'], 'bearer-one@example.com');
    assert.equal(r.seen!.authorization, undefined, 'the token is not passed on');
    assert.deepEqual(decodeJwt(r.seen!['x-gatehouse-assertion']!).amr, ['idp:a']);
    assert.equal((await withBearer(gh, '/api/y', token)).status, 200, 'again, from memory');

    // A route that relays provider A's token gets this very token.
    const relayed = await withBearer(gh, '/relay/z', token);
    assert.equal(relayed.status, 200, relayed.body);
    assert.equal(relayed.seen!.authorization, `Bearer ${token}`);

    // Forward-auth decides the same.
    const check = await fetch(`${gh.url}/.auth/check`, {
      headers: { authorization: `Bearer ${token}`, 'x-original-uri': '/api/x', 'x-original-method': 'GET' },
    });
    assert.equal(check.status, 200);
    assert.equal(check.headers.get('x-user-id'), userId);

    assert.ok(!JSON.stringify(gh.logs).includes(token.split('.')[2]!), 'never logged');
    assert.ok((await counted('a', 'accepted')) >= 4, 'counted as accepted');
  });

  test('refused with 401 invalid_token: another audience, expired, a foreign key, alg none, HS256 with the public key, an ID token', async () => {
    const userId = await linkedUser('bearer-two');
    const sub = 'bearer-two';
    const attacker = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const foreign = await new SignJWT({ iss: lab.a.issuer, aud: API, sub, iat: now, exp: now + 300 })
      .setProtectedHeader({ alg: 'RS256', kid: decodeProtectedHeader(await forged({ sub })).kid, typ: 'at+jwt' })
      .sign(attacker.privateKey);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ iss: lab.a.issuer, aud: API, sub, exp: now + 300 })}.`;
    const hmacKey = new TextEncoder().encode(JSON.stringify(lab.a.publicJwk));
    const hs256 = await new SignJWT({ iss: lab.a.issuer, aud: API, sub, iat: now, exp: now + 300 })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
      .sign(hmacKey);
    const cases: [string, string, RegExp][] = [
      ['another audience', await forged({ sub, aud: 'api://elsewhere' }), /audience/],
      [
        "Gatehouse's client id (an ID token's audience)",
        await forged({ sub, aud: 'gatehouse-a' }, { typ: 'JWT' }),
        /audience/,
      ],
      ['expired', await forged({ sub, iat: now - 600, exp: now - 120 }), /expired/],
      ['lives longer than a day', await forged({ sub, iat: now, exp: now + 2 * 86_400 }), /longer than a day/],
      ['signed by a foreign key under the same kid', foreign, /signature/],
      ['alg none', none, /malformed|signature/],
      ['HS256 keyed with the public key', hs256, /signature/],
      ['no sub', await forged({}), /sub/],
    ];
    const refusedBefore = await counted('a', 'refused');
    for (const [what, token, why] of cases) {
      const r = await withBearer(gh, '/api/x', token);
      assert.equal(r.status, 401, what);
      assert.match(String(r.wwwAuthenticate), /error="invalid_token"/, what);
      assert.match(String(r.wwwAuthenticate), why, what);
      assert.equal(r.seen, undefined, `${what}: nothing reached the app`);
    }
    assert.equal(await counted('a', 'refused'), refusedBefore + cases.length, 'each counted as refused');
    const good = await forged({ sub });
    assert.equal((await withBearer(gh, '/api/x', good)).seen?.['x-user-id'], userId, 'the same claims, well signed');
    const logged = gh.logs.filter((l) => l.event === 'bearer_refused' && /audience/.test(String(l.reason)));
    assert.ok(logged.length >= 2, 'each refusal is logged with its reason');
  });

  test('a subject nobody signed in with, a disabled user and an app not listed are refused; other issuers are the app’s business', async () => {
    const stranger = await forged({ sub: 'never-signed-in' });
    const r = await withBearer(gh, '/api/x', stranger);
    assert.equal(r.status, 401);
    assert.match(String(r.wwwAuthenticate), /sign in once in a browser/);

    const userId = await linkedUser('bearer-three');
    const token = await forged({ sub: 'bearer-three' });
    assert.equal((await withBearer(gh, '/api/x', token)).status, 200);
    assert.equal((await withBearer(gh, '/other/x', token)).status, 401, 'bearerTokens.apps names main only');
    await gh.gatehouse.store.users.update(userId, { disabled: true });
    const disabled = await withBearer(gh, '/api/x', token);
    assert.equal(disabled.status, 401, 'at the next request');
    assert.match(String(disabled.wwwAuthenticate), /disabled/);

    // IdP B does not have bearerTokens: its token is not Gatehouse's, and is passed to the app as
    // the app's own Authorization on a public route (here none is public: the session decides, 401).
    const now = Math.floor(Date.now() / 1000);
    const bToken = await lab.b.signIdToken({ iss: lab.b.issuer, aud: API, sub: 'x', iat: now, exp: now + 300 });
    const b = await withBearer(gh, '/api/x', bToken);
    assert.equal(b.status, 401);
    assert.doesNotMatch(String(b.wwwAuthenticate), /invalid_token/, 'not judged as a token: simply nobody signed in');
  });

  test('a provider whose keys cannot be had answers 503 with Retry-After, not 401 (the token may be good)', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ iss: dead, aud: API, sub: 's', iat: now, exp: now + 300 })
      .setProtectedHeader({ alg: 'ES256', kid: 'k' })
      .sign(privateKey);
    const res = await fetch(`${gh.url}/api/x`, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '5');
    assert.equal(await counted('dead', 'unavailable'), 1, 'gatehouse_provider_bearer_tokens_total');
  });
});

test("config: bearerTokens names apps that exist, and never the clientId (its ID tokens' audience) as the audience", () => {
  const base =
    'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\nproviders: [{id: corp, type: oidc, issuer: https://idp.example.com, clientId: gh-client, clientSecret: s, bearerTokens: ';
  assert.match(
    refusal(`${base}{audience: gh-client}}]\n`),
    /bearerTokens\.audience\[0\]: .*audience of the provider's ID tokens/,
  );
  assert.match(refusal(`${base}{audience: [api://x, gh-client]}}]\n`), /bearerTokens\.audience\[1\]: .*ID tokens/);
  assert.match(
    refusal(`${base}{audience: api://x, apps: [nope]}}]\n`),
    /bearerTokens\.apps\[0\].*"nope" is not the name of an app/,
  );
  assert.match(refusal(`${base}{}}]\n`), /bearerTokens\.audience/);
  assert.match(refusal(`${base}{audience: "api x"}}]\n`), /printable ASCII without spaces/);
  const ok = parseConfig(`${base}{audience: api://x}}]\n`, 'gatehouse.yaml').providers[0]!;
  assert.deepEqual(ok.type === 'oidc' && ok.bearerTokens, { audience: ['api://x'] });
  // check lists what is accepted under the provider.
  const lines = providerRegistrations(parseConfig(`${base}{audience: [api://x, api://y]}}]\n`, 'gatehouse.yaml'));
  assert.ok(
    lines.includes('    access tokens accepted:   aud api://x or api://y, on every app (valid until their exp)'),
    lines.join('\n'),
  );
});
