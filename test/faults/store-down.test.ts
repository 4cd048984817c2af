import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, registerJson, uniqueEmail, PASSWORD } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';
import { Relay } from './relay.ts';
import { eventually, pgSchema, postgres } from './services.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * PostgreSQL goes away under a running Gatehouse (through a relay this test controls; the
 * machine's PostgreSQL is never touched) and comes back. security.md #60: protected routes
 * fail closed, public routes keep working, recovery needs no restart.
 */
const service = await postgres();

describeOrSkip('store down (PostgreSQL through a relay)', { skip: service.skip }, () => {
  let relay: Relay;
  let db: Awaited<ReturnType<typeof pgSchema>>;
  let gh: TestGatehouse;
  let user: Client;
  let userId: string;

  before(async () => {
    relay = await Relay.start(service.host, service.port);
    db = await pgSchema('storedown');
    gh = await startGatehouse(() => ({
      store: { type: 'postgres', url: db.url(relay.port), poolSize: 3 },
      routes: [{ path: '/public/**', access: 'public' }],
    }));
    user = new Client(gh.url);
    const email = uniqueEmail('outage');
    userId = (await registerJson(user, email)).id;
    assert.equal((await user.get('/private')).status, 200);
  });
  after(async () => {
    await gh?.close();
    await relay?.close();
    await db?.drop();
  });

  const assertFailsClosed = (res: Awaited<ReturnType<Client['get']>>, what: string) => {
    assert.equal(res.status, 503, `${what}: ${res.status} ${res.text.slice(0, 200)}`);
    assert.ok(Number(res.headers['retry-after']) > 0, `${what}: Retry-After tells clients when to come back`);
    // Generic: nothing about which database, where, or why.
    for (const secret of [
      /postgres/i,
      /sql/i,
      /ECONN/,
      /search_path/,
      new RegExp(db.schema),
      new RegExp(`:(${relay.port}|${service.port})\\b`),
      /\bat \S+ \(/,
    ]) {
      assert.doesNotMatch(res.text, secret, `${what} leaks nothing about the database`);
    }
  };

  test('while it is down: protected routes 503, public routes proxy, ready names the store, health is fine; then it all comes back', async () => {
    await relay.cut();

    // A signed-in user on a protected page: refused, not let through without a check.
    const api = await user.get('/private');
    assertFailsClosed(api, 'protected API call');
    assert.equal(api.json().error, 'unavailable');
    const page = await user.html('/private/page');
    assertFailsClosed(page, 'protected HTML page');
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(page.text, /temporarily unavailable/i);

    // A WebSocket to a protected path is refused before the upgrade, the same way.
    const ws = await rawRequest(
      gh.port,
      `GET /private/ws HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: ${user.cookieHeader()}\r\n\r\n`,
    );
    assert.equal(ws.status, 503, ws.text.split('\r\n')[0]);

    // Signing in and registering need the store: 503 too.
    assertFailsClosed(
      await new Client(gh.url).postJson('/.auth/login', { email: uniqueEmail('x'), password: PASSWORD }),
      'login',
    );
    assertFailsClosed(
      await new Client(gh.url).postJson('/.auth/register', { email: uniqueEmail('x'), password: PASSWORD }),
      'register',
    );

    // Public pages still work, with or without a session cookie; the app just isn't told who it is.
    const before = gh.upstream.requests.length;
    const anon = await new Client(gh.url).get('/public/anon');
    assert.equal(anon.status, 200);
    const withCookie = await user.get('/public/with-cookie');
    assert.equal(withCookie.status, 200);
    assert.equal(gh.upstream.requests.length, before + 2, 'both reached the app');
    assert.equal(gh.upstream.last().headers['x-user-id'], undefined);

    // Probes: not ready (and why), but alive, so an orchestrator waits instead of restarting.
    const ready = await new Client(gh.url).get('/.auth/ready');
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.json(), {
      status: 'unavailable',
      store: 'unavailable',
      cache: 'ok',
      unavailable: ['store'],
    });
    assert.equal((await new Client(gh.url).get('/.auth/health')).status, 200);

    // The operator sees why in the log, once for the outage, not once per refused request
    // (security.md #196); the user never does.
    const down = gh.logs.filter((l) => l.event === 'dependency_down');
    assert.equal(down.length, 1, 'the outage is logged once');
    assert.equal(down[0]!.dependency, 'store');
    assert.equal(down[0]!.level, 'error');
    assert.match((down[0]!.err as { message: string }).message, /unavailable/);
    assert.deepEqual(
      gh.logs.filter((l) => l.status === 500 || l.event === 'internal_error'),
      [],
      'an outage is a 503, never an internal error',
    );

    await relay.restore();

    await eventually('ready again', async () => (await new Client(gh.url).get('/.auth/ready')).status === 200);
    const up = gh.logs.filter((l) => l.event === 'dependency_up');
    assert.equal(up.length, 1, 'and its end once');
    assert.equal(up[0]!.dependency, 'store');
    assert.ok(Number(up[0]!.failures) >= 6, `with the count of refused operations (${up[0]!.failures})`);
    const back = await user.get('/private');
    assert.equal(back.status, 200, 'the session from before the outage still works');
    assert.equal(gh.upstream.last().headers['x-user-id'], userId);
    const fresh = new Client(gh.url);
    await registerJson(fresh);
    assert.equal((await fresh.get('/private')).status, 200, 'new sign-ups work again');
  });

  test('a purge of expired records that fails is logged, each with which purge and why; the next one runs', async () => {
    const failures = () => gh.logs.filter((l) => l.event === 'job_failed');
    const earlier = failures().length;
    await relay.cut();
    try {
      await gh.gatehouse.runJobs(); // what the jobs.interval timer runs
    } finally {
      await relay.restore();
    }
    const failed = failures().slice(earlier);
    assert.deepEqual(failed.map((l) => l.job).sort(), [
      'audit',
      'email_tokens',
      'mfa_pending',
      'oauth',
      'provider_flows',
      'sessions',
    ]);
    for (const l of failed) {
      assert.equal(l.level, 'warn');
      assert.match((l.err as { message: string }).message, /\S/, 'the reason is given');
      assert.doesNotMatch(JSON.stringify(l), new RegExp(db.schema), 'nothing about the database beyond the error');
    }
    await eventually('ready again', async () => (await new Client(gh.url).get('/.auth/ready')).status === 200);
    const results = await gh.gatehouse.runJobs();
    assert.deepEqual(
      results.map((r) => r.outcome),
      ['ran', 'ran', 'ran', 'ran', 'ran', 'ran'],
    );
    assert.equal(failures().length, earlier + 6, 'once the store answers, purging works again');
    assert.equal(gh.logs.filter((l) => l.event === 'job_done').length >= 6, true, 'each run is logged');
  });
});
