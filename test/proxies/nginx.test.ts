import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { browserSkip, isolatedContext, launchBrowser } from '../browser/chromium.ts';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { example, nginxSkip, startNginx, type TestNginx } from '../helpers/nginx.ts';
import { selfSigned, type TestCert } from '../helpers/tls.ts';
import { rawRequest } from '../helpers/raw.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { forwardAuthContract } from './forward-auth.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * Real nginx in front of Gatehouse, running the configs in examples/ with loopback ports:
 * nginx terminates TLS (a certificate made for this run) and connects to Gatehouse from
 * 127.0.0.2, while browsers connect from 127.0.0.1, so "the proxy" and "the client" are
 * different addresses as in any real deployment.
 */

const NGINX_ADDR = '127.0.0.2';
const skip = nginxSkip() || browserSkip();

interface Front {
  gh: TestGatehouse;
  nginx: TestNginx;
  origin: string;
}

let cert: TestCert;
let upstream: TestUpstream;
let browser: Browser;
const fronts: Front[] = [];

/** A Gatehouse on its own port behind an nginx running `file` (edited by `edit`). */
async function front(
  file: string,
  gatehouse: (origin: string) => Record<string, unknown>,
  edit?: (conf: string) => string,
): Promise<Front> {
  const https = await freePort();
  const origin = `https://127.0.0.1:${https}`;
  const gh = await startGatehouse(() => ({ publicUrl: origin, ...gatehouse(origin) }), { upstream });
  const conf = example(file, {
    https,
    http: await freePort(),
    cert: cert.cert,
    key: cert.key,
    gatehouse: gh.port,
    app: upstream.port,
    bindAddress: NGINX_ADDR,
    edit,
  });
  const nginx = await startNginx(conf, [https]);
  const f = { gh, nginx, origin };
  fronts.push(f);
  return f;
}

/** Follows redirects like a browser, at most `max`; returns the last answer and the count. */
async function follow(c: Client, url: string, max = 10) {
  let res = await c.html(url);
  let redirects = 0;
  while (res.status >= 300 && res.status < 400 && redirects < max) {
    redirects++;
    res = await c.html(res.location!);
  }
  return { res, redirects };
}

/** Number of redirects the browser followed to reach the current page. */
function redirectsOf(response: Awaited<ReturnType<Page['goto']>>): number {
  let n = 0;
  for (let r = response!.request().redirectedFrom(); r; r = r.redirectedFrom()) n++;
  return n;
}

const limits = { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } };

describeOrSkip('real nginx', { skip }, () => {
  before(async () => {
    cert = selfSigned();
    upstream = await startUpstream();
    browser = await launchBrowser();
  });
  after(async () => {
    await Promise.all(fronts.splice(0).map(async (f) => Promise.all([f.nginx.stop(), f.gh.close()])));
    await browser?.close();
    await upstream?.close();
  });

  describe('nginx in front of Gatehouse (examples/nginx.conf)', () => {
    let good: Front;
    let noProto: Front;
    let notTrusted: Front;

    before(async () => {
      [good, noProto, notTrusted] = await Promise.all([
        front('nginx.conf', () => ({ trustedProxies: [NGINX_ADDR], accounts: limits })),
        // The classic mistake: nginx does not say the browser used https.
        front(
          'nginx.conf',
          () => ({ trustedProxies: [NGINX_ADDR] }),
          (conf) => conf.replace(/^\s*proxy_set_header X-Forwarded-Proto \$scheme;\n/m, ''),
        ),
        // The other one: Gatehouse is not told to trust nginx.
        front('nginx.conf', () => ({ trustedProxies: ['127.0.0.3'] })),
      ]);
    });

    test('a full sign-up in Chromium over https through nginx: __Host- cookies accepted, back on the page, the app sees the user', async () => {
      const { context, page } = await isolatedContext(browser, good.origin, { ignoreHTTPSErrors: true });
      try {
        const first = await page.goto(`${good.origin}/private/report?q=1`);
        assert.equal(first!.status(), 200, good.nginx.errors());
        assert.equal(redirectsOf(first), 1);
        assert.equal(new URL(page.url()).pathname, '/.auth/login');
        await page.getByRole('link', { name: 'Create an account' }).click();
        await page.getByLabel('Email', { exact: true }).fill(uniqueEmail('nginx'));
        await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
        await page.getByRole('button', { name: 'Create account' }).click();
        await page.waitForURL(`${good.origin}/private/report?q=1`);
        const seen = JSON.parse(await page.locator('body').innerText()) as { headers: Record<string, string> };
        assert.match(seen.headers['x-user-id']!, /^[0-9a-f-]{36}$/);
        assert.equal(seen.headers['x-forwarded-proto'], 'https');
        assert.equal(seen.headers['x-forwarded-for'], `127.0.0.1, ${NGINX_ADDR}`);
        assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${new URL(good.origin).port}`);
        const session = (await context.cookies()).find((c) => c.name === '__Host-gatehouse');
        assert.ok(session, 'Chromium kept the __Host- cookie');
        assert.deepEqual([session.secure, session.httpOnly, session.sameSite, session.path], [true, true, 'Lax', '/']);
        // The page after a reload is still signed in (the cookie comes back through nginx).
        const again = await page.reload();
        assert.equal(again!.status(), 200);
      } finally {
        await context.close();
      }
    });

    test('nginx not forwarding the scheme: the explanation page after one redirect in Chromium, never a loop', async () => {
      const { context, page } = await isolatedContext(browser, noProto.origin, { ignoreHTTPSErrors: true });
      try {
        const res = await page.goto(`${noProto.origin}/private`);
        assert.equal(res!.status(), 421);
        assert.ok(redirectsOf(res) <= 2, `${redirectsOf(res)} redirects`);
        assert.match(await page.title(), /^Error: Sign-in cannot work at this address/);
        assert.match(await page.locator('main').innerText(), /proxy_set_header X-Forwarded-Proto \$scheme;/);
        assert.deepEqual(await context.cookies(), [], 'no cookie was set on the way');
      } finally {
        await context.close();
      }
      // A client that follows every redirect ends there too, within two.
      const { res, redirects } = await follow(new Client(noProto.origin, { dispatcher: cert.agent }), '/private');
      assert.equal(res.status, 421);
      assert.ok(redirects <= 2, `${redirects} redirects`);
      assert.match(res.text, /cause <code>proto_not_forwarded<\/code>/);
    });

    test("nginx not in trustedProxies: the explanation names trustedProxies and nginx's address, within two redirects", async () => {
      const { res, redirects } = await follow(new Client(notTrusted.origin, { dispatcher: cert.agent }), '/private');
      assert.equal(res.status, 421);
      assert.ok(redirects <= 2, `${redirects} redirects`);
      assert.match(res.text, /cause <code>proxy_not_trusted<\/code>/);
      assert.match(res.text, new RegExp(`trustedProxies: \\[${NGINX_ADDR.replaceAll('.', '\\.')}\\]`));
      // The log names it once, with the peer.
      const line = notTrusted.gh.logs.find((l) => l.event === 'misconfiguration' && l.cause === 'proxy_not_trusted');
      assert.equal(line?.peer, NGINX_ADDR);
    });

    test('a client behind nginx cannot spoof its address, host or scheme (security.md #5, #42)', async () => {
      const c = new Client(good.origin, { dispatcher: cert.agent });
      const res = await c.postJson(
        '/.auth/register',
        { email: uniqueEmail('spoof'), password: PASSWORD },
        { 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6;proto=http' },
      );
      assert.equal(res.status, 201, res.text);
      const [session] = await good.gh.gatehouse.store.sessions.listByUser(res.json().user.id);
      assert.equal(session!.ip, '127.0.0.1', 'the address nginx saw, not the one the client wrote');
      const page = await c.get('/x', { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' });
      assert.equal(page.status, 200);
      const seen = page.json().headers;
      assert.equal(seen['x-forwarded-host'], `127.0.0.1:${new URL(good.origin).port}`);
      assert.equal(seen['x-forwarded-proto'], 'https');
      assert.equal(seen.forwarded, undefined);
    });
  });

  describe('nginx auth_request asking Gatehouse (examples/nginx-forward-auth.conf)', () => {
    let fa: Front;

    before(async () => {
      fa = await front('nginx-forward-auth.conf', () => ({
        trustedProxies: [NGINX_ADDR],
        headers: { email: true },
        accounts: limits,
        tokens: { device: { interval: '1s' }, bearerHeader: 'X-Gatehouse-Token' },
        routes: [
          { path: '/public/**', access: 'public' },
          { path: '/admin/**', allow: { groups: ['admins'] } },
          { path: '/blocked/**', access: 'deny' },
        ],
      }));
    });

    test('a browser is sent to the login page, signs up, and nginx lets it through with the identity headers', async () => {
      const { context, page } = await isolatedContext(browser, fa.origin, { ignoreHTTPSErrors: true });
      try {
        const first = await page.goto(`${fa.origin}/private/report?q=1&r=2`);
        assert.equal(first!.status(), 200, fa.nginx.errors());
        assert.equal(redirectsOf(first), 1, 'error_page turned the 401 into the redirect');
        assert.equal(page.url(), `${fa.origin}/.auth/login?rd=${encodeURIComponent('/private/report?q=1&r=2')}`);
        await page.getByRole('link', { name: 'Create an account' }).click();
        const email = uniqueEmail('authreq');
        await page.getByLabel('Email', { exact: true }).fill(email);
        await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
        await page.getByRole('button', { name: 'Create account' }).click();
        await page.waitForURL(`${fa.origin}/private/report?q=1&r=2`);
        const seen = JSON.parse(await page.locator('body').innerText()) as {
          url: string;
          headers: Record<string, string>;
        };
        assert.equal(seen.url, '/private/report?q=1&r=2', 'nginx proxied it to the app itself');
        assert.match(seen.headers['x-user-id']!, /^[0-9a-f-]{36}$/);
        assert.equal(seen.headers['x-user-email'], undefined, 'not verified yet: apps get verified addresses only');
        assert.equal(seen.headers.cookie, undefined, "Gatehouse's cookies never reach the app (X-Gatehouse-Cookie)");
        // Verified (by the mailed link or an operator): nginx passes the address on from the next request.
        await fa.gh.gatehouse.store.users.update(seen.headers['x-user-id']!, { emailVerified: true });
        await page.reload();
        const again = JSON.parse(await page.locator('body').innerText()) as { headers: Record<string, string> };
        assert.equal(again.headers['x-user-email'], email);
      } finally {
        await context.close();
      }
    });

    test('allow and deny: public passes anonymously, deny and missing groups are 403, an API gets 401', async () => {
      const anon = new Client(fa.origin, { dispatcher: cert.agent });
      const pub = await anon.get('/public/x');
      assert.equal(pub.status, 200);
      assert.equal(pub.json().headers['x-user-id'], undefined);
      assert.equal((await anon.get('/blocked/x')).status, 403);
      assert.equal((await anon.get('/private/x')).status, 401, 'no redirect for a client that does not ask for HTML');
      const user = new Client(fa.origin, { dispatcher: cert.agent });
      assert.equal(
        (await user.postJson('/.auth/register', { email: uniqueEmail('fa'), password: PASSWORD })).status,
        201,
      );
      assert.equal((await user.get('/private/x')).status, 200);
      assert.equal((await user.get('/admin/x')).status, 403);
      assert.equal((await user.get('/blocked/x')).status, 403);
      // The check route itself is internal to nginx.
      assert.equal((await anon.get('/.auth/check')).status, 404);
    });

    test('a request in absolute form through nginx is decided like any other (security.md #222)', async () => {
      const { host, port } = new URL(fa.origin);
      const get = (target: string, cookie = '') =>
        rawRequest(
          Number(port),
          `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\n${cookie}Connection: close\r\n\r\n`,
          3000,
          { ca: cert.pem },
        );
      // nginx hands auth_request the path and query of an absolute-form target ($request_uri).
      const anon = await get(`https://${host}/private/x?a=1`);
      assert.equal(anon.status, 401, anon.text.split('\r\n')[0]);
      const pub = await get(`https://${host}/public/x`);
      assert.equal(pub.status, 200, pub.text.split('\r\n')[0]);
      const user = new Client(fa.origin, { dispatcher: cert.agent });
      const registered = await user.postJson('/.auth/register', { email: uniqueEmail('fa-abs'), password: PASSWORD });
      assert.equal(registered.status, 201, registered.text);
      const signedIn = await get(`https://${host}/private/x?a=1`, `Cookie: ${user.cookieHeader()}\r\n`);
      assert.equal(signedIn.status, 200, signedIn.text.split('\r\n')[0]);
      // The app's echo (chunked by nginx): the origin-form URL and the user Gatehouse decided on.
      assert.ok(signedIn.text.includes('"url":"/private/x?a=1"'), 'the app gets origin-form');
      assert.ok(signedIn.text.includes(`"x-user-id":"${registered.json().user.id}"`), signedIn.text);
    });

    forwardAuthContract(() => ({ origin: fa.origin, cert, gh: fa.gh }));
    test('a WebSocket handshake: the check sees its Sec-WebSocket-Key and Origin, and refuses a cookie without Origin', async () => {
      const user = new Client(fa.origin, { dispatcher: cert.agent });
      assert.equal(
        (await user.postJson('/.auth/register', { email: uniqueEmail('fa-ws'), password: PASSWORD })).status,
        201,
      );
      const ws = { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };
      assert.equal((await user.get('/private/live', ws)).status, 403, 'signed in by cookie, no Origin');
      assert.equal((await user.get('/private/live', { ...ws, origin: 'https://evil.example' })).status, 403);
      assert.equal((await user.get('/private/live', { ...ws, origin: fa.origin })).status, 200);
    });

    test('spoofed identity and original-URL headers from the client change nothing (security.md #1-2, #5)', async () => {
      const anon = new Client(fa.origin, { dispatcher: cert.agent });
      const spoof = {
        'x-user-id': 'admin',
        X_User_Id: 'admin',
        'X-User-Email': 'boss@example.com',
        'x-original-uri': '/public/x',
        'x-forwarded-uri': '/public/x',
        'x-original-method': 'GET',
      };
      const pub = await anon.get('/public/y', spoof);
      assert.equal(pub.status, 200);
      for (const h of ['x-user-id', 'x-user-email', 'x_user_id']) assert.equal(pub.json().headers[h], undefined, h);
      assert.equal((await anon.get('/private/x', spoof)).status, 401, 'the URL nginx checks is its own $request_uri');
      const user = new Client(fa.origin, { dispatcher: cert.agent });
      const id = (await user.postJson('/.auth/register', { email: uniqueEmail('fa'), password: PASSWORD })).json().user
        .id;
      const seen = (
        await user.get('/private/x', {
          'X-User-Id': 'admin',
          'x-user-email': 'boss@example.com',
          cookie: `theme=dark; ${user.cookieHeader()}; lang=en`,
        })
      ).json().headers;
      assert.equal(seen['x-user-id'], id);
      assert.notEqual(seen['x-user-email'], 'boss@example.com');
      assert.equal(seen.cookie, 'theme=dark; lang=en', "the app's own cookies pass, Gatehouse's do not");
    });
  });
});
