import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { Client, registerJson } from '../helpers/client.ts';
import { freePort, startGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream } from '../helpers/upstream.ts';

test('close() drains in-flight requests and WebSockets, then refuses new ones', async () => {
  const gh = await startGatehouse(() => ({ listen: { timeouts: { drain: '3s' } } }));
  const c = new Client(gh.url);
  await registerJson(c);
  const ws = new WebSocket(gh.url.replace('http', 'ws') + '/ws', {
    headers: { cookie: c.cookieHeader()!, origin: gh.url },
  });
  await new Promise((resolve) => ws.once('message', resolve));
  const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));

  const inFlight = c.get('/slow?ms=300');
  // Wait until the app has the request, then stop.
  while (!gh.upstream.requests.some((r) => r.url === '/slow?ms=300')) await new Promise((r) => setImmediate(r));
  const closing = gh.gatehouse.close();
  const res = await inFlight;
  assert.equal(res.status, 200, 'the in-flight request finished');
  assert.equal(res.text, 'slow');
  await assert.rejects(request(`${gh.url}/.auth/health`), /ECONNREFUSED/);
  await closing;
  assert.equal(await wsClosed, 1001, 'WebSocket clients are told the server is going away');
  await gh.upstream.close();
});

test('SIGTERM to `gatehouse serve` drains and exits 0', async () => {
  const upstream = await startUpstream();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-sigterm-'));
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `publicUrl: http://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}}\nstore: {type: sqlite, path: ${join(dir, 'g.db')}}\nupstream: ${upstream.url}\nroutes: [{path: /slow, access: public}]\n`,
  );
  const child = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  try {
    while (!out.includes('Gatehouse serving')) {
      if (child.exitCode !== null) assert.fail(`exited early: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const inFlight = request(`http://127.0.0.1:${port}/slow?ms=400`).then(async (r) => ({
      status: r.statusCode,
      body: await r.body.text(),
    }));
    while (!upstream.requests.length) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGTERM');
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    assert.deepEqual(await inFlight, { status: 200, body: 'slow' });
    assert.equal(await exited, 0);
    assert.match(out, /"event":"shutdown"/);
  } finally {
    child.kill('SIGKILL');
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a drain turns /ready 503 at once; with drainDelay the node keeps serving (closing each connection) until it stops listening (security.md #198)', async () => {
  const gh = await startGatehouse(() => ({
    listen: { timeouts: { drain: '3s', drainDelay: '1s' } },
    routes: [{ path: '/public/**', access: 'public' }],
  }));
  try {
    const c = new Client(gh.url);
    await registerJson(c);
    assert.equal((await new Client(gh.url).get('/.auth/ready')).status, 200);
    const started = Date.now();
    const closing = gh.gatehouse.close(); // what SIGTERM and SIGINT run
    const ready = await new Client(gh.url).get('/.auth/ready');
    assert.equal(ready.status, 503, 'the balancer is told at once');
    assert.deepEqual(ready.json(), { status: 'shutting down' });
    const during = await c.get('/private');
    assert.equal(during.status, 200, 'requests that still come are served during drainDelay');
    assert.equal(during.headers.connection, 'close', 'and their connections closed, so none is reused later');
    assert.equal((await new Client(gh.url).get('/public/x')).status, 200);
    await closing;
    assert.ok(Date.now() - started >= 950, 'the listener closed only after drainDelay');
    await assert.rejects(request(`${gh.url}/.auth/health`), /ECONNREFUSED/);
  } finally {
    await gh.close();
  }
});
