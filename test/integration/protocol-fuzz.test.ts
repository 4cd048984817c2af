import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { Client, registerJson } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { selfSigned, type TestCert } from '../helpers/tls.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * Request lines and header shapes, generated (fast-check, fixed seed: a failure names its
 * case and reproduces), sent byte for byte to the plain listener and to own TLS (HTTP/1.1 by
 * ALPN, where a request line claiming HTTP/2.0 used to end the process). Every case must be
 * answered or have its connection closed, no answer may be a 5xx (505 only for a version
 * that is not 1.0 or 1.1; the app is up, so a 502 is a finding too), and the node must serve
 * a normal request after each one.
 */

let upstream: TestUpstream;
let cert: TestCert;
const listeners: { name: string; gh: TestGatehouse; ca?: string; cookie: string }[] = [];

before(async () => {
  upstream = await startUpstream();
  cert = selfSigned();
  const config = () => ({ routes: [{ path: '/public/**', access: 'public' as const }] });
  const plain = await startGatehouse(config, { upstream, logLevel: 'info' });
  const secure = await startGatehouse(config, { upstream, logLevel: 'info', tls: cert });
  for (const [name, gh, ca] of [
    ['plain', plain, undefined],
    ['tls', secure, cert.pem],
  ] as const) {
    const c = new Client(gh.url, ca ? { dispatcher: cert.agent } : {});
    await registerJson(c);
    listeners.push({ name, gh, ca, cookie: c.cookieHeader()! });
  }
});
after(async () => {
  await Promise.all(listeners.map((l) => l.gh.close()));
  await upstream.close();
});

interface Exchange {
  text: string;
  statuses: number[];
  closed: boolean;
}

/**
 * Writes `bytes` and reads until the server closes the connection, or has answered and gone
 * quiet. A server that says nothing at all for a while gets end-of-stream (the case may be an
 * unfinished request on purpose), which makes Node's parser decide at once; one that still
 * neither answers nor closes by the deadline fails the case.
 */
function exchange(port: number, bytes: string, ca: string | undefined): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    let quiet: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(deadline);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => Number(m[1]));
      resolve({ text, statuses, closed });
    };
    const wait = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => (chunks.length ? finish(false) : socket.end()), chunks.length ? 40 : 150);
    };
    const deadline = setTimeout(() => finish(false), 5000);
    const open = () => {
      socket.write(Buffer.from(bytes, 'latin1'));
      wait();
    };
    const socket: net.Socket = ca
      ? tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, open)
      : net.connect(port, '127.0.0.1', open);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      wait();
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
  });
}

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
type Part<T> = { usual: fc.Arbitrary<T>; odd: fc.Arbitrary<T> };
type Framing = { headers: readonly string[]; body: string };

/*
 * Each part of a request has a usual form and odd ones. A case is a usual request with up to
 * two parts made odd, so cases get past the parser to the routes, the rules, the upgrade path
 * and the app as often as they hit its refusals.
 */

const method: Part<string> = {
  usual: fc.constantFrom('GET', 'GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'),
  odd: fc.oneof(
    w(
      4,
      fc.constantFrom('CONNECT', 'TRACE', 'PRI', 'SOURCE', 'QUERY', 'PROPFIND', 'M-SEARCH', 'PURGE', 'LINK', 'MKCOL'),
    ),
    w(2, fc.constantFrom('get', 'G ET', 'GET\t', 'X'.repeat(200), '')),
    w(1, fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/)),
  ),
};

const ROUTES = [
  '/public/x',
  '/public/',
  '/private/x',
  '/public/ws',
  '/ws',
  '/.auth/health',
  '/.auth/ready',
  '/.auth/me',
  '/.auth/login',
  '/.auth/logout',
  '/.auth/check',
  '/.auth/nope',
  '/.AUTH/health',
  '/.well-known/jwks.json',
  '/.well-known/oauth-authorization-server',
  '/public/x?a=1&b=%C0%AE',
];
const path = (segment: fc.Arbitrary<string>, tail: fc.Arbitrary<string>) =>
  fc
    .tuple(
      fc.constantFrom('/public', '/private', '/.auth', ''),
      fc.array(segment, { minLength: 1, maxLength: 4 }),
      tail,
    )
    .map(([prefix, segs, t]) => `${prefix}/${segs.join('/')}${t}`);
const target: Part<string> = {
  usual: fc.oneof(
    w(2, fc.constantFrom(...ROUTES)),
    w(1, path(fc.stringMatching(/^[A-Za-z0-9._~-]{1,8}$/), fc.constantFrom('', '?x=1'))),
  ),
  odd: fc.oneof(
    w(
      4,
      path(
        fc.oneof(
          w(3, fc.stringMatching(/^[A-Za-z0-9._~-]{1,8}$/)),
          w(2, fc.constantFrom('.', '..', '', '%2e%2e', '%2f', ';x=1', '%3b', '%25', '%00', '%0d%0a', '%20', '%7E')),
          w(2, fc.constantFrom('%C0%AE', '%C3%A9', '%E2%82%AC', '%ED%A0%80', '%F4%90%80%80', '%E2%82', '%80', '%FF')),
          w(1, fc.constantFrom('\\', '#', '"', '<', '{', '|', '^', '`', '\u00e9', ' ', '\t', '%', '%zz')),
          w(
            1,
            fc.integer({ min: 0, max: 255 }).map((b) => `%${b.toString(16).padStart(2, '0')}`),
          ),
        ),
        fc.constantFrom('', '?', '?a=%0a', '#frag', '?x=\u00e9', '?x=%C0%AE'),
      ),
    ),
    w(
      1,
      fc.constantFrom('*', 'http://HOST/public/x', 'https://evil.example/public/x', 'HOST', '127.0.0.1:1', '', '//'),
    ),
  ),
};

const version: Part<string> = {
  usual: fc.oneof(w(4, fc.constant('HTTP/1.1')), w(1, fc.constant('HTTP/1.0'))),
  odd: fc.oneof(
    w(3, fc.constant('HTTP/2.0')),
    w(
      2,
      fc.constantFrom('HTTP/0.9', 'HTTP/3.0', 'HTTP/1.2', 'HTTP/2', 'HTTP/1', 'http/1.1', 'HTTP/11', 'HTTP/1.1 x', ''),
    ),
  ),
};

const host: Part<readonly string[]> = {
  usual: fc.constant(['Host: HOST']),
  odd: fc.constantFrom(
    [],
    ['Host: HOST', 'Host: HOST'],
    ['Host: HOST', 'Host: evil.example'],
    ['Host: evil.example'],
    ['Host:'],
    ['Host: HOST, HOST'],
    ['host: 127.0.0.1'],
    ['Host: a_b:1'],
  ),
};

/** Body framing: none or honest; or odd (headers and body that may disagree, smuggling attempts). */
const framing: Part<Framing> = {
  usual: fc.oneof(
    w(3, fc.constant({ headers: [], body: '' })),
    w(
      2,
      fc.constantFrom('abc', '{}', 'rd=%2Fx').map((b) => ({ headers: [`Content-Length: ${b.length}`], body: b })),
    ),
    w(1, fc.constant({ headers: ['Transfer-Encoding: chunked'], body: '3\r\nabc\r\n0\r\n\r\n' })),
  ),
  odd: fc.record({
    headers: fc.array(
      fc.constantFrom(
        'Content-Length: 0',
        'Content-Length: 3',
        'Content-Length: 100',
        'Content-Length: -1',
        'Content-Length: abc',
        'Content-Length: 3, 3',
        'Content-Length: 99999999999999999999',
        'Transfer-Encoding: chunked',
        'Transfer-Encoding: Chunked',
        'Transfer-Encoding: gzip, chunked',
        'Transfer-Encoding: identity, chunked',
        'Transfer-Encoding: chunked, identity',
        'Transfer-Encoding: gzip',
        'Transfer-Encoding:',
      ),
      { minLength: 1, maxLength: 2 },
    ),
    body: fc.constantFrom(
      '',
      'abc',
      '0\r\n\r\n',
      '3\r\nabc\r\n0\r\n\r\n',
      'zz\r\nabc\r\n',
      '0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: HOST\r\n\r\n',
      'GET /public/pipelined HTTP/1.1\r\nHost: HOST\r\n\r\n',
    ),
  }),
};

const WS =
  'Upgrade: websocket|Connection: Upgrade|Sec-WebSocket-Version: 13|Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==';
const usualHeader = fc.oneof(
  w(
    8,
    fc.constantFrom(
      'Cookie: COOKIE',
      'Cookie: gatehouse=forged; __Host-gatehouse=forged',
      'Authorization: Bearer x',
      'Authorization: Basic Zm9vOmJhcg==',
      'Content-Type: application/json',
      'Content-Type: application/x-www-form-urlencoded',
      'Content-Type: text/plain',
      'Origin: ORIGIN',
      'Origin: https://evil.example',
      'Origin: null',
      'Sec-Fetch-Site: same-origin',
      'Sec-Fetch-Site: cross-site',
      'Accept: text/html',
      'Accept: application/json',
      'Expect: 100-continue',
      'Expect: nonsense',
      'Connection: keep-alive',
      'Connection: close, x-user-id',
      'Connection: Upgrade, HTTP2-Settings|Upgrade: h2c|HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
      WS,
      'TE: trailers',
      'Keep-Alive: timeout=5',
      'X-User-Id: admin',
      'X-Forwarded-For: 1.2.3.4',
      'X-Original-URI: /private/x',
      'X-Obs: caf\u00e9',
    ),
  ),
  w(
    1,
    fc
      .tuple(fc.stringMatching(/^[A-Za-z0-9-]{1,16}$/), fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,19}$/))
      .map(([n, v]) => `${n}: ${v}`),
  ),
);
const oddHeader = fc.oneof(
  w(
    3,
    fc.constantFrom(
      'Authorization: Bearer x|Authorization: Bearer y',
      'Content-Type: text/plain|Content-Type: application/json',
      'Origin: ORIGIN|Origin: ORIGIN',
      ' folded',
      'X-Ctl: a\u0001b',
      'X-Del: a\u007fb',
      'X Space: 1',
      'X-Colon:: 1',
      ':authority: evil',
      'X-\u00c9: 1',
      'no colon',
      'X-Long: ' + 'a'.repeat(9000),
      'X-Empty:',
    ),
  ),
  w(
    1,
    fc
      .tuple(fc.stringMatching(/^[A-Za-z0-9-]{1,16}$/), fc.string({ maxLength: 20, unit: 'binary-ascii' }))
      .map(([n, v]) => `${n}: ${v.replace(/[\r\n]/g, '')}`),
  ),
);
const headers: Part<readonly string[]> = {
  usual: fc.array(usualHeader, { maxLength: 4 }),
  odd: fc
    .tuple(fc.array(usualHeader, { maxLength: 3 }), oddHeader, fc.nat())
    .map(([list, odd, at]) => list.toSpliced(at % (list.length + 1), 0, odd)),
};

const eol: Part<string> = { usual: fc.constant('\r\n'), odd: fc.constantFrom('\n', '\r') };

const PARTS = { method, target, version, host, framing, headers, eol };
type Name = keyof typeof PARTS;
const both = <T>(p: Part<T>) => fc.record({ usual: p.usual, odd: p.odd });

const request = fc
  .record({
    method: both(method),
    target: both(target),
    version: both(version),
    host: both(host),
    framing: both(framing),
    headers: both(headers),
    eol: both(eol),
    odd: fc.oneof(
      w(2, fc.constant([] as Name[])),
      w(2, fc.subarray(Object.keys(PARTS) as Name[], { minLength: 1, maxLength: 1 })),
      w(1, fc.subarray(Object.keys(PARTS) as Name[], { minLength: 2, maxLength: 2 })),
    ),
    close: fc.oneof(w(7, fc.constant(true)), w(3, fc.constant(false))),
  })
  .map((r) => {
    const part = <T>(k: Name, o: { usual: T; odd: T }) => (r.odd.includes(k) ? o.odd : o.usual);
    return {
      method: part('method', r.method),
      target: part('target', r.target),
      version: part('version', r.version),
      host: part('host', r.host),
      framing: part('framing', r.framing),
      headers: part('headers', r.headers),
      eol: part('eol', r.eol),
      close: r.close,
    };
  });

type Case = typeof request extends fc.Arbitrary<infer T> ? T : never;

function render(c: Case, l: (typeof listeners)[number]): string {
  const host = `127.0.0.1:${l.gh.port}`;
  const lines = [
    `${c.method} ${c.target} ${c.version}`.trimEnd(),
    ...c.host,
    ...c.headers.flatMap((h) => h.split('|')),
    ...c.framing.headers,
    ...(c.close ? ['Connection: close'] : []),
  ];
  return (lines.join(c.eol) + c.eol + c.eol + c.framing.body)
    .replaceAll('HOST', host)
    .replaceAll('COOKIE', l.cookie)
    .replaceAll('ORIGIN', l.gh.url);
}

test('generated request lines and header shapes: always answered or closed, never a 5xx, the node lives on', async () => {
  await fc.assert(
    fc.asyncProperty(request, async (c) => {
      const results = await Promise.all(
        listeners.map(async (l) => ({ l, r: await exchange(l.gh.port, render(c, l), l.ca) })),
      );
      for (const { l, r } of results) {
        const what = `${l.name}: ${JSON.stringify(render(c, l).slice(0, 300))} → ${JSON.stringify(r.text.slice(0, 120))}`;
        assert.ok(r.closed || r.statuses.length > 0, `neither answered nor closed; ${what}`);
        const versionOk = c.version === 'HTTP/1.1' || c.version === 'HTTP/1.0';
        for (const s of r.statuses) assert.ok(s < 500 || (s === 505 && !versionOk), `${s}; ${what}`);
      }
      await Promise.all(
        listeners.map(async (l) => {
          const health = await new Client(l.gh.url, l.ca ? { dispatcher: cert.agent } : {}).get('/.auth/health');
          assert.equal(health.status, 200, `${l.name}: the node answers after ${JSON.stringify(render(c, l))}`);
        }),
      );
    }),
    { seed: 20261206, numRuns: 150 },
  );
  for (const l of listeners) {
    const errors = l.gh.logs.filter((x) => Number(x.level) >= 50 || x.event === 'upstream_error');
    assert.deepEqual(errors, [], `${l.name}: no internal or upstream errors logged`);
  }
});
