import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { lintConfig } from '../../src/cli/lint.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * forwardAuth.cacheFor: which /.auth/check answers a proxy may keep, and for how long. The
 * real nginx cache in front (examples/nginx-forward-auth-cached.conf) is run by
 * test/proxies/nginx-cached.test.ts.
 */

const HOST = 'app.example.test';
let gh: TestGatehouse;
let cookie: string;
let now = Date.now();

before(async () => {
  gh = await startGatehouse(
    () => ({
      publicUrl: `https://${HOST}`,
      trustedProxies: ['loopback'],
      forwardAuth: { cacheFor: '10s' },
      routes: [
        { path: '/public/**', access: 'public' },
        { path: '/blocked/**', access: 'deny' },
      ],
    }),
    { clock: () => now },
  );
  const c = new Client(gh.url);
  const res = await c.postJson(
    '/.auth/register',
    { email: uniqueEmail('fac'), password: PASSWORD },
    { host: HOST, 'x-forwarded-proto': 'https' },
  );
  assert.equal(res.status, 201, res.text);
  cookie = c.cookieHeader()!;
});
after(() => gh.close());

const ask = (uri: string, extra: Record<string, string> = {}) =>
  new Client(gh.url).fetch('/.auth/check', {
    headers: { host: HOST, 'x-original-uri': uri, 'x-original-method': 'GET', 'x-forwarded-proto': 'https', ...extra },
  });

describe('forwardAuth.cacheFor: what /.auth/check lets a proxy keep', () => {
  test('an allowing answer may be kept for cacheFor, privately, per Cookie and Authorization', async () => {
    const res = await ask('/private/x?q=1', { cookie });
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'private, max-age=10');
    assert.equal(res.headers['x-accel-expires'], '10');
    assert.equal(res.headers.vary, 'Cookie, Authorization');
    assert.equal(res.headers['set-cookie'], undefined);
    const anon = await ask('/public/x');
    assert.equal(anon.status, 200);
    assert.equal(anon.headers['x-accel-expires'], '10', 'a public answer is the same for everyone with this cookie');
  });

  test('denials, sign-in answers, WebSocket handshakes and method overrides are never kept', async () => {
    for (const [what, res] of [
      ['no session', await ask('/private/x')],
      ['denied', await ask('/blocked/x', { cookie })],
      ['websocket', await ask('/private/ws', { cookie, origin: `https://${HOST}`, 'sec-websocket-key': 'x' })],
      ['override', await ask('/private/x', { cookie, 'x-http-method-override': 'DELETE' })],
    ] as const) {
      assert.notEqual(res.headers['cache-control'], 'private, max-age=10', what);
      assert.match(String(res.headers['cache-control']), /no-store/, what);
      if (res.status === 200) assert.equal(res.headers['x-accel-expires'], '0', what);
    }
  });

  test('the assertion in a kept answer outlives it: a reused assertion has at least 2 × cacheFor left', async () => {
    const first = String((await ask('/private/a', { cookie })).headers['x-gatehouse-assertion']);
    const exp = decodeJwt(first).exp! * 1000;
    // With cacheFor 10s: sent again until 20 s before its exp (not 15 s, a quarter of 60 s).
    now = exp - 20_001;
    assert.equal(String((await ask('/private/a', { cookie })).headers['x-gatehouse-assertion']), first);
    now = exp - 19_000;
    const second = String((await ask('/private/a', { cookie })).headers['x-gatehouse-assertion']);
    assert.notEqual(second, first);
    assert.ok(decodeJwt(second).exp! * 1000 - now >= 20_000);
    now = Date.now();
  });
});

describe('forwardAuth.cacheFor in the config and in gatehouse check', () => {
  const base = { publicUrl: 'https://app.example.com', upstream: 'http://127.0.0.1:3000' };
  const issues = (input: Record<string, unknown>) => {
    const r = ConfigSchema.safeParse({ ...base, ...input });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  test('off by default; whole seconds up to 60s; the assertion must live more than twice as long', () => {
    assert.equal(ConfigSchema.parse(base).forwardAuth.cacheFor, 0);
    assert.deepEqual(issues({ forwardAuth: { cacheFor: '60s' }, tokens: { assertionTtl: '5m' } }), []);
    assert.match(issues({ forwardAuth: { cacheFor: '61s' } }).join(), /forwardAuth\.cacheFor: expected a duration/);
    assert.match(issues({ forwardAuth: { cacheFor: 1.5 } }).join(), /whole seconds/);
    assert.match(
      issues({ forwardAuth: { cacheFor: '30s' }, tokens: { assertionTtl: '60s' } }).join(),
      /assertionTtl must be more than twice forwardAuth\.cacheFor/,
    );
    assert.deepEqual(issues({ forwardAuth: { cacheFor: '29s' } }), []);
  });

  test('gatehouse check states the revocation delay', () => {
    const warn = (cacheFor: string) =>
      lintConfig(ConfigSchema.parse({ ...base, forwardAuth: { cacheFor } })).find(
        (w) => w.key === 'forwardAuth.cacheFor',
      );
    assert.equal(warn('0s'), undefined);
    assert.match(warn('5s')!.message, /revoked session.*for up to 5s/);
  });
});
