import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { WebSocket } from 'ws';
import { Gatehouse } from '../../src/server/gatehouse.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { openStore } from '../../src/store/index.ts';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';

const TYP = 'gatehouse-assertion+jwt';

let gh: TestGatehouse;
let user: Client;
let me: { id: string; email: string };

before(async () => {
  gh = await startGatehouse(() => ({
    routes: [
      { path: '/open/**', access: 'public' },
      { path: '/.well-known/app-*', access: 'public' },
    ],
  }));
  user = new Client(gh.url);
  me = await registerJson(user);
});
after(() => gh.close());

/** The X-Gatehouse-Assertion values the app received on its last request. */
function received(t: TestGatehouse = gh): string[] {
  const seen = t.upstream.last();
  const values: string[] = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) {
    if (/^x[-_]gatehouse[-_]assertion$/i.test(seen.rawHeaders[i]!)) values.push(seen.rawHeaders[i + 1]!);
  }
  return values;
}

async function assertionFor(client: Client, path = '/page', t: TestGatehouse = gh): Promise<string> {
  const res = await client.get(path);
  assert.equal(res.status, 200, res.text);
  const values = received(t);
  assert.equal(values.length, 1, 'exactly one assertion reaches the app');
  return values[0]!;
}

describe('X-Gatehouse-Assertion', () => {
  test('verifies with jose against the live JWKS and says who the user is (claims, header)', async () => {
    const token = await assertionFor(user);
    const jwks = createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: gh.url,
      audience: 'app',
      typ: TYP,
      algorithms: ['EdDSA'],
    });
    assert.equal(protectedHeader.alg, 'EdDSA');
    assert.equal(protectedHeader.kid, gh.gatehouse.keys.currentKid);
    assert.equal(payload.iss, gh.url, 'iss is the publicUrl');
    assert.equal(payload.aud, 'app', "aud is the app's name");
    assert.equal(payload.sub, me.id);
    assert.equal(payload.exp! - payload.iat!, 60, 'default lifetime 60 s');
    assert.ok(Math.abs(payload.iat! - Date.now() / 1000) < 5);
    assert.deepEqual(payload.amr, ['pwd']);
    const cookie = user.jar.get('gatehouse')!;
    assert.match(String(payload.sid), /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(payload.sid, cookie);
    assert.ok(
      !hash('sha256', cookie, 'base64url').startsWith(String(payload.sid)),
      'sid is not the stored session hash',
    );
    assert.deepEqual(
      Object.keys(payload).sort(),
      ['amr', 'aud', 'exp', 'iat', 'iss', 'sid', 'sub'],
      'no email, name or groups unless the app opts in',
    );
  });

  test('anonymous requests to public routes carry none', async () => {
    const anon = new Client(gh.url);
    assert.equal((await anon.get('/open/x')).status, 200);
    assert.deepEqual(received(), []);
  });

  test('every session has its own assertion and sid; parallel requests of one session all get one', async () => {
    const first = await assertionFor(user, '/a');
    await Promise.all(Array.from({ length: 8 }, (_, i) => user.get(`/p${i}`)));
    const sent = gh.upstream.requests.slice(-8).map((r) => r.headers['x-gatehouse-assertion']);
    assert.ok(sent.every((t) => typeof t === 'string' && decodeJwt(t).sub === me.id));
    const other = new Client(gh.url);
    await other.postJson('/.auth/login', { email: me.email, password: 'a long enough passphrase' });
    const second = await assertionFor(other, '/d');
    assert.notEqual(decodeJwt(second).sid, decodeJwt(first).sid, 'another session, another sid');
    assert.equal(decodeJwt(second).sub, me.id);
    assert.equal(
      decodeJwt(await assertionFor(user, '/e')).sid,
      decodeJwt(first).sid,
      "the other session's assertion is not handed to this one",
    );
  });

  test('a client-sent assertion never reaches the app, in any spelling, signed in or not (security.md #1-4)', async () => {
    const ours = await assertionFor(user);
    const forged = ours.replace(/\.[^.]+$/, '.AAAA');
    for (const cookie of [user.cookieHeader(), undefined]) {
      const raw = await rawRequest(
        gh.port,
        `GET /open/spoof HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\n${cookie ? `Cookie: ${cookie}\r\n` : ''}X-Gatehouse-Assertion: ${forged}\r\nx-gatehouse-assertion: ${forged}\r\nX_Gatehouse_Assertion: ${forged}\r\nX-Gatehouse_Assertion: ${forged}\r\nX-GATEHOUSE-ASSERTION: ${forged}, ${forged}\r\nConnection: close, X-Gatehouse-Assertion\r\n\r\n`,
      );
      assert.equal(raw.status, 200);
      assert.deepEqual(received(), cookie ? [ours] : [], cookie ? 'only ours' : 'none at all');
    }
  });

  test('JWKS at the site root: public keys only, caching headers, ETag, HEAD; other methods 405; never forwarded', async () => {
    const before = gh.upstream.requests.length;
    const res = await new Client(gh.url).get('/.well-known/jwks.json');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/jwk-set+json');
    assert.equal(
      res.headers['cache-control'],
      'public, max-age=300',
      'max-age = min(5 min, publishBefore - refreshInterval)',
    );
    const { keys } = res.json() as { keys: Record<string, string>[] };
    assert.equal(keys.length, 1);
    assert.deepEqual(Object.keys(keys[0]!).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    assert.equal(keys[0]!.kid, gh.gatehouse.keys.currentKid);
    const etag = String(res.headers.etag);
    const again = await new Client(gh.url).get('/.well-known/jwks.json', { 'if-none-match': etag });
    assert.equal(again.status, 304);
    assert.equal(again.text, '');
    const head = await new Client(gh.url).fetch('/.well-known/jwks.json', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.etag, etag);
    const post = await user.fetch('/.well-known/jwks.json', {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    const ws = await rawRequest(
      gh.port,
      `GET /.well-known/jwks.json HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    assert.equal(ws.status, 404);
    assert.equal(gh.upstream.requests.length, before, 'the app saw none of these');
  });

  test('other /.well-known/ paths belong to the app and follow its rules', async () => {
    const anon = new Client(gh.url);
    assert.equal((await anon.get('/.well-known/app-config')).status, 200, 'a public rule admits it');
    assert.equal(gh.upstream.last().url, '/.well-known/app-config');
    assert.equal((await anon.get('/.well-known/security.txt')).status, 401, 'the default rule applies');
    for (const p of ['/.well-known/jwks.json/', '/.well-known/JWKS.json']) {
      const r = await user.get(p);
      assert.equal(r.status, 200);
      assert.equal(gh.upstream.last().url, p, `${p} is not the JWKS: forwarded`);
    }
  });

  test('WebSocket upgrades carry the assertion', async () => {
    const token = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`${gh.url.replace('http', 'ws')}/ws`, {
        headers: { cookie: user.cookieHeader()!, origin: gh.url, 'x-gatehouse-assertion': 'forged' },
      });
      ws.once('message', (m) => {
        resolve(JSON.parse(String(m)).headers['x-gatehouse-assertion']);
        ws.close();
      });
      ws.once('error', reject);
    });
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${gh.url}/.well-known/jwks.json`)), {
      issuer: gh.url,
      audience: 'app',
      typ: TYP,
    });
    assert.equal(payload.sub, me.id);
  });

  test('the private key is encrypted at rest; the public one is what the JWKS shows', async () => {
    const db = new DatabaseSync(join(gh.dir, 'gatehouse.db'), { readOnly: true });
    try {
      const rows = db.prepare('SELECT kid, alg, public_jwk, private_jwk FROM signing_keys').all() as {
        kid: string;
        alg: string;
        public_jwk: string;
        private_jwk: string;
      }[];
      assert.equal(rows.length, 1);
      assert.match(
        rows[0]!.private_jwk,
        /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/,
        'AES-GCM ciphertext',
      );
      assert.doesNotMatch(rows[0]!.private_jwk, /"d"/);
      assert.equal(JSON.parse(rows[0]!.public_jwk).d, undefined);
      assert.equal(rows[0]!.alg, 'EdDSA');
    } finally {
      db.close();
    }
  });
});

describe('assertion options', () => {
  test("opt-in claims, a header name of the app's own (client copies dropped in every spelling), ES256", async () => {
    const t = await startGatehouse(() => ({
      tokens: { algorithm: 'ES256' },
      headers: { email: true, name: true, groups: 'X-Teams', assertion: 'X-Identity' },
    }));
    try {
      const c = new Client(t.url);
      const res = await c.postJson('/.auth/register', {
        email: 'opt@example.com',
        password: 'a long enough passphrase',
        name: 'Zoë Ops',
      });
      assert.equal(res.status, 201);
      await t.gatehouse.store.users.update(res.json().user.id, { groups: ['ops', 'on-call'] });
      await c.get('/x', { 'x-identity': 'forged', X_Identity: 'forged', 'x-teams': 'admins' });
      const h = t.upstream.last().headers;
      assert.equal(h['x-gatehouse-assertion'], undefined, 'renamed');
      assert.equal(h['x-teams'], 'ops,on-call', "only ours, not the client's");
      assert.equal(t.upstream.last().rawHeaders.filter((n) => /^x[-_]identity$/i.test(n)).length, 1);
      const token = String(h['x-identity']);
      assert.equal(decodeProtectedHeader(token).alg, 'ES256');
      const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${t.url}/.well-known/jwks.json`)), {
        issuer: t.url,
        audience: 'app',
        typ: TYP,
        algorithms: ['ES256'],
      });
      assert.equal(payload.email, undefined, 'not verified: not presented (identity.test.ts)');
      assert.equal(payload.email_verified, false);
      assert.equal(payload.name, 'Zoë Ops');
      assert.deepEqual(payload.groups, ['ops', 'on-call']);
      // A change to the user reaches the next assertion at once, not when the cached one expires.
      await t.gatehouse.store.users.update(res.json().user.id, { groups: ['ops'] });
      await c.get('/y');
      assert.deepEqual(decodeJwt(String(t.upstream.last().headers['x-identity'])).groups, ['ops']);
    } finally {
      await t.close();
    }
  });

  test('headers.assertion: false sends none (and still drops client copies); tokens.assertionTtl sets exp', async () => {
    const off = await startGatehouse(() => ({ headers: { assertion: false } }));
    const short = await startGatehouse(() => ({ tokens: { assertionTtl: '20s' } }));
    try {
      const c = new Client(off.url);
      await registerJson(c);
      await c.get('/x', { 'x-gatehouse-assertion': 'forged' });
      assert.equal(off.upstream.last().headers['x-gatehouse-assertion'], undefined);
      assert.equal(off.upstream.last().headers['x-user-id'] !== undefined, true);
      const s = new Client(short.url);
      await registerJson(s);
      const token = await assertionFor(s, '/x', short);
      const p = decodeJwt(token);
      assert.equal(p.exp! - p.iat!, 20);
    } finally {
      await Promise.all([off.close(), short.close()]);
    }
  });

  test('a node whose master key cannot decrypt the signing key refuses to start and says what to fix', async () => {
    const t = await startGatehouse(() => ({ secrets: { key: 'a'.repeat(64) } }));
    await t.gatehouse.close();
    // A fresh config (a parsed one does not parse again: its durations are numbers of ms by then).
    const config = ConfigSchema.parse({
      publicUrl: t.config.publicUrl,
      listen: { host: '127.0.0.1', port: t.config.listen.port },
      store: t.config.store,
      secrets: { key: 'b'.repeat(64) },
      upstream: t.upstream.url,
    });
    const store = await openStore(config.store);
    try {
      await assert.rejects(
        Gatehouse.create(config, { store }),
        /cannot be decrypted with this node's master key: every node needs the same secrets\.key/,
      );
    } finally {
      await store.close();
      await t.close();
    }
  });
});
