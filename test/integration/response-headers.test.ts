import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Client } from '../helpers/client.ts';
import { startGatehouse } from '../helpers/gatehouse.ts';
import { refusal } from '../helpers/config.ts';

/** `responseHeaders`: headers Gatehouse adds to an app's responses that lack them (README, Configuration). */

test('responseHeaders are added to the app’s responses that lack them; the app’s own win; Gatehouse’s pages keep theirs', async () => {
  const app = http.createServer((req, res) => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain' };
    if (req.url === '/own') headers['x-frame-options'] = 'DENY';
    res.writeHead(req.url === '/missing' ? 404 : 200, headers).end('app');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const gh = await startGatehouse(() => ({
    upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
    routes: [{ path: '/**', access: 'public' }],
    responseHeaders: [
      { name: 'X-Frame-Options', value: 'SAMEORIGIN' },
      { name: 'Content-Security-Policy', value: "default-src 'self'; frame-ancestors 'self'" },
      { name: 'Permissions-Policy', value: 'camera=(), microphone=()' },
    ],
  }));
  try {
    const c = new Client(gh.url);
    for (const path of ['/page', '/missing']) {
      const res = await c.get(path);
      assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN', path);
      assert.equal(res.headers['content-security-policy'], "default-src 'self'; frame-ancestors 'self'", path);
      assert.equal(res.headers['permissions-policy'], 'camera=(), microphone=()', path);
    }
    const own = await c.get('/own');
    assert.equal(own.headers['x-frame-options'], 'DENY', 'the app’s own value, not doubled');
    assert.equal(own.headers['permissions-policy'], 'camera=(), microphone=()');
    const login = await c.html('/.auth/login');
    assert.equal(login.headers['x-frame-options'], 'DENY', 'Gatehouse’s own pages keep their stricter headers');
    assert.equal(login.headers['permissions-policy'], undefined);
  } finally {
    await gh.close();
    app.close();
  }
  const refused = (entry: string) =>
    refusal(`publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nresponseHeaders: [${entry}]\n`);
  assert.match(refused('{name: Set-Cookie, value: a=1}'), /responseHeaders\[0\]\.name.*cookies/);
  assert.match(refused('{name: Strict-Transport-Security, value: max-age=1}'), /responseHeaders\[0\]\.name.*hsts/);
  assert.match(refused('{name: "X Bad", value: x}'), /responseHeaders\[0\]\.name.*a header name/);
  assert.match(refused('{name: X-A, value: "a\\r\\nSet-Cookie: b=1"}'), /responseHeaders\[0\]\.value.*one line/);
  assert.match(refused('{name: X-A}'), /responseHeaders\[0\]\.value/);
});
