import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';

/**
 * Absolute-form request targets (`GET http://host/path HTTP/1.1`), which a server must accept
 * (RFC 9112 §3.2.2): served as their origin-form through the whole pipeline when the target
 * names the Host; 400 and a closed connection when it names another host or carries user
 * information; the path checked exactly like an origin-form one (security.md #222).
 */

let gh: TestGatehouse;
let cookie: string;
let userId: string;

before(async () => {
  gh = await startGatehouse(() => ({
    routes: [{ path: '/public/**', access: 'public' }],
    // Forward-auth answers a trusted proxy only; no test here sends forwarding headers.
    trustedProxies: ['loopback'],
  }));
  const c = new Client(gh.url);
  await registerJson(c);
  cookie = c.cookieHeader()!;
  userId = (await c.get('/.auth/me')).json().id;
});
after(() => gh.close());

const authority = () => `127.0.0.1:${gh.port}`;
const host = () => `Host: ${authority()}\r\n`;
const body = (text: string) => text.slice(text.indexOf('\r\n\r\n') + 4);
const header = (text: string, name: string) =>
  new RegExp(`\\r\\n${name}: ([^\\r]*)\\r\\n`, 'i').exec(text.slice(0, text.indexOf('\r\n\r\n') + 2))?.[1];

/** One GET with `target` on the request line, answered and closed. */
const get = (target: string, lines = `${host()}Cookie: ${cookie}\r\n`) =>
  rawRequest(gh.port, `GET ${target} HTTP/1.1\r\n${lines}Connection: close\r\n\r\n`);

describe('absolute-form targets naming the Host are served as their origin-form (security.md #222)', () => {
  test('a signed-in request to a protected app is proxied; the app gets origin-form path and query; the log line names the normalized path', async () => {
    for (const [target, seen] of [
      [`http://${authority()}/private/items?x=1&y=%2F`, '/private/items?x=1&y=%2F'],
      [`HTTP://${authority()}/private/Case`, '/private/Case'],
      [`http://${authority()}/private/a/./b//c/../d`, '/private/a/b/d'],
      [`http://${authority()}`, '/'],
      [`http://${authority()}?q=1`, '/?q=1'],
      // The scheme is not the socket's: only the authority must be the Host's.
      [`https://${authority()}/private/tls`, '/private/tls'],
    ] as const) {
      const before = gh.upstream.requests.length;
      const r = await get(target);
      assert.equal(r.status, 200, `${target}: ${r.text.split('\r\n')[0]}`);
      assert.equal(gh.upstream.requests.length, before + 1, target);
      const app = gh.upstream.last();
      assert.equal(app.url, seen, target);
      assert.equal(app.headers['x-user-id'], userId);
      assert.equal(app.headers['x-forwarded-host'], authority(), 'the host the client named');
      assert.ok(body(r.text).includes(`"url":${JSON.stringify(seen)}`), "the app's answer reaches the client");
      const line = gh.logs.find((l) => (l.req as { id?: string } | undefined)?.id === app.headers['x-request-id']);
      assert.equal((line?.req as { path?: string } | undefined)?.path, seen.split('?')[0], `log line of ${target}`);
    }
    // Without a session it is decided like the origin-form: sign in first.
    const anonymous = await get(`http://${authority()}/private/items`, host());
    assert.equal(anonymous.status, 401);
  });

  test("Gatehouse's own routes, well-known documents, forward-auth and the probes by address answer it", async () => {
    const health = await get(`http://${authority()}/.auth/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(body(health.text)), { status: 'ok' });
    const login = await get(`http://${authority()}/.auth/login?rd=%2Fprivate%2Fx`, `${host()}Accept: text/html\r\n`);
    assert.equal(login.status, 200);
    assert.match(header(login.text, 'content-type') ?? '', /^text\/html/);
    assert.match(body(login.text), /<form/);
    const me = await get(`http://${authority()}/.auth/me`);
    assert.equal(me.status, 200);
    assert.equal(JSON.parse(body(me.text)).id, userId);
    const jwks = await get(`http://${authority()}/.well-known/jwks.json`);
    assert.equal(jwks.status, 200);
    assert.ok((JSON.parse(body(jwks.text)) as { keys: unknown[] }).keys.length > 0);
    // Forward-auth: the question is asked in absolute form, the original URL as always.
    const before = gh.upstream.requests.length;
    const check = await get(
      `http://${authority()}/.auth/check`,
      `${host()}Cookie: ${cookie}\r\nX-Original-URI: /private/x?y=1\r\nX-Original-Method: GET\r\n`,
    );
    assert.equal(check.status, 200, check.text.split('\r\n')[0]);
    assert.equal(header(check.text, 'x-user-id'), userId);
    const anonymousCheck = await get(
      `http://${authority()}/.auth/check`,
      `${host()}X-Original-URI: /private/x\r\nX-Original-Method: GET\r\n`,
    );
    assert.equal(anonymousCheck.status, 401);
    assert.equal(gh.upstream.requests.length, before, 'forward-auth reaches no app');
    // Probes by address (routes answered whatever the Host) read the target too.
    for (const probe of ['10.0.0.7:8080', '[fd00::7]:8080']) {
      for (const path of ['/.auth/health', '/.auth/ready', '/.well-known/jwks.json'])
        assert.equal((await get(`http://${probe}${path}`, `Host: ${probe}\r\n`)).status, 200, `${path} by ${probe}`);
      assert.equal((await get(`http://${probe}/public/x`, `Host: ${probe}\r\n`)).status, 421, 'no site: 421');
    }
  });

  test('a WebSocket upgrade in absolute form is tunnelled; the app gets the origin-form, the log line the normalized path', async () => {
    const before = gh.upstream.requests.length;
    const head = await new Promise<string>((resolve, reject) => {
      let text = '';
      const s = net.connect(gh.port, '127.0.0.1', () =>
        s.write(
          `GET http://${authority()}/public/../ws?room=1 HTTP/1.1\r\n${host()}Cookie: ${cookie}\r\nOrigin: ${gh.url}\r\n` +
            'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        ),
      );
      s.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (text.includes('\r\n\r\n')) {
          s.destroy();
          resolve(text.slice(0, text.indexOf('\r\n\r\n')));
        }
      });
      s.on('error', reject);
      s.on('close', () => resolve(text));
    });
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.equal(gh.upstream.requests.length, before + 1);
    assert.equal(gh.upstream.last().url, '/ws?room=1');
    assert.equal(gh.upstream.last().headers['x-user-id'], userId);
    const id = gh.upstream.last().headers['x-request-id'];
    const line = gh.logs.find((l) => (l.req as { id?: string } | undefined)?.id === id);
    assert.deepEqual(line?.req, { id, method: 'GET', path: '/ws', upgrade: 'websocket' });
    assert.equal(line?.status, 101);
  });
});

describe('absolute-form targets that must not be served (security.md #222)', () => {
  test('another host than the Host header, user information or no host → 400 and a closed connection; the app sees nothing', async () => {
    const before = gh.upstream.requests.length;
    const ws =
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
    for (const [request, message] of [
      [`GET http://evil.example/public/x HTTP/1.1\r\n${host()}`, 'another host than the Host header'],
      [`GET http://${authority()}/public/x HTTP/1.1\r\nHost: evil.example\r\n`, 'another host than the Host header'],
      [`GET http://127.0.0.1:1/public/x HTTP/1.1\r\n${host()}`, 'another host than the Host header'],
      [`GET http://${authority()}.evil.example/private/x HTTP/1.1\r\n${host()}`, 'another host than the Host header'],
      [`GET http://evil.example/.auth/health HTTP/1.1\r\n${host()}`, 'another host than the Host header'],
      [`POST http://evil.example/.auth/logout HTTP/1.1\r\n${host()}Content-Length: 0\r\n`, 'another host'],
      [`GET http://evil.example/ws HTTP/1.1\r\n${host()}Origin: ${gh.url}\r\n${ws}`, 'another host'],
      // HTTP/1.0 may leave Host out; a target in absolute form then names a host no Host agrees with.
      [`GET http://${authority()}/public/x HTTP/1.0\r\n`, 'another host than the Host header'],
      [`GET http://user@${authority()}/public/x HTTP/1.1\r\n${host()}`, 'user information'],
      [`GET http://user:secret@${authority()}/private/x HTTP/1.1\r\n${host()}`, 'user information'],
      [`GET http://${authority()}@evil.example/public/x HTTP/1.1\r\n${host()}`, 'user information'],
      [`GET http://user@${authority()}/ws HTTP/1.1\r\n${host()}Origin: ${gh.url}\r\n${ws}`, 'user information'],
      [`GET http:///public/x HTTP/1.1\r\n${host()}`, 'names no host'],
    ] as const) {
      const r = await rawRequest(gh.port, `${request}Cookie: ${cookie}\r\n\r\n`);
      const what = JSON.stringify(request);
      assert.equal(r.status, 400, `${what}: ${r.text.split('\r\n')[0]}`);
      assert.ok(r.closed, `${what}: connection closed`);
      assert.match(body(r.text), new RegExp(message), what);
    }
    // Whatever was pipelined behind a refused one is not served.
    const pipelined = await rawRequest(
      gh.port,
      `GET http://evil.example/public/x HTTP/1.1\r\n${host()}\r\nGET /public/smuggled HTTP/1.1\r\n${host()}\r\n`,
    );
    assert.equal(pipelined.status, 400);
    assert.ok(pipelined.closed);
    assert.equal(pipelined.text.match(/^HTTP\/1\.1 /gm)?.length, 1, 'one answer, then the connection is closed');
    assert.equal(gh.upstream.requests.length, before, 'the app saw none of them');
    assert.equal((await get(`http://${authority()}/public/alive`)).status, 200, 'served again after them');
  });

  test('its path gets every check of an origin-form path: the same answer, the same path at the app', async () => {
    for (const path of [
      '/public/%2f..%2fprivate/x',
      '/public/..%2F..%2Fprivate',
      '/public/%5c..%5cprivate',
      '/public/a%3bb',
      '/public/%25',
      '/public/%C0%AE%C0%AE/private',
      '/public/%E0%80%AE',
      '/public/%C3',
      '/public/../../private/x',
      '/public/..',
      '/public/../private/x',
      '/public/%2e%2e/private/x',
      '/public/./a/../b//c',
      '/public/%2e/%7euser',
      '/public/caf%C3%A9',
      '/public/;x',
      '/public/a%00b',
      '/.auth/health/../../private/x',
      '/.AUTH/health',
      '//public//x',
      '/public/x?/../private',
    ]) {
      /** The status, and the target the app got (if it got one). */
      const send = async (target: string) => {
        const before = gh.upstream.requests.length;
        const r = await get(target, host());
        return { status: r.status, seen: gh.upstream.requests.length > before ? gh.upstream.last().url : undefined };
      };
      const { status, seen: originSeen } = await send(path);
      const { status: absolute, seen: absoluteSeen } = await send(`http://${authority()}${path}`);
      assert.equal(absolute, status, `${path}: absolute-form answered like origin-form`);
      assert.equal(absoluteSeen, originSeen, `${path}: the app got the same path`);
      if (status === 400) assert.equal(absoluteSeen, undefined);
    }
  });

  test('other schemes, malformed targets and the asterisk-form are answered as before', async () => {
    const before = gh.upstream.requests.length;
    for (const target of [
      `ftp://${authority()}/public/x`,
      `ws://${authority()}/public/x`,
      `file:///public/x`,
      `http:/public/x`,
      `http:public/x`,
      `httpx://${authority()}/public/x`,
      authority(),
    ]) {
      const r = await get(target, host());
      // Refused by Node's parser (http:/x) or by normalizeTarget (ftp://), never served.
      assert.equal(r.status, 400, `${target}: ${r.text.split('\r\n')[0]}`);
    }
    // OPTIONS * (asterisk-form): 400, as before; nothing of it is absolute-form.
    const asterisk = await rawRequest(gh.port, `OPTIONS * HTTP/1.1\r\n${host()}Connection: close\r\n\r\n`);
    assert.equal(asterisk.status, 400);
    assert.equal(gh.upstream.requests.length, before, 'the app saw none of them');
  });
});
