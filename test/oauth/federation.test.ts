import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { ConfigInput } from '../../src/config/schema.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { Clock, postForm, withBearer } from './helpers.ts';

/**
 * Federated service clients: a workload (a CI job, a pod) proves it is the client with a JWT its
 * platform issued, as the client assertion (RFC 7523), checked against the issuer's keys found by
 * discovery: no secret anywhere. The issuer here is a real HTTP server on loopback with OpenID
 * discovery and a JWKS, as GitHub Actions' and a cluster's are.
 */

const SUBJECT = 'repo:acme/shop:ref:refs/heads/main';
const ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
let issuer: { url: string; server: Server; key: CryptoKey; up: boolean };
let upstream: TestUpstream;
let gh: TestGatehouse;

async function startIssuer(): Promise<typeof issuer> {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const state = { url: '', server: undefined as unknown as Server, key: privateKey, up: true };
  state.server = createServer((req, res) => {
    if (!state.up) return void res.writeHead(503).end();
    const body =
      req.url === '/.well-known/openid-configuration'
        ? { issuer: state.url, jwks_uri: `${state.url}/jwks` }
        : req.url === '/jwks'
          ? { keys: [jwk] }
          : undefined;
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

before(async () => {
  issuer = await startIssuer();
  upstream = await startUpstream();
  gh = await startGatehouse(
    ({ upstream: u }): Partial<ConfigInput> => ({
      apps: [
        { name: 'api', pathPrefix: '/api', upstream: u, headers: { name: true, groups: true } },
        { name: 'web', upstream: u },
      ],
      tokens: {
        clients: [
          {
            id: 'deploy',
            name: 'Deploy from CI',
            grantTypes: ['client_credentials'],
            apps: ['api'],
            groups: ['deployers'],
            federated: { issuer: issuer.url, subject: SUBJECT },
          },
        ],
      },
    }),
    { upstream },
  );
});
after(async () => {
  await gh.close();
  await upstream.close();
  await new Promise((resolve) => issuer.server.close(resolve));
});

/** A workload token as the platform issues it; `over` changes what it says. */
function workloadToken(
  over: { sub?: string; aud?: string; iss?: string; exp?: string; key?: CryptoKey; alg?: string } = {},
) {
  return new SignJWT({ repository: 'acme/shop' })
    .setProtectedHeader({ alg: over.alg ?? 'ES256', kid: 'k1', typ: 'JWT' })
    .setIssuer(over.iss ?? issuer.url)
    .setSubject(over.sub ?? SUBJECT)
    .setAudience(over.aud ?? gh.url)
    .setIssuedAt()
    .setExpirationTime(over.exp ?? '5m')
    .sign(over.key ?? issuer.key);
}

const exchange = (assertion: string, extra: Record<string, string> = {}) =>
  postForm(`${gh.url}/.auth/oauth/token`, {
    grant_type: 'client_credentials',
    client_id: 'deploy',
    client_assertion_type: ASSERTION,
    client_assertion: assertion,
    resource: `${gh.url}/api`,
    ...extra,
  });

describe('federated service clients', () => {
  test("a workload's token from its platform gets it an access token, and it calls its app as client:<id>", async () => {
    const t = await exchange(await workloadToken());
    assert.equal(t.status, 200, JSON.stringify(t.json));
    const r = await withBearer(gh, '/api/deploy', String(t.json.access_token));
    assert.equal(r.status, 200, r.body);
    assert.equal(r.seen!['x-user-id'], 'client:deploy');
    assert.equal(r.seen!['x-user-groups'], 'deployers');
    // The same token again (a pod reads its projected token for an hour): still good until it expires.
    assert.equal((await exchange(await workloadToken())).status, 200);
  });

  test('another subject, audience or issuer, another key, an expired or day-long token, or none: invalid_client', async () => {
    const { privateKey: stranger } = await generateKeyPair('ES256');
    for (const [what, token] of [
      ['another branch', await workloadToken({ sub: 'repo:acme/shop:ref:refs/heads/evil' })],
      ['another repository', await workloadToken({ sub: 'repo:evil/shop:ref:refs/heads/main' })],
      ['for another service', await workloadToken({ aud: 'https://elsewhere.example' })],
      ['another issuer', await workloadToken({ iss: 'https://token.actions.githubusercontent.com' })],
      ['signed by another key under the same kid', await workloadToken({ key: stranger })],
      ['expired', await workloadToken({ exp: '-2m' })],
      ['two days long', await workloadToken({ exp: '2d' })],
    ] as const) {
      const r = await exchange(token);
      assert.deepEqual([r.status, r.json.error], [401, 'invalid_client'], what);
    }
    // Without an assertion the client is not public: it has no other way to prove itself.
    const bare = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: 'client_credentials',
      client_id: 'deploy',
      resource: `${gh.url}/api`,
    });
    assert.deepEqual([bare.status, bare.json.error], [401, 'invalid_client']);
    const mixed = await exchange(await workloadToken(), { client_secret: 'x'.repeat(40) });
    assert.deepEqual([mixed.status, mixed.json.error], [401, 'invalid_client']);
    const wrongType = await exchange(await workloadToken(), { client_assertion_type: 'urn:example:other' });
    assert.deepEqual([wrongType.status, wrongType.json.error], [401, 'invalid_client']);
    // An HMAC "signature" under the issuer's kid is no proof of the issuer.
    const hs = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .setIssuer(issuer.url)
      .setSubject(SUBJECT)
      .setAudience(gh.url)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('a shared secret nobody should trust'));
    assert.deepEqual([(await exchange(hs)).status], [401]);
  });
});

describe('federated service clients when the issuer is down', () => {
  test("a Gatehouse that cannot reach the issuer's keys answers 503, and asks again half a minute later", async () => {
    const clock = new Clock();
    const own = await startGatehouse(
      ({ upstream: u }): Partial<ConfigInput> => ({
        apps: [{ name: 'api', pathPrefix: '/api', upstream: u }],
        tokens: {
          clients: [
            {
              id: 'deploy',
              name: 'Deploy',
              grantTypes: ['client_credentials'],
              apps: ['api'],
              federated: { issuer: issuer.url, subject: SUBJECT, audience: 'gatehouse' },
            },
          ],
        },
      }),
      { upstream, clock: clock.now },
    );
    try {
      issuer.up = false;
      const ask = async () =>
        postForm(`${own.url}/.auth/oauth/token`, {
          grant_type: 'client_credentials',
          client_id: 'deploy',
          client_assertion_type: ASSERTION,
          client_assertion: await workloadToken({ aud: 'gatehouse' }),
        });
      const down = await ask();
      assert.deepEqual([down.status, down.json.error], [503, 'temporarily_unavailable']);
      issuer.up = true;
      // Back up: the failure is remembered for half a minute (the issuer is not asked at every request) ...
      assert.equal((await ask()).status, 503);
      // ... then discovery runs again.
      clock.advance(31_000);
      const back = await ask();
      assert.equal(back.status, 200, JSON.stringify(back.json));
    } finally {
      issuer.up = true;
      await own.close();
    }
  });
});
