import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { startGatehouse } from '../helpers/gatehouse.ts';
import { until } from '../helpers/timing.ts';

/**
 * An app that holds each request open: `/wait` answers nothing until the test ends it, `/stream`
 * sends its head and a first chunk, then holds the body open. `cancelled` counts the requests whose
 * connection was closed before the app finished them.
 */
async function slowApp() {
  const state = { cancelled: 0, received: 0, held: [] as http.ServerResponse[] };
  const app = http.createServer((req, res) => {
    state.received++;
    res.on('close', () => {
      if (!res.writableFinished) state.cancelled++;
    });
    state.held.push(res);
    if (req.url === '/stream') res.writeHead(200, { 'content-type': 'text/plain' }).write('first chunk\n');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const close = () => {
    for (const res of state.held) res.destroy();
    app.closeAllConnections();
    app.close();
  };
  return { state, url: `http://127.0.0.1:${(app.address() as AddressInfo).port}`, close };
}

test('a client that leaves before the app answers cancels the request to the app, logged as 499', async () => {
  const app = await slowApp();
  const gh = await startGatehouse(() => ({ upstream: app.url, routes: [{ path: '/**', access: 'public' }] }));
  try {
    const req = http.get(`${gh.url}/wait`);
    req.on('error', () => {});
    await until('the app has the request', () => app.state.received === 1);
    req.destroy();
    await until('the request to the app was cancelled', () => app.state.cancelled === 1);
    const line = await until('the request was logged', () =>
      gh.logs.find((l) => (l.req as { path?: string } | undefined)?.path === '/wait'),
    );
    assert.equal(line.status, 499);
  } finally {
    await gh.close();
    app.close();
  }
});

test('a client that leaves in the middle of the body cancels the response from the app too', async () => {
  const app = await slowApp();
  const gh = await startGatehouse(() => ({ upstream: app.url, routes: [{ path: '/**', access: 'public' }] }));
  try {
    const req = http.get(`${gh.url}/stream`);
    req.on('error', () => {});
    const res = await new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve));
    assert.equal(res.statusCode, 200);
    const first = await new Promise<string>((resolve) => res.once('data', (c: Buffer) => resolve(c.toString())));
    assert.equal(first, 'first chunk\n', 'the app’s first chunk is passed on before its body ends');
    req.destroy();
    await until('the response from the app was cancelled', () => app.state.cancelled === 1);
    const line = await until('the request was logged', () =>
      gh.logs.find((l) => (l.req as { path?: string } | undefined)?.path === '/stream'),
    );
    assert.equal(line.status, 200, 'the status the client got');
  } finally {
    await gh.close();
    app.close();
  }
});
