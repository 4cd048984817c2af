import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import type { ActiveSession } from '../../src/sessions/index.ts';
import { openStore, type SigningKey, type Store } from '../../src/store/index.ts';
import { Assertions } from '../../src/identity/assertion.ts';
import { KeyRing, keyStates, kidOf, rotateKeys, type KeyPolicy } from '../../src/keys/keys.ts';
import { secretsFromKey } from '../../src/keys/secrets.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const stores: Store[] = [];
after(() => Promise.all(stores.map((s) => s.close())));
async function freshStore(): Promise<Store> {
  const s = await openStore({ type: 'sqlite', path: join(dir, `k${n++}.db`) });
  stores.push(s);
  return s;
}

const secrets = secretsFromKey('k'.repeat(64));
const MIN = 60_000;
const policy: KeyPolicy = {
  algorithm: 'EdDSA',
  publishBeforeMs: 10 * MIN,
  refreshMs: MIN,
  maxLifetimeMs: 60 * MIN,
  clockSkewMs: 30_000,
};
const ISS = 'https://gh.example.com';

/** A clock the test moves by hand. */
function clock(start = Date.UTC(2030, 0, 1)) {
  const c = { t: start, now: () => c.t };
  return c;
}

const rec = (kid: string, createdAt: number, activatesAt: number, retiresAt: number | null): SigningKey => ({
  kid,
  alg: 'EdDSA',
  publicJwk: '{}',
  privateJwk: '',
  createdAt,
  activatesAt,
  retiresAt,
});

describe('key states', () => {
  test('pending until activation, the newest active key signs, retiring until retiresAt, then retired', () => {
    const keys = [rec('a', 0, 0, 500), rec('b', 100, 200, null)];
    const at = (t: number) => Object.fromEntries(keyStates(keys, t).map((s) => [s.key.kid, s.state]));
    assert.deepEqual(at(150), { a: 'current', b: 'pending' });
    assert.deepEqual(at(200), { a: 'retiring', b: 'current' });
    assert.deepEqual(at(500), { a: 'retired', b: 'current' });
  });

  test('every node picks the same key: ties go by creation, then kid', () => {
    const tie = [rec('x', 0, 0, null), rec('y', 0, 0, null)];
    assert.equal(keyStates(tie, 1).find((s) => s.state === 'current')!.key.kid, 'y');
    assert.equal(keyStates([...tie].reverse(), 1).find((s) => s.state === 'current')!.key.kid, 'y');
  });

  test('with no active key, the first to activate signs (never nothing)', () => {
    assert.equal(keyStates([rec('p', 0, 50, null)], 10)[0]!.state, 'current');
  });
});

describe('key ring', () => {
  test('a rotation is published first, signs after publishBefore, and the old key is dropped only after its last token expired', async () => {
    const store = await freshStore();
    const c = clock();
    const ring = await KeyRing.open(store, secrets, policy, { issuer: ISS, now: c.now });
    try {
      const oldKid = ring.currentKid;
      const jwks = () => (JSON.parse(ring.jwks().body) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
      assert.deepEqual(jwks(), [oldKid]);
      const { added, retireOthersAt } = await rotateKeys(store, secrets, policy, { now: c.t });
      assert.equal(added.activatesAt, c.t + 10 * MIN);
      assert.equal(retireOthersAt, added.activatesAt + 60 * MIN + 30_000);
      await ring.refresh();
      const etag = ring.jwks().etag;
      assert.deepEqual(jwks().sort(), [oldKid, added.kid].sort(), 'published before it signs');
      assert.equal(ring.currentKid, oldKid, 'still signing with the old key');

      c.t = added.activatesAt - 1;
      const lastOld = await ring.sign({}, { typ: 't', ttlMs: 60 * MIN, audience: 'a' });
      assert.equal(kidOf(lastOld), oldKid);
      c.t = added.activatesAt;
      assert.equal(ring.currentKid, added.kid, 'switches at the activation time without a reload');
      assert.equal(ring.jwks().etag, etag);

      c.t = added.activatesAt + 60 * MIN - 1000;
      assert.equal(
        (await ring.verify(lastOld, { audience: 'a', typ: 't' })).protectedHeader.kid,
        oldKid,
        'the last token the old key signed verifies until it expires',
      );
      c.t = retireOthersAt - 1;
      assert.ok(jwks().includes(oldKid), 'and its key stays published until then + clockSkew');
      c.t = retireOthersAt;
      assert.deepEqual(jwks(), [added.kid], 'unpublished at retiresAt');
      assert.notEqual(ring.jwks().etag, etag);
      await ring.refresh();
      assert.deepEqual(
        (await store.keys.list()).map((k) => k.kid),
        [added.kid],
        'and dropped from the store',
      );
    } finally {
      ring.close();
    }
  });

  test('two nodes on one store agree: the second learns a new key at its refresh, or at once when a token names it', async () => {
    const store = await freshStore();
    const c = clock();
    const a = await KeyRing.open(store, secrets, policy, { issuer: ISS, now: c.now });
    const b = await KeyRing.open(store, secrets, policy, { issuer: ISS, now: c.now });
    try {
      assert.equal(a.currentKid, b.currentKid, 'one first key for both');
      const { added } = await rotateKeys(store, secrets, policy, { now: c.t, immediate: true });
      await a.refresh();
      assert.equal(a.currentKid, added.kid);
      const token = await a.sign({ x: 1 }, { typ: 't', ttlMs: MIN, audience: 'app', subject: 'u1' });
      c.t += 2000; // past the once-a-second guard on unknown-kid reloads
      const { payload } = await b.verify(token, { audience: 'app', typ: 't' });
      assert.equal(payload.sub, 'u1');
      assert.equal(b.currentKid, added.kid, 'the unknown kid made b reload');
    } finally {
      a.close();
      b.close();
    }
  });

  test('sign sets iss/iat/exp/aud/sub and typ; lifetimes past maxLifetime are refused; verify checks typ, aud, iss, exp', async () => {
    const store = await freshStore();
    const c = clock();
    const ring = await KeyRing.open(store, secrets, { ...policy, algorithm: 'ES256' }, { issuer: ISS, now: c.now });
    try {
      await assert.rejects(ring.sign({}, { typ: 't', ttlMs: 61 * MIN }), RangeError);
      const token = await ring.sign({ scope: 'x' }, { typ: 'at+jwt', ttlMs: 5 * MIN, audience: 'api', subject: 'u' });
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(JSON.parse(ring.jwks().body)), {
        currentDate: new Date(c.t),
        issuer: ISS,
        audience: 'api',
        typ: 'at+jwt',
      });
      assert.equal(protectedHeader.alg, 'ES256');
      assert.equal(payload.exp! - payload.iat!, 300);
      assert.equal(payload.iat, Math.floor(c.t / 1000));
      await assert.rejects(ring.verify(token, { audience: 'api', typ: 'gatehouse-assertion+jwt' }), /typ/);
      await assert.rejects(ring.verify(token, { audience: 'other', typ: 'at+jwt' }), /aud/);
      await assert.rejects(
        ring.verify(token, { audience: 'api', typ: 'at+jwt', issuer: 'https://evil.example' }),
        /iss/,
      );
      c.t += 5 * MIN + 31_000;
      await assert.rejects(ring.verify(token, { audience: 'api', typ: 'at+jwt' }), /exp/);
    } finally {
      ring.close();
    }
  });
});

describe('assertion cache', () => {
  async function setup(maxEntries?: number) {
    const store = await freshStore();
    const c = clock();
    const ring = await KeyRing.open(store, secrets, policy, { issuer: ISS, now: c.now });
    const assertions = new Assertions(ring, secrets, { ttlMs: 60_000, maxEntries, now: c.now });
    const active = (idHash: string, userId = 'u1', updatedAt = 1): ActiveSession => ({
      session: {
        idHash,
        userId,
        site: 'https://x',
        createdAt: 0,
        lastSeenAt: 0,
        expiresAt: 0,
        amr: ['pwd'],
        ip: null,
        userAgent: null,
        authTime: 0,
      },
      user: {
        id: userId,
        email: 'a@b.c',
        emailVerified: true,
        name: null,
        groups: ['g'],
        passwordHash: null,
        disabled: false,
        createdAt: 0,
        updatedAt,
      },
    });
    return { store, c, ring, assertions, active };
  }
  const app = (name: string, groups = false) => ({
    name,
    headers: { email: null, unverifiedEmail: false, name: null, groups: groups ? 'X-User-Groups' : null },
  });

  test('reused (synchronously) for 45 of its 60 seconds, then signed anew', async () => {
    const { c, ring, assertions, active } = await setup();
    try {
      const first = await assertions.get(app('crm'), active('s1'));
      c.t += 44_999;
      assert.equal(assertions.get(app('crm'), active('s1')), first, 'a cached string, not a promise');
      c.t += 1;
      const next = await assertions.get(app('crm'), active('s1'));
      assert.notEqual(next, first);
      assert.equal(decodeJwt(next).iat, Math.floor(c.t / 1000));
    } finally {
      ring.close();
    }
  });

  test('never shared across sessions, apps or users, and a user change or a new signing key signs anew', async () => {
    const { store, c, ring, assertions, active } = await setup();
    try {
      const base = await assertions.get(app('crm', true), active('s1'));
      const claims = (t: string) => decodeJwt(t);
      assert.equal(claims(await assertions.get(app('wiki'), active('s1'))).aud, 'wiki');
      assert.notEqual(claims(await assertions.get(app('crm'), active('s2'))).sid, claims(base).sid);
      assert.equal(
        claims(await assertions.get(app('crm'), active('s1', 'u2'))).sub,
        'u2',
        'a session hash seen with another user is not trusted',
      );
      const changed = active('s1', 'u1', 2);
      changed.user.groups = ['g', 'h'];
      assert.deepEqual(claims(await assertions.get(app('crm', true), changed)).groups, ['g', 'h']);
      await rotateKeys(store, secrets, policy, { now: c.t, immediate: true });
      await ring.refresh();
      assert.equal(kidOf(await assertions.get(app('crm', true), changed)), ring.currentKid, 'a rotation re-signs');
    } finally {
      ring.close();
    }
  });

  test('bounded: old entries make room; parallel misses share one signature', async () => {
    const { ring, assertions, active } = await setup(3);
    try {
      for (let i = 0; i < 10; i++) await assertions.get(app('crm'), active(`s${i}`));
      assert.ok(assertions.size <= 3, `${assertions.size} entries`);
      const [x, y] = [assertions.get(app('crm'), active('p')), assertions.get(app('crm'), active('p'))];
      assert.equal(x, y, 'the same pending signature');
      assert.equal(await x, await y);
    } finally {
      ring.close();
    }
  });
});
