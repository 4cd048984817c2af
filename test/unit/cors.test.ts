import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, test } from 'node:test';
import { explain } from '../../src/cli/check.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { compileCors, isPreflight, setCorsHeaders, withoutAppCors } from '../../src/http/cors.ts';
import { BASE_CONFIG, problems } from '../helpers/config.ts';

/** cors: in gatehouse.yaml (config/cors.ts) and the policy made of it (http/cors.ts). */

const parse = (yaml: string) => parseConfig(`${BASE_CONFIG}${yaml}`, 'g.yaml', {}).cors;

describe('cors: in gatehouse.yaml', () => {
  test('defaults: no cookies, the usual methods, Authorization and Content-Type, 10 minutes', () => {
    assert.equal(parse(''), undefined, 'off unless configured');
    const c = parse('cors:\n  origins: [https://spa.example.com]\n')!;
    assert.deepEqual(c, {
      origins: ['https://spa.example.com'],
      credentials: false,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      headers: ['Authorization', 'Content-Type'],
      exposeHeaders: [],
      maxAge: 600_000,
    });
  });

  test('the config refuses what would trust a page it should not, saying why', () => {
    const cases: [string, string, RegExp][] = [
      ['cors:\n  origins: ["*"]\n  credentials: true\n', 'cors.credentials', /needs a list of origins/],
      ['cors:\n  origins: ["*", https://a.example]\n', 'cors.origins', /stands alone/],
      ['cors:\n  origins: ["null"]\n', 'cors.origins[0]', /"null" and wildcards are not origins/],
      ['cors:\n  origins: [https://*.example.com]\n', 'cors.origins[0]', /not origins Gatehouse trusts/],
      ['cors:\n  origins: [https://a.example/app]\n', 'cors.origins[0]', /scheme and a host/],
      ['cors:\n  origins: [https://a.example/]\n', 'cors.origins[0]', /scheme and a host/],
      ['cors:\n  origins: [ftp://a.example]\n', 'cors.origins[0]', /scheme and a host/],
      ['cors:\n  origins: [https://user@a.example]\n', 'cors.origins[0]', /scheme and a host/],
      ['cors:\n  origins: []\n', 'cors.origins', /at least one entry/],
      ['cors:\n  origins: [https://a.example]\n  methods: [OPTIONS]\n', 'cors.methods[0]', /GET.*DELETE/],
      ['cors:\n  origins: [https://a.example]\n  headers: ["x y"]\n', 'cors.headers[0]', /letters, digits/],
      ['cors:\n  origins: [https://a.example]\n  maxAge: 2d\n', 'cors.maxAge', /between "0s" and "1d"/],
      ['cors:\n  origin: [https://a.example]\n', 'cors.origin', /did you mean "origins"/],
    ];
    for (const [yaml, key, message] of cases) {
      const ps = problems(`${BASE_CONFIG}${yaml}`);
      const p = ps.find((x) => x.key === key);
      assert.ok(p, `${yaml}: ${ps.map((x) => `${x.key}: ${x.message}`).join('; ')}`);
      assert.match(p.message, message, yaml);
    }
  });

  test('gatehouse check warns when a page over plain http may act as the user', () => {
    const warned = (yaml: string) =>
      lintConfig(parseConfig(`${BASE_CONFIG}${yaml}`, 'g.yaml', {})).filter((w) => w.key.includes('cors'));
    const [w] = warned(
      'cors:\n  origins: [http://spa.example.com, https://ok.example.com, http://localhost:5173]\n  credentials: true\n',
    );
    assert.equal(w?.key, 'cors.origins');
    assert.match(w!.message, /^http:\/\/spa\.example\.com: a page served over plain http .* List https origins\.$/);
    assert.deepEqual(
      warned('cors:\n  origins: [http://spa.example.com]\n'),
      [],
      'without cookies the page only has its token',
    );
    assert.deepEqual(
      warned('cors:\n  origins: [https://spa.example.com, http://127.0.0.1:6274]\n  credentials: true\n'),
      [],
    );
  });

  test('gatehouse check --explain says who may call the app and who answers a preflight', () => {
    const c = parseConfig(
      `${BASE_CONFIG}cors:\n  origins: [https://spa.example.com]\n  credentials: true\n`,
      'g.yaml',
      {},
    );
    assert.match(
      explain(c, 'https://app.example.com/api', 'GET'),
      /\n  cors: https:\/\/spa\.example\.com, with cookies\n/,
    );
    assert.match(
      explain(c, 'https://app.example.com/api', 'OPTIONS'),
      /a preflight .* is answered by Gatehouse \(204\)/,
    );
    assert.doesNotMatch(
      explain(parseConfig(BASE_CONFIG, 'g.yaml', {}), 'https://app.example.com/api', 'OPTIONS'),
      /cors/,
    );
  });

  test('per app under apps:', () => {
    const config = parseConfig(
      'publicUrl: https://app.example.com\napps:\n  - name: api\n    pathPrefix: /api\n    upstream: http://127.0.0.1:3001\n    cors:\n      origins: [https://spa.example.com]\n      credentials: true\n  - name: web\n    upstream: http://127.0.0.1:3000\n',
      'g.yaml',
      {},
    );
    assert.equal(config.apps![0]!.cors!.credentials, true);
    assert.equal(config.apps![1]!.cors, undefined);
  });
});

/** A request and a response with just what the CORS functions read and write. */
function exchange(headers: Record<string, string>, method = 'GET') {
  const set = new Map<string, string>();
  const req = { method, headers } as unknown as IncomingMessage;
  const res = {
    setHeader: (k: string, v: string) => set.set(k, v),
    getHeader: (k: string) => set.get(k),
  } as unknown as ServerResponse;
  return { req, res, set };
}

describe('the CORS policy', () => {
  const listed = compileCors({
    origins: ['HTTPS://Spa.Example.com:443', 'http://localhost:6274'],
    credentials: true,
    methods: ['GET', 'POST'],
    headers: ['Authorization', 'Mcp-Session-Id'],
    exposeHeaders: ['Mcp-Session-Id', 'WWW-Authenticate'],
    maxAge: 90_500,
  })!;

  test('origins are kept as browsers serialize them; the answer values are made once', () => {
    assert.deepEqual([...listed.origins], ['https://spa.example.com', 'http://localhost:6274']);
    assert.equal(listed.allowMethods, 'GET, POST');
    assert.equal(listed.allowHeaders, 'authorization, mcp-session-id');
    assert.equal(listed.expose, 'www-authenticate, mcp-session-id', 'once, whatever the case');
    assert.equal(listed.maxAge, '90');
    assert.equal(compileCors(undefined), null);
  });

  test('a listed origin gets itself back, with credentials; any other only Vary', () => {
    const ok = exchange({ origin: 'https://spa.example.com' });
    setCorsHeaders(listed, ok.req, ok.res);
    assert.deepEqual(Object.fromEntries(ok.set), {
      vary: 'Origin',
      'access-control-allow-origin': 'https://spa.example.com',
      'access-control-allow-credentials': 'true',
      'access-control-expose-headers': 'www-authenticate, mcp-session-id',
    });
    for (const origin of [
      'https://SPA.example.com',
      'https://spa.example.com:443',
      'https://spa.example.com.evil',
      'null',
    ]) {
      const no = exchange({ origin });
      setCorsHeaders(listed, no.req, no.res);
      assert.deepEqual(Object.fromEntries(no.set), { vary: 'Origin' }, origin);
    }
  });

  test('"*": any origin gets "*", never credentials, no Vary', () => {
    const any = compileCors({
      origins: ['*'],
      credentials: false,
      methods: ['GET'],
      headers: [],
      exposeHeaders: [],
      maxAge: 0,
    })!;
    const x = exchange({ origin: 'https://anything.example' });
    setCorsHeaders(any, x.req, x.res);
    assert.deepEqual(Object.fromEntries(x.set), {
      'access-control-allow-origin': '*',
      'access-control-expose-headers': 'www-authenticate',
    });
    const none = exchange({});
    setCorsHeaders(any, none.req, none.res);
    assert.equal(none.set.size, 0);
  });

  test('a preflight is OPTIONS with Origin and Access-Control-Request-Method, nothing less', () => {
    assert.equal(isPreflight(exchange({ origin: 'o', 'access-control-request-method': 'PUT' }, 'OPTIONS').req), true);
    assert.equal(isPreflight(exchange({ origin: 'o' }, 'OPTIONS').req), false);
    assert.equal(isPreflight(exchange({ 'access-control-request-method': 'PUT' }, 'OPTIONS').req), false);
    assert.equal(isPreflight(exchange({ origin: 'o', 'access-control-request-method': 'PUT' }, 'POST').req), false);
  });

  test("the app's Access-Control-* go and its Vary keeps Origin once", () => {
    const { res } = exchange({});
    res.setHeader('vary', 'Origin');
    const cases: [Record<string, string | string[]>, Record<string, string | string[]>][] = [
      [
        { 'access-control-allow-origin': '*', 'Access-Control-Max-Age': '1', 'content-type': 'text/plain' },
        { 'content-type': 'text/plain' },
      ],
      [{ vary: 'Accept-Encoding' }, { vary: 'Accept-Encoding, Origin' }],
      [{ vary: 'accept-encoding, origin' }, { vary: 'accept-encoding, origin' }],
      [{ vary: 'Origin,Accept' }, { vary: 'Origin,Accept' }],
      [{ vary: '*' }, { vary: '*' }],
      [{ vary: ['Accept', 'Cookie'] }, { vary: 'Accept, Cookie, Origin' }],
      [{ vary: 'X-Origin-Id' }, { vary: 'X-Origin-Id, Origin' }],
    ];
    for (const [app, out] of cases) assert.deepEqual(withoutAppCors({ ...app }, res), out, JSON.stringify(app));
  });
});
