import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Client } from '../helpers/client.ts';
import { startGatehouse } from '../helpers/gatehouse.ts';
import { explain } from '../../src/cli/check.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

/** `routes[].timeouts`: a route's own response timeout beside the app's (README, `routes[]`). */

test('a route with its own response timeout waits for a slow answer the app’s timeout cuts off elsewhere', async () => {
  // Every answer takes 3 s: longer than the app's timeout (1 s), shorter than the route's (10 s).
  const app = http.createServer((_req, res) => {
    const t = setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('done'), 3000);
    res.on('close', () => clearTimeout(t));
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const gh = await startGatehouse(() => ({
    upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
    timeouts: { response: '1s' },
    routes: [
      { path: '/reports/**', access: 'public', timeouts: { response: '10s' } },
      { path: '/**', access: 'public' },
    ],
  }));
  try {
    const c = new Client(gh.url);
    const [report, page] = await Promise.all([
      c.get('/reports/yearly', { accept: 'application/json' }),
      c.get('/page', { accept: 'application/json' }),
    ]);
    assert.equal(page.status, 504, 'the app’s own timeout elsewhere');
    assert.equal(page.json().error, 'gateway_timeout');
    assert.equal(report.status, 200, 'the route’s longer one for its paths');
    assert.equal(report.text, 'done');
  } finally {
    await gh.close();
    app.closeAllConnections();
    app.close();
  }
  const explained = explain(
    parseConfig(
      'publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nroutes: [{path: /reports/**, access: public, timeouts: {response: 5m}}]\n',
      'g.yaml',
    ),
    '/reports/x',
    'GET',
  );
  assert.match(explained, /timeouts: the app's answer within 5m \(the rule's own\)/);
  assert.throws(
    () =>
      parseConfig(
        'publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nroutes: [{path: /a, access: public, timeouts: {response: 2d}}]\n',
        'g.yaml',
      ),
    (e: unknown) => e instanceof ConfigError && /routes\[0\]\.timeouts\.response.*between/.test(e.message),
  );
});
