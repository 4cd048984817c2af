import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ConfigSchema } from '../../src/config/schema.ts';
import { createLogger } from '../../src/log/index.ts';
import { Gatehouse } from '../../src/server/gatehouse.ts';
import { hashSessionId } from '../../src/sessions/index.ts';
import { openStore, type Store } from '../../src/store/index.ts';
import { Writable } from 'node:stream';
import pg from 'pg';
import { postgres } from '../faults/services.ts';
import { Client, registerJson } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { follow, signIn } from '../helpers/oauth.ts';
import { rawDb, startLab, type Lab, labGatehouse } from '../helpers/providers.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { until } from '../helpers/timing.ts';

/**
 * tokenRelay, the backend-for-frontend pattern, against a real IdP whose access tokens live
 * three seconds: they expire during the tests and are refreshed with rotating refresh tokens.
 * Time passes for real; every wait polls a condition (the IdP refusing a token, the app
 * seeing a new one), never a fixed sleep. Each test signs in its own IdP account, so the
 * tests run in parallel and count only their own refreshes.
 */

const TTL_S = 3;
let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab({ gatehouses: 3, a: { accessTokenTtl: TTL_S } });
  gh = await labGatehouse(lab, {
    tokenRelay: 'a',
    routes: [
      { path: '/public/**', access: 'public' },
      { path: '/api/**', unauthenticated: '401' },
      { path: '/norelay/**', tokenRelay: false },
    ],
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

let accounts = 0;
let lock: Promise<unknown> = Promise.resolve();
/** Runs one sign-in at a time: the IdP's autoLogin names the account of the flow under way. */
function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const run = lock.then(fn, fn);
  lock = run.catch(() => {});
  return run;
}

/** A fresh IdP account and a browser signed in with it; the first access token it got. */
function signedIn(node = gh): Promise<{ c: Client; account: string; first: string }> {
  return exclusive(async () => {
    const account = `relay-${accounts++}`;
    lab.a.accounts.set(account, { sub: account, email: `${account}@example.com`, email_verified: true });
    const c = new Client(node.url);
    lab.a.autoLogin = account;
    const hops = await signIn(c, 'a');
    assert.equal(hops.at(-1)!.res.status, 200);
    const first = lab.a.issued.filter((t) => t.accountId === account).at(-1)!.access_token!;
    return { c, account, first };
  });
}

const bearer = (res: { json(): { headers: Record<string, string> } }) =>
  res.json().headers.authorization?.replace(/^Bearer /, '');
const expired = (token: string) =>
  until(`the IdP to refuse ${token.slice(0, 6)}…`, async () => !(await lab.a.accepts(token)));

describe('tokenRelay', { concurrency: true }, () => {
  test('the access token expires during the test and is refreshed before use, once; the refresh token rotates', async () => {
    const { c, account, first } = await signedIn();
    const page = await c.html('/reports');
    assert.equal(bearer(page), first);
    const rotatedFrom = lab.a.issued.filter((t) => t.accountId === account).at(-1)!.refresh_token;
    // Keep using the app until it is given another token.
    const next = await until('a refreshed token', async () => {
      const t = bearer(await c.get('/reports'));
      return t !== first && t;
    });
    assert.equal(lab.a.refreshCount(account), 1, 'one refresh for that token');
    assert.equal(await lab.a.accepts(next), true, 'the new token works at the IdP');
    await expired(first);
    const now = bearer(await c.get('/reports'))!;
    assert.notEqual(now, first);
    assert.equal(
      await lab.a.accepts(now),
      true,
      'after the first token expired, the app still gets one the IdP accepts',
    );
    const owner = `session:${hashSessionId(c.jar.get('gatehouse')!)}`;
    const row = (await gh.gatehouse.store.providerTokens.get(owner, 'a'))!;
    assert.equal(row.version, 1 + lab.a.refreshCount(account), 'stored at sign-in, then once per refresh');
    assert.equal(row.leaseHolder, null);
    assert.ok(
      lab.a.issued.some((t) => t.access_token === next && t.refresh_token && t.refresh_token !== rotatedFrom),
      'the IdP rotated the refresh token',
    );
    assert.ok(gh.logs.some((l) => l.event === 'provider_token_refreshed' && l.rotated === true));
  });

  test('twenty concurrent requests with an expired token share one refresh', async () => {
    const { c, account, first } = await signedIn();
    await c.get('/api/warm');
    await expired(first);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => c.get(`/api/parallel/${i}`)));
    assert.deepEqual(
      results.map((r) => r.status),
      Array(20).fill(200),
    );
    const tokens = new Set(results.map(bearer));
    assert.equal(tokens.size, 1, 'every request got the same new token');
    assert.ok(!tokens.has(first));
    assert.equal(lab.a.refreshCount(account), 1, 'a rotating refresh token spent exactly once');
    assert.equal(await lab.a.accepts([...tokens][0]!), true);
  });

  test('a refresh the provider refuses: the browser signs in again and lands back (no loop), an API call gets 401', async () => {
    const { c, account, first } = await signedIn();
    await c.get('/api/warm');
    await lab.a.revokeRefreshTokens(account);
    await expired(first);
    const api = await c.get('/api/orders');
    assert.equal(api.status, 401);
    assert.equal(api.json().error, 'provider_token_required');
    assert.match(api.headers['www-authenticate'] as string, /error="invalid_token"/);
    assert.ok(
      gh.logs.some((l) => l.event === 'provider_token_refresh_failed' && l.permanent === true),
      'logged, with the reason',
    );

    const page = await c.html('/reports/q3?x=1');
    assert.equal(page.status, 302);
    assert.equal(page.location, `${gh.url}/.auth/login/a?rd=${encodeURIComponent('/reports/q3?x=1')}`);
    const hops = await exclusive(() => {
      lab.a.autoLogin = account;
      return follow(c, page.location!, { 'sec-fetch-site': 'same-origin' });
    });
    const landed = hops.at(-1)!;
    assert.equal(landed.url, `${gh.url}/reports/q3?x=1`, 'back on the page after signing in again');
    assert.equal(landed.res.status, 200);
    const fresh = bearer(landed.res)!;
    assert.notEqual(fresh, first);
    assert.equal(await lab.a.accepts(fresh), true);
    assert.ok(hops.length < 12, `a bounded chain of redirects: ${hops.length}`);
  });

  test('a password session on a relay route is sent to sign in with the provider; public routes never carry a client Authorization', async () => {
    const c = new Client(gh.url);
    await registerJson(c);
    const page = await c.html('/dashboard');
    assert.equal(page.status, 302);
    assert.equal(page.location, `${gh.url}/.auth/login/a?rd=%2Fdashboard`);
    assert.equal((await c.get('/api/x')).status, 401);
    const pub = await new Client(gh.url).get('/public/x', { authorization: 'Bearer forged' });
    assert.equal(pub.status, 200);
    assert.equal(pub.json().headers.authorization, undefined, 'dropped: the app would take it for a relayed token');
    const off = await c.get('/norelay/x', { authorization: 'Bearer app-own' });
    assert.equal(off.json().headers.authorization, 'Bearer app-own', 'tokenRelay: false on a route');
  });

  test('the hot path serves the decrypted token from memory; logout forgets it with the session', async () => {
    const { c, first } = await signedIn();
    assert.equal(bearer(await c.get('/api/1')), first);
    const owner = `session:${hashSessionId(c.jar.get('gatehouse')!)}`;
    const db = rawDb(gh);
    try {
      await db.run(`DELETE FROM provider_tokens WHERE owner = ?`, [owner]);
    } finally {
      await db.close();
    }
    assert.equal(
      bearer(await c.get('/api/2')),
      first,
      'no store read or decryption per request while the token is fresh',
    );
    await c.submitForm('/.auth/logout', {}, { origin: gh.url });
    assert.equal((await c.get('/api/3')).status, 401, 'the session is gone, and its cached token with it');
  });
});

describe('tokenRelay while the provider is down', () => {
  test('the provider down at refresh time: 503 to try again soon, not a sign-in; once it is back, refreshed', async () => {
    const node = await startGatehouse(() => ({ tokenRelay: 'a', providers: lab.providers() }), { port: lab.ports[1] });
    try {
      const { c, first } = await signedIn(node);
      await c.get('/api/warm');
      await expired(first);
      // And expired for Gatehouse too (its clock may be a few ms behind the IdP's second).
      const owner = `session:${hashSessionId(c.jar.get('gatehouse')!)}`;
      const expiresAt = (await node.gatehouse.store.providerTokens.get(owner, 'a'))!.expiresAt!;
      await until('Gatehouse to see the token expire', async () => Date.now() > expiresAt);
      await lab.a.down();
      let res;
      try {
        res = await c.get('/api/orders');
      } finally {
        await lab.a.up();
      }
      assert.equal(res.status, 503, JSON.stringify(node.logs.filter((l) => l.event).slice(-6)));
      assert.equal(res.headers['retry-after'], '5');
      assert.ok(node.logs.some((l) => l.event === 'provider_token_refresh_failed' && l.permanent === false));
      const again = await c.get('/api/orders');
      assert.equal(again.status, 200);
      assert.notEqual(bearer(again), first);
    } finally {
      await node.close();
    }
  });
});

/** Two nodes on one store, each with its own connection, as two processes would be. */
async function twoNodes(
  port: number,
  store: () => Promise<Store>,
  upstream: TestUpstream,
): Promise<{ a: Gatehouse; b: Gatehouse; urlB: string; close(): Promise<void> }> {
  const config = ConfigSchema.parse({
    publicUrl: `http://127.0.0.1:${port}`,
    upstream: upstream.url,
    tokenRelay: 'a',
    providers: lab.providers(),
    secrets: { key: randomBytes(32).toString('base64') },
  });
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
  const a = await Gatehouse.create(config, { logger: createLogger('warn', sink()), store: await store() });
  const b = await Gatehouse.create(config, { logger: createLogger('warn', sink()), store: await store() });
  await a.listen(port, '127.0.0.1');
  const portB = await freePort();
  await b.listen(portB, '127.0.0.1');
  return {
    a,
    b,
    urlB: `http://127.0.0.1:${portB}`,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
}

/** Signs in at node A, then fires requests at both nodes at once after the token expired. */
async function refreshOnceAcrossNodes(nodes: { urlB: string }, port: number): Promise<void> {
  const account = `relay-${accounts++}`;
  lab.a.accounts.set(account, { sub: account, email: `${account}@example.com`, email_verified: true });
  lab.a.autoLogin = account;
  const atA = new Client(`http://127.0.0.1:${port}`);
  await signIn(atA, 'a');
  const first = lab.a.issued.filter((t) => t.accountId === account).at(-1)!.access_token!;
  // The same browser reaching node B (a load balancer in front): same Host, same cookie.
  const atB = new Client(nodes.urlB);
  atB.defaultHeaders = { host: `127.0.0.1:${port}` };
  atB.jar.set('gatehouse', atA.jar.get('gatehouse')!);
  assert.equal(bearer(await atB.get('/warm')), first, 'node B relays the same token');
  await expired(first);
  const results = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? atB : atA).get(`/both/${i}`)));
  assert.deepEqual(
    results.map((r) => r.status),
    Array(16).fill(200),
    results.map((r) => r.text.slice(0, 80)).join('\n'),
  );
  assert.equal(new Set(results.map(bearer)).size, 1, 'both nodes use the one refreshed token');
  assert.equal(lab.a.refreshCount(account), 1, 'the nodes spent the rotating refresh token once between them');
}

describe('one refresh across nodes sharing the store', () => {
  let upstream: TestUpstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream?.close());

  test('SQLite: two nodes on one file', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-relay-'));
    const nodes = await twoNodes(
      lab.ports[2]!,
      () => openStore({ type: 'sqlite', path: join(dir, 'shared.db') }),
      upstream,
    );
    try {
      await refreshOnceAcrossNodes(nodes, lab.ports[2]!);
    } finally {
      await nodes.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('PostgreSQL', async () => {
    const service = await postgres();
    test('two nodes on one schema', { skip: service.skip }, async () => {
      const schema = `gh_relay_${randomBytes(5).toString('hex')}`;
      const nodes = await twoNodes(
        lab.ports[2]!,
        () => openStore({ type: 'postgres', url: service.url, poolSize: 4 }, { schema }),
        upstream,
      );
      try {
        await refreshOnceAcrossNodes(nodes, lab.ports[2]!);
      } finally {
        await nodes.close();
        const admin = new pg.Client({ connectionString: service.url });
        await admin.connect();
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await admin.end();
      }
    });
  });
});
