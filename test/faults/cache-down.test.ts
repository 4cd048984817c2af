import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { Relay } from './relay.ts';
import { eventually, redis, viaPort } from './services.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * Redis (the login throttle's counters) goes away under a running Gatehouse, through a relay
 * this test controls, and comes back. Sign-in is never unthrottled: without counters there is no
 * brute-force limit, so logging in without them would hand an attacker unlimited guesses. With
 * cache.whenDown: closed it fails closed (503); with local (the default) the node counts in its
 * own memory meanwhile (security.md #197). Either way /ready stays 200 (the node serves its
 * signed-in traffic) and names the cache as unavailable.
 */
const service = await redis();

describeOrSkip('cache down (Redis through a relay), whenDown: closed', { skip: service.skip }, () => {
  const keyPrefix = `gh-test-${randomBytes(5).toString('hex')}:`;
  let relay: Relay;
  let gh: TestGatehouse;

  before(async () => {
    relay = await Relay.start(service.host, service.port);
    gh = await startGatehouse(() => ({
      cache: { type: 'redis', url: viaPort(service.url, relay.port), keyPrefix, whenDown: 'closed' },
      routes: [{ path: '/public/**', access: 'public' }],
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 3, registerPerIp: 1000 } },
    }));
  });
  after(async () => {
    await gh?.close();
    await relay?.close();
    if (!service.available) return;
    const raw = new Redis(service.url, { lazyConnect: true });
    await raw.connect();
    const keys = await raw.keys(`${keyPrefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });

  test('while it is down: login and registration 503 (no unthrottled guessing), signed-in users carry on; then it all comes back', async () => {
    const email = uniqueEmail('cachedown');
    const owner = new Client(gh.url);
    await registerJson(owner, email);
    const attacker = new Client(gh.url);
    assert.equal(
      (await attacker.postJson('/.auth/login', { email, password: 'wrong guess number 1' })).status,
      401,
      'the throttle counts through Redis',
    );

    await relay.cut();

    for (const attempt of ['wrong guess number 2', 'wrong guess number 3', 'wrong guess number 4', PASSWORD]) {
      const res = await attacker.postJson('/.auth/login', { email, password: attempt });
      assert.equal(res.status, 503, `login during the outage: ${res.status} ${res.text}`);
      assert.ok(Number(res.headers['retry-after']) > 0);
      assert.doesNotMatch(res.text, /redis|ECONN|6379/i, 'generic answer');
      assert.deepEqual(res.cookies, [], 'no session or device cookie was handed out');
    }
    assert.equal(
      (await new Client(gh.url).postJson('/.auth/register', { email: uniqueEmail('x'), password: PASSWORD })).status,
      503,
      'registration is throttled too',
    );

    // Sessions live in the store, not the cache: someone already signed in is not interrupted.
    assert.equal((await owner.get('/private')).status, 200);
    assert.equal((await new Client(gh.url).get('/public/x')).status, 200);

    const ready = await new Client(gh.url).get('/.auth/ready');
    assert.equal(ready.status, 200, 'the node still serves its traffic: a balancer must not take it out');
    assert.deepEqual(ready.json(), { status: 'degraded', store: 'ok', cache: 'unavailable', unavailable: ['cache'] });
    assert.equal((await new Client(gh.url).get('/.auth/health')).status, 200);
    assert.deepEqual(
      gh.logs.filter((l) => l.status === 500 || l.event === 'internal_error'),
      [],
      'an outage is a 503, never an internal error',
    );

    await relay.restore();
    await eventually(
      'ready again',
      async () => (await new Client(gh.url).get('/.auth/ready')).json().status === 'ready',
    );

    // The guesses refused during the outage were never checked, so the account allowance is as it was: 1 of 3 used.
    assert.equal((await attacker.postJson('/.auth/login', { email, password: 'wrong guess number 5' })).status, 401);
    assert.equal((await attacker.postJson('/.auth/login', { email, password: 'wrong guess number 6' })).status, 401);
    assert.equal(
      (await attacker.postJson('/.auth/login', { email, password: PASSWORD })).status,
      429,
      'and the limit holds again after the outage',
    );
    const back = new Client(gh.url);
    assert.equal(
      (
        await back.postJson('/.auth/login', {
          email: (await registerJson(new Client(gh.url))).email,
          password: PASSWORD,
        })
      ).status,
      200,
      'sign-in works again',
    );
  });
});

describeOrSkip('cache down (Redis through a relay), whenDown: local (the default)', { skip: service.skip }, () => {
  const keyPrefix = `gh-test-${randomBytes(5).toString('hex')}:`;
  let relay: Relay;
  let gh: TestGatehouse;

  before(async () => {
    relay = await Relay.start(service.host, service.port);
    gh = await startGatehouse(() => ({
      cache: { type: 'redis', url: viaPort(service.url, relay.port), keyPrefix },
      routes: [{ path: '/public/**', access: 'public' }],
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 3, registerPerIp: 1000 } },
    }));
  });
  after(async () => {
    await gh?.close();
    await relay?.close();
    if (!service.available) return;
    const raw = new Redis(service.url, { lazyConnect: true });
    await raw.connect();
    const keys = await raw.keys(`${keyPrefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });

  test('Redis paused, then stopped: ready stays 200 naming the cache, signed-in traffic and logins work, guesses are still throttled (per node), the outage is logged once; then Redis counts again (security.md #197)', async () => {
    const email = uniqueEmail('cachelocal');
    const owner = new Client(gh.url);
    await registerJson(owner, email);
    const attacker = new Client(gh.url);
    const guess = (n: number) => attacker.postJson('/.auth/login', { email, password: `wrong guess number ${n}` });
    assert.equal((await guess(1)).status, 401, 'the throttle counts through Redis');
    const linesBefore = gh.logs.length;

    // Paused: Redis accepts and never answers. The first command waits out its timeout; from
    // then on the node knows and counts locally without asking Redis.
    relay.stall();
    assert.equal((await guess(2)).status, 401, 'checked, and counted locally');
    const quick = Date.now();
    assert.equal((await guess(3)).status, 401);
    assert.equal((await guess(4)).status, 401);
    // Asking Redis would cost each of them its 2 s command timeout (two counters at once): 4 s.
    assert.ok(Date.now() - quick < 3500, `no wait on Redis once it is known to be down (${Date.now() - quick} ms)`);
    const refused = await guess(5);
    assert.equal(refused.status, 429, `the local allowance (3) is used up: ${refused.text}`);
    assert.ok(Number(refused.headers['retry-after']) > 0);
    const ownLogin = await owner.postJson('/.auth/login', { email, password: PASSWORD });
    assert.equal(ownLogin.status, 200, 'the owner, whose browser has its device cookie, still signs in');
    const someoneElse = new Client(gh.url);
    await registerJson(someoneElse);
    assert.equal((await someoneElse.get('/private')).status, 200, 'registration works too');

    for (let i = 0; i < 30; i++) assert.equal((await owner.get('/private')).status, 200, 'signed-in traffic');
    const ready = await new Client(gh.url).get('/.auth/ready');
    assert.equal(ready.status, 200, 'a balancer keeps the node');
    assert.deepEqual(ready.json(), { status: 'degraded', store: 'ok', cache: 'unavailable', unavailable: ['cache'] });
    assert.doesNotMatch(ready.text, /redis|6379|ECONN|timeout|\d{4,}/i, 'names only: no address, error or count');

    // Stopped as well: refused connections instead of silence; still no wait, still counted.
    await relay.cut();
    const t0 = Date.now();
    assert.equal((await guess(6)).status, 429);
    assert.ok(Date.now() - t0 < 1900, `refused without waiting on Redis (${Date.now() - t0} ms)`);

    const during = gh.logs.slice(linesBefore);
    const loud = during.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal');
    assert.deepEqual(
      loud.map((l) => l.event),
      ['dependency_down'],
      'one line for the outage (security.md #196), not one per request',
    );
    assert.equal(loud[0]!.dependency, 'cache');
    assert.deepEqual(
      during.filter((l) => l.status === 500 || l.status === 503 || l.event === 'internal_error'),
      [],
      'no request failed',
    );

    await relay.restore();
    await eventually('ready again', async () => {
      const r = await new Client(gh.url).get('/.auth/ready');
      return r.status === 200 && r.json().status === 'ready';
    });
    const up = gh.logs.filter((l) => l.event === 'dependency_up');
    assert.equal(up.length, 1);
    assert.equal(up[0]!.dependency, 'cache');
    assert.ok(Number(up[0]!.failures) >= 10, `the operations served without Redis are counted (${up[0]!.failures})`);

    // Redis is asked again: it holds the failures from before the outage (and the paused
    // command, which the client sent again on reconnecting), not the local count that refused.
    assert.equal((await guess(7)).status, 401, 'the shared count decides again');
    const next = [(await guess(8)).status, (await guess(9)).status];
    assert.ok(next.includes(429), `the shared limit holds again: ${next}`);
  });
});

describeOrSkip('Redis unreachable when the node starts (whenDown: local)', { skip: service.skip }, () => {
  const keyPrefix = `gh-test-${randomBytes(5).toString('hex')}:`;
  let relay: Relay;
  let gh: TestGatehouse;

  before(async () => {
    relay = await Relay.start(service.host, service.port);
    await relay.cut();
    gh = await startGatehouse(() => ({
      cache: { type: 'redis', url: viaPort(service.url, relay.port), keyPrefix },
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 3, registerPerIp: 1000 } },
    }));
  });
  after(async () => {
    await gh?.close();
    await relay?.close();
  });

  test('the node starts and serves: sign-up and sign-in work, guesses are throttled in the node, ready is degraded; Redis is used once it answers, without a restart (security.md #197)', async () => {
    const start = gh.logs.filter((l) => l.event === 'cache_unreachable_at_start' || l.event === 'dependency_down');
    assert.deepEqual(
      start.map((l) => l.event),
      ['cache_unreachable_at_start', 'dependency_down'],
    );
    const ready = await new Client(gh.url).get('/.auth/ready');
    assert.equal(ready.status, 200);
    assert.equal(ready.json().status, 'degraded');

    const email = uniqueEmail('cachestart');
    const owner = new Client(gh.url);
    await registerJson(owner, email);
    assert.equal((await owner.get('/private')).status, 200, 'signed in');
    const attacker = new Client(gh.url);
    const guess = (n: number) => attacker.postJson('/.auth/login', { email, password: `wrong guess number ${n}` });
    for (let i = 1; i <= 3; i++) assert.equal((await guess(i)).status, 401);
    assert.equal((await guess(4)).status, 429, 'throttled without Redis: counted in the node');

    await relay.restore();
    await eventually(
      'Redis picked up',
      async () => (await new Client(gh.url).get('/.auth/ready')).json().status === 'ready',
    );
    assert.equal(gh.logs.filter((l) => l.event === 'dependency_up' && l.dependency === 'cache').length, 1);
    // Redis counts now: its counter for this account starts from nothing (the node's local one is
    // left behind), so the next guesses are counted there, up to the limit again.
    const raw = new Redis(service.url, { lazyConnect: true });
    await raw.connect();
    try {
      assert.equal((await guess(5)).status, 401, 'counted in Redis from zero');
      const keys = await raw.keys(`${keyPrefix}*`);
      assert.ok(keys.length > 0, 'the counters are in Redis');
      if (keys.length) await raw.del(...keys);
    } finally {
      raw.disconnect();
    }
  });
});
