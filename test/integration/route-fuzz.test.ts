import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { routes } from '../../src/server/routes.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig } from '../helpers/email.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { csrfOf, type Lab, startLab } from '../helpers/providers.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';

/**
 * Every row of the route table (src/server/routes.ts), each of its methods, and a public and a
 * protected path of the app, get generated requests (fast-check, fixed seed per row: a failure
 * names its case and reproduces), through a trusted proxy (forwarding and forward-auth headers
 * of every shape, tokens in Authorization, spoofed identity headers, trace contexts), with query
 * strings and form or JSON bodies made of the field names Gatehouse reads, with values of every
 * shape (wrong types, nested JSON, prototype keys, control characters, lone surrogates, 5,000
 * characters, URLs elsewhere), sent anonymously, as a signed-in user with or without her form
 * token, with a dead session's cookie and with a forged one, same-origin or cross-site. Every
 * answer must be a 4xx or less (the IdPs, the mail server and the store are up: no 5xx is
 * excused), a redirect must stay on Gatehouse's origin or go to an IdP of the config, and the
 * node must log no error and serve the next request. FUZZ_RUNS=<n> runs more cases per row.
 */

let lab: Lab;
let smtp: TestSmtp;
let gh: TestGatehouse;
let base: string;
/** The signed-in user, re-signed-in whenever a generated case signed her out (logout is a route too). */
let alice: { client: Client; email: string; csrf: string };
/** A visitor who opened the login page: its form token and cookie. */
let visitor: { client: Client; csrf: string };
/** A session cookie that was good until its user signed out. */
let deadCookie: string;

/** A small PNG in a directory of its own. */
function logoFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'gatehouse-fuzz-')), 'logo.png');
  writeFileSync(file, Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex'));
  return file;
}

before(async () => {
  lab = await startLab();
  smtp = await startSmtp();
  const port = lab.ports[0]!;
  gh = await startGatehouse(
    () => ({
      // A host name, not an address: passkeys need one for their RP ID, so their routes are live.
      publicUrl: `http://localhost:${port}`,
      // The test client is a trusted proxy too: forwarding headers are read, and forward-auth answers.
      trustedProxies: ['loopback'],
      providers: lab.providers(),
      email: emailConfig(smtp),
      routes: [{ path: '/public/**', access: 'public' as const }],
      // Branded, so every page goes through the site's look, and the logo's route is live.
      branding: { logo: logoFile(), color: '#0b6e4f' },
      accounts: {
        signInLinks: true,
        rateLimits: {
          loginPerIp: 100_000,
          loginPerAccount: 100_000,
          registerPerIp: 100_000,
          providerStartsPerIp: 100_000,
          passwordResetPerIp: 100_000,
          passwordResetPerAccount: 100_000,
          signInLinkPerIp: 100_000,
          signInLinkPerAccount: 100_000,
          emailsPerAddress: 100_000,
        },
      },
    }),
    { port, logLevel: 'error' },
  );
  base = `http://localhost:${port}`;
  const email = uniqueEmail('fuzz');
  const client = new Client(base);
  await registerJson(client, email);
  alice = { client, email, csrf: csrfOf(await client.html('/.auth/account')) };
  const doomed = new Client(base);
  await registerJson(doomed);
  deadCookie = doomed.cookieHeader()!;
  await doomed.postJson('/.auth/logout', {}, { origin: base, 'sec-fetch-site': 'same-origin' });
  const v = new Client(base);
  visitor = { client: v, csrf: csrfOf(await v.html('/.auth/login')) };
});
after(async () => {
  await gh?.close();
  await smtp?.close();
  await lab?.close();
});

/** Every name a route reads from a query, a form or a JSON body, and a few that trip objects. */
const NAMES = [
  ...['rd', 'email', 'password', 'currentPassword', 'newEmail', 'name', 'code', 'token', 'mode'],
  ...['state', 'error', 'error_description', 'iss', 'session_state', 'provider', 'identity', 'id', 'session'],
  ...[
    'grant',
    'device',
    'user_code',
    'decision',
    'method',
    'logout_token',
    'response',
    'challenge',
    'remember',
    'confirm',
  ],
  ...['client_id', 'client_secret', 'client_name', 'client_uri', 'redirect_uri', 'redirect_uris', 'scope'],
  ...['response_type', 'response_types', 'grant_types', 'grant_type', 'token_endpoint_auth_method'],
  ...['code_challenge', 'code_challenge_method', 'code_verifier', 'refresh_token', 'device_code', 'resource'],
  ...['prompt', 'token_type_hint', 'nonce', 'recovery', 'linked', 'sent', 'verified', 'reset', 'signed_out', 'via'],
  ...['__proto__', 'constructor', 'toString', 'hasOwnProperty'],
] as const;

/** Values that mean something somewhere (the user's address, a return path, a scope, an IdP), and trouble. */
const MEANINGFUL = [
  '',
  ' ',
  'a',
  '0',
  '-1',
  '1e400',
  'true',
  'null',
  '[]',
  '{}',
  'b',
  'nope',
  '/',
  '/public/x',
  '//evil.example/',
  '/\\evil.example',
  'https://evil.example/cb',
  'javascript:alert(1)',
  'http://localhost/.auth/callback/a',
  'openid offline_access',
  'authorization_code',
  'refresh_token',
  'urn:ietf:params:oauth:grant-type:device_code',
  'S256',
  'plain',
  'code',
  'none',
  'approve',
  'deny',
  'totp',
  'recovery',
  'ABCD-EFGH',
  'x'.repeat(5000),
  '\u0000',
  '%00',
  '\r\nset-cookie: x=1',
  '\ud800',
  '😀',
  '<script>alert(1)</script>',
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
  PASSWORD,
];

const text = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...MEANINGFUL) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
);
const jsonValue = fc.oneof(
  { weight: 3, arbitrary: text },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, 0, -1, 1e308, 2 ** 53 + 1, [], {}) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.array(text, { maxLength: 3 }) },
);
/** Up to 30 of the names, each once (a repeated form field is refused before anything reads it). */
const fields = <T>(value: fc.Arbitrary<T>) =>
  fc.uniqueArray(fc.tuple(fc.constantFrom(...NAMES), value), { selector: ([k]) => k, maxLength: 30 });

// Mostly what a route expects (the signed-in user's own form token, same-origin), so cases get past
// the checks in front to the code that reads the fields; the rest tries those checks.
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const who = fc.oneof(
  w(5, fc.constant('alice' as const)),
  w(2, fc.constant('visitor' as const)),
  w(1, fc.constantFrom('anonymous' as const, 'dead session' as const, 'forged session' as const)),
);
const csrf = fc.oneof(w(6, fc.constant('own' as const)), w(1, fc.constantFrom('other' as const, 'none' as const)));
const origin = fc.oneof(
  w(6, fc.constant('same-origin' as const)),
  w(1, fc.constantFrom('cross-site' as const, 'none' as const)),
);
const body = fc.oneof(
  w(4, fc.record({ type: fc.constant('form' as const), fields: fields(text) })),
  w(4, fc.record({ type: fc.constant('json' as const), fields: fields(jsonValue) })),
  w(
    1,
    fc.record({
      type: fc.constant('raw' as const),
      contentType: fc.constantFrom(
        'text/plain',
        'application/json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/jwt',
        'application/json; charset=utf-16',
      ),
      text: fc.constantFrom('', 'not json', '[1,2]', '"s"', 'null', 'a=1&a=2', '%zz=%', '{"a":', '\u00ff\u00fe', '{}'),
    }),
  ),
  w(1, fc.constant({ type: 'none' as const })),
);
const parameter = fc.constantFrom('a', 'b', 'nope', 'A', '%2e%2e', 'x'.repeat(300), '%00', 'a%2Fb');
const suffix = fc.constantFrom('', '/', '/x', '/.auth/login', '/%2e%2e/x');

/** Request headers Gatehouse reads or strips: forwarding, forward-auth, tokens, identity, tracing. */
const HEADER_NAMES = [
  ...['authorization', 'x-gatehouse-token', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'],
  ...['forwarded', 'x-original-uri', 'x-original-method', 'x-forwarded-uri', 'x-forwarded-method'],
  ...['x-http-method-override', 'x-method-override', 'x-request-id', 'traceparent', 'tracestate'],
  ...['x-user-id', 'x-gatehouse-assertion', 'sec-websocket-key', 'access-control-request-method'],
] as const;
const headerValue = fc.oneof(
  w(
    3,
    fc.constantFrom(
      '',
      'https',
      'http',
      'evil.example',
      `localhost`,
      '10.0.0.1',
      '10.0.0.1, 203.0.113.9',
      '::1',
      'unknown',
      'for=203.0.113.9;proto=https;host=evil.example',
      'for="[2001:db8::1]:80"',
      '/private/x',
      '/.auth/login',
      '//evil.example/x',
      '/public/%2e%2e/private',
      'GET',
      'DELETE',
      'get',
      'Bearer gh_not_a_token',
      'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
      'Basic Zm9vOmJhcg==',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-00000000000000000000000000000000-0000000000000000-01',
      'x'.repeat(2000),
    ),
  ),
  w(1, fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,40}$/)),
);
const extraHeaders = fc.uniqueArray(fc.tuple(fc.constantFrom(...HEADER_NAMES), headerValue), {
  selector: ([k]) => k,
  maxLength: 5,
});

const generated = fc.record({
  who,
  csrf,
  origin,
  query: fields(text),
  body,
  parameter,
  suffix,
  headers: extraHeaders,
});
type Case = typeof generated extends fc.Arbitrary<infer T> ? T : never;

/** One case as a request: its path, method, headers and body. */
function render(row: { path: string; tree?: boolean }, own: boolean, method: string, c: Case) {
  let path = (own ? '/.auth' : '') + row.path.replace(/:[a-z]+/g, c.parameter) + (row.tree ? c.suffix : '');
  const tokenOf = () => (c.who === 'visitor' ? visitor.csrf : alice.csrf);
  const token =
    c.csrf === 'own' ? tokenOf() : c.csrf === 'other' ? (c.who === 'alice' ? visitor.csrf : alice.csrf) : '';
  const pairs = (fs: readonly (readonly [string, unknown])[]) =>
    (token && !fs.some(([k]) => k === 'csrf') ? [['csrf', token] as const, ...fs] : fs) as [string, unknown][];
  if (c.query.length) path += `?${new URLSearchParams(c.query.map(([k, v]): [string, string] => [k, String(v)]))}`;
  const headers: Record<string, string> = { accept: c.query.length % 2 ? 'application/json' : 'text/html' };
  if (c.origin === 'same-origin') Object.assign(headers, { origin: base, 'sec-fetch-site': 'same-origin' });
  if (c.origin === 'cross-site')
    Object.assign(headers, { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' });
  const cookie = {
    anonymous: undefined,
    visitor: visitor.client.cookieHeader(),
    alice: alice.client.cookieHeader(),
    'dead session': deadCookie,
    'forged session': 'gatehouse=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; gatehouse_csrf=x',
  }[c.who];
  if (cookie) headers.cookie = cookie;
  for (const [name, value] of c.headers) headers[name] = value;
  let payload: string | undefined;
  if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
    const b = c.body;
    if (b.type === 'form') {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(pairs(b.fields).map(([k, v]): [string, string] => [k, String(v)])).toString();
    } else if (b.type === 'json') {
      headers['content-type'] = 'application/json';
      // Built as text: JSON.stringify of an object would drop a "__proto__" key.
      payload = `{${pairs(b.fields)
        .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
        .join(',')}}`;
    } else if (b.type === 'raw') {
      headers['content-type'] = b.contentType;
      payload = b.text;
    }
  }
  return { path, method, headers, payload };
}

/** Where a redirect may go: Gatehouse itself or one of its providers (sign-in, RP-initiated logout). */
function allowedLocation(location: string): boolean {
  const to = new URL(location, base);
  return [base, new URL(lab.a.issuer).origin, new URL(lab.b.issuer).origin].includes(to.origin);
}

/** The route table's rows, and two of the app's paths: one public, one behind the sign-in. */
const APP_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'];
const rows = [
  ...routes.own.map((row) => ({ row, own: true })),
  ...routes.wellKnown.map((row) => ({ row, own: false })),
  { row: { path: '/public/x', methods: APP_METHODS }, own: false },
  { row: { path: '/private/x', methods: APP_METHODS }, own: false },
];

describe('every route of the table, generated input', { timeout: 600_000 }, () => {
  let seed = 20261206;
  for (const { row, own } of rows) {
    for (const method of new Set(row.methods.includes('GET') ? [...row.methods, 'HEAD'] : row.methods)) {
      const rowSeed = seed++;
      test(`${method} ${own ? '/.auth' : ''}${row.path}: never a 5xx, redirects stay home, nothing logged as an error`, async () => {
        await fc.assert(
          fc.asyncProperty(generated, async (c) => {
            const r = render(row, own, method, c);
            const logged = gh.logText().length;
            const client = new Client(base);
            const res = await client.fetch(r.path, { method: r.method, headers: r.headers, body: r.payload });
            const what = `${r.method} ${r.path.slice(0, 200)} ${JSON.stringify(r.headers)} ${r.payload?.slice(0, 300)} → ${res.status} ${res.text.slice(0, 200)}`;
            assert.ok(res.status < 500, what);
            if (res.location && !r.path.startsWith('/.auth/oauth/authorize'))
              assert.ok(allowedLocation(res.location), `redirect to ${res.location}: ${what}`);
            // The log level is error: any line at all is one.
            assert.equal(gh.logText().slice(logged), '', `logged as an error after ${what}`);
            // A case that signed her out (logout, "end this session") leaves the next ones a dead session.
            if (c.who === 'alice' && (await alice.client.get('/.auth/me')).status === 401) {
              const again = await alice.client.postJson('/.auth/login', { email: alice.email, password: PASSWORD });
              assert.equal(again.status, 200, `alice signs in again: ${again.text}`);
              alice.csrf = csrfOf(await alice.client.html('/.auth/account'));
            }
          }),
          { seed: rowSeed, numRuns: Number(process.env.FUZZ_RUNS ?? 150) },
        );
        assert.equal((await new Client(base).get('/.auth/health')).status, 200);
      });
    }
  }
});
