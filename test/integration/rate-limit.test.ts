import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import WebSocket from 'ws';
import { Client } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { Clock, deviceLogin, signedInBrowser, withBearer } from '../oauth/helpers.ts';
import { redis, REDIS_URL } from '../faults/services.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * routes[].rateLimit (README: `routes[]` in Configuration; security.md #261): per user, or per client address for
 * requests nobody is signed in to, counted in the cache (memory here; Redis shared by two nodes
 * below), with real sessions and real access tokens.
 */

const routes = [
  { path: '/api/**', rateLimit: { requests: 3, per: '1m' } },
  { path: '/open/**', access: 'public' as const, rateLimit: { requests: 2, per: '1m' } },
  { path: '/ws', access: 'public' as const, rateLimit: { requests: 2, per: '1m' } },
  { path: '/quiet/**', access: 'public' as const, rateLimit: { requests: 2, per: '1m', headers: false } },
  { path: '/free/**', access: 'public' as const },
];
const JSON_ = { accept: 'application/json' };

/**
 * The limiter's clock, moved to just after the start of a minute before each test that counts:
 * windows are aligned to the clock and the sliding window gives back part of an allowance as soon
 * as the next one begins, so a test that crossed a boundary (a device login takes 5 s) would see a
 * request let in that it expects refused. Moved forward only, past two windows (nothing carried).
 */
const clock = new Clock();
function freshWindow(): void {
  clock.advance(120_000 - (clock.now() % 60_000) + 100);
}

describe('routes[].rateLimit', () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse(() => ({ routes, metrics: { listen: '127.0.0.1:0' } }), { clock: clock.now });
  });
  beforeEach(freshWindow);
  after(() => gh?.close());

  test('each user has their own allowance, their CLI login shares it; past it 429 with Retry-After, a page for a browser', async () => {
    const { browser: alice } = await signedInBrowser(gh);
    const { browser: bob } = await signedInBrowser(gh);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await alice.get(`/api/n${i}`, JSON_)).status);
    assert.deepEqual(statuses, [200, 200, 200]);
    const seen = gh.upstream.requests.length;
    const refused = await alice.get('/api/n3', JSON_);
    assert.equal(refused.status, 429);
    assert.equal(refused.json().error, 'rate_limited');
    const retry = Number(refused.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After: ${retry}`);
    assert.equal(gh.upstream.requests.length, seen, 'the app never saw it');
    const page = await alice.html('/api/n4');
    assert.equal(page.status, 429);
    assert.match(page.text, /Too many requests: try again in \d+ s/);
    // Alice's CLI login is Alice: no fresh allowance for a new token.
    const tokens = await deviceLogin(gh, alice);
    assert.equal((await withBearer(gh, '/api/cli', tokens.access_token)).status, 429);
    // Bob has his own.
    assert.equal((await bob.get('/api/n0', JSON_)).status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${gh.gatehouse.metricsAddress()!.port}/metrics`)).text();
    assert.match(metrics, /^gatehouse_rate_limited_total\{limit="app \/api\/\*\*"\} 3$/m);
  });

  test('nobody signed in: counted by client address, which a forged X-Forwarded-For does not change; a signed-in user is counted apart', async () => {
    const anonymous = new Client(gh.url);
    assert.equal((await anonymous.get('/open/a', JSON_)).status, 200);
    assert.equal((await anonymous.get('/open/b', JSON_)).status, 200);
    assert.equal((await anonymous.get('/open/c', JSON_)).status, 429);
    assert.equal(
      (await new Client(gh.url).get('/open/d', { ...JSON_, 'x-forwarded-for': '203.0.113.9' })).status,
      429,
      'no proxy is trusted: the header names no other client',
    );
    const { browser } = await signedInBrowser(gh);
    assert.equal((await browser.get('/open/e', JSON_)).status, 200);
  });

  test('the answers say the allowance and what is left (RateLimit-Policy, RateLimit), beside an app’s own policy', async () => {
    const { browser } = await signedInBrowser(gh);
    const fields = async (path: string) => {
      const res = await browser.get(path, JSON_);
      return [res.status, res.headers['ratelimit-policy'], res.headers.ratelimit, res.headers['retry-after']];
    };
    const policy = '"gatehouse";q=3;w=60';
    assert.deepEqual(await fields('/api/a'), [200, policy, '"gatehouse";r=2', undefined]);
    // An app that states its own policy keeps it; Gatehouse's follows in the same lists.
    assert.deepEqual(await fields('/api/app-ratelimit'), [
      200,
      `"app";q=1000;w=3600, ${policy}`,
      '"app";r=999;t=3600, "gatehouse";r=1',
      undefined,
    ]);
    const last = await fields('/api/c');
    assert.equal(last[0], 200);
    assert.match(String(last[2]), /^"gatehouse";r=0;t=\d+$/, 'nothing left: when the next one is let in');
    const wait = Number(String(last[2]).split('t=')[1]);
    assert.deepEqual(
      await fields('/api/d'),
      [429, policy, `"gatehouse";r=0;t=${wait}`, String(wait)],
      'as Retry-After says',
    );
    // A rule without rateLimit says nothing; one with headers: false counts without saying.
    assert.deepEqual((await fields('/free/x')).slice(1, 3), [undefined, undefined]);
    const anonymous = new Client(gh.url);
    const quiet = [];
    for (let i = 0; i < 3; i++) {
      const res = await anonymous.get(`/quiet/${i}`, JSON_);
      quiet.push([res.status, res.headers.ratelimit]);
    }
    assert.deepEqual(quiet, [
      [200, undefined],
      [200, undefined],
      [429, undefined],
    ]);
  });

  test('WebSocket upgrades count as requests; the 429 says the allowance', async () => {
    const open = () =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${gh.port}/ws`, { headers: { origin: gh.url } });
        ws.once('open', () => {
          ws.close();
          resolve(101);
        });
        ws.once('unexpected-response', (_req, res) => {
          const retry = res.headers['retry-after'];
          assert.ok(Number(retry) >= 1);
          assert.equal(res.headers['ratelimit-policy'], '"gatehouse";q=2;w=60');
          assert.equal(res.headers.ratelimit, `"gatehouse";r=0;t=${retry}`, 'as Retry-After says');
          resolve(res.statusCode!);
        });
      });
    assert.deepEqual([await open(), await open(), await open()], [101, 101, 429]);
  });
});

test('a cache that cannot count lets requests through (whenDown: closed is for the sign-in forms), and /ready says it is down', async () => {
  const nothing = await freePort();
  const gh = await startGatehouse(() => ({
    routes,
    cache: { type: 'redis' as const, url: `redis://127.0.0.1:${nothing}`, whenDown: 'closed' as const },
  }));
  try {
    const c = new Client(gh.url);
    for (let i = 0; i < 4; i++) {
      const res = await c.get(`/open/${i}`, JSON_);
      assert.deepEqual([res.status, res.headers.ratelimit], [200, undefined], 'nothing counted, nothing said');
    }
    const ready = await c.get('/.auth/ready', JSON_);
    assert.deepEqual(ready.json().unavailable, ['cache']);
  } finally {
    await gh.close();
  }
});

const redisService = await redis();

describeOrSkip('routes[].rateLimit on Redis', { skip: redisService.skip }, () => {
  test('two nodes on one Redis share the allowance', async () => {
    const upstream = await startUpstream();
    const prefix = `gh-test-rl-${process.pid}-${Date.now().toString(36)}:`;
    const node = () =>
      startGatehouse(() => ({ routes, cache: { type: 'redis' as const, url: REDIS_URL, keyPrefix: prefix } }), {
        upstream,
        clock: clock.now,
      });
    const [one, two] = [await node(), await node()];
    freshWindow();
    try {
      assert.equal((await new Client(one.url).get('/open/x', JSON_)).status, 200);
      assert.equal((await new Client(two.url).get('/open/x', JSON_)).status, 200);
      assert.equal((await new Client(one.url).get('/open/x', JSON_)).status, 429);
      assert.equal((await new Client(two.url).get('/open/x', JSON_)).status, 429);
    } finally {
      await Promise.all([one.close(), two.close()]);
      await upstream.close();
    }
  });
});
