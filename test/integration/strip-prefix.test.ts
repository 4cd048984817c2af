import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { Client, registerJson } from '../helpers/client.ts';
import { runCli, withConfigFile } from '../helpers/cli.ts';
import { rawRequest } from '../helpers/raw.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { refusal } from '../helpers/config.ts';

/**
 * `apps[].stripPrefix`: an app that expects to be at the root served under a path prefix (README
 * "Several apps"). Real upstreams: the root app and a dashboard under /dash whose upstream URL has
 * a path of its own (/v2), so the two rewrites are seen together.
 */

let gh: TestGatehouse;
let dash: TestUpstream;

before(async () => {
  dash = await startUpstream();
  gh = await startGatehouse(({ port, upstream }) => ({
    apps: [
      { name: 'site', host: `127.0.0.1:${port}`, upstream, routes: [{ path: '/**', access: 'public' }] },
      {
        name: 'dash',
        host: `127.0.0.1:${port}`,
        pathPrefix: '/dash',
        stripPrefix: true,
        upstream: `${dash.url}/v2`,
        routes: [{ path: '/dash/public/**', access: 'public' }],
      },
    ],
  }));
});
after(async () => {
  await gh.close();
  await dash.close();
});

describe('an app with stripPrefix', () => {
  test('receives its paths without the prefix, after its upstream path, with X-Forwarded-Prefix; the query as sent', async () => {
    const c = new Client(gh.url);
    const sent: [string, string][] = [
      ['/dash/public/x?q=1&r=%2F', '/v2/public/x?q=1&r=%2F'],
      ['/DASH/public/y', '/v2/public/y'],
      ['/dash/public', '/v2/public'],
    ];
    for (const [path, received] of sent) {
      assert.equal((await c.get(path)).status, 200, path);
      assert.equal(dash.last().url, received, path);
      assert.equal(dash.last().headers['x-forwarded-prefix'], '/dash');
    }
  });

  test('rules are matched as the browser sees the path; signed in, the app gets the rest', async () => {
    const c = new Client(gh.url);
    const before = dash.requests.length;
    assert.equal((await c.get('/dash/reports', { accept: 'application/json' })).status, 401);
    assert.equal((await c.get('/dash', { accept: 'application/json' })).status, 401, 'the prefix itself too');
    // Dot segments are resolved before the app is chosen and the prefix taken off: a public path
    // cannot be walked out of into the app's private ones, or into the app from another.
    // (Sent raw: an HTTP client resolves them itself.)
    const raw = (path: string) =>
      rawRequest(
        gh.port,
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
      );
    for (const [path, status] of [
      ['/dash/public/%2e%2e/reports', 401],
      ['/dash/public/../reports', 401],
      ['/dash/public/..%2freports', 400], // an encoded slash is refused outright
    ] as const)
      assert.equal((await raw(path)).status, status, path);
    assert.equal(dash.requests.length, before, 'nothing reached the app');
    const site = gh.upstream.requests.length;
    assert.equal((await raw('/elsewhere/../dash/reports')).status, 401);
    assert.equal(dash.requests.length, before);
    assert.equal(gh.upstream.requests.length, site, 'nor the other app');
    await registerJson(c);
    assert.equal((await c.get('/dash/reports/3')).status, 200);
    assert.equal(dash.last().url, '/v2/reports/3');
    assert.equal((await c.get('/dash')).status, 200);
    assert.equal(dash.last().url, '/v2/');
    assert.ok(dash.last().headers['x-user-id'], 'the identity headers as for any app');
  });

  test('a client’s X-Forwarded-Prefix never reaches an app: replaced for this one, dropped for the others', async () => {
    const c = new Client(gh.url);
    assert.equal((await c.get('/dash/public/z', { 'x-forwarded-prefix': '/evil' })).status, 200);
    assert.equal(dash.last().headers['x-forwarded-prefix'], '/dash');
    assert.equal(
      dash.last().rawHeaders.filter((h) => h.toLowerCase() === 'x-forwarded-prefix').length,
      1,
      'one header, Gatehouse’s',
    );
    assert.equal((await c.get('/elsewhere', { 'x-forwarded-prefix': '/evil' })).status, 200);
    assert.equal(gh.upstream.last().url, '/elsewhere', 'the app without stripPrefix gets the full path');
    assert.equal(gh.upstream.last().headers['x-forwarded-prefix'], undefined);
  });

  test("a redirect to the app's own upstream URL reaches the browser as the public URL; any other passes as sent", async () => {
    const c = new Client(gh.url);
    const dashSelf = dash.url; // what the dashboard makes of its Host header
    const location = async (path: string, to: string) => {
      const r = await c.get(`${path}?to=${encodeURIComponent(to)}`);
      assert.equal(r.status, 302, path);
      return r.headers.location;
    };
    const cases: [string, string, string][] = [
      // The root app: its upstream origin becomes the site's.
      ['/redirect', '{self}/next?x=1', `${gh.url}/next?x=1`],
      ['/redirect', '{self}', `${gh.url}/`],
      ['/redirect', 'https://example.com/x', 'https://example.com/x'],
      ['/redirect', '/relative?y=1', '/relative?y=1'],
      // The dashboard: its upstream URL with its path (/v2) becomes the site's and the prefix.
      ['/dash/public/redirect', '{self}/v2/reports?y=2', `${gh.url}/dash/reports?y=2`],
      ['/dash/public/redirect', '{self}/v2', `${gh.url}/dash/`],
      ['/dash/public/redirect', '{self}/v2#top', `${gh.url}/dash/#top`],
      ['/dash/public/redirect', `${dashSelf.toUpperCase()}/v2/a`, `${gh.url}/dash/a`],
      ['/dash/public/redirect', '{self}/v2x/a', `${dashSelf}/v2x/a`],
      ['/dash/public/redirect', '{self}/other', `${dashSelf}/other`],
      ['/dash/public/redirect', '/v2/relative', '/v2/relative'],
    ];
    for (const [path, to, seen] of cases) assert.equal(await location(path, to), seen, `${path} → ${to}`);
  });

  test('WebSockets go to the same path the app would get for a request', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gh.port}/dash/public/live`, { headers: { origin: gh.url } });
    const hello = await new Promise<{ headers: Record<string, string> }>((resolve, reject) => {
      ws.once('message', (m) => resolve(JSON.parse(String(m))));
      ws.once('error', reject);
    });
    ws.close();
    assert.equal(dash.last().url, '/v2/public/live');
    assert.equal(hello.headers['x-forwarded-prefix'], '/dash');
  });
});

test('config: stripPrefix needs a pathPrefix; check shows it and --explain names the path the app gets', async () => {
  const refused = (apps: string) => refusal(`publicUrl: http://127.0.0.1:8080\napps:\n${apps}`);
  assert.match(
    refused('  - {name: a, upstream: http://10.0.0.1:3000, stripPrefix: true}\n'),
    /apps\[0\]\.stripPrefix.*only applies with a pathPrefix/,
  );
  assert.match(
    refused('  - {name: a, upstream: http://10.0.0.1:3000, pathPrefix: /a, stripPrefix: yes please}\n'),
    /apps\[0\]\.stripPrefix/,
  );
  await withConfigFile(
    `publicUrl: http://127.0.0.1:8080\napps:\n  - {name: site, upstream: http://10.0.0.1:3000}\n  - {name: dash, pathPrefix: /dash, stripPrefix: true, upstream: http://10.0.0.2:3000/v2}\n`,
    async (file) => {
      const check = await runCli(['check', '--config', file]);
      assert.equal(check.code, 0, check.stderr);
      assert.match(
        check.stdout,
        /http:\/\/127\.0\.0\.1:8080\/dash → http:\/\/10\.0\.0\.2:3000\/v2 \(without \/dash\) {2}app "dash"/,
      );
      const explained = await runCli(['check', '--config', file, '--explain', '/dash/a/b']);
      assert.match(explained.stdout, /app "dash" → http:\/\/10\.0\.0\.2:3000\/v2\/a\/b/);
    },
  );
});
