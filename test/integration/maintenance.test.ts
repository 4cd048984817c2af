import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, registerJson } from '../helpers/client.ts';
import { runCli, withConfigFile } from '../helpers/cli.ts';
import { startGatehouse } from '../helpers/gatehouse.ts';
import { parseConfig } from '../../src/config/load.ts';
import { refusal } from '../helpers/config.ts';
import { ConfigSchema } from '../../src/config/schema.ts';

/** `maintenance`: an app closed for maintenance, except for its operators (README, Configuration). */

/** The status of a WebSocket upgrade through Gatehouse (101, or the refusal's). */
function upgrade(port: number, origin: string, cookie: string | undefined): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { origin, ...(cookie ? { cookie } : {}) } });
  return new Promise((resolve) => {
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
  });
}

test('an app under maintenance: 503 with its message to everyone but its operators; Gatehouse’s pages work; a reload reopens it', async () => {
  const settings = (maintenance: object | undefined) => ({
    routes: [{ path: '/open/**', access: 'public' as const }],
    maintenance,
  });
  const closed = { message: 'Back at 14:00 UTC.', retryAfter: '10m', allow: { groups: ['ops'] } };
  const gh = await startGatehouse(() => settings(closed));
  try {
    const before = gh.upstream.requests.length;
    const anon = new Client(gh.url);
    const page = await anon.html('/reports');
    assert.equal(page.status, 503);
    assert.equal(page.headers['retry-after'], '600');
    assert.match(page.text, /down for maintenance/);
    assert.match(page.text, /Back at 14:00 UTC\./);
    assert.match(page.text, /\/\.auth\/login\?rd=%2Freports/, 'operators can sign in from it');
    const api = await anon.get('/open/status', { accept: 'application/json' });
    assert.equal(api.status, 503, 'public routes are closed too');
    assert.equal(api.json().error, 'maintenance');
    assert.equal((await anon.html('/.auth/login')).status, 200, 'Gatehouse’s own pages work');

    const user = new Client(gh.url);
    await registerJson(user);
    const refused = await user.html('/reports');
    assert.equal(refused.status, 503);
    assert.doesNotMatch(refused.text, /\/\.auth\/login/, 'no sign-in offered to someone signed in');
    assert.equal(await upgrade(gh.port, gh.url, user.cookieHeader()), 503, 'WebSockets too');
    assert.equal(gh.upstream.requests.length, before, 'nothing reached the app');

    const op = new Client(gh.url);
    const { id } = await registerJson(op);
    await gh.gatehouse.store.users.update(id, { groups: ['ops'] });
    assert.equal((await op.get('/reports')).status, 200, 'an operator gets through');
    assert.equal(gh.upstream.last().url, '/reports');
    assert.equal(await upgrade(gh.port, gh.url, op.cookieHeader()), 101);

    const reopened = ConfigSchema.parse({
      publicUrl: gh.url,
      listen: { host: '127.0.0.1', port: gh.port },
      store: { type: 'sqlite', path: join(gh.dir, 'gatehouse.db') },
      upstream: gh.upstream.url,
      ...settings(undefined),
    });
    assert.equal((await gh.gatehouse.reload(reopened)).outcome, 'ok');
    assert.equal((await user.get('/reports')).status, 200, 'open again for everyone');
    assert.equal((await anon.get('/open/status')).status, 200);
  } finally {
    await gh.close();
  }
});

test('config: maintenance takes a message, retryAfter and an allow-list of emails, domains or groups; check says the app is closed', async () => {
  const refused = (yaml: string) =>
    refusal(`publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nmaintenance: ${yaml}\n`);
  assert.match(refused('{allow: {mfa: true}}'), /maintenance\.allow.*mfa/);
  assert.match(refused('{retryAfter: 2d}'), /maintenance\.retryAfter/);
  assert.match(refused(`{message: "${'x'.repeat(501)}"}`), /maintenance\.message/);
  const ok = parseConfig(
    'publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nmaintenance: {}\n',
    'g.yaml',
  ).maintenance;
  assert.deepEqual(ok, { retryAfter: 0 });
  await withConfigFile(
    `publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nmaintenance: {allow: {groups: [ops]}}\n`,
    async (file) => {
      const check = await runCli(['check', '--config', file]);
      assert.equal(check.code, 0, check.stderr);
      assert.match(check.stdout, /CLOSED for maintenance: 503 to everyone but the users maintenance\.allow names/);
    },
  );
});
