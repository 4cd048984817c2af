import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Client, registerJson } from '../helpers/client.ts';
import { runCli, withConfigFile } from '../helpers/cli.ts';
import { startGatehouse } from '../helpers/gatehouse.ts';
import { refusal } from '../helpers/config.ts';

/** `requestHeaders`: headers sent with every request to the app (README, Configuration). */

const SECRET = 'proxy-secret-4f1d9a7c';

test('requestHeaders reach the app on every request and WebSocket, replacing the client’s; the value is never logged', async () => {
  const gh = await startGatehouse(() => ({
    routes: [{ path: '/open/**', access: 'public' }],
    requestHeaders: [
      { name: 'X-Proxy-Secret', value: SECRET },
      { name: 'X-Api-Key', value: 'key-1' },
    ],
  }));
  try {
    const c = new Client(gh.url);
    const forged = { 'x-proxy-secret': 'forged', 'x-api-key': 'forged', x_proxy_secret: 'forged' };
    assert.equal((await c.get('/open/a', forged)).status, 200);
    const seen = gh.upstream.last();
    assert.equal(seen.headers['x-proxy-secret'], SECRET, 'anonymous requests too');
    assert.equal(seen.headers['x-api-key'], 'key-1');
    assert.deepEqual(
      seen.rawHeaders.filter((h) => /^x[-_](proxy[-_]secret|api[-_]key)$/i.test(h)),
      ['X-Proxy-Secret', 'X-Api-Key'],
      'one of each, Gatehouse’s, whatever the client wrote',
    );
    await registerJson(c);
    assert.equal((await c.get('/private', forged)).status, 200);
    assert.equal(gh.upstream.last().headers['x-proxy-secret'], SECRET);
    const ws = new WebSocket(`ws://127.0.0.1:${gh.port}/ws`, {
      headers: { origin: gh.url, cookie: c.cookieHeader()!, 'x-proxy-secret': 'forged' },
    });
    const hello = await new Promise<{ headers: Record<string, string> }>((resolve, reject) => {
      ws.once('message', (m) => resolve(JSON.parse(String(m))));
      ws.once('error', reject);
    });
    ws.close();
    assert.equal(hello.headers['x-proxy-secret'], SECRET);
    assert.ok(!gh.logText().includes(SECRET), 'the secret is not in the log');
  } finally {
    await gh.close();
  }
});

test('config: requestHeaders take names of their own; check names them and never shows a value', async () => {
  const refused = (yaml: string) =>
    refusal(`publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\n${yaml}`);
  assert.match(refused('requestHeaders: [{name: X-User-Role, value: admin}]'), /requestHeaders\[0\]\.name.*vouches/);
  assert.match(refused('requestHeaders: [{name: Host, value: a}]'), /requestHeaders\[0\]\.name.*part of the request/);
  assert.match(
    refused('headers: {email: X-Email}\nrequestHeaders: [{name: x-email, value: a}]'),
    /requestHeaders\[0\]\.name.*already the email header/,
  );
  assert.match(
    refused('requestHeaders: [{name: X-A, value: a}, {name: x-a, value: b}]'),
    /requestHeaders\[1\]\.name.*listed twice/,
  );
  assert.match(refused('requestHeaders: [{name: X-A, value: "a\\nb"}]'), /requestHeaders\[0\]\.value.*one line/);
  await withConfigFile(
    `publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nrequestHeaders: [{name: X-Proxy-Secret, value: "\${PROXY_SECRET}"}]\nresponseHeaders: [{name: X-Frame-Options, value: SAMEORIGIN}]\n`,
    async (file) => {
      const check = await runCli(['check', '--config', file], undefined, { ...process.env, PROXY_SECRET: SECRET });
      assert.equal(check.code, 0, check.stderr);
      assert.match(check.stdout, /request headers: X-Proxy-Secret set on every request \(values not shown\)/);
      assert.match(check.stdout, /response headers where the app sends none: x-frame-options/);
      assert.ok(!(check.stdout + check.stderr).includes(SECRET));
    },
  );
});
