import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

describe('brute-force throttling (security.md #42)', () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse(() => ({
      accounts: { rateLimits: { loginPerIp: 8, loginPerAccount: 3, registerPerIp: 4 } },
    }));
  });
  after(() => gh.close());

  const attempt = (c: Client, email: string, password = 'wrong password here', headers: Record<string, string> = {}) =>
    c.postJson('/.auth/login', { email, password }, headers);

  test("an attacker exhausts an account's allowance, but its owner's browser still gets in", async () => {
    const email = uniqueEmail('victim');
    const owner = new Client(gh.url);
    await owner.postJson('/.auth/register', { email, password: PASSWORD });
    // The owner's browser signed in once and holds a device cookie.
    await owner.postJson('/.auth/login', { email, password: PASSWORD });
    assert.ok(owner.jar.get('gatehouse-device'));

    const attacker = new Client(gh.url);
    for (let i = 0; i < 3; i++) assert.equal((await attempt(attacker, email)).status, 401);
    const blocked = await attempt(attacker, email, PASSWORD);
    assert.equal(blocked.status, 429, 'even the right password is refused to an untrusted browser now');
    assert.ok(Number(blocked.headers['retry-after']) > 0);
    assert.equal(blocked.json().error, 'too_many_attempts');

    const ok = await attempt(owner, email, PASSWORD);
    assert.equal(ok.status, 200, 'the lock-out cannot be used against the owner');
  });

  test('the lock-out answer is the same for unknown accounts (no enumeration)', async () => {
    const attacker = new Client(gh.url);
    const ghost = uniqueEmail('ghost');
    for (let i = 0; i < 3; i++) assert.equal((await attempt(attacker, ghost)).status, 401);
    const res = await attempt(attacker, ghost);
    assert.equal(res.status, 429);
  });

  test('per-IP limit across accounts; spoofed X-Forwarded-For does not reset it', async () => {
    const gh2 = await startGatehouse(() => ({
      accounts: { rateLimits: { loginPerIp: 5, loginPerAccount: 100, registerPerIp: 100 } },
    }));
    try {
      const c = new Client(gh2.url);
      for (let i = 0; i < 5; i++)
        assert.equal(
          (await attempt(c, uniqueEmail('spray'), 'wrong password here', { 'x-forwarded-for': `203.0.113.${i}` }))
            .status,
          401,
        );
      const res = await attempt(c, uniqueEmail('spray'), 'wrong password here', { 'x-forwarded-for': '198.51.100.99' });
      assert.equal(res.status, 429);
    } finally {
      await gh2.close();
    }
  });

  test('behind a trusted proxy, limits follow the real client address', async () => {
    const gh3 = await startGatehouse(() => ({
      trustedProxies: ['loopback'],
      accounts: { rateLimits: { loginPerIp: 2, loginPerAccount: 100, registerPerIp: 100 } },
    }));
    try {
      const c = new Client(gh3.url);
      for (let i = 0; i < 2; i++)
        await attempt(c, uniqueEmail('p'), 'wrong password here', { 'x-forwarded-for': '203.0.113.7' });
      assert.equal(
        (await attempt(c, uniqueEmail('p'), 'wrong password here', { 'x-forwarded-for': '203.0.113.7' })).status,
        429,
      );
      assert.equal(
        (await attempt(c, uniqueEmail('p'), 'wrong password here', { 'x-forwarded-for': '203.0.113.8' })).status,
        401,
        'another client behind the same proxy is not punished',
      );
    } finally {
      await gh3.close();
    }
  });

  test('a forged device cookie is worth nothing', async () => {
    const gh4 = await startGatehouse(() => ({
      accounts: { rateLimits: { loginPerIp: 100, loginPerAccount: 3, registerPerIp: 100 } },
    }));
    try {
      const email = uniqueEmail('forge');
      await registerJson(new Client(gh4.url), email);
      // A device cookie issued for another account does not transfer either.
      const other = new Client(gh4.url);
      const otherEmail = uniqueEmail('other');
      await registerJson(other, otherEmail);
      await other.postJson('/.auth/login', { email: otherEmail, password: PASSWORD });
      for (const device of [
        'AAAAAAAAAAAAAAAAAAAAAA.forged',
        'AAAAAAAAAAAAAAAAAAAAAA.forged',
        other.jar.get('gatehouse-device')!,
      ]) {
        const attacker = new Client(gh4.url);
        attacker.jar.set('gatehouse-device', device);
        assert.equal((await attempt(attacker, email)).status, 401);
      }
      const attacker = new Client(gh4.url);
      attacker.jar.set('gatehouse-device', other.jar.get('gatehouse-device')!);
      assert.equal(
        (await attempt(attacker, email, PASSWORD)).status,
        429,
        'all three failures counted against the untrusted allowance',
      );
    } finally {
      await gh4.close();
    }
  });

  test('registrations per IP are limited (security.md #45)', async () => {
    const c = new Client(gh.url);
    let last = 0;
    for (let i = 0; i < 5; i++)
      last = (await c.postJson('/.auth/register', { email: uniqueEmail('flood'), password: PASSWORD })).status;
    assert.equal(last, 429);
  });
});

describe('throttling under concurrency', () => {
  test('parallel guesses cannot all slip under the limit', async () => {
    const gh = await startGatehouse(() => ({
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 3, registerPerIp: 100 } },
    }));
    try {
      const email = uniqueEmail('race');
      await registerJson(new Client(gh.url), email);
      const results = await Promise.all(
        Array.from({ length: 30 }, () =>
          new Client(gh.url).postJson('/.auth/login', { email, password: 'wrong password here' }),
        ),
      );
      const statuses = results.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 401).length, 3, `statuses: ${statuses.join(',')}`);
      assert.equal(statuses.filter((s) => s === 429).length, 27);
    } finally {
      await gh.close();
    }
  });

  test('successful sign-ins do not use up the allowance', async () => {
    const gh = await startGatehouse(() => ({
      accounts: { rateLimits: { loginPerIp: 3, loginPerAccount: 3, registerPerIp: 100 } },
    }));
    try {
      const email = uniqueEmail('ok');
      await registerJson(new Client(gh.url), email);
      for (let i = 0; i < 6; i++)
        assert.equal(
          (await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD })).status,
          200,
          `sign-in ${i + 1}`,
        );
    } finally {
      await gh.close();
    }
  });
});

describe('a sign-in flood, and the change-password form as a guessing oracle', () => {
  test('a flood of sign-ins beyond what argon2 can hash gets fast 503s with Retry-After, not a stalled server (security.md #87)', async () => {
    const gh = await startGatehouse(() => ({
      accounts: { rateLimits: { loginPerIp: 10_000, loginPerAccount: 10_000, registerPerIp: 100 } },
    }));
    // Enough connections for the flood to arrive at once (the shared test agent keeps 64).
    const wide = new Agent({ connections: 300 });
    try {
      const email = uniqueEmail('flood');
      await registerJson(new Client(gh.url), email);
      // Two hashes run at once and 64 wait; 200 at once are far more than that.
      const done: { status: number; at: number; retryAfter?: string; error?: string }[] = [];
      let healthAt: number | undefined;
      let healthStatus = 0;
      const flood = Array.from({ length: 200 }, (_, i) =>
        new Client(gh.url, { dispatcher: wide }).postJson('/.auth/login', {
          email: uniqueEmail(`flood-${i}`),
          password: 'wrong password here',
        }),
      );
      await Promise.all(
        flood.map(async (p) => {
          const r = await p;
          done.push({
            status: r.status,
            at: performance.now(),
            retryAfter: String(r.headers['retry-after']),
            error: r.json().error,
          });
          // At the first refusal the queue is full: the node must still answer at once.
          if (r.status === 503 && healthAt === undefined) {
            healthAt = -1;
            const health = await new Client(gh.url).get('/.auth/health');
            [healthStatus, healthAt] = [health.status, performance.now()];
          }
        }),
      );
      const busy = done.filter((d) => d.status === 503);
      const checked = done.filter((d) => d.status === 401);
      assert.deepEqual(
        [...new Set(done.map((d) => d.status))].sort(),
        [401, 503],
        'each attempt was either checked (401) or refused at once (503)',
      );
      assert.ok(busy.length > 0 && checked.length > 0, `${busy.length} refused, ${checked.length} checked`);
      for (const d of busy) assert.deepEqual([d.retryAfter, d.error], ['5', 'unavailable']);
      const lastChecked = Math.max(...checked.map((d) => d.at));
      assert.ok(
        busy.every((d) => d.at < lastChecked),
        'the refusals came back while the queue was still being worked off, not after waiting in it',
      );
      assert.equal(healthStatus, 200);
      assert.ok(healthAt! < lastChecked, 'the node answered other requests during the flood');
      const after = await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD });
      assert.equal(after.status, 200, 'once it is over, sign-in works');
    } finally {
      await Promise.all([gh.close(), wide.close()]);
    }
  });

  test('a stolen session guessing the current password on the change form uses up the sign-in allowance (security.md #88)', async () => {
    const gh = await startGatehouse(() => ({
      accounts: { rateLimits: { loginPerIp: 100, loginPerAccount: 3, registerPerIp: 100 } },
    }));
    try {
      const email = uniqueEmail('stolen');
      const owner = new Client(gh.url);
      await registerJson(owner, email);
      assert.equal((await owner.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
      // The thief has the session cookie, not the owner's browser (and its device cookie).
      const thief = new Client(gh.url);
      thief.jar.set('gatehouse', owner.jar.get('gatehouse')!);
      const change = (currentPassword: string) =>
        thief.postJson('/.auth/account/password', { currentPassword, password: 'a brand new passphrase' });
      for (let i = 0; i < 3; i++) {
        const wrong = await change(`guess number ${i}`);
        assert.equal(wrong.status, 401, `guess ${i + 1}`);
      }
      const blocked = await change(PASSWORD);
      assert.equal(blocked.status, 429, 'even the right current password waits now');
      assert.ok(Number(blocked.headers['retry-after']) > 0);
      assert.equal(
        (await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD })).status,
        429,
        'the same allowance as the sign-in form: guessing there instead gets nothing more',
      );
      const signIn = await owner.postJson('/.auth/login', { email, password: PASSWORD });
      assert.equal(signIn.status, 200, "the password is unchanged, and the owner's browser keeps its own allowance");
    } finally {
      await gh.close();
    }
  });
});

describe('the device cookie of a new account (security.md #42)', () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse(() => ({ accounts: { rateLimits: { loginPerIp: 20, loginPerAccount: 3 } } }));
  });
  after(() => gh.close());

  const attempt = (c: Client, email: string, password = 'wrong password here') =>
    c.postJson('/.auth/login', { email, password });

  test("the browser that registered is its owner's too: an attacker's lock-out does not keep it out", async () => {
    const email = uniqueEmail('new-owner');
    const owner = new Client(gh.url);
    assert.equal((await owner.postJson('/.auth/register', { email, password: PASSWORD })).status, 201);
    assert.ok(owner.jar.get('gatehouse-device'), 'registration hands out the device cookie, as a sign-in does');
    await owner.postJson('/.auth/logout', {});

    const attacker = new Client(gh.url);
    for (let i = 0; i < 3; i++) assert.equal((await attempt(attacker, email)).status, 401);
    assert.equal((await attempt(attacker, email, PASSWORD)).status, 429);
    assert.equal((await attempt(owner, email, PASSWORD)).status, 200, 'the owner signs in regardless');
  });
});
