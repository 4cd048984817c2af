import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * Gatehouse behind a proxy that terminates TLS, played by the test client on loopback:
 * trusted forwarding headers, the misconfigurations that used to be login loops, and the
 * loop-breaker. The real nginx and Caddy runs are in test/proxies/.
 */

const HOST = 'app.example.test';
const ORIGIN = `https://${HOST}`;
const KEY = 'k'.repeat(44);

let upstream: TestUpstream;
let trusted: TestGatehouse;
let untrusted: TestGatehouse;

const limits = { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } };

before(async () => {
  upstream = await startUpstream();
  const common = {
    publicUrl: ORIGIN,
    secrets: { key: KEY },
    accounts: limits,
    routes: [{ path: '/public/**', access: 'public' as const }],
  };
  trusted = await startGatehouse(() => ({ ...common, trustedProxies: ['loopback'] }), { upstream });
  untrusted = await startGatehouse(() => ({ ...common, trustedProxies: ['10.0.0.0/8'] }), { upstream });
});
after(async () => {
  await Promise.all([trusted.close(), untrusted.close()]);
  await upstream.close();
});

/** A browser behind the proxy: what the proxy sends on its behalf. */
function browser(
  gh: TestGatehouse,
  proxy: Record<string, string> = { 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.7' },
): Client {
  const c = new Client(gh.url);
  c.defaultHeaders = { host: HOST, ...proxy };
  return c;
}

/** A Location on publicUrl, as a path to request through the same "proxy". */
function local(location: string | undefined): string {
  assert.ok(location?.startsWith(`${ORIGIN}/`), `redirect built from publicUrl: ${location}`);
  return location!.slice(ORIGIN.length);
}

function cause(res: { text: string; headers: Record<string, unknown> }): string | undefined {
  return /cause <code>([a-z_]+)<\/code>/.exec(res.text)?.[1];
}

/** The explanation page's first paragraph says something its heading did not (no three words of it in a row). */
function assertHeadingNotRepeated(page: string): void {
  const text = (s: string) =>
    s
      .replace(/<[^>]+>/g, '')
      .toLowerCase()
      .split(/[^a-z]+/)
      .filter(Boolean);
  const m = /<h1>([^<]*)<\/h1>\s*<p>([\s\S]*?)<\/p>/.exec(page);
  assert.ok(m, 'a heading, then a paragraph');
  const heading = text(m[1]!);
  const first = ` ${text(m[2]!).join(' ')} `;
  for (let i = 0; i + 3 <= heading.length; i++) {
    const run = heading.slice(i, i + 3).join(' ');
    assert.ok(!first.includes(` ${run} `), `"${m[1]}" is repeated in "${m[2]}"`);
  }
}

describe('behind a trusted TLS-terminating proxy', () => {
  test('a browser signs up and in: __Host- cookies, every redirect from publicUrl, the client address through the trusted hop', async () => {
    const c = browser(trusted);
    const first = await c.html('/private/report?q=1');
    assert.equal(first.status, 302);
    const login = await c.html(local(first.location));
    assert.equal(login.status, 200, login.text);
    assert.ok(login.cookies.some((s) => s.startsWith('__Host-gatehouse-csrf=') && /; Secure/.test(s)));
    const registerUrl = /href="([^"]*register[^"]*)"/.exec(login.text)![1]!.replaceAll('&amp;', '&');
    const done = await c.submitForm(registerUrl, { email: uniqueEmail('proxy'), password: PASSWORD });
    assert.equal(done.status, 303, done.text);
    assert.equal(done.location, `${ORIGIN}/private/report?q=1`);
    const session = done.cookies.find((s) => s.startsWith('__Host-gatehouse='))!;
    assert.match(session, /; Path=\/; .*HttpOnly; Secure; SameSite=Lax/);
    const page = await c.get(local(done.location));
    assert.equal(page.status, 200);
    const seen = page.json().headers;
    assert.match(seen['x-user-id'], /^[0-9a-f-]{36}$/);
    assert.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'https');
    assert.equal(seen['x-forwarded-host'], HOST);
  });

  test('a proxy that does not send X-Forwarded-Proto: the login page explains, sets no cookie, and a POST changes nothing', async () => {
    const c = browser(trusted, { 'x-forwarded-for': '203.0.113.8' });
    const first = await c.html('/private');
    assert.equal(first.status, 302, 'redirects are still built from publicUrl');
    const page = await c.html(local(first.location));
    assert.equal(page.status, 421);
    assert.equal(cause(page), 'proto_not_forwarded');
    assert.match(page.text, /proxy_set_header X-Forwarded-Proto \$scheme;/);
    assert.deepEqual(page.cookies, []);
    const email = uniqueEmail('noproto');
    const post = await c.postJson('/.auth/register', { email, password: PASSWORD });
    assert.equal(post.status, 421);
    assert.deepEqual(post.json().cause, 'proto_not_forwarded');
    assert.equal(post.json().key, 'X-Forwarded-Proto (proxy)');
    assert.equal(await trusted.gatehouse.store.users.getByEmail(email), undefined, 'no account created');
  });

  test("a proxy that says http: the explanation says to redirect http to https, or to pass an outer proxy's value on", async () => {
    const res = await browser(trusted, { 'x-forwarded-proto': 'http' }).html('/.auth/login');
    assert.equal(res.status, 421);
    assert.equal(cause(res), 'proxy_says_http');
    assert.match(res.text, /\$http_x_forwarded_proto/);
    assertHeadingNotRepeated(res.text);
    assert.match(res.text, new RegExp(`href="${ORIGIN}/\\.auth/login"`), 'a link to the https address');
  });

  test('X-Forwarded-Host names the site; a host that is not configured is refused, never trusted (security.md #7)', async () => {
    const viaXfh = browser(trusted, { 'x-forwarded-proto': 'https', 'x-forwarded-host': HOST });
    viaXfh.defaultHeaders.host = `127.0.0.1:${trusted.port}`;
    assert.equal((await viaXfh.html('/.auth/login')).status, 200);
    const evil = await browser(trusted, { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' }).html(
      '/.auth/login',
    );
    assert.equal(evil.status, 421);
    assert.equal(cause(evil), 'unknown_host');
    assertHeadingNotRepeated(evil.text);
    assert.doesNotMatch(evil.text.replace(/evil\.example\)/, ''), /href="[^"]*evil/);
  });

  test("a proxy that sends its upstream's name as Host: 421 that says proxy_set_header Host $host", async () => {
    const c = browser(trusted);
    c.defaultHeaders.host = `127.0.0.1:${trusted.port}`;
    const res = await c.html('/private');
    assert.equal(res.status, 421);
    assert.equal(cause(res), 'host_not_forwarded');
    assert.match(res.text, /proxy_set_header Host \$host;/);
    const json = await c.get('/private');
    assert.equal(json.json().error, 'misdirected_request');
  });

  test('RFC 7239 Forwarded, when configured, and then only it', async () => {
    const gh = await startGatehouse(
      () => ({ publicUrl: ORIGIN, trustedProxies: ['loopback'], forwardedHeaders: 'forwarded' }),
      { upstream },
    );
    try {
      const ok = browser(gh, { forwarded: `for=203.0.113.9;proto=https;host=${HOST}` });
      ok.defaultHeaders.host = 'gatehouse.internal:8080';
      assert.equal((await ok.html('/.auth/login')).status, 200);
      await ok.postJson('/.auth/register', { email: uniqueEmail('fwd'), password: PASSWORD });
      const seen = (await ok.get('/x')).json().headers;
      assert.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
      assert.equal(seen.forwarded, undefined, 'never passed on to the app');
      // X-Forwarded-Proto is not read in this mode.
      const other = await browser(gh, { 'x-forwarded-proto': 'https' }).html('/.auth/login');
      assert.equal(cause(other), 'proto_not_forwarded');
      assert.match(other.text, /Forwarded: for=\.\.\.;proto=https/);
    } finally {
      await gh.close();
    }
  });

  test('publicUrl http while the browser used https: the explanation names publicUrl', async () => {
    const gh = await startGatehouse(() => ({ publicUrl: `http://${HOST}`, trustedProxies: ['loopback'] }), {
      upstream,
    });
    try {
      const res = await browser(gh).html('/.auth/login');
      assert.equal(res.status, 421);
      assert.equal(cause(res), 'public_url_http');
      assert.match(res.text, new RegExp(`publicUrl: https://${HOST.replaceAll('.', '\\.')}/`));
    } finally {
      await gh.close();
    }
  });
});

describe('from a peer that is not a trusted proxy (security.md #5, #7)', () => {
  test("spoofed X-Forwarded-* and Forwarded are ignored: client address, host and scheme are the peer's", async () => {
    const spoof = {
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      forwarded: 'for=6.6.6.6;proto=https;host=evil.example',
      'x-real-ip': '6.6.6.6',
    };
    const page = await browser(untrusted, spoof).get('/public/x');
    assert.equal(page.status, 200);
    const seen = page.json().headers;
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-forwarded-host'], HOST);
    assert.equal(seen.forwarded, undefined);
    assert.equal(seen['x-real-ip'], undefined);
    // https is claimed, not believed: sign-in is refused with the reason and the key.
    const login = await browser(untrusted, spoof).html('/.auth/login');
    assert.equal(login.status, 421);
    assert.equal(cause(login), 'proxy_not_trusted');
    assert.match(login.text, /trustedProxies: \[127\.0\.0\.1\]/);
    assert.deepEqual(login.cookies, []);
  });

  test('X-Forwarded-Host cannot pick the site; the 421 says whom to trust', async () => {
    const c = browser(untrusted, { 'x-forwarded-host': HOST, 'x-forwarded-proto': 'https' });
    c.defaultHeaders.host = 'gatehouse.internal';
    const res = await c.html('/private');
    assert.equal(res.status, 421);
    assert.equal(cause(res), 'proxy_not_trusted');
    assert.match(res.text, /X-Forwarded-Host/);
    // Markup in a Host header stays text.
    const odd = new Client(untrusted.url);
    const r = await odd.html('/', { host: 'a<b>.example' });
    assert.equal(r.status, 421);
    assert.ok(!r.text.includes('<b>') && r.text.includes('a&lt;b&gt;.example'));
  });

  test('each cause is logged once per window (event misconfiguration), not per request', async () => {
    const c = browser(untrusted, { 'x-forwarded-proto': 'https' });
    const before = untrusted.logs.filter(
      (l) => l.event === 'misconfiguration' && l.cause === 'proxy_not_trusted',
    ).length;
    for (let i = 0; i < 5; i++) assert.equal((await c.html('/.auth/login')).status, 421);
    const after = untrusted.logs.filter((l) => l.event === 'misconfiguration' && l.cause === 'proxy_not_trusted');
    assert.ok(after.length - before <= 1, `${after.length - before} lines for 5 requests`);
    const line = after.at(-1)!;
    assert.equal(line.key, 'trustedProxies');
    assert.equal(line.peer, '127.0.0.1');
    assert.equal(line.level, 'warn');
  });
});

describe('https publicUrl on a plain listener that trusts no proxy: no redirect to an address nothing serves', () => {
  let gh: TestGatehouse;
  const REDIRECT = 'http://127.0.0.1:9/callback';

  before(async () => {
    gh = await startGatehouse(
      () => ({
        publicUrl: ORIGIN,
        secrets: { key: KEY },
        routes: [{ path: '/public/**', access: 'public' }],
        tokens: { clients: [{ id: 'desk', name: 'Desk', redirectUris: [REDIRECT] }] },
      }),
      { upstream },
    );
  });
  after(() => gh.close());

  test('a protected page, and the OAuth sign-in page, get the explanation instead of a redirect to https://…/.auth/login', async () => {
    const c = new Client(gh.url);
    c.defaultHeaders = { host: HOST };
    const authorize = `/.auth/oauth/authorize?${new URLSearchParams({
      response_type: 'code',
      client_id: 'desk',
      redirect_uri: REDIRECT,
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
      state: 's',
    })}`;
    for (const path of ['/private/report?q=1', authorize]) {
      const res = await c.html(path);
      assert.equal(res.status, 421, `${path}: ${res.location}`);
      assert.equal(cause(res), 'plain_http', path);
      assert.match(res.text, /<code class="key">trustedProxies<\/code>/);
      assert.match(res.text, /<code>listen\.tls: \{cert, key\}<\/code>/);
      assert.deepEqual(res.cookies, [], 'nothing is set');
      assertHeadingNotRepeated(res.text);
    }
    // What needs no redirect is unchanged: an API client's 401 JSON, a public page.
    const api = await c.get('/private');
    assert.equal(api.status, 401);
    assert.equal(api.json().error, 'unauthenticated');
    assert.equal((await c.html('/public/x')).status, 200);
  });
});

describe('the loop-breaker: signed in a moment ago, but the session did not stick', () => {
  async function signedIn(gh: TestGatehouse): Promise<Client> {
    const c = browser(gh);
    const res = await c.postJson('/.auth/register', { email: uniqueEmail('loop'), password: PASSWORD });
    assert.equal(res.status, 201);
    assert.ok(
      res.cookies.some((s) => /^gatehouse-signin=[^;]+; Path=\/; Max-Age=60; HttpOnly; SameSite=Lax$/.test(s)),
      res.cookies.join(' | '),
    );
    return c;
  }

  test('the session cookie did not come back: one explanation, then back to normal', async () => {
    const c = await signedIn(trusted);
    c.jar.delete('__Host-gatehouse');
    const res = await c.html('/private');
    assert.equal(res.status, 400);
    assert.equal(cause(res), 'session_cookie_dropped');
    assertHeadingNotRepeated(res.text);
    assert.ok(
      res.cookies.some((s) => s.startsWith('gatehouse-signin=;') && /Max-Age=0/.test(s)),
      'the marker is cleared',
    );
    assert.equal(c.jar.has('gatehouse-signin'), false);
    assert.equal((await c.html('/private')).status, 302, 'the next visit goes to the login page as usual');
  });

  test('the login page explains too (a flow that lands on it again)', async () => {
    const c = await signedIn(trusted);
    c.jar.delete('__Host-gatehouse');
    const res = await c.html('/.auth/login');
    assert.equal(cause(res), 'session_cookie_dropped');
  });

  test('a duplicated session cookie (tossed from a parent domain)', async () => {
    const c = await signedIn(trusted);
    const res = await c.html('/private', { cookie: `${c.cookieHeader()}; __Host-gatehouse=${'A'.repeat(43)}` });
    assert.equal(cause(res), 'session_cookie_duplicate');
    assert.match(res.text, /sessions\.cookieName/);
  });

  test('two nodes that do not share a store: the first unknown session goes to the login page, the next sign-in is explained', async () => {
    const email = uniqueEmail('nodes');
    const c = browser(trusted);
    assert.equal((await c.postJson('/.auth/register', { email, password: PASSWORD })).status, 201);
    assert.equal((await c.html('/private')).status, 200, 'the node that made it knows the session');
    // The "other node" behind the same load balancer: the same config, its own SQLite file.
    const nodeB = await startGatehouse(
      () => ({ publicUrl: ORIGIN, trustedProxies: ['loopback'], secrets: { key: KEY } }),
      { upstream },
    );
    try {
      // Unknown there, as a session ended since would be: to the login page as usual, the marker noting it.
      const first = await browser(nodeB).html('/private', { cookie: c.cookieHeader()! });
      assert.equal(first.status, 302, first.text.slice(0, 200));
      const marker = first.cookies.find((k) => k.startsWith('gatehouse-signin='));
      assert.ok(marker, 'the marker is rewritten');
      c.jar.set('gatehouse-signin', marker.slice('gatehouse-signin='.length, marker.indexOf(';')));
      c.jar.delete('__Host-gatehouse');
      assert.equal((await c.html('/.auth/login')).status, 200, 'the login page, not an explanation');
      // Signed in again at A; B does not know this session either: now it is explained.
      assert.equal((await c.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
      const res = await browser(nodeB).html('/private', { cookie: c.cookieHeader()! });
      assert.equal(res.status, 400);
      assert.equal(cause(res), 'session_unknown');
      assert.match(res.text, /share one store/);
    } finally {
      await nodeB.close();
    }
  });

  test('a session ended right after signing in, revoked or signed out elsewhere, goes to the login page, not to an explanation', async () => {
    const email = uniqueEmail('ended');
    const c = browser(trusted);
    const { id } = (await c.postJson('/.auth/register', { email, password: PASSWORD })).json().user as { id: string };
    assert.equal(await trusted.gatehouse.store.sessions.deleteByUser(id), 1);
    const res = await c.html('/private');
    assert.equal(res.status, 302);
    assert.match(res.location!, /\/\.auth\/login\?rd=%2Fprivate$/);
    assert.equal(c.jar.has('__Host-gatehouse'), false, 'the dead session cookie is cleared');
    assert.equal((await c.html(new URL(res.location!).pathname + new URL(res.location!).search)).status, 200);
    // Signed in again, and it works.
    assert.equal((await c.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
    assert.equal((await c.html('/private')).status, 200);
  });

  test('not after signing out, not for API calls, and not without a valid marker', async () => {
    const c = await signedIn(trusted);
    const out = await c.postJson('/.auth/logout', {});
    assert.equal(out.status, 200);
    assert.equal(c.jar.has('gatehouse-signin'), false, 'sign-out clears the marker');
    assert.equal((await c.html('/private')).status, 302);
    const api = await signedIn(trusted);
    api.jar.delete('__Host-gatehouse');
    assert.equal((await api.get('/private')).status, 401, 'an API client gets its 401');
    const forged = browser(trusted);
    assert.equal(
      (await forged.html('/private', { cookie: `gatehouse-signin=${Date.now().toString(36)}.forged` })).status,
      302,
    );
  });

  test('a form posted without the cookie it was served with: explained, nothing changes', async () => {
    const c = browser(trusted);
    const page = await c.html('/.auth/login');
    const token = /name="csrf" value="([^"]+)"/.exec(page.text)![1]!;
    c.jar.clear();
    const res = await c.postForm('/.auth/login', { csrf: token, email: uniqueEmail('nocsrf'), password: PASSWORD });
    assert.equal(res.status, 403);
    assert.equal(cause(res), 'cookie_missing');
    assert.deepEqual(res.cookies, []);
  });
});
