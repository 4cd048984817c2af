import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { base64url, createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import {
  AssertionError,
  createVerifier,
  gatehouseFastify,
  gatehouseMiddleware,
  verifyAssertion,
  withGatehouse,
  type GatehouseUser,
  type VerifyOptions,
} from '../../src/verify/index.ts';
import { Client, registerJson } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * gatehouse/verify against a live Gatehouse: real assertions from the app's side of the proxy,
 * the JWKS fetched over HTTP, and each middleware flavour in a real server of its framework.
 */

let gh: TestGatehouse;
let me: { id: string; email: string };
let token: string;
let opts: VerifyOptions;

before(async () => {
  gh = await startGatehouse(() => ({ name: 'crm', headers: { email: true } }));
  const c = new Client(gh.url);
  me = await registerJson(c);
  await gh.gatehouse.store.users.update(me.id, { emailVerified: true });
  await c.get('/x');
  token = String(gh.upstream.last().headers['x-gatehouse-assertion']);
  opts = { issuer: gh.url, audience: 'crm' };
});
after(() => gh.close());

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Tokens an attacker can make without Gatehouse's private key. */
async function forgeries(): Promise<Record<string, string>> {
  const [h, p] = token.split('.') as [string, string];
  const header = JSON.parse(new TextDecoder().decode(base64url.decode(h))) as Record<string, string>;
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(p))) as Record<string, unknown>;
  const mine = await generateKeyPair('EdDSA', { extractable: true });
  const myJwk = await exportJWK(mine.publicKey);
  const jwks = (await (await fetch(`${gh.url}/.well-known/jwks.json`)).json()) as { keys: { x: string }[] };
  const sign = (hdr: Record<string, unknown>, body = claims) =>
    new SignJWT(body).setProtectedHeader(hdr as { alg: string }).sign(mine.privateKey);
  return {
    'alg none': new UnsecuredJWT({ ...claims, sub: 'admin' })
      .encode()
      .replace(/^[^.]+/, base64url.encode(JSON.stringify({ alg: 'none', typ: header.typ, kid: header.kid }))),
    'HS256 with the public key as secret': await new SignJWT({ ...claims, sub: 'admin' })
      .setProtectedHeader({ alg: 'HS256', kid: header.kid!, typ: header.typ! })
      .sign(base64url.decode(jwks.keys[0]!.x)),
    'own key, Gatehouse kid': await sign({ ...header, alg: 'EdDSA' }, { ...claims, sub: 'admin' }),
    'own key, unknown kid': await sign({ ...header, alg: 'EdDSA', kid: 'attacker' }),
    'own key embedded (jwk header)': await sign({ alg: 'EdDSA', typ: header.typ, jwk: myJwk }),
    'tampered claims': `${h}.${base64url.encode(JSON.stringify({ ...claims, sub: 'admin' }))}.${token.split('.')[2]}`,
    garbage: 'not.a.jwt',
  };
}

describe('gatehouse/verify', () => {
  test('verifyAssertion: one call, from the token or the request, against the live JWKS', async () => {
    const user = await verifyAssertion(token, opts);
    assert.equal(user.id, me.id);
    assert.equal(user.email, me.email);
    assert.equal(user.emailVerified, true);
    assert.deepEqual(user.amr, ['pwd']);
    assert.match(String(user.sessionId), /^[A-Za-z0-9_-]{22}$/);
    assert.ok(user.expiresAt.getTime() > Date.now());
    assert.equal((await verifyAssertion({ headers: { 'x-gatehouse-assertion': token } }, opts)).id, me.id);
    assert.equal(
      (await verifyAssertion(new Request('http://app/', { headers: { 'X-Gatehouse-Assertion': token } }), opts)).id,
      me.id,
      'a Fetch API Request',
    );
    assert.equal(
      (await verifyAssertion(token, { ...opts, issuer: `${gh.url}/`, jwksUrl: `${gh.url}/.well-known/jwks.json` })).id,
      me.id,
    );
  });

  test("refused: another app's audience, another issuer, no assertion, two copies (security.md #39)", async () => {
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'accepted',
        (e: AssertionError) => e.code,
      );
    assert.equal(await code(verifyAssertion(token, { ...opts, audience: 'wiki' })), 'wrong_audience');
    assert.equal(
      await code(
        verifyAssertion(token, { ...opts, issuer: 'https://evil.example', jwksUrl: `${gh.url}/.well-known/jwks.json` }),
      ),
      'wrong_issuer',
    );
    assert.equal(await code(verifyAssertion({ headers: {} }, opts)), 'missing');
    assert.equal(
      await code(verifyAssertion({ headers: { 'x-gatehouse-assertion': [token, token] } }, opts)),
      'malformed',
    );
  });

  test('forgeries are rejected: alg none, HS256 with the public key, a wrong key, embedded keys, tampered claims (security.md #35, #39)', async () => {
    const verify = createVerifier(opts);
    for (const [what, forged] of Object.entries(await forgeries())) {
      const result = await verify(forged).then(
        (u) => `accepted as ${u.id}`,
        (e: AssertionError) => e,
      );
      assert.ok(result instanceof AssertionError && result.status === 401, `${what}: ${String(result)}`);
    }
  });

  test('expired and wrongly typed tokens (an access token is no assertion) are rejected', async () => {
    const { publicKey, privateKey } = await generateKeyPair('EdDSA');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'EdDSA' };
    const keys = createLocalJWKSet({ keys: [jwk] });
    const make = (typ: string, exp: number) =>
      new SignJWT({ sub: 'u' })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'k', typ })
        .setIssuer(gh.url)
        .setAudience('crm')
        .setIssuedAt(exp - 60)
        .setExpirationTime(exp)
        .sign(privateKey);
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await verifyAssertion(await make('gatehouse-assertion+jwt', now + 60), { ...opts, keys })).id, 'u');
    await assert.rejects(verifyAssertion(await make('gatehouse-assertion+jwt', now - 10), { ...opts, keys }), {
      code: 'expired',
    });
    assert.equal(
      (await verifyAssertion(await make('gatehouse-assertion+jwt', now - 3), { ...opts, keys })).id,
      'u',
      'a few seconds of clock tolerance',
    );
    await assert.rejects(verifyAssertion(await make('at+jwt', now + 60), { ...opts, keys }), { code: 'wrong_type' });
    await assert.rejects(
      verifyAssertion(await make('gatehouse-assertion+jwt', now + 60), { ...opts, keys, algorithms: ['ES256'] }),
      { code: 'alg_not_allowed' },
    );
  });

  test('keys that cannot be fetched: 503-class error, not a crash', async () => {
    const port = await freePort();
    await assert.rejects(
      verifyAssertion(token, { ...opts, jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json` }),
      (e: AssertionError) => e.code === 'jwks_unavailable' && e.status === 503,
    );
  });
});

describe('middleware', () => {
  async function exercise(base: string): Promise<void> {
    const ok = await fetch(`${base}/whoami`, { headers: { 'x-gatehouse-assertion': token } });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as GatehouseUser).id, me.id);
    const none = await fetch(`${base}/whoami`);
    assert.equal(none.status, 401);
    assert.deepEqual(await none.json(), {
      error: 'invalid_assertion',
      code: 'missing',
      message: 'This request carries no valid Gatehouse assertion.',
    });
    const forged = await fetch(`${base}/whoami`, {
      headers: { 'x-gatehouse-assertion': (await forgeries())['own key, Gatehouse kid']! },
    });
    assert.equal(forged.status, 401);
    assert.equal(((await forged.json()) as { code: string }).code, 'invalid_signature');
  }

  test('node:http (withGatehouse)', async () => {
    const server = http.createServer(withGatehouse(opts, (_req, res, user) => void res.end(JSON.stringify(user))));
    try {
      await exercise(await listen(server));
    } finally {
      server.close();
    }
  });

  test('Express (gatehouseMiddleware); optional lets anonymous requests through without a user', async () => {
    const app = express();
    app.get(
      '/whoami',
      gatehouseMiddleware(opts),
      (req, res) => void res.json((req as unknown as { gatehouse: GatehouseUser }).gatehouse),
    );
    app.get(
      '/maybe',
      gatehouseMiddleware({ ...opts, optional: true }),
      (req, res) => void res.json({ user: (req as unknown as { gatehouse?: GatehouseUser }).gatehouse?.id ?? null }),
    );
    const server = http.createServer(app);
    try {
      const base = await listen(server);
      await exercise(base);
      assert.deepEqual(await (await fetch(`${base}/maybe`)).json(), { user: null });
      assert.equal(
        (await fetch(`${base}/maybe`, { headers: { 'x-gatehouse-assertion': 'bad' } })).status,
        401,
        'a bad assertion is still refused',
      );
    } finally {
      server.close();
    }
  });

  test('Fastify (gatehouseFastify plugin)', async () => {
    const app = Fastify();
    await app.register(gatehouseFastify, opts);
    app.get('/whoami', async (request) => (request as unknown as { gatehouse: GatehouseUser }).gatehouse);
    try {
      const base = await app.listen({ port: 0, host: '127.0.0.1' });
      await exercise(base);
    } finally {
      await app.close();
    }
  });
});
