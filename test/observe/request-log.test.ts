import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse } from '../helpers/gatehouse.ts';

/**
 * `log.requests`: which requests get their line (README, Logs). Busy nodes log only failures, or
 * none; the events of sign-ins and refusals are logged either way.
 */

const routes = [{ path: '/open/**', access: 'public' as const }];

/** The status of a WebSocket upgrade through Gatehouse (101, or the refusal's). */
function upgrade(url: string, port: number, cookie: string | undefined): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { origin: url, ...(cookie ? { cookie } : {}) } });
  return new Promise((resolve) => {
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
  });
}

for (const [which, expected] of [
  ['errors', ['/status/404', '/private', '/status/503', '/ws']],
  ['none', []],
  ['all', ['/open/a', '/.auth/register', '/private/b', '/status/404', '/private', '/status/503', '/ws', '/ws']],
] as const)
  test(`log.requests: ${which}: request lines for ${expected.length ? expected.join(', ') : 'nothing'}; events logged all the same`, async () => {
    const gh = await startGatehouse(() => ({ routes, log: { requests: which } }));
    try {
      const user = new Client(gh.url);
      assert.equal((await user.get('/open/a')).status, 200);
      const { id } = await registerJson(user);
      assert.equal((await user.get('/private/b')).status, 200);
      assert.equal((await user.get('/status/404')).status, 404);
      const stranger = new Client(gh.url);
      assert.equal((await stranger.get('/private', { accept: 'application/json' })).status, 401);
      assert.equal((await user.get('/status/503')).status, 503);
      assert.equal(await upgrade(gh.url, gh.port, user.cookieHeader()), 101);
      assert.equal(await upgrade(gh.url, gh.port, undefined), 401);
      const lines = gh.logs.filter((l) => l.msg === 'request');
      assert.deepEqual(
        lines.map((l) => (l.req as { path: string }).path),
        expected,
      );
      for (const l of lines) assert.ok((l.status as number) >= (which === 'errors' ? 400 : 0));
      assert.ok(
        gh.logs.some((l) => l.event === 'register' && l.userId === id),
        'the sign-up is logged whatever log.requests says',
      );
    } finally {
      await gh.close();
    }
  });
