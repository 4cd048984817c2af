import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import * as oauth from 'openid-client';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { cliClient, deviceLogin } from '../oauth/helpers.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';

let gh: TestGatehouse;
let user: Client;

/** Scrapes the metrics listener; returns the text and a reader of one sample's value. */
export async function scrape(
  g: TestGatehouse,
): Promise<{ text: string; value(name: string, labels?: Record<string, string>): number }> {
  const at = g.gatehouse.metricsAddress()!;
  const res = await request(`http://127.0.0.1:${at.port}/metrics`);
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = await res.body.text();
  return {
    text,
    value(name, labels = {}) {
      let sum = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
        const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
        if (ok) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
  };
}

before(async () => {
  gh = await startGatehouse(() => ({
    metrics: { listen: '127.0.0.1:0' },
    routes: [{ path: '/public/**', access: 'public' }],
    accounts: { rateLimits: { loginPerIp: 2 } },
    tokens: { reuseGrace: 0 },
  }));
  user = new Client(gh.url);
  await registerJson(user);
});
after(() => gh.close());

describe('Prometheus metrics', () => {
  test('served on their own listener, never on the public one, with the names the issue lists', async () => {
    const { text } = await scrape(gh);
    for (const name of [
      'gatehouse_http_requests_total',
      'gatehouse_http_request_duration_seconds',
      'gatehouse_upstream_duration_seconds',
      'gatehouse_logins_total',
      'gatehouse_registrations_total',
      'gatehouse_sessions_active',
      'gatehouse_oauth_tokens_total',
      'gatehouse_refresh_reuse_total',
      'gatehouse_rate_limited_total',
      'gatehouse_store_duration_seconds',
      'gatehouse_store_errors_total',
      'gatehouse_cache_duration_seconds',
      'gatehouse_cache_errors_total',
      'gatehouse_mail_queue_depth',
      'gatehouse_signing_key_age_seconds',
      'gatehouse_build_info',
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_seconds',
    ])
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    assert.match(text, /^gatehouse_build_info\{version="\d+\.\d+\.\d+[^"]*"\} 1$/m);
    // The public listener passes /metrics to the app like any path.
    const res = await user.get('/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/metrics', 'the app answered');
    const at = gh.gatehouse.metricsAddress()!;
    assert.equal(at.address, '127.0.0.1');
    assert.equal((await request(`http://127.0.0.1:${at.port}/other`)).statusCode, 404);
    // A request target in absolute form naming the Host is served like its origin-form; another host is refused.
    const host = `127.0.0.1:${at.port}`;
    const absolute = await rawRequest(
      at.port,
      `GET http://${host}/metrics HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(absolute.status, 200);
    assert.match(absolute.text, /^# TYPE gatehouse_build_info /m);
    const other = await rawRequest(at.port, `GET http://evil.example/metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    assert.equal(other.status, 400);
    assert.equal(other.closed, true);
  });

  test('values move with real traffic: requests by app, kind and status class, durations, sessions', async () => {
    const before = await scrape(gh);
    for (let i = 0; i < 3; i++) assert.equal((await user.get('/hello')).status, 200);
    assert.equal((await user.get('/status/503')).status, 503);
    assert.equal((await new Client(gh.url).get('/private', { accept: 'application/json' })).status, 401);
    assert.equal((await user.get('/.auth/me')).status, 200);
    assert.equal((await user.get('/.well-known/jwks.json')).status, 200);
    const after = await scrape(gh);
    const delta = (name: string, labels: Record<string, string>) =>
      after.value(name, labels) - before.value(name, labels);
    assert.equal(delta('gatehouse_http_requests_total', { app: 'app', kind: 'proxied', status: '2xx' }), 3);
    assert.equal(delta('gatehouse_http_requests_total', { app: 'app', kind: 'proxied', status: '5xx' }), 1);
    assert.equal(delta('gatehouse_http_requests_total', { app: 'app', kind: 'proxied', status: '4xx' }), 1);
    assert.equal(delta('gatehouse_http_requests_total', { kind: 'own', status: '2xx' }), 1);
    assert.equal(delta('gatehouse_http_requests_total', { kind: 'well_known', status: '2xx' }), 1);
    assert.equal(delta('gatehouse_http_request_duration_seconds_count', { app: 'app', kind: 'proxied' }), 5);
    assert.equal(
      delta('gatehouse_upstream_duration_seconds_count', { app: 'app' }),
      4,
      'the 401 never reached the app',
    );
    // Store round trips are timed by area and method (the sign-up's session write); a signed-in
    // request answered from SQLite's in-process session cache makes none, and is not timed.
    assert.ok(after.value('gatehouse_store_duration_seconds_count', { op: 'sessions.create' }) >= 1);
    assert.equal(after.value('gatehouse_store_duration_seconds_count', { op: 'sessions.cachedWithUser' }), 0);
    assert.ok(after.value('gatehouse_sessions_active') >= 1);
    assert.ok(after.value('gatehouse_signing_key_age_seconds') >= 0);
    assert.ok(delta('gatehouse_cache_duration_seconds_count', {}) >= 0);
  });

  test('sign-ins, registrations, rate limits, OAuth tokens and refresh reuse are counted', async () => {
    const before = await scrape(gh);
    const email = uniqueEmail('metrics');
    const browser = new Client(gh.url);
    await registerJson(browser, email);
    assert.equal((await browser.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++)
      statuses.push(
        (await new Client(gh.url).postJson('/.auth/login', { email, password: 'not the password' })).status,
      );
    assert.ok(statuses.includes(401) && statuses.includes(429), statuses.join());
    const config = await cliClient(gh);
    const tokens = await deviceLogin(gh, browser, config);
    const rotated = await oauth.refreshTokenGrant(config, tokens.refresh_token!);
    assert.ok(rotated.refresh_token);
    // The first refresh token again (no reuse grace here): the login is revoked.
    await assert.rejects(oauth.refreshTokenGrant(config, tokens.refresh_token!));
    const after = await scrape(gh);
    const delta = (name: string, labels: Record<string, string> = {}) =>
      after.value(name, labels) - before.value(name, labels);
    assert.equal(delta('gatehouse_registrations_total'), 1);
    assert.equal(delta('gatehouse_logins_total', { method: 'password', outcome: 'success' }), 1);
    assert.equal(
      delta('gatehouse_logins_total', { method: 'password', outcome: 'failure' }),
      statuses.filter((s) => s === 401).length,
    );
    assert.equal(
      delta('gatehouse_logins_total', { method: 'password', outcome: 'throttled' }),
      statuses.filter((s) => s === 429).length,
    );
    assert.equal(delta('gatehouse_rate_limited_total', { limit: '/login' }), statuses.filter((s) => s === 429).length);
    assert.equal(delta('gatehouse_oauth_tokens_total', { grant: 'device_code', outcome: 'success' }), 1);
    assert.ok(delta('gatehouse_oauth_tokens_total', { grant: 'device_code', outcome: 'authorization_pending' }) >= 0);
    assert.equal(delta('gatehouse_oauth_tokens_total', { grant: 'refresh_token', outcome: 'success' }), 1);
    assert.equal(delta('gatehouse_oauth_tokens_total', { grant: 'refresh_token', outcome: 'invalid_grant' }), 1);
    assert.equal(delta('gatehouse_refresh_reuse_total'), 1);
  });

  test('label values are bounded: paths, hosts and users never become labels', async () => {
    for (let i = 0; i < 5; i++) await user.get(`/unique-${i}-${Date.now()}`);
    await user.get('/x', { host: 'attacker.example' });
    const { text } = await scrape(gh);
    assert.doesNotMatch(text, /unique-|attacker\.example|@example\.com/);
    const apps = new Set([...text.matchAll(/app="([^"]*)"/g)].map((m) => m[1]));
    assert.deepEqual([...apps].sort(), ['-', 'app']);
  });
});

describe('metrics off', () => {
  test('without metrics: nothing listens and requests are served the same', async () => {
    const plain = await startGatehouse();
    try {
      assert.equal(plain.gatehouse.metrics, undefined);
      assert.equal(plain.gatehouse.metricsAddress(), undefined);
      assert.equal((await new Client(plain.url).get('/.auth/me')).status, 401);
    } finally {
      await plain.close();
    }
  });
});

describe('gatehouse check on metrics', () => {
  test('warns when metrics listen on a non-loopback address, refuses the public port (security.md #188)', async () => {
    const { ConfigSchema } = await import('../../src/config/schema.ts');
    const { lintNetwork } = await import('../../src/server/lint.ts');
    const lint = (listen: string) =>
      lintNetwork(
        ConfigSchema.parse({
          publicUrl: 'http://127.0.0.1:8080',
          upstream: 'http://127.0.0.1:3000',
          metrics: { listen },
        }),
      ).filter((w) => w.key === 'metrics.listen');
    assert.deepEqual(lint('127.0.0.1:9464'), []);
    assert.deepEqual(lint('[::1]:9464'), []);
    assert.match(lint('0.0.0.0:9464')[0]!.message, /not a loopback address/);
    assert.equal(lint('127.0.0.1:8080')[0]!.severity, 'error');
    assert.throws(() =>
      ConfigSchema.parse({ publicUrl: 'http://x', upstream: 'http://y', metrics: { listen: '9464' } }),
    );
  });
});
