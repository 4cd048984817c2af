import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { startGatehouse } from '../helpers/gatehouse.ts';

test('a client that leaves before the app answers cancels the request to the app, logged as 499', async () => {
  let appSawAbort = false;
  const app = http.createServer((_req, res) => {
    res.on('close', () => (appSawAbort = !res.writableFinished));
    setTimeout(() => res.end('late'), 3000).unref();
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const port = (app.address() as AddressInfo).port;
  const gh = await startGatehouse(() => ({
    upstream: `http://127.0.0.1:${port}`,
    routes: [{ path: '/**', access: 'public' }],
  }));
  try {
    const req = http.get(`${gh.url}/wait`);
    req.on('error', () => {});
    await new Promise((resolve) => setTimeout(resolve, 300));
    req.destroy();
    for (let i = 0; i < 50 && !appSawAbort; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(appSawAbort, true, 'the request to the app was cancelled');
    const line = gh.logs.find((l) => (l.req as { path?: string } | undefined)?.path === '/wait');
    assert.equal(line?.status, 499);
  } finally {
    await gh.close();
    app.close();
  }
});
