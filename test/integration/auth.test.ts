import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client, decodeEntities, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { rawRequest } from '../helpers/raw.ts';
import { elapsed, unknownToKnownRatio } from '../helpers/timing.ts';

let gh: TestGatehouse;

before(async () => {
  gh = await startGatehouse(() => ({
    title: 'Acme Portal',
    headers: { email: true, name: true, groups: true },
    routes: [
      { path: '/public/**', access: 'public' },
      { path: '/api/**', unauthenticated: '401' },
    ],
    // Generous limits: this file is about flows, throttle.test.ts about limits.
    accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
  }));
});
after(() => gh.close());

const sessionCookie = (c: Client) => c.jar.get('gatehouse');

describe('registration and sign-in with forms (no JavaScript)', () => {
  test('a protected page sends a browser to the login page with the original path as rd', async () => {
    const c = new Client(gh.url);
    const res = await c.html('/reports/q3?year=2026');
    assert.equal(res.status, 302);
    assert.equal(res.location, `${gh.url}/.auth/login?rd=${encodeURIComponent('/reports/q3?year=2026')}`);
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  test('register → back to the page asked for, and the app sees X-User-Id', async () => {
    const c = new Client(gh.url);
    const login = await c.html('/.auth/login?rd=%2Freports%2Fq3');
    assert.equal(login.status, 200);
    assert.match(login.text, /Acme Portal/);
    const registerUrl = decodeEntities(/href="([^"]*register[^"]*)"/.exec(login.text)![1]!);
    const email = uniqueEmail('form');
    const res = await c.submitForm(registerUrl, { email, password: PASSWORD, name: 'Ann Example' });
    assert.equal(res.status, 303);
    assert.equal(res.location, `${gh.url}/reports/q3`);
    const page = await c.get('/reports/q3');
    assert.equal(page.status, 200);
    const seen = page.json();
    assert.match(seen.headers['x-user-id'], /^[0-9a-f-]{36}$/);
    assert.equal(seen.headers['x-user-email'], undefined, 'not verified yet: apps get verified addresses only');
    assert.equal(seen.headers['x-user-name'], 'Ann Example');
    assert.equal(seen.headers['x-user-groups'], '');
    assert.equal(seen.headers.cookie, undefined, 'the session cookie never reaches the app');
  });

  test('sign in with the form, sign out with the button, and the old cookie is dead', async () => {
    const email = uniqueEmail('cycle');
    await registerJson(new Client(gh.url), email);
    const c = new Client(gh.url);
    const res = await c.submitForm('/.auth/login?rd=%2Fhome', { email, password: PASSWORD });
    assert.equal(res.status, 303);
    assert.equal(res.location, `${gh.url}/home`);
    const cookie = sessionCookie(c)!;
    assert.equal((await c.get('/home')).status, 200);

    // GET on logout changes nothing (security.md #29).
    const confirm = await c.html('/.auth/logout');
    assert.match(confirm.text, new RegExp(email.replace(/[.+]/g, '\\$&')));
    assert.equal((await c.get('/home')).status, 200);

    const out = await c.submitForm('/.auth/logout', {});
    assert.equal(out.status, 303);
    assert.equal(out.location, `${gh.url}/.auth/login?signed_out=1`);
    assert.ok(out.cookies.some((s) => /^gatehouse=; .*Max-Age=0/.test(s)));
    // Replay of the old cookie (security.md #25).
    const replay = await new Client(gh.url).get('/home', { cookie: `gatehouse=${cookie}` });
    assert.equal(replay.status, 401);
    assert.equal(await gh.gatehouse.store.sessions.get(hashSessionId(cookie)), undefined, 'record deleted');
  });

  test('wrong password: error on the page, fields kept, status 401', async () => {
    const email = uniqueEmail('wrong');
    await registerJson(new Client(gh.url), email);
    const c = new Client(gh.url);
    const res = await c.submitForm('/.auth/login', { email, password: 'not the password' });
    assert.equal(res.status, 401);
    assert.match(res.text, /The email or password is not correct/);
    assert.match(res.text, /role="alert"/);
    assert.ok(res.text.includes(`value="${email}"`));
    assert.equal(sessionCookie(c), undefined);
  });

  test('registration errors sit next to their fields; each item of the summary names its field and links to it', async () => {
    const c = new Client(gh.url);
    const res = await c.submitForm('/.auth/register', { email: 'not-an-email', password: 'password' });
    assert.equal(res.status, 400);
    assert.match(res.text, /id="email"[^>]*aria-describedby="email-error"[^>]*aria-invalid="true"/);
    assert.match(res.text, /id="password"[^>]*aria-describedby="password-hint password-error"[^>]*aria-invalid="true"/);
    assert.match(res.text, /id="email-error">Enter an email address/);
    assert.match(res.text, /id="password-error">This password is too common/);
    assert.match(
      res.text,
      /<strong>There are 2 problems with the form\.<\/strong><\/p><ul><li><a href="#email">Email: Enter an email address like name@example\.com\.<\/a><\/li><li><a href="#password">Password: This password is too common/,
    );
    const login = await new Client(gh.url).submitForm('/.auth/login', { email: uniqueEmail('blank') });
    assert.equal(login.status, 400);
    assert.match(login.text, /<li><a href="#password">Password: Enter your password\.<\/a><\/li>/);
  });
});

describe('JSON endpoints for SPAs', () => {
  test('register, me, login, logout', async () => {
    const c = new Client(gh.url);
    const email = uniqueEmail('json');
    const reg = await c.postJson('/.auth/register', { email, password: PASSWORD });
    assert.equal(reg.status, 201);
    assert.deepEqual(Object.keys(reg.json().user).sort(), ['email', 'emailVerified', 'groups', 'id', 'name']);
    const me = await c.get('/.auth/me');
    assert.equal(me.status, 200);
    assert.equal(me.json().email, email);
    assert.deepEqual(me.json().groups, []);
    assert.ok(!('passwordHash' in me.json()));

    const c2 = new Client(gh.url);
    const login = await c2.postJson('/.auth/login', { email: email.toUpperCase(), password: PASSWORD });
    assert.equal(login.status, 200);
    assert.equal(login.json().user.id, reg.json().user.id);
    assert.equal((await c2.postJson('/.auth/logout', {})).status, 200);
    assert.equal((await c2.get('/.auth/me')).status, 401);
    assert.equal((await c.get('/.auth/me')).status, 200, 'other sessions of the user live on');
  });

  test('anonymous: /.auth/me and API routes answer 401 JSON with WWW-Authenticate', async () => {
    const c = new Client(gh.url);
    const me = await c.get('/.auth/me');
    assert.equal(me.status, 401);
    assert.match(String(me.headers['www-authenticate']), /^Bearer realm=/);
    const api = await c.html('/api/things');
    assert.equal(api.status, 401, 'unauthenticated: 401 holds for browsers too');
    assert.equal(api.json().error, 'unauthenticated');
    assert.match(String(api.headers['www-authenticate']), /^Bearer/);
    assert.equal(
      (await c.get('/elsewhere', { accept: 'application/json' })).status,
      401,
      'non-browser clients get 401',
    );
  });

  test('public routes pass anonymously and still lose spoofed identity', async () => {
    const res = await new Client(gh.url).get('/public/x', { 'X-User-Id': 'admin', x_user_email: 'boss@corp.com' });
    assert.equal(res.status, 200);
    const seen = res.json();
    assert.equal(seen.headers['x-user-id'], undefined);
    assert.equal(seen.headers['x-user-email'], undefined);
  });
});

describe('sessions', () => {
  test('cookie attributes (security.md #21)', async () => {
    const c = new Client(gh.url);
    const reg = await c.postJson('/.auth/register', { email: uniqueEmail('attrs'), password: PASSWORD });
    const set = reg.cookies.find((s) => s.startsWith('gatehouse='))!;
    assert.match(set, /^gatehouse=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=604800; HttpOnly; SameSite=Lax$/);
    assert.doesNotMatch(set, /Domain/i);
    assert.equal(reg.headers['cache-control'], 'no-store');
  });

  test('a planted cookie is never adopted; each login gets a new id (security.md #22)', async () => {
    const email = uniqueEmail('fix');
    await registerJson(new Client(gh.url), email);
    const planted = 'A'.repeat(43);
    const c = new Client(gh.url);
    c.jar.set('gatehouse', planted);
    await c.postJson('/.auth/login', { email, password: PASSWORD });
    const first = sessionCookie(c)!;
    assert.notEqual(first, planted);
    assert.equal((await new Client(gh.url).get('/.auth/me', { cookie: `gatehouse=${planted}` })).status, 401);
    await c.postJson('/.auth/login', { email, password: PASSWORD });
    const second = sessionCookie(c)!;
    assert.notEqual(second, first);
    assert.equal(
      (await new Client(gh.url).get('/.auth/me', { cookie: `gatehouse=${first}` })).status,
      401,
      'the session the browser came with ends',
    );
  });

  test('malformed, duplicated and look-alike cookies are anonymous, not errors (security.md #23-24)', async () => {
    const c = new Client(gh.url);
    await registerJson(c);
    const good = sessionCookie(c)!;
    for (const cookie of [
      `gatehouse=${good}; gatehouse=${'B'.repeat(43)}`,
      `GATEHOUSE=${good}`,
      `\u2000gatehouse=${good}`.replace('\u2000', ' x'),
      'gatehouse=%%%',
      'gatehouse=' + 'a'.repeat(5000),
      'gatehouse',
      '=;;=',
    ]) {
      const res = await new Client(gh.url).get('/api/x', { cookie });
      assert.equal(res.status, 401, cookie.slice(0, 40));
    }
  });

  test('idle and absolute timeouts are enforced by the server (security.md #26)', async () => {
    const c = new Client(gh.url);
    await registerJson(c);
    const hash = hashSessionId(sessionCookie(c)!);
    const store = gh.gatehouse.store;
    const idle = gh.config.sessions.idleTimeout;
    const s = (await store.sessions.get(hash))!;
    // Simulate time passing by moving the record's clock back.
    await store.sessions.delete(hash);
    await store.sessions.create({ ...s, lastSeenAt: Date.now() - idle - 1000 });
    assert.equal((await c.get('/api/x')).status, 401, 'idle');
    assert.equal(await store.sessions.get(hash), undefined, 'expired record removed');

    const c2 = new Client(gh.url);
    await registerJson(c2);
    const hash2 = hashSessionId(sessionCookie(c2)!);
    const s2 = (await store.sessions.get(hash2))!;
    await store.sessions.delete(hash2);
    await store.sessions.create({ ...s2, expiresAt: Date.now() - 1 });
    assert.equal((await c2.get('/api/x')).status, 401, 'absolute');
  });

  test('disabling an account or setting its password ends its sessions (security.md #27)', async () => {
    const a = new Client(gh.url);
    const user = await registerJson(a);
    const b = new Client(gh.url);
    await b.postJson('/.auth/login', { email: user.email, password: PASSWORD });
    await gh.gatehouse.accounts.setPassword(user.id, 'a different long passphrase');
    assert.equal((await a.get('/api/x')).status, 401);
    assert.equal((await b.get('/api/x')).status, 401);

    const c = new Client(gh.url);
    await c.postJson('/.auth/login', { email: user.email, password: 'a different long passphrase' });
    assert.equal((await c.get('/api/x')).status, 200);
    await gh.gatehouse.accounts.setDisabled(user.id, true);
    assert.equal((await c.get('/api/x')).status, 401);
    const again = await new Client(gh.url).postJson('/.auth/login', {
      email: user.email,
      password: 'a different long passphrase',
    });
    assert.equal(again.status, 403);
    assert.equal(again.json().error, 'account_disabled');
  });
});

describe('CSRF (security.md #28-30)', () => {
  test('cross-site POSTs to login, register and logout are refused', async () => {
    const c = new Client(gh.url);
    await registerJson(c);
    const cases: [string, Record<string, string>][] = [
      ['/.auth/logout', { origin: 'https://evil.example' }],
      ['/.auth/logout', { 'sec-fetch-site': 'cross-site' }],
      ['/.auth/logout', { 'sec-fetch-site': 'same-site' }],
      ['/.auth/logout', { origin: 'null' }],
      ['/.auth/login', { origin: 'https://evil.example' }],
      ['/.auth/register', { 'sec-fetch-site': 'cross-site' }],
    ];
    for (const [path, headers] of cases) {
      const res = await c.postJson(path, { email: 'attacker@evil.example', password: PASSWORD }, headers);
      assert.equal(res.status, 403, `${path} ${JSON.stringify(headers)}`);
    }
    assert.equal((await c.get('/.auth/me')).status, 200, 'still signed in');
  });

  test('logout by a bodiless fetch() (no body, no Content-Type) works from the own origin only', async () => {
    const c = new Client(gh.url);
    await registerJson(c);
    // What a browser adds to fetch(url, {method: 'POST', credentials: 'include'}) made by a page.
    const from = (site: string, origin?: string) => ({
      'sec-fetch-site': site,
      'sec-fetch-mode': 'cors',
      'sec-fetch-dest': 'empty',
      ...(origin ? { origin } : {}),
    });
    for (const [what, headers] of [
      ['another site', from('cross-site', 'https://evil.example')],
      ['a sibling origin', from('same-site', 'http://localhost:8080')],
      ['an opaque origin', { origin: 'null' }],
      ['no word from a browser at all (no token, no preflight: nothing vouches for it)', {}],
    ] as const) {
      const res = await c.fetch('/.auth/logout', { method: 'POST', headers });
      assert.equal(res.status, 403, what);
      assert.equal(res.json().error, 'cross_site', what);
    }
    assert.equal((await c.get('/.auth/me')).status, 200, 'still signed in');
    const typed = await c.fetch('/.auth/logout', { method: 'POST', headers: from('same-origin', gh.url), body: 'x' });
    assert.equal(typed.status, 415, 'a body still needs a form or JSON type');

    const out = await c.fetch('/.auth/logout', { method: 'POST', headers: from('same-origin', gh.url) });
    assert.equal(out.status, 200, out.text);
    assert.deepEqual(out.json(), { ok: true });
    assert.equal(sessionCookie(c), undefined, 'the session cookie is cleared');
    assert.equal((await c.get('/.auth/me')).status, 401);

    // Without Content-Length at all (HTTP/1.1 allows it for an empty body), and with Origin alone.
    const again = new Client(gh.url);
    await registerJson(again);
    const raw = await rawRequest(
      gh.port,
      `POST /.auth/logout HTTP/1.1\r\nHost: 127.0.0.1:${gh.port}\r\nOrigin: ${gh.url}\r\nCookie: ${again.cookieHeader()}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(raw.status, 200, raw.text);
    assert.equal((await again.get('/.auth/me')).status, 401);
  });

  test("a form without its token, or with another browser's token, is refused", async () => {
    const victim = new Client(gh.url);
    await registerJson(victim);
    await victim.html('/.auth/logout');
    assert.equal((await victim.postForm('/.auth/logout', {})).status, 403);
    const attacker = new Client(gh.url);
    const page = await attacker.html('/.auth/logout');
    const token = /name="csrf" value="([^"]+)"/.exec(page.text)![1]!;
    assert.equal((await victim.postForm('/.auth/logout', { csrf: token })).status, 403);
    assert.equal((await victim.get('/.auth/me')).status, 200);
  });

  test("login CSRF: the attacker's credentials cannot be submitted from the attacker's page", async () => {
    const attackerEmail = uniqueEmail('attacker');
    await registerJson(new Client(gh.url), attackerEmail);
    const victim = new Client(gh.url);
    const res = await victim.postForm(
      '/.auth/login',
      { email: attackerEmail, password: PASSWORD },
      { origin: 'https://evil.example' },
    );
    assert.equal(res.status, 403);
    const noToken = await victim.postForm('/.auth/login', { email: attackerEmail, password: PASSWORD });
    assert.equal(noToken.status, 403);
    assert.equal(sessionCookie(victim), undefined);
  });
});

describe('return targets never leave the origin (security.md #8-12)', () => {
  const evil = [
    '//evil.com',
    '/\\evil.com',
    '\\\\evil.com',
    '/\t/evil.com',
    '/%09/evil.com',
    'https:evil.com',
    'javascript:alert(1)',
    '%2F%2Fevil.com',
    'https://127.0.0.1.evil.com/',
    'http://evil.com',
  ];

  test('after login', async () => {
    const email = uniqueEmail('rd');
    await registerJson(new Client(gh.url), email);
    for (const rd of evil) {
      const res = await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD, rd });
      assert.equal(res.json().redirect, '/', rd);
      const form = await new Client(gh.url).submitForm(`/.auth/login?rd=${encodeURIComponent(rd)}`, {
        email,
        password: PASSWORD,
      });
      assert.equal(form.location, `${gh.url}/`, rd);
    }
  });

  test('after logout', async () => {
    for (const rd of evil) {
      const c = new Client(gh.url);
      await registerJson(c);
      const res = await c.submitForm(`/.auth/logout?rd=${encodeURIComponent(rd)}`, {});
      assert.ok(res.location?.startsWith(`${gh.url}/`), `${rd} → ${res.location}`);
    }
  });
});

describe('user enumeration (security.md #41)', () => {
  test('unknown email and wrong password answer alike: status, body, headers', async () => {
    const email = uniqueEmail('enum');
    await registerJson(new Client(gh.url), email);
    const shape = (r: Awaited<ReturnType<Client['fetch']>>) => ({
      status: r.status,
      body: r.text,
      headers: Object.keys(r.headers)
        .filter((h) => h !== 'date')
        .sort(),
    });
    const known = await new Client(gh.url).postJson('/.auth/login', { email, password: 'wrong password here' });
    const unknown = await new Client(gh.url).postJson('/.auth/login', {
      email: uniqueEmail('nobody'),
      password: 'wrong password here',
    });
    assert.deepEqual(shape(known), shape(unknown));
    const knownForm = await new Client(gh.url).submitForm('/.auth/login', { email, password: 'wrong password here' });
    const unknownForm = await new Client(gh.url).submitForm('/.auth/login', {
      email: 'nobody@example.com',
      password: 'wrong password here',
    });
    assert.equal(knownForm.status, unknownForm.status);
    const strip = (t: string) => t.replace(/value="[^"]*"/g, '');
    assert.equal(strip(knownForm.text), strip(unknownForm.text));
  });

  test('an unknown email costs a full password check too', async () => {
    const email = uniqueEmail('timing');
    await registerJson(new Client(gh.url), email);
    const login = (e: string) =>
      elapsed(() => new Client(gh.url).postJson('/.auth/login', { email: e, password: 'wrong password here' }));
    const { ratio, pairs } = await unknownToKnownRatio(email, login, 9);
    assert.ok(
      ratio > 0.6 && ratio < 1.6,
      `unknown/known login time ratio ${ratio.toFixed(2)} (pairs: ${pairs.map((r) => r.toFixed(2)).join(' ')})`,
    );
  });
});

describe('bad input changes nothing and gets a clear 4xx', () => {
  test('accounts.allowedDomains: a sign-up with an address elsewhere is refused (400, no account), one inside works', async () => {
    const only = await startGatehouse(() => ({ accounts: { allowedDomains: ['Example.com'] } }));
    try {
      const c = new Client(only.url);
      const outside = await c.postJson('/.auth/register', { email: 'eve@elsewhere.test', password: PASSWORD });
      assert.equal(outside.status, 400);
      assert.equal(outside.json().fields.email, 'Use an address at Example.com.');
      assert.equal(await only.gatehouse.store.users.getByEmail('eve@elsewhere.test'), undefined);
      const missing = await c.postJson('/.auth/register', { password: PASSWORD });
      assert.equal(missing.json().fields.email, 'Enter an email address like name@example.com.');
      const inside = await c.postJson('/.auth/register', { email: uniqueEmail('inside'), password: PASSWORD });
      assert.equal(inside.status, 201, inside.text);
    } finally {
      await only.close();
    }
  });

  test('bodies: oversized, wrong type, bad JSON, wrong shapes', async () => {
    const c = new Client(gh.url);
    const big = await c.fetch('/.auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'a@b.co', password: 'x'.repeat(2 * 1024 * 1024) }),
    });
    assert.equal(big.status, 413);
    assert.equal(
      (await c.fetch('/.auth/login', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' })).status,
      415,
    );
    assert.equal((await c.fetch('/.auth/login', { method: 'POST', body: 'email=a' })).status, 415);
    const bad = await c.fetch('/.auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"email":',
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error, 'invalid_json');
    assert.equal((await c.postJson('/.auth/login', ['a'])).status, 400);
    assert.equal((await c.postJson('/.auth/login', { email: ['a@b.co'], password: 'x' })).status, 400);
    assert.equal((await c.postJson('/.auth/register', { email: 'a@b.co', password: { $gt: '' } })).status, 400);
    assert.equal(
      (
        await c.fetch('/.auth/login', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'email=a&email=b',
        })
      ).status,
      400,
    );
    assert.equal(
      (
        await c.fetch('/.auth/login', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]),
        })
      ).status,
      400,
    );
    assert.equal((await c.fetch('/.auth/login', { method: 'PUT' })).status, 405);
    assert.equal((await c.get('/.auth/nope')).status, 404);
  });

  test('a 1 MB password is refused fast, without hashing (security.md #43)', async () => {
    const email = uniqueEmail('mb');
    await registerJson(new Client(gh.url), email);
    const t = performance.now();
    const res = await new Client(gh.url).postJson('/.auth/login', { email, password: 'x'.repeat(1024 * 1024) });
    assert.equal(res.status, 413);
    assert.ok(performance.now() - t < 1000);
    const reg = await new Client(gh.url).postJson('/.auth/register', {
      email: uniqueEmail('mb'),
      password: 'y'.repeat(2000) + 'z',
    });
    assert.equal(reg.status, 400);
    assert.match(reg.json().fields.password, /at most/);
  });

  test('registration of a taken address creates nothing', async () => {
    const email = uniqueEmail('taken');
    const first = await registerJson(new Client(gh.url), email);
    const res = await new Client(gh.url).postJson('/.auth/register', { email, password: 'another long passphrase' });
    assert.equal(res.status, 409);
    assert.equal(res.cookies.length, 0);
    const login = await new Client(gh.url).postJson('/.auth/login', { email, password: PASSWORD });
    assert.equal(login.json().user.id, first.id, 'original password still works');
  });
});

describe('logs', () => {
  test('one line per request with method, path, status, ms, user and request id; no secrets', async () => {
    const c = new Client(gh.url);
    const user = await registerJson(c, uniqueEmail('logs'), 'my very secret passphrase');
    await c.get('/api/items?token=SHOULD_NOT_BE_LOGGED');
    const line = gh.logs.find((l) => (l.req as { path?: string } | undefined)?.path === '/api/items')!;
    assert.ok(line, 'request line present');
    assert.equal(line.status, 200);
    assert.equal(line.user, user.id);
    assert.equal(typeof line.ms, 'number');
    assert.match((line.req as { id: string }).id, /^[0-9a-f-]{36}$/);
    const text = gh.logText();
    assert.ok(!text.includes('my very secret passphrase'));
    assert.ok(!text.includes('SHOULD_NOT_BE_LOGGED'));
    assert.ok(!text.includes(sessionCookie(c)!));
  });
});
