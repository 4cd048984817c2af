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
 * this test controls, and comes back. Sign-in must fail closed: without counters there is no
 * brute-force limit, so logging in without them would hand an attacker unlimited guesses.
 */
const service = await redis();

describeOrSkip('cache down (Redis through a relay)', { skip: service.skip }, () => {
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
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.json(), { status: 'unavailable', store: 'ok', cache: 'unavailable' });
    assert.equal((await new Client(gh.url).get('/.auth/health')).status, 200);
    assert.deepEqual(
      gh.logs.filter((l) => l.status === 500 || l.event === 'internal_error'),
      [],
      'an outage is a 503, never an internal error',
    );

    await relay.restore();
    await eventually('ready again', async () => (await new Client(gh.url).get('/.auth/ready')).status === 200);

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
