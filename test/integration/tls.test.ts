import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { eventually } from '../faults/services.ts';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';
import { selfSigned, type TestCert } from '../helpers/tls.ts';

/**
 * Gatehouse's own TLS (listen.tls): HTTP/1.1 and HTTP/2 on one port, WebSockets over
 * HTTP/1.1, and the certificate swapped on reload without dropping connections.
 */

let gh: TestGatehouse;
let cert: TestCert;
let files: { cert: string; key: string };

/** Served certificates' CN, as a fresh TLS connection sees it. */
function servedCN(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.end();
      resolve(String(Array.isArray(cn) ? cn[0] : cn));
    });
    s.on('error', reject);
  });
}

interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

function h2(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    let data = '';
    let head: http2.IncomingHttpHeaders = {};
    req.setEncoding('utf8');
    req.on('response', (h) => (head = h));
    req.on('data', (d) => (data += d));
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: data }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

before(async () => {
  cert = selfSigned({ cn: 'first' });
  gh = await startGatehouse(
    () => ({
      routes: [{ path: '/public/**', access: 'public' }],
      accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
      cors: { origins: ['https://spa.example'] },
    }),
    {
      // The files Gatehouse reads are copies, so the test can replace them for a reload.
      tls: (() => {
        const c = join(cert.cert.replace(/server\.crt$/, 'live.crt'));
        const k = join(cert.key.replace(/server\.key$/, 'live.key'));
        copyFileSync(cert.cert, c);
        copyFileSync(cert.key, k);
        files = { cert: c, key: k };
        return { ...cert, ...files };
      })(),
    },
  );
});
after(() => gh.close());

describe('HTTP/1.1 over TLS', () => {
  test('sign-in with __Host- cookies, and the app learns https and the user', async () => {
    const c = new Client(gh.url, { dispatcher: cert.agent });
    const reg = await c.postJson('/.auth/register', { email: uniqueEmail('tls'), password: PASSWORD });
    assert.equal(reg.status, 201, reg.text);
    assert.ok(reg.cookies.some((s) => s.startsWith('__Host-gatehouse=') && /; Secure/.test(s)));
    const res = await c.get('/private/page');
    assert.equal(res.status, 200);
    const seen = res.json();
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-user-id'], reg.json().user.id);
    // The login form works too (no diagnosis: the scheme is Gatehouse's own).
    const form = await new Client(gh.url, { dispatcher: cert.agent }).html('/.auth/login');
    assert.equal(form.status, 200);
  });

  test('a WebSocket upgrade over HTTP/1.1 TLS is tunnelled with the identity added', async () => {
    const c = new Client(gh.url, { dispatcher: cert.agent });
    const user = (await c.postJson('/.auth/register', { email: uniqueEmail('wss'), password: PASSWORD })).json().user;
    const ws = new WebSocket(`wss://127.0.0.1:${gh.port}/ws`, {
      ca: cert.pem,
      headers: { cookie: c.cookieHeader()!, origin: gh.url },
    });
    const hello = await new Promise<{ headers: Record<string, string> }>((resolve, reject) => {
      ws.once('message', (m) => resolve(JSON.parse(String(m))));
      ws.once('error', reject);
    });
    assert.equal(hello.headers['x-user-id'], user.id);
    const echo = new Promise<string>((resolve) => ws.once('message', (m) => resolve(String(m))));
    ws.send('ping');
    assert.equal(await echo, 'ping');
    ws.close();
    // Without a session: refused before the app is asked.
    const anon = new WebSocket(`wss://127.0.0.1:${gh.port}/ws`, { ca: cert.pem });
    const code = await new Promise<number>((resolve) =>
      anon.once('unexpected-response', (_req, res) => resolve(res.statusCode!)),
    );
    assert.equal(code, 401);
  });
});

describe('HTTP/2 (node:http2 client)', () => {
  let session: http2.ClientHttp2Session;
  let cookie: string;
  let userId: string;
  before(async () => {
    session = http2.connect(gh.url, { ca: cert.pem });
    const reg = await h2(
      session,
      { ':method': 'POST', ':path': '/.auth/register', 'content-type': 'application/json', accept: 'application/json' },
      JSON.stringify({ email: uniqueEmail('h2'), password: PASSWORD }),
    );
    assert.equal(reg.status, 201, reg.body);
    userId = JSON.parse(reg.body).user.id;
    const set = reg.headers['set-cookie'] as string[];
    cookie = set.map((s) => s.split(';')[0]).join('; ');
  });
  after(() => session.close());

  test('the session negotiated h2 (ALPN)', () => {
    assert.equal(session.alpnProtocol, 'h2');
  });

  test('a proxied request: Host from :authority, no pseudo-headers or h2 cookie split reach the app, no connection headers come back', async () => {
    const before = gh.upstream.requests.length;
    // Two cookie fields, as HTTP/2 clients send them; the session cookie among them.
    const res = await h2(session, {
      ':method': 'GET',
      ':path': '/private/h2?x=1',
      cookie: ['app=one', cookie, 'other=two'],
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(gh.upstream.requests.length, before + 1);
    const seen = gh.upstream.last();
    assert.equal(seen.url, '/private/h2?x=1');
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.ok(!names.some((n) => n.startsWith(':')), names.join(', '));
    assert.equal(names.filter((n) => n === 'cookie').length, 1, 'one Cookie header for HTTP/1.1');
    assert.equal(seen.headers.cookie, 'app=one; other=two', "Gatehouse's own cookie is cut out, the rest joined");
    assert.equal(seen.headers['x-user-id'], userId);
    assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${gh.port}`);
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers.host, new URL(gh.upstream.url).host);
    // The echo app answers with Connection/Keep-Alive headers: they are not HTTP/2 headers.
    for (const h of ['connection', 'keep-alive', 'transfer-encoding', 'x-app-private'])
      assert.equal(res.headers[h], undefined, h);
    assert.deepEqual(res.headers['set-cookie'], ['app=1; Path=/']);
  });

  test('a request body without Content-Length streams through; HEAD and errors keep the session usable', async () => {
    const body = 'x'.repeat(100_000);
    const res = await h2(
      session,
      { ':method': 'POST', ':path': '/upload', cookie, 'content-type': 'text/plain' },
      body,
    );
    assert.equal(res.status, 200);
    assert.equal(gh.upstream.last().bodyBytes, body.length);
    // An oversized own-route body: 413 (its HTTP/1.1 "Connection: close" is not sent on h2).
    const big = await h2(
      session,
      { ':method': 'POST', ':path': '/.auth/login', 'content-type': 'application/json' },
      JSON.stringify({ email: 'a@b.c', password: 'p'.repeat(20_000) }),
    );
    assert.equal(big.status, 413);
    assert.equal(big.headers.connection, undefined);
    const me = await h2(session, { ':method': 'GET', ':path': '/.auth/me', cookie });
    assert.equal(me.status, 200);
    assert.equal(JSON.parse(me.body).id, userId);
    const head = await h2(session, { ':method': 'HEAD', ':path': '/public/x' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  test("cors: on HTTP/2: a preflight is answered by Gatehouse; its 401 and the app's answer carry the headers", async () => {
    const before = gh.upstream.requests.length;
    const pre = await h2(session, {
      ':method': 'OPTIONS',
      ':path': '/private/api',
      origin: 'https://spa.example',
      'access-control-request-method': 'PUT',
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://spa.example');
    assert.equal(pre.headers['access-control-allow-methods'], 'GET, HEAD, POST, PUT, PATCH, DELETE');
    assert.equal(gh.upstream.requests.length, before, 'never forwarded');
    const anonymous = await h2(session, { ':method': 'PUT', ':path': '/private/api', origin: 'https://spa.example' });
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.headers['access-control-allow-origin'], 'https://spa.example');
    assert.equal(anonymous.headers['access-control-expose-headers'], 'www-authenticate');
    const signed = await h2(session, {
      ':method': 'GET',
      ':path': '/private/api',
      origin: 'https://spa.example',
      cookie,
    });
    assert.equal(signed.status, 200);
    assert.equal(signed.headers['access-control-allow-origin'], 'https://spa.example');
    assert.equal(signed.headers.vary, 'Origin');
  });

  test('anonymous browsers are sent to login; an unknown :authority gets 421', async () => {
    const res = await h2(session, { ':method': 'GET', ':path': '/private/x', accept: 'text/html' });
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, `${gh.url}/.auth/login?rd=%2Fprivate%2Fx`);
    const other = await h2(session, { ':method': 'GET', ':path': '/', ':authority': 'evil.example' });
    assert.equal(other.status, 421);
  });
});

describe('listen.tls with an http publicUrl, no trusted proxy', () => {
  test('a protected browser request gets the explanation, not a redirect to the http address this port cannot serve', async () => {
    const other = await startGatehouse(({ port }) => ({ publicUrl: `http://127.0.0.1:${port}` }), {
      tls: cert,
      upstream: gh.upstream,
    });
    try {
      const c = new Client(`https://127.0.0.1:${other.port}`, { dispatcher: cert.agent });
      const res = await c.html('/private');
      assert.equal(res.status, 421, res.location);
      assert.match(res.text, /cause <code>public_url_http<\/code>/);
      assert.match(res.text, new RegExp(`publicUrl: https://127\\.0\\.0\\.1:${other.port}/`));
    } finally {
      await other.close();
    }
  });
});

describe('what is HTTP/2 is decided by the connection, never by the request line', () => {
  test('"HTTP/2.0" in an HTTP/1.1 request line over TLS gets 505, and the process lives on', async () => {
    const host = `Host: 127.0.0.1:${gh.port}\r\n`;
    for (const line of ['GET /.auth/health HTTP/2.0', 'GET /public/x HTTP/2.0', 'POST /public/x HTTP/2.0']) {
      const r = await rawRequest(gh.port, `${line}\r\n${host}\r\n`, 3000, { ca: cert.pem });
      assert.equal(r.status, 505, `${line}: ${r.text.split('\r\n')[0]}`);
      assert.ok(r.closed);
    }
    const h1 = await new Client(gh.url, { dispatcher: cert.agent }).get('/.auth/health');
    assert.equal(h1.status, 200);
  });

  test('absolute-form targets: HTTP/1.1 over own TLS serves them as origin-form; HTTP/2 has none, a :path in absolute form is a stream error', async () => {
    const authority = `127.0.0.1:${gh.port}`;
    const before = gh.upstream.requests.length;
    const h1 = await rawRequest(
      gh.port,
      `GET https://${authority}/public/abs?x=1 HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`,
      3000,
      { ca: cert.pem },
    );
    assert.equal(h1.status, 200, h1.text.split('\r\n')[0]);
    assert.equal(gh.upstream.last().url, '/public/abs?x=1');
    const other = await rawRequest(
      gh.port,
      `GET https://evil.example/public/abs HTTP/1.1\r\nHost: ${authority}\r\n\r\n`,
      3000,
      { ca: cert.pem },
    );
    assert.equal(other.status, 400);
    assert.ok(other.closed);
    const session = http2.connect(gh.url, { ca: cert.pem });
    try {
      // nghttp2 itself resets such a stream (RFC 9113 §8.3.1): Gatehouse never gets one.
      for (const path of [`https://${authority}/public/abs`, `http://${authority}/public/abs`])
        await assert.rejects(h2(session, { ':method': 'GET', ':path': path }), /NGHTTP2_PROTOCOL_ERROR/, path);
      assert.equal((await h2(session, { ':method': 'GET', ':path': '/public/abs' })).status, 200);
    } finally {
      session.close();
    }
    assert.equal(gh.upstream.requests.length, before + 2, 'the app saw the two origin-form ones only');
  });

  test('real HTTP/2: a body is there when DATA frames follow, absent when the headers end the stream; Host must agree with :authority; CONNECT → 405', async () => {
    const session = http2.connect(gh.url, { ca: cert.pem });
    try {
      const empty = await h2(session, { ':method': 'POST', ':path': '/public/empty' });
      assert.equal(empty.status, 200);
      assert.equal(gh.upstream.last().bodyBytes, 0);
      const full = await h2(session, { ':method': 'POST', ':path': '/public/full' }, 'abc');
      assert.equal(full.status, 200);
      assert.equal(gh.upstream.last().bodyBytes, 3);
      const before = gh.upstream.requests.length;
      const other = await h2(session, {
        ':method': 'GET',
        ':path': '/public/x',
        ':authority': `127.0.0.1:${gh.port}`,
        host: 'evil.example',
      });
      assert.equal(other.status, 400);
      assert.equal(gh.upstream.requests.length, before);
      // Compared normalized: https's default port written on one side only is the same host
      // (this one is no site here: 421, not the 400 of a disagreement).
      for (const [authority, host] of [
        ['127.0.0.1:443', '127.0.0.1'],
        ['127.0.0.1', '127.0.0.1:443'],
        ['127.0.0.1', '127.0.0.1:80'],
      ] as const) {
        const same = await h2(session, { ':method': 'GET', ':path': '/public/x', ':authority': authority, host });
        assert.equal(same.status, host.endsWith(':80') ? 400 : 421, `${authority} / ${host}`);
      }
      assert.equal(gh.upstream.requests.length, before);
      const connect = await h2(session, { ':method': 'CONNECT', ':authority': `127.0.0.1:${gh.upstream.port}` });
      assert.equal(connect.status, 405);
      assert.equal((await h2(session, { ':method': 'GET', ':path': '/.auth/health' })).status, 200);
    } finally {
      session.close();
    }
  });
});

describe('certificate reload', () => {
  test('reloadTls() serves a new certificate to new connections; open HTTP/2 sessions keep working', async () => {
    const next = selfSigned({ cn: 'second' });
    const session = http2.connect(gh.url, { ca: cert.pem });
    assert.equal((await h2(session, { ':method': 'GET', ':path': '/.auth/health' })).status, 200);
    assert.equal(await servedCN(gh.port, cert.pem), 'first');

    copyFileSync(next.cert, files.cert);
    copyFileSync(next.key, files.key);
    assert.equal(gh.gatehouse.reloadTls(), true);
    assert.equal(await servedCN(gh.port, next.pem), 'second');
    assert.equal(
      (await h2(session, { ':method': 'GET', ':path': '/.auth/health' })).status,
      200,
      'the old session was not dropped',
    );
    session.close();
    assert.ok(
      gh.logs.some((l) => l.event === 'tls_reload' && l.outcome === 'ok' && String(l.subject).includes('second')),
    );

    // A key that does not match: logged, the pair in use stays.
    copyFileSync(cert.key, files.key);
    assert.equal(gh.gatehouse.reloadTls(), false);
    assert.equal(await servedCN(gh.port, next.pem), 'second');
    const failed = gh.logs.find((l) => l.event === 'tls_reload' && l.outcome === 'failed') as
      | { err: { message: string } }
      | undefined;
    assert.match(failed!.err.message, /listen\.tls\.key: .* is not the key of the certificate/);
    copyFileSync(next.key, files.key);
  });

  test('gatehouse serve reloads on SIGHUP, and refuses to start with a broken pair', async () => {
    const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
    const port = await freePort();
    const one = selfSigned({ cn: 'hup-one' });
    const two = selfSigned({ cn: 'hup-two' });
    const live = {
      cert: one.cert.replace(/server\.crt$/, 'live.crt'),
      key: one.key.replace(/server\.key$/, 'live.key'),
    };
    copyFileSync(one.cert, live.cert);
    copyFileSync(one.key, live.key);
    const config = join(gh.dir, 'hup.yaml');
    writeFileSync(
      config,
      `publicUrl: https://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}, tls: {cert: ${live.cert}, key: ${live.key}}}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'hup.db')}}\nlog: {level: warn}\n`,
    );
    const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await eventually('serve is up', () => servedCN(port, one.pem).then((cn) => cn === 'hup-one'));
      copyFileSync(two.cert, live.cert);
      copyFileSync(two.key, live.key);
      child.kill('SIGHUP');
      await eventually('the new certificate is served', () =>
        servedCN(port, two.pem)
          .then((cn) => cn === 'hup-two')
          .catch(() => false),
      );
      assert.equal(child.exitCode, null, 'SIGHUP does not stop the server');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
    }

    writeFileSync(
      config,
      `publicUrl: https://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}, tls: {cert: ${live.cert}.missing, key: ${live.key}}}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'hup.db')}}\n`,
    );
    const bad = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    bad.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => bad.once('close', r));
    assert.equal(code, 1);
    assert.match(stderr, /listen\.tls\.cert: cannot read .*live\.crt\.missing \(no such file\)/);
  });
});
