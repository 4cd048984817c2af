import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { refusal } from '../helpers/config.ts';
import { Upstream } from '../../src/proxy/forward.ts';
import { upstreamTarget } from '../../src/sites/index.ts';

/**
 * `affinity`: which replica of an app a request goes to (docs/behind-a-proxy.md "Several replicas
 * of an app"). Two real replicas; where each request landed is read from the replicas themselves.
 */

const TIMEOUTS = { connect: 5000, response: 60_000, idle: 300_000 };

/** Which replica (a or b) received each request since `from` whose URL starts with `prefix`. */
function landed(a: TestUpstream, b: TestUpstream, prefix: string): string[] {
  return [
    ...a.requests.filter((r) => r.url.startsWith(prefix)).map(() => 'a'),
    ...b.requests.filter((r) => r.url.startsWith(prefix)).map(() => 'b'),
  ];
}

/** The WebSocket upgrade through Gatehouse, with the client's cookies. */
function tunnel(gh: TestGatehouse, c: Client, path: string): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${gh.port}${path}`, {
    headers: { origin: gh.url, cookie: c.cookieHeader() ?? '' },
  });
  return new Promise((resolve, reject) => {
    ws.once('message', () => {
      ws.close();
      resolve();
    });
    ws.once('error', reject);
  });
}

describe('affinity: user', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let gh: TestGatehouse;
  /** The replica rendezvous hashing names for a key: what any node computes. */
  let expected: (key: string) => 'a' | 'b';
  before(async () => {
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
    gh = await startGatehouse(
      () => ({ upstream: [a.url, b.url], affinity: 'user', routes: [{ path: '/open/**', access: 'public' }] }),
      { upstream: a },
    );
    const reference = new Upstream(upstreamTarget([a.url, b.url], TIMEOUTS));
    expected = (key) => (reference.preferred(key)[0]!.port === String(a.port) ? 'a' : 'b');
    await reference.close();
  });
  after(async () => {
    await gh?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  test('each signed-in user’s requests and WebSockets all go to one replica, the one every node would pick', async () => {
    const users: { c: Client; id: string }[] = [];
    for (let i = 0; i < 6; i++) {
      const c = new Client(gh.url);
      users.push({ c, id: (await registerJson(c)).id });
    }
    for (const [n, { c, id }] of users.entries()) {
      for (let i = 0; i < 6; i++) assert.equal((await c.get(`/u${n}/r${i}`)).status, 200);
      await tunnel(gh, c, `/u${n}/ws`);
      const where = landed(a, b, `/u${n}/`);
      assert.equal(where.length, 7);
      assert.deepEqual(
        where,
        where.map(() => expected(`u:${id}`)),
        `user ${n}'s requests and WebSocket on ${expected(`u:${id}`)}`,
      );
    }
  });

  test('anonymous requests go by client address; a replica that goes down moves only its own share', async () => {
    const anon = new Client(gh.url);
    for (let i = 0; i < 6; i++) assert.equal((await anon.get(`/open/anon${i}`)).status, 200);
    assert.deepEqual(landed(a, b, '/open/anon'), Array(6).fill(expected('ip:127.0.0.1')));
    // An address the client writes itself (no trustedProxies here) picks nothing.
    for (let i = 0; i < 6; i++)
      assert.equal((await anon.get(`/open/forged${i}`, { 'x-forwarded-for': `10.9.9.${i}` })).status, 200);
    assert.deepEqual(landed(a, b, '/open/forged'), Array(6).fill(expected('ip:127.0.0.1')));

    // Two users, one on each replica (made until both are found).
    const on: Partial<Record<'a' | 'b', { c: Client; id: string }>> = {};
    for (let i = 0; i < 40 && (!on.a || !on.b); i++) {
      const c = new Client(gh.url);
      const { id } = await registerJson(c);
      on[expected(`u:${id}`)] ??= { c, id };
    }
    assert.ok(on.a && on.b, 'users hash to both replicas');
    await b.close();
    // b's user passes over to a, a's user stays where it was.
    for (let i = 0; i < 4; i++) {
      assert.equal((await on.b.c.get(`/moved/${i}`)).status, 200);
      assert.equal((await on.a.c.get(`/stayed/${i}`)).status, 200);
    }
    assert.deepEqual(landed(a, b, '/moved/'), Array(4).fill('a'));
    assert.deepEqual(landed(a, b, '/stayed/'), Array(4).fill('a'));
    assert.ok(
      gh.logs.some((l) => l.event === 'upstream_unreachable'),
      'the pass-over is logged as without affinity',
    );
  });
});

test('affinity: address puts signed-in users by address too; config', async () => {
  const [a, b] = await Promise.all([startUpstream(), startUpstream()]);
  const gh = await startGatehouse(() => ({ upstream: [a.url, b.url], affinity: 'address' }), { upstream: a });
  try {
    const reference = new Upstream(upstreamTarget([a.url, b.url], TIMEOUTS));
    const mine = reference.preferred('ip:127.0.0.1')[0]!.port === String(a.port) ? 'a' : 'b';
    await reference.close();
    for (let n = 0; n < 4; n++) {
      const c = new Client(gh.url);
      await registerJson(c);
      for (let i = 0; i < 3; i++) assert.equal((await c.get(`/addr${n}/${i}`)).status, 200);
    }
    assert.deepEqual(landed(a, b, '/addr'), Array(12).fill(mine), 'every user from this address on one replica');
  } finally {
    await gh.close();
    await Promise.all([a.close(), b.close()]);
  }
  const refused = (v: string) =>
    refusal(
      `publicUrl: http://127.0.0.1:8080\nupstream: [http://10.0.0.1:3000, http://10.0.0.2:3000]\naffinity: ${v}\n`,
    );
  assert.match(refused('cookie'), /affinity.*none.*user.*address/);
  const lint = (upstream: string) =>
    lintConfig(
      parseConfig(`publicUrl: http://127.0.0.1:8080\nupstream: ${upstream}\naffinity: user\n`, 'g.yaml'),
    ).filter((w) => w.key === 'affinity');
  assert.match(lint('http://10.0.0.1:3000')[0]?.message ?? '', /with one upstream it does nothing/);
  assert.deepEqual(lint('[http://10.0.0.1:3000, http://10.0.0.2:3000]'), []);
});
