import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';

let gh: TestGatehouse;
let cookie: string;

before(async () => {
  gh = await startGatehouse(() => ({
    routes: [{ path: '/public/**', access: 'public' }],
    listen: { timeouts: { headers: '1s', request: '2s', idle: '2s' } },
  }));
  const c = new Client(gh.url);
  await registerJson(c);
  cookie = c.cookieHeader()!;
});
after(() => gh.close());

const host = () => `Host: 127.0.0.1:${gh.port}\r\n`;

describe('request smuggling and malformed messages (security.md #53-55)', () => {
  test('Content-Length with Transfer-Encoding → 400 and close', async () => {
    const r = await rawRequest(
      gh.port,
      `POST /public/x HTTP/1.1\r\n${host()}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n${host()}\r\n`,
    );
    assert.equal(r.status, 400);
    assert.ok(r.closed);
    assert.doesNotMatch(r.text, /HTTP\/1\.1 200/);
  });

  test('"chunked, identity", obs-fold, bare CR, conflicting Content-Length → 400', async () => {
    const cases = [
      `POST /public/x HTTP/1.1\r\n${host()}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
      `GET /public/x HTTP/1.1\r\n${host()}X-Folded: a\r\n b\r\n\r\n`,
      `GET /public/x HTTP/1.1\r\n${host()}X-Bare: a\rb\r\n\r\n`,
      `POST /public/x HTTP/1.1\r\n${host()}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`,
      `GET /public/x HTTP/1.1\r\n${host()}Bad Header: x\r\n\r\n`,
      `GET /public/x HTTP/1.1\r\n\r\n`,
      `GET /public/\x00x HTTP/1.1\r\n${host()}\r\n`,
      `GET http://evil.com/public/x HTTP/1.1\r\n${host()}Connection: close\r\n\r\n`,
    ];
    for (const c of cases) {
      const r = await rawRequest(gh.port, c);
      assert.equal(r.status, 400, JSON.stringify(c));
    }
  });

  test('CR/LF smuggled into a header value through encoding never reaches the app (security.md #54)', async () => {
    const before = gh.upstream.requests.length;
    const r = await rawRequest(
      gh.port,
      `GET /public/a%0d%0aX-Injected:%201 HTTP/1.1\r\n${host()}Connection: close\r\n\r\n`,
    );
    assert.equal(r.status, 400);
    assert.equal(gh.upstream.requests.length, before);
  });

  test('over-long or too many headers → 431; big URLs → 414/431; the server lives on', async () => {
    const long = await rawRequest(gh.port, `GET /public/x HTTP/1.1\r\n${host()}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.equal(long.status, 431);
    const many = await rawRequest(
      gh.port,
      `GET /public/x HTTP/1.1\r\n${host()}${Array.from({ length: 3000 }, (_, i) => `X-H${i}: 1\r\n`).join('')}\r\n`,
    );
    assert.equal(many.status, 431);
    const url = await rawRequest(gh.port, `GET /public/${'a'.repeat(20_000)} HTTP/1.1\r\n${host()}\r\n`);
    assert.ok([414, 431].includes(url.status), String(url.status));
    const cookieBomb = await rawRequest(
      gh.port,
      `GET /public/x HTTP/1.1\r\n${host()}Cookie: ${'c=1; '.repeat(4000)}\r\n\r\n`,
    );
    assert.equal(cookieBomb.status, 431);
    assert.equal((await new Client(gh.url).get('/public/alive')).status, 200);
  });
});

describe('request lines and headers the parser lets through (RFC 9112)', () => {
  const ws =
    'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

  test('a request line claiming HTTP/2.0, HTTP/0.9 or another major version gets 505 and a closed connection on every kind of route', async () => {
    const before = gh.upstream.requests.length;
    for (const version of ['HTTP/2.0', 'HTTP/0.9']) {
      for (const head of [
        'GET /.auth/health',
        'GET /public/x',
        'POST /public/x',
        'GET /private/x',
        'POST /.auth/logout',
        'GET /.well-known/jwks.json',
      ]) {
        const r = await rawRequest(gh.port, `${head} ${version}\r\n${host()}Cookie: ${cookie}\r\n\r\n`);
        assert.equal(r.status, 505, `${head} ${version}: ${r.text.split('\r\n')[0]}`);
        assert.ok(r.closed, `${head} ${version}: connection closed`);
      }
      const upgrade = await rawRequest(gh.port, `GET /ws ${version}\r\n${host()}Cookie: ${cookie}\r\n${ws}\r\n`);
      assert.equal(upgrade.status, 505, `upgrade ${version}`);
    }
    // The versions the parser itself refuses: another major version is 505 too; a malformed one 400.
    for (const [version, status] of [
      ['HTTP/3.0', 505],
      ['HTTP/9.9', 505],
      ['HTTP/2.1', 505],
      ['HTTP/1.2', 400],
      ['HTTP/11', 400],
    ] as const) {
      const r = await rawRequest(gh.port, `GET /public/x ${version}\r\n${host()}\r\n`);
      assert.equal(r.status, status, version);
      assert.ok(r.closed);
    }
    assert.equal(gh.upstream.requests.length, before, 'the app saw none of them');
    assert.equal((await new Client(gh.url).get('/public/alive')).status, 200);
  });

  test('two Host headers, a second Authorization, Content-Type or Content-Length → 400 and close', async () => {
    const before = gh.upstream.requests.length;
    const cases = [
      `GET /public/x HTTP/1.1\r\n${host()}Host: evil.example\r\n\r\n`,
      `GET /public/x HTTP/1.1\r\nHost: evil.example\r\n${host()}\r\n`,
      `GET /.auth/health HTTP/1.1\r\n${host()}host: 127.0.0.1\r\n\r\n`,
      `GET /public/x HTTP/1.1\r\n${host()}Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n`,
      `POST /public/x HTTP/1.1\r\n${host()}Content-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      `POST /public/x HTTP/1.1\r\n${host()}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}`,
      `GET /ws HTTP/1.1\r\n${host()}Host: evil.example\r\nCookie: ${cookie}\r\nOrigin: ${gh.url}\r\n${ws}\r\n`,
    ];
    for (const c of cases) {
      const r = await rawRequest(gh.port, c);
      assert.equal(r.status, 400, JSON.stringify(c));
      assert.ok(r.closed, JSON.stringify(c));
    }
    assert.equal(gh.upstream.requests.length, before, 'the app saw none of them');
  });

  test('Transfer-Encoding on HTTP/1.0, or other than exactly "chunked" → 400 and close; nothing smuggled behind it', async () => {
    const before = gh.upstream.requests.length;
    const smuggled = `GET /public/smuggled HTTP/1.1\r\n${host()}\r\n`;
    for (const c of [
      `POST /public/x HTTP/1.0\r\n${host()}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n${smuggled}`,
      `POST /public/x HTTP/1.1\r\n${host()}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /public/x HTTP/1.1\r\n${host()}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /public/x HTTP/1.1\r\n${host()}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /.auth/logout HTTP/1.1\r\n${host()}Transfer-Encoding: gzip, chunked\r\nContent-Type: application/json\r\n\r\n0\r\n\r\n`,
      `POST /public/x HTTP/1.1\r\n${host()}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nGET /public/ws HTTP/1.1\r\n${host()}${ws}\r\n`,
    ]) {
      const r = await rawRequest(gh.port, c);
      assert.equal(r.status, 400, JSON.stringify(c));
      assert.ok(r.closed);
      assert.equal(r.text.match(/^HTTP\/1\.1 /gm)?.length, 1, 'one answer, then the connection is closed');
    }
    assert.equal(gh.upstream.requests.length, before, 'the app saw none of them');
    // Transfer-coding names are case-insensitive (RFC 9112 §7): "Chunked" is chunked.
    const ok = await rawRequest(
      gh.port,
      `POST /public/x HTTP/1.1\r\n${host()}Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
    );
    assert.equal(ok.status, 200);
    assert.equal(gh.upstream.last().bodyBytes, 3);
  });

  test('overlong and other malformed UTF-8 in the path → 400 before any rule or app sees it', async () => {
    const before = gh.upstream.requests.length;
    for (const path of ['/public/%C0%AE%C0%AE/private', '/public/%E0%80%AE', '/public/%ED%A0%80', '/public/%C3'])
      assert.equal(
        (await rawRequest(gh.port, `GET ${path} HTTP/1.1\r\n${host()}Connection: close\r\n\r\n`)).status,
        400,
        path,
      );
    assert.equal(gh.upstream.requests.length, before);
    const good = await rawRequest(gh.port, `GET /public/caf%C3%A9 HTTP/1.1\r\n${host()}Connection: close\r\n\r\n`);
    assert.equal(good.status, 200);
    assert.equal(gh.upstream.last().url, '/public/caf%C3%A9', 'well-formed UTF-8 reaches the app as sent');
  });

  test('CONNECT gets 405 (Gatehouse is no forward proxy), OPTIONS * and unknown methods 400; a WebSocket handshake over HTTP/1.0 gets 400', async () => {
    const connect = await rawRequest(gh.port, `CONNECT 127.0.0.1:${gh.upstream.port} HTTP/1.1\r\n${host()}\r\n`);
    assert.equal(connect.status, 405);
    assert.ok(connect.closed);
    for (const line of ['OPTIONS * HTTP/1.1', `${'X'.repeat(300)} /public/x HTTP/1.1`, 'get /public/x HTTP/1.1'])
      assert.equal((await rawRequest(gh.port, `${line}\r\n${host()}Connection: close\r\n\r\n`)).status, 400, line);
    const before = gh.upstream.requests.length;
    const old = await rawRequest(
      gh.port,
      `GET /ws HTTP/1.0\r\n${host()}Cookie: ${cookie}\r\nOrigin: ${gh.url}\r\n${ws}\r\n`,
    );
    assert.equal(old.status, 400);
    assert.equal(gh.upstream.requests.length, before);
  });
});

describe('slow clients are cut off (security.md #56)', () => {
  function waitClose(send: (s: net.Socket) => void): Promise<{ ms: number; text: string }> {
    return new Promise((resolve) => {
      const t = performance.now();
      const s = net.connect(gh.port, '127.0.0.1', () => send(s));
      let text = '';
      s.on('data', (d) => (text += d.toString('latin1')));
      s.on('close', () => resolve({ ms: performance.now() - t, text }));
      s.on('error', () => {});
    });
  }

  test('headers that never finish', async () => {
    const r = await waitClose((s) => s.write(`GET /public/x HTTP/1.1\r\n${host()}X-Slow: `));
    assert.ok(r.ms < 5000, `closed after ${r.ms.toFixed(0)} ms`);
    assert.match(r.text, /^HTTP\/1\.1 408/);
  });

  test('a body that never finishes', async () => {
    const r = await waitClose((s) =>
      s.write(`POST /public/x HTTP/1.1\r\n${host()}Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\nabc`),
    );
    assert.ok(r.ms < 8000, `closed after ${r.ms.toFixed(0)} ms`);
  });

  test('an idle connection', async () => {
    const r = await waitClose(() => {});
    assert.ok(r.ms < 8000, `closed after ${r.ms.toFixed(0)} ms`);
  });
});

describe('resilience', () => {
  test('a burst of garbage and aborted requests does not kill the process', async () => {
    const junk = [
      '\x16\x03\x01\x02\x00\x01',
      'GET / HTTP/9.9\r\n\r\n',
      'HELLO\r\n\r\n',
      `POST /.auth/login HTTP/1.1\r\n${host()}Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{`,
    ];
    await Promise.all(junk.map((j) => rawRequest(gh.port, j, 300)));
    await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<void>((resolve) => {
            const s = net.connect(gh.port, '127.0.0.1', () => {
              s.write(`GET /slow?ms=200 HTTP/1.1\r\n${host()}Cookie: ${cookie}\r\n\r\n`);
              setImmediate(() => s.destroy());
            });
            s.on('close', () => resolve());
            s.on('error', () => resolve());
          }),
      ),
    );
    const res = await new Client(gh.url).get('/.auth/health');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { status: 'ok' });
  });
});

describe('probes by address (load balancers, kubelets)', () => {
  test('/.auth/health and /.auth/ready answer whatever the Host; every other route still gets 421', async () => {
    for (const h of ['10.0.0.7:8080', '[fd00::7]:8080', 'localhost', 'evil.example']) {
      for (const path of ['/.auth/health', '/.auth/ready', '/.AUTH/health']) {
        const r = await rawRequest(gh.port, `GET ${path} HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
        assert.equal(r.status, 200, `${path} with Host: ${h}`);
      }
      const head = await rawRequest(gh.port, `HEAD /.auth/ready HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
      assert.equal(head.status, 200);
      for (const path of [
        '/.auth/login',
        '/.auth/me',
        '/public/x',
        '/.auth/health/x',
        '/.well-known/oauth-authorization-server',
        '/.well-known/jwks.json/x',
      ]) {
        const r = await rawRequest(gh.port, `GET ${path} HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
        assert.equal(r.status, 421, `${path} with Host: ${h}`);
      }
      const post = await rawRequest(
        gh.port,
        `POST /.auth/health HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(post.status, 421, 'only GET and HEAD are probes');
    }
  });

  test("health-check disguises: a prober's User-Agent, or a health path put before a protected one, get no pass (security.md #6)", async () => {
    const before = gh.upstream.requests.length;
    const get = (path: string, hostLine: string, agent = '') =>
      rawRequest(gh.port, `GET ${path} HTTP/1.1\r\n${hostLine}${agent}Connection: close\r\n\r\n`);
    for (const agent of [
      'kube-probe/1.31',
      'ELB-HealthChecker/2.0',
      'GoogleHC/1.0',
      'Consul Health Check',
      'Amazon-Route53-Health-Check-Service (ref 1; report http://amzn.to/1vsZADi)',
    ]) {
      const ua = `User-Agent: ${agent}\r\n`;
      assert.equal((await get('/private/x', host(), ua)).status, 401, agent);
      assert.equal((await get('/private/x', 'Host: 10.0.0.7:8080\r\n', ua)).status, 421, `${agent}, by address`);
    }
    for (const path of [
      '/.auth/health/../../private/x',
      '/.auth/ready/../../private/x',
      '/health/private/x',
      '/healthz/../private/x',
      '/private/.auth/health',
      '/private/x?/.auth/health',
    ]) {
      assert.equal((await get(path, host())).status, 401, path);
      assert.equal((await get(path, 'Host: 10.0.0.7:8080\r\n')).status, 421, `${path}, by address`);
    }
    assert.equal((await get('/.auth/health;/../private/x', host())).status, 400);
    assert.equal(gh.upstream.requests.length, before, 'the app saw none of them');
    const health = await get('/.auth/health', 'Host: 10.0.0.7:8080\r\n', 'User-Agent: kube-probe/1.31\r\n');
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.text.slice(health.text.indexOf('\r\n\r\n') + 4)), { status: 'ok' });
  });

  test('/.well-known/jwks.json answers whatever the Host too: apps fetch the keys by an internal address', async () => {
    for (const h of ['gatehouse.internal:8080', '10.0.0.7:8080', '[fd00::7]:8080', 'localhost']) {
      const r = await rawRequest(
        gh.port,
        `GET /.well-known/jwks.json HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(r.status, 200, `jwks.json with Host: ${h}`);
      assert.match(r.text, /\r\ncontent-type: application\/jwk-set\+json\r\n/i);
      const body = r.text.slice(r.text.indexOf('\r\n\r\n') + 4);
      assert.ok((JSON.parse(body) as { keys: unknown[] }).keys.length > 0, 'the key set');
      const head = await rawRequest(
        gh.port,
        `HEAD /.well-known/jwks.json HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(head.status, 200);
      const post = await rawRequest(
        gh.port,
        `POST /.well-known/jwks.json HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(post.status, 421, 'only GET and HEAD answer without a site');
    }
  });
});
