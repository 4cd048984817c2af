import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { WebSocket } from 'ws';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { startLab, type Lab } from '../helpers/providers.ts';
import { rawRequest } from '../helpers/raw.ts';
import { deviceLogin, signedInBrowser } from '../oauth/helpers.ts';

/**
 * The names an app gets its user under (config/headers.ts), through a real Gatehouse to a real
 * upstream that records every header it receives: the oauth2-proxy preset, a renamed id header,
 * the assertion as "Bearer <jwt>" (also in Authorization), a relayed provider token in
 * X-Forwarded-Access-Token (a real IdP), and tokens.bearerHeader beside the app's own
 * Authorization. Every configured name's client copies are removed, in any case and however
 * many (security.md #175-177).
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab();
  gh = await startGatehouse(
    ({ upstream }) => ({
      providers: lab.providers(),
      apps: [
        {
          name: 'o2p',
          upstream,
          headers: { preset: 'oauth2-proxy', assertionBearer: 'X-OAUTH2-PROXY-ID-TOKEN' },
          routes: [
            { path: '/public/**', access: 'public' },
            { path: '/relay/**', tokenRelay: 'a' },
          ],
        },
        {
          name: 'renamed',
          pathPrefix: '/renamed',
          upstream,
          headers: { id: 'Remote-Id', email: 'Remote-Email', name: true },
        },
        {
          name: 'authz',
          pathPrefix: '/authz',
          upstream,
          headers: { assertion: false, assertionBearer: 'Authorization' },
          routes: [{ path: '/authz/public/**', access: 'public' }],
        },
        { name: 'plain', pathPrefix: '/plain', upstream, routes: [{ path: '/plain/public/**', access: 'public' }] },
      ],
      tokens: { bearerHeader: 'X-Gatehouse-Token', device: { interval: '1s' } },
      accounts: { rateLimits: { registerPerIp: 1000, loginPerIp: 1000, providerStartsPerIp: 1000 } },
    }),
    { port: lab.ports[0] },
  );
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

const jwks = () => createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`));

/** The headers the upstream received for the request carrying this probe, as sent (name as written, every copy). */
function received(probe: string): { headers: Record<string, string | string[] | undefined>; raw: [string, string][] } {
  const seen = gh.upstream.requests.find((r) => r.headers['x-probe'] === probe);
  assert.ok(seen, 'the request reached the app');
  const raw: [string, string][] = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) raw.push([seen.rawHeaders[i]!, seen.rawHeaders[i + 1]!]);
  return { headers: seen.headers, raw };
}

/** Every copy of a header the app received, in any spelling ("_" for "-" too). */
function copies(raw: [string, string][], name: string): string[] {
  const want = name.toLowerCase();
  return raw.filter(([n]) => n.toLowerCase().replaceAll('_', '-') === want).map(([, v]) => v);
}

/** A request over a raw socket, so that header names go out exactly as written (case, "_", duplicates). */
async function raw(path: string, lines: string[], cookie?: string): Promise<{ status: number; probe: string }> {
  const probe = randomUUID();
  const text = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${gh.port}`,
    'Accept: application/json',
    `X-Probe: ${probe}`,
    'Connection: close',
    ...(cookie ? [`Cookie: ${cookie}`] : []),
    ...lines,
    '',
    '',
  ].join('\r\n');
  const res = await rawRequest(gh.port, text);
  return { status: res.status, probe };
}

/** Client-sent copies of identity headers in the spellings a back end may fold into one name. */
const SPOOFED = [
  'X-Forwarded-User: admin',
  'x-forwarded-user: admin',
  'X_Forwarded_User: admin',
  'X-Forwarded-Email: boss@example.com',
  'X_FORWARDED_EMAIL: boss@example.com',
  'X-Forwarded-Preferred-Username: admin',
  'X-Forwarded-Groups: admins',
  'x-forwarded-access-token: stolen',
  'X-OAUTH2-PROXY-ID-TOKEN: Bearer forged.jwt.here',
  'x-oauth2-proxy-id-token: Bearer forged.jwt.here',
  'X_OAUTH2_PROXY_ID_TOKEN: Bearer forged.jwt.here',
];

describe('the oauth2-proxy preset', () => {
  test("what the app receives: oauth2-proxy's headers, the email only once verified, the assertion also as a Bearer; every spoofed copy gone", async () => {
    const c = new Client(gh.url);
    const email = uniqueEmail('o2p');
    const me = await registerJson(c, email);
    await gh.gatehouse.store.users.update(me.id, { name: 'Ann Example', groups: ['staff', 'ops'] });

    const unverified = await raw('/page', SPOOFED, c.cookieHeader());
    assert.equal(unverified.status, 200);
    const first = received(unverified.probe);
    assert.deepEqual(copies(first.raw, 'X-Forwarded-User'), [me.id], 'the stable id, once, whatever the client sent');
    assert.deepEqual(copies(first.raw, 'X-Forwarded-Email'), [], 'an unverified address is never presented');
    assert.deepEqual(copies(first.raw, 'X-Forwarded-Preferred-Username'), ['Ann Example']);
    assert.deepEqual(copies(first.raw, 'X-Forwarded-Groups'), ['staff,ops']);
    assert.deepEqual(
      copies(first.raw, 'X-Forwarded-Access-Token'),
      [],
      'no relay on this route, and none from the client',
    );
    assert.deepEqual(copies(first.raw, 'X-User-Id'), [], 'the preset replaces X-User-Id');
    const [idToken] = copies(first.raw, 'X-OAUTH2-PROXY-ID-TOKEN');
    const [assertion] = copies(first.raw, 'X-Gatehouse-Assertion');
    assert.equal(idToken, `Bearer ${assertion}`, 'the same assertion, as oauth2-proxy sends its ID token');
    const { payload } = await jwtVerify(assertion!, jwks(), { issuer: gh.url, audience: 'o2p' });
    assert.equal(payload.sub, me.id);
    assert.equal(payload.email, undefined);
    assert.equal(payload.email_verified, false);

    await gh.gatehouse.store.users.update(me.id, { emailVerified: true });
    const verified = received((await raw('/page', SPOOFED, c.cookieHeader())).probe);
    assert.deepEqual(copies(verified.raw, 'X-Forwarded-Email'), [email], 'verified: presented, once');
    const claims = (await jwtVerify(copies(verified.raw, 'X-Gatehouse-Assertion')[0]!, jwks(), { audience: 'o2p' }))
      .payload;
    assert.equal(claims.email, email);
  });

  test('a WebSocket upgrade gets the same headers, spoofed copies removed', async () => {
    const c = new Client(gh.url);
    const me = await registerJson(c);
    const h = await new Promise<Record<string, string>>((resolve, reject) => {
      const ws = new WebSocket(`${gh.url.replace('http', 'ws')}/ws`, {
        headers: {
          cookie: c.cookieHeader()!,
          origin: gh.url,
          'x-forwarded-user': 'admin',
          'X-OAUTH2-PROXY-ID-TOKEN': 'Bearer forged.jwt.here',
        },
      });
      ws.once('message', (m) => {
        resolve(JSON.parse(String(m)).headers);
        ws.close();
      });
      ws.once('error', reject);
    });
    assert.equal(h['x-forwarded-user'], me.id);
    assert.equal(h['x-oauth2-proxy-id-token'], `Bearer ${h['x-gatehouse-assertion']}`);
    assert.equal(h['x-user-id'], undefined);
  });

  test('nobody signed in, on a public route: none of the preset headers, none of the spoofed ones', async () => {
    const anon = await raw('/public/x', SPOOFED);
    assert.equal(anon.status, 200);
    const { raw: seen } = received(anon.probe);
    for (const name of [
      'X-Forwarded-User',
      'X-Forwarded-Email',
      'X-Forwarded-Preferred-Username',
      'X-Forwarded-Groups',
      'X-Forwarded-Access-Token',
      'X-OAUTH2-PROXY-ID-TOKEN',
      'X-Gatehouse-Assertion',
    ])
      assert.deepEqual(copies(seen, name), [], name);
  });

  test("tokenRelay with the preset: the provider's access token in X-Forwarded-Access-Token, the client's Authorization passed on", async () => {
    lab.a.autoLogin = 'alice';
    const c = new Client(gh.url);
    const hops = await signIn(c, 'a');
    assert.equal(hops.at(-1)!.res.status, 200);
    const issued = lab.a.issued.filter((t) => t.accountId === 'alice').at(-1)!.access_token!;
    const probe = randomUUID();
    const res = await c.get('/relay/x', {
      'x-probe': probe,
      authorization: 'Bearer the-apps-own-token',
      'x-forwarded-access-token': 'forged',
    });
    assert.equal(res.status, 200, res.text);
    const { raw: seen } = received(probe);
    assert.deepEqual(copies(seen, 'X-Forwarded-Access-Token'), [issued], 'bare, as oauth2-proxy sends it');
    assert.deepEqual(copies(seen, 'Authorization'), ['Bearer the-apps-own-token']);
    assert.deepEqual(copies(seen, 'X-Forwarded-Email'), ['alice@example.com'], "the provider's verified address");
  });
});

describe('a renamed id header, and the assertion in Authorization', () => {
  test('headers.id: the id under its own name, once; X-User-Id and every client copy of Remote-Id gone', async () => {
    const c = new Client(gh.url);
    const me = await registerJson(c);
    const res = await raw(
      '/renamed/x',
      [
        'Remote-Id: admin',
        'remote-id: admin',
        'REMOTE_ID: admin',
        'X-User-Id: admin',
        'Remote-Email: boss@example.com',
      ],
      c.cookieHeader(),
    );
    assert.equal(res.status, 200);
    const { raw: seen } = received(res.probe);
    assert.deepEqual(copies(seen, 'Remote-Id'), [me.id]);
    assert.deepEqual(copies(seen, 'X-User-Id'), []);
    assert.deepEqual(copies(seen, 'Remote-Email'), [], 'unverified: not presented, and the forged one dropped');
    assert.equal(copies(seen, 'X-Gatehouse-Assertion').length, 1);
  });

  test("assertionBearer: Authorization replaces the client's Authorization with the assertion; nobody signed in, no Authorization at all", async () => {
    const c = new Client(gh.url);
    const me = await registerJson(c);
    const res = await raw('/authz/x', ['authorization: Basic YWRtaW46YWRtaW4='], c.cookieHeader());
    assert.equal(res.status, 200);
    const { raw: seen } = received(res.probe);
    const auth = copies(seen, 'Authorization');
    assert.equal(auth.length, 1);
    const jwt = /^Bearer (.+)$/.exec(auth[0]!)![1]!;
    assert.equal((await jwtVerify(jwt, jwks(), { issuer: gh.url, audience: 'authz' })).payload.sub, me.id);
    assert.deepEqual(copies(seen, 'X-Gatehouse-Assertion'), [], 'assertion: false: only the Bearer form');
    const anon = await raw('/authz/public/x', ['Authorization: Bearer forged']);
    assert.deepEqual(copies(received(anon.probe).raw, 'Authorization'), []);
  });
});

describe("tokens.bearerHeader: a CLI sends its Gatehouse token beside the app's own", () => {
  let token: string;
  let userId: string;
  before(async () => {
    const { browser, user } = await signedInBrowser(gh);
    userId = user.id;
    token = (await deviceLogin(gh, browser, undefined, { resource: `${gh.url}/plain` })).access_token;
  });

  async function call(path: string, headers: Record<string, string>) {
    const probe = randomUUID();
    const res = await fetch(`${gh.url}${path}`, {
      headers: { accept: 'application/json', 'x-probe': probe, ...headers },
    });
    const body = await res.text();
    const seen = gh.upstream.requests.find((r) => r.headers['x-probe'] === probe);
    return { status: res.status, body, www: res.headers.get('www-authenticate'), seen: seen?.headers };
  }

  test("both tokens: Gatehouse authenticates from its header and the app gets its own Authorization unchanged, never Gatehouse's token", async () => {
    const both = await call('/plain/api', {
      'x-gatehouse-token': token,
      authorization: 'Bearer the-apps-own-token',
    });
    assert.equal(both.status, 200, both.body);
    assert.equal(both.seen!['x-user-id'], userId);
    assert.equal(both.seen!.authorization, 'Bearer the-apps-own-token');
    assert.equal(both.seen!['x-gatehouse-token'], undefined);
    assert.doesNotMatch(JSON.stringify(both.seen), new RegExp(token.slice(-20)), 'the token nowhere');
    // "Bearer <token>" in the header works too.
    const prefixed = await call('/plain/api', { 'x-gatehouse-token': `Bearer ${token}` });
    assert.equal(prefixed.status, 200, prefixed.body);
    // Gatehouse's token in Authorization still works as before, and is still kept from the app.
    const classic = await call('/plain/api', { authorization: `Bearer ${token}` });
    assert.equal(classic.status, 200, classic.body);
    assert.equal(classic.seen!.authorization, undefined);
    // Gatehouse's token in both: the header decides, Authorization's Gatehouse token is dropped.
    const twice = await call('/plain/api', { 'x-gatehouse-token': token, authorization: `Bearer ${token}` });
    assert.equal(twice.status, 200);
    assert.equal(twice.seen!.authorization, undefined);
  });

  test('a bad token in the header decides: 401 invalid_token, even beside a good one in Authorization; two copies are no token', async () => {
    const bad = await call('/plain/api', { 'x-gatehouse-token': 'not-a-token', authorization: `Bearer ${token}` });
    assert.equal(bad.status, 401);
    assert.match(bad.www ?? '', /error="invalid_token"/);
    assert.equal(bad.seen, undefined, 'nothing reached the app');
    const doubled = await raw('/plain/api', [`X-Gatehouse-Token: ${token}`, `X-Gatehouse-Token: ${token}`]);
    assert.equal(doubled.status, 401);
    // Another spelling is not read as the header, and never reaches the app either.
    const underscore = await raw('/plain/public/x', [`X_Gatehouse_Token: ${token}`]);
    assert.equal(underscore.status, 200);
    const { headers, raw: seen } = received(underscore.probe);
    assert.deepEqual(copies(seen, 'X-Gatehouse-Token'), []);
    assert.equal(headers['x-user-id'], undefined, 'not signed in by a header of another name');
  });
});

describe('forward-auth (/.auth/check) answers with the same headers', () => {
  const HOST = 'o2p.example.test';
  let fa: TestGatehouse;
  before(async () => {
    fa = await startGatehouse(() => ({
      publicUrl: `https://${HOST}`,
      trustedProxies: ['loopback'],
      headers: { preset: 'oauth2-proxy', assertionBearer: 'X-OAUTH2-PROXY-ID-TOKEN' },
      tokens: { bearerHeader: 'X-Gatehouse-Token' },
    }));
  });
  after(() => fa?.close());

  test('oauth2-proxy names, the email once verified, the assertion both ways: what the nginx, Caddy and Traefik examples copy', async () => {
    const c = new Client(fa.url);
    const email = uniqueEmail('fa-o2p');
    const reg = await c.postJson(
      '/.auth/register',
      { email, password: PASSWORD },
      { host: HOST, 'x-forwarded-proto': 'https' },
    );
    assert.equal(reg.status, 201, reg.text);
    const id = reg.json().user.id as string;
    await fa.gatehouse.store.users.update(id, { name: 'Fa User', emailVerified: true });
    const res = await new Client(fa.url).fetch('/.auth/check', {
      headers: {
        host: HOST,
        'x-original-uri': '/page',
        'x-original-method': 'GET',
        'x-forwarded-proto': 'https',
        cookie: c.cookieHeader()!,
      },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers['x-forwarded-user'], id);
    assert.equal(res.headers['x-forwarded-email'], email);
    assert.equal(res.headers['x-forwarded-preferred-username'], 'Fa User');
    assert.equal(res.headers['x-forwarded-groups'], '');
    assert.equal(res.headers['x-user-id'], undefined);
    assert.equal(res.headers['x-oauth2-proxy-id-token'], `Bearer ${res.headers['x-gatehouse-assertion']}`);
  });
});
