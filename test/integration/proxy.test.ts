import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';

let gh: TestGatehouse;
let user: Client;

before(async () => {
  gh = await startGatehouse(() => ({
    routes: [
      { path: '/public/**', access: 'public' },
      { path: '/docs/**', methods: ['GET'], access: 'public' },
      { path: '/blocked/**', access: 'deny' },
    ],
    timeouts: { response: '400ms' },
  }));
  user = new Client(gh.url);
  await registerJson(user);
});
after(() => gh.close());

describe('forwarding', () => {
  test('every method reaches the app with its body, and only once', async () => {
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const before = gh.upstream.requests.length;
      const body = method === 'GET' || method === 'OPTIONS' ? undefined : `payload-${method}`;
      const res = await user.fetch(`/echo/${method}?q=1`, {
        method,
        body,
        headers: body ? { 'content-type': 'text/plain' } : {},
      });
      assert.equal(res.status, 200, method);
      assert.equal(gh.upstream.requests.length, before + 1, `${method} sent once`);
      assert.equal(gh.upstream.last().method, method);
      assert.equal(gh.upstream.last().url, `/echo/${method}?q=1`);
      assert.equal(gh.upstream.last().bodyBytes, body?.length ?? 0);
    }
    const head = await user.fetch('/echo/head', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });

  test('responses keep status, cookies and end-to-end headers; hop-by-hop ones are dropped', async () => {
    const res = await user.get('/anything');
    assert.equal(res.headers['x-app-private'], undefined, "named in the app's Connection header");
    assert.equal(res.headers['keep-alive'] === 'timeout=5' && false, false);
    assert.ok(res.cookies.includes('app=1; Path=/'));
    assert.equal((await user.get('/status/418')).status, 418);
  });

  test("the app gets Gatehouse's X-Forwarded-* and a request id, never the client's", async () => {
    await user.get('/fwd', {
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil.com',
      'x-forwarded-proto': 'https',
      'x-request-id': 'mine',
      forwarded: 'for=6.6.6.6',
    });
    const h = gh.upstream.last().headers;
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-host'], `127.0.0.1:${gh.port}`);
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.match(String(h['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(h.forwarded, undefined);
    assert.equal(h.host, new URL(gh.upstream.url).host);
  });

  test("identity headers: ours arrive, the client's never do (security.md #1-4)", async () => {
    const me = (await user.get('/.auth/me')).json();
    const raw = await rawRequest(
      gh.port,
      `GET /spoof HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nCookie: ${user.cookieHeader()}\r\nX-User-Id: admin\r\nx-user-id: admin2\r\nX_User_Id: admin3\r\nX-User_Id: admin4\r\nX-User-Id: a, b\r\nX-Gatehouse-Assertion: forged\r\nX-User-Email: boss@corp.com\r\nConnection: close, X-User-Id, X-Gatehouse-Assertion\r\n\r\n`,
    );
    assert.equal(raw.status, 200);
    const seen = gh.upstream.last();
    const identity = [];
    for (let i = 0; i < seen.rawHeaders.length; i += 2) {
      const n = seen.rawHeaders[i]!.toLowerCase().replace(/_/g, '-');
      if (n.startsWith('x-user') || n.startsWith('x-gatehouse')) identity.push([n, seen.rawHeaders[i + 1]]);
    }
    assert.deepEqual(
      identity.map(([n]) => n),
      ['x-user-id', 'x-gatehouse-assertion'],
    );
    assert.equal(identity[0]![1], me.id);
    assert.equal(
      JSON.parse(Buffer.from(String(identity[1]![1]).split('.')[1]!, 'base64url').toString()).sub,
      me.id,
      'the assertion is ours, not the forged one',
    );
  });

  test("Gatehouse's own routes are never forwarded, whatever the spelling", async () => {
    const before = gh.upstream.requests.length;
    for (const p of ['/.auth/unknown', '/.AUTH/login/x', '/.auth', '/.Auth/me/', '//.auth/nope', '/x/../.auth/nope']) {
      const res = await rawRequest(
        gh.port,
        `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nCookie: ${user.cookieHeader()}\r\nConnection: close\r\n\r\n`,
      );
      assert.ok([400, 404].includes(res.status), `${p} → ${res.status}`);
    }
    assert.equal(gh.upstream.requests.length, before);
  });

  test('deny rules answer 403 for everyone; method-scoped public rules admit only their method (security.md #19)', async () => {
    assert.equal((await user.get('/blocked/x')).status, 403);
    const anon = new Client(gh.url);
    assert.equal((await anon.get('/docs/a')).status, 200);
    assert.equal(
      (await anon.fetch('/docs/a', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } })).status,
      401,
    );
    assert.equal((await anon.fetch('/docs/a', { method: 'HEAD' })).status, 401);
    assert.equal((await anon.fetch('/docs/a', { method: 'OPTIONS' })).status, 401);
  });

  test('a method-override header cannot turn a GET the rules admit into a DELETE at the app (security.md #69)', async () => {
    const overrides = [
      'X-HTTP-Method-Override: DELETE',
      'x-http-method: DELETE',
      'X-Method-Override: DELETE',
      'X_HTTP_Method_Override: DELETE',
      'X-Http-Method_Override: PUT',
    ];
    const before = gh.upstream.requests.length;
    const res = await rawRequest(
      gh.port,
      `GET /docs/a HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\n${overrides.join('\r\n')}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(res.status, 200, 'anonymous: the public GET rule admits it');
    assert.equal(gh.upstream.requests.length, before + 1);
    const seen = gh.upstream.last();
    assert.equal(seen.method, 'GET');
    assert.deepEqual(
      Object.keys(seen.headers).filter((h) => /method/i.test(h)),
      [],
      'the app gets none of them, so it acts on the method the rule saw',
    );
  });

  test('keep-alive: many requests share a few upstream connections', async () => {
    let connections = 0;
    const onConn = () => connections++;
    gh.upstream.server.on('connection', onConn);
    for (let i = 0; i < 50; i++) await user.get(`/pool/${i}`);
    gh.upstream.server.off('connection', onConn);
    assert.ok(connections <= 2, `${connections} new upstream connections for 50 sequential requests`);
  });
});

describe('streaming (1 GiB each way, never in memory)', () => {
  const GiB = 1024 ** 3;

  test('download', async () => {
    const base = process.memoryUsage().rss;
    let peak = base;
    const res = await request(`${gh.url}/bytes?n=${GiB}`, { headers: { cookie: user.cookieHeader()! } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(GiB));
    let received = 0;
    for await (const chunk of res.body) {
      received += (chunk as Buffer).length;
      if ((received & 0xfffffff) < 65536) peak = Math.max(peak, process.memoryUsage().rss);
    }
    assert.equal(received, GiB);
    assert.ok(peak - base < 256 * 1024 * 1024, `RSS grew by ${((peak - base) / 1048576).toFixed(0)} MiB`);
  });

  test('upload', async () => {
    const base = process.memoryUsage().rss;
    let peak = base;
    let sent = 0;
    const chunk = Buffer.alloc(1024 * 1024, 97);
    const body = new Readable({
      read() {
        if (sent >= GiB) return void this.push(null);
        sent += chunk.length;
        if (sent % (128 * 1024 * 1024) === 0) peak = Math.max(peak, process.memoryUsage().rss);
        this.push(chunk);
      },
    });
    const res = await request(`${gh.url}/upload`, {
      method: 'POST',
      body,
      headers: {
        cookie: user.cookieHeader()!,
        'content-type': 'application/octet-stream',
        'content-length': String(GiB),
      },
    });
    const json = (await res.body.json()) as { bodyBytes: number };
    assert.equal(res.statusCode, 200);
    assert.equal(json.bodyBytes, GiB);
    assert.ok(peak - base < 256 * 1024 * 1024, `RSS grew by ${((peak - base) / 1048576).toFixed(0)} MiB`);
  });
});

describe('when the app fails', () => {
  test('slow app → 504, generic page, no internals', async () => {
    const res = await user.html('/slow?ms=5000');
    assert.equal(res.status, 504);
    assert.match(res.text, /took too long/);
    assert.doesNotMatch(res.text, /UND_ERR|undici|HeadersTimeout|at .*\(|stack/);
    assert.ok(!res.text.includes(gh.upstream.url), 'the upstream address is not revealed');
  });

  test('app down → 502, and a POST is not retried', async () => {
    let hits = 0;
    const flaky = http.createServer((req) => {
      hits++;
      req.socket.destroy();
    });
    await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve));
    const port = (flaky.address() as AddressInfo).port;
    const gh2 = await startGatehouse(() => ({ upstream: `http://127.0.0.1:${port}` }));
    try {
      const c = new Client(gh2.url);
      await registerJson(c);
      const res = await c.postJson('/orders', { item: 1 });
      assert.equal(res.status, 502);
      assert.equal(res.json().error, 'bad_gateway');
      assert.doesNotMatch(res.text, /ECONNRESET|socket|undici/i);
      assert.equal(hits, 1, 'the non-idempotent request reached the app once');
      flaky.close();
      const down = await c.get('/x');
      assert.equal(down.status, 502);
    } finally {
      flaky.close();
      await gh2.close();
    }
  });
});

test('a connection the app closes as a request is sent on it: a GET is sent once more and answered; a POST is not', async () => {
  // The app closes each keep-alive connection when its second request comes, without answering:
  // what an app whose idle timeout ends just as Gatehouse reuses the connection looks like.
  const seen: string[] = [];
  const app = http.createServer((req, res) => {
    const socket = req.socket as typeof req.socket & { served?: number };
    socket.served = (socket.served ?? 0) + 1;
    seen.push(`${req.method} ${req.url}`);
    if (socket.served === 2 || req.url === '/always') return void socket.destroy();
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const gh2 = await startGatehouse(() => ({
    upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
    routes: [{ path: '/**', access: 'public' }],
    metrics: { listen: '127.0.0.1:0' },
  }));
  const retries = async () => (await gh2.gatehouse.metrics!.upstreamRetries.get()).values[0]?.value ?? 0;
  try {
    const c = new Client(gh2.url);
    assert.equal((await c.get('/a')).status, 200);
    const b = await c.get('/b');
    assert.equal(b.status, 200, 'the GET was sent again on a new connection');
    assert.equal(b.text, 'ok');
    assert.deepEqual(seen, ['GET /a', 'GET /b', 'GET /b']);
    assert.equal(await retries(), 1);
    const post = await c.fetch('/c', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } });
    assert.equal(post.status, 502, 'a POST may have been applied: never sent twice');
    assert.deepEqual(seen.slice(3), ['POST /c']);
    assert.equal((await c.get('/always')).status, 502, 'once more, not again and again');
    assert.deepEqual(seen.slice(4), ['GET /always', 'GET /always']);
    assert.equal(await retries(), 2);
  } finally {
    await gh2.close();
    app.closeAllConnections();
    app.close();
  }
});

describe('WebSockets', () => {
  const wsUrl = () => gh.url.replace('http', 'ws') + '/ws';

  function open(
    headers: Record<string, string>,
    path = '/ws',
  ): Promise<{ status: number; first?: any; ws?: import('ws').WebSocket; body?: string }> {
    return import('ws').then(
      ({ WebSocket }) =>
        new Promise((resolve) => {
          const ws = new WebSocket(wsUrl().replace(/\/ws$/, path), { headers });
          ws.once('message', (m) => resolve({ status: 101, first: JSON.parse(String(m)), ws }));
          ws.once('unexpected-response', (_req, res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          });
          ws.once('error', () => resolve({ status: 0 }));
        }),
    );
  }

  test('an authenticated upgrade is tunnelled with identity headers, spoofed ones stripped', async () => {
    const me = (await user.get('/.auth/me')).json();
    const { status, first, ws } = await open({ cookie: user.cookieHeader()!, 'x-user-id': 'admin', origin: gh.url });
    assert.equal(status, 101);
    assert.equal(first.headers['x-user-id'], me.id);
    assert.doesNotMatch(String(first.headers.cookie ?? ''), /gatehouse/, 'no Gatehouse cookie reaches the app');
    const echo = await new Promise((resolve) => {
      ws!.once('message', (m) => resolve(String(m)));
      ws!.send('ping');
    });
    assert.equal(echo, 'ping');
    ws!.close();
  });

  test('refused before 101 when anonymous or cross-origin (security.md #57)', async () => {
    const before = gh.upstream.requests.length;
    assert.equal((await open({})).status, 401);
    assert.equal((await open({ cookie: user.cookieHeader()!, origin: 'https://evil.example' })).status, 403);
    assert.equal(gh.upstream.requests.length, before, 'the app never saw them');
  });

  test('an upgrade the session cookie signs in must send Origin, as browsers always do; anonymous ones need none', async () => {
    const before = gh.upstream.requests.length;
    for (const path of ['/ws', '/public/ws']) {
      const refused = await open({ cookie: user.cookieHeader()! }, path);
      assert.equal(refused.status, 403, path);
      assert.equal(refused.body, 'A signed-in WebSocket handshake must send Origin.\n');
    }
    assert.equal(gh.upstream.requests.length, before, 'the app never saw them');
    const anonymous = await open({}, '/public/ws');
    assert.equal(anonymous.status, 101);
    assert.equal(anonymous.first.headers['x-user-id'], undefined);
    anonymous.ws!.close();
  });

  test('an app that declines the upgrade: its answer is relayed; one too large to hold is a 502', async () => {
    const declined = await open({ cookie: user.cookieHeader()!, origin: gh.url }, '/ws-declined');
    assert.equal(declined.status, 403);
    assert.equal(declined.body, 'no websockets here');
    const huge = await open({ cookie: user.cookieHeader()!, origin: gh.url }, '/ws-declined?bytes=3000000');
    assert.equal(huge.status, 502);
  });

  test('h2c and other upgrades are not tunnelled (security.md #58)', async () => {
    const raw = await rawRequest(
      gh.port,
      `GET /h2c HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nCookie: ${user.cookieHeader()}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
      1500,
    );
    assert.equal(raw.status, 200, 'served as a plain request');
    assert.doesNotMatch(raw.text, /101 Switching/);
    const seen = gh.upstream.last();
    assert.equal(seen.url, '/h2c');
    assert.equal(seen.headers.upgrade, undefined);
    assert.equal(seen.headers['http2-settings'], undefined);
  });
});

describe('path tricks against route rules (security.md #14-18)', () => {
  let gh2: TestGatehouse;
  before(async () => {
    gh2 = await startGatehouse(() => ({ routes: [{ path: '/public/**', access: 'public' }] }));
  });
  after(() => gh2.close());

  const get = async (path: string) => {
    const r = await rawRequest(
      gh2.port,
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${gh2.port}\r\nConnection: close\r\n\r\n`,
    );
    return { status: r.status, forwarded: r.status === 200 ? gh2.upstream.last().url : undefined };
  };

  test('tricks that would escape a public prefix need auth or are refused', async () => {
    for (const p of [
      '/public/../admin',
      '/public/%2e%2e/admin',
      '/public/%2E%2E/admin',
      '/public/./../admin',
      '/public/..%2fadmin',
      '/public/%252e%252e/admin',
      '/public/..;/admin',
      '/admin;x=1',
      '/public;/../admin',
      '/admin%3bx',
      '/public%2f..%2fadmin',
      '/public/%2e%2e%2fadmin',
      '/public/\\..\\admin',
      '/public/%5c..%5cadmin',
      '/admin?x=/public/',
      '/admin%23/public/',
      '/public%0a/../admin',
    ]) {
      const r = await get(p);
      assert.ok(r.status === 401 || r.status === 400, `${p} → ${r.status}`);
    }
  });

  test('the app receives exactly the path the rule saw (security.md #20)', async () => {
    assert.deepEqual(await get('/public//x'), { status: 200, forwarded: '/public/x' });
    assert.deepEqual(await get('//public/x'), { status: 200, forwarded: '/public/x' });
    assert.deepEqual(await get('/public/./x/'), { status: 200, forwarded: '/public/x/' });
    assert.deepEqual(await get('/%70ublic/x?y=%2e%2e'), { status: 200, forwarded: '/public/x?y=%2e%2e' });
    assert.deepEqual(await get('/x/../public/a'), { status: 200, forwarded: '/public/a' });
    assert.deepEqual(await get('/PUBLIC/a'), { status: 200, forwarded: '/PUBLIC/a' });
  });
});

describe('hosts', () => {
  test('a request for an unknown host gets one clear 421, never a redirect loop (security.md #7)', async () => {
    const res = await user.html('/x', { host: 'evil.com' });
    assert.equal(res.status, 421);
    assert.match(res.text, new RegExp(`127\\.0\\.0\\.1:${gh.port}`));
    const json = await user.get('/.auth/login', { host: 'localhost:1' });
    assert.equal(json.status, 421);
    assert.equal(json.json().error, 'misdirected_request');
  });
});
