import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, PASSWORD, uniqueEmail } from '../helpers/client.ts';
import { caddyExample, caddySkip, startCaddy, type TestCaddy } from '../helpers/caddy.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { selfSigned, type TestCert } from '../helpers/tls.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { forwardAuthContract } from './forward-auth.ts';
import { describeOrSkip } from '../helpers/requirements.ts';

/**
 * Real Caddy (Debian's package) with forward_auth, running examples/Caddyfile on a loopback
 * port with a certificate made for this run. Caddy relays Gatehouse's non-2xx answers to the
 * client as they are, so browsers get the 302 to the login page from Gatehouse itself.
 */

describeOrSkip('Caddy forward_auth asking Gatehouse (examples/Caddyfile)', { skip: caddySkip() }, () => {
  let cert: TestCert;
  let upstream: TestUpstream;
  let gh: TestGatehouse;
  let caddy: TestCaddy;
  let origin: string;

  before(async () => {
    cert = selfSigned();
    upstream = await startUpstream();
    const port = await freePort();
    origin = `https://127.0.0.1:${port}`;
    gh = await startGatehouse(
      () => ({
        publicUrl: origin,
        trustedProxies: ['loopback'],
        headers: { email: true },
        accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
        tokens: { device: { interval: '1s' } },
        routes: [
          { path: '/public/**', access: 'public' },
          { path: '/admin/**', allow: { groups: ['admins'] } },
          { path: '/blocked/**', access: 'deny' },
        ],
      }),
      { upstream },
    );
    caddy = await startCaddy(
      caddyExample({ port, cert: cert.cert, key: cert.key, gatehouse: gh.port, app: upstream.port, dir: gh.dir }),
      port,
    );
  });
  after(async () => {
    await caddy?.stop();
    await gh?.close();
    await upstream?.close();
  });

  test("a browser gets Gatehouse's 302 to login through Caddy, signs up, and Caddy lets it through with the identity", async () => {
    const c = new Client(origin, { dispatcher: cert.agent });
    const first = await c.html('/private/report?q=1');
    assert.equal(first.status, 302, caddy.log());
    assert.equal(first.location, `${origin}/.auth/login?rd=${encodeURIComponent('/private/report?q=1')}`);
    const login = await c.html(first.location!);
    assert.equal(login.status, 200, 'X-Forwarded-Proto from Caddy: no diagnosis');
    const registerUrl = /href="([^"]*register[^"]*)"/.exec(login.text)![1]!.replaceAll('&amp;', '&');
    const email = uniqueEmail('caddy');
    const done = await c.submitForm(registerUrl, { email, password: PASSWORD });
    assert.equal(done.status, 303, done.text);
    assert.equal(done.location, `${origin}/private/report?q=1`);
    // Apps get verified addresses only (an operator's or the mailed link's): verify it here.
    const user = (await gh.gatehouse.store.users.getByEmail(email))!;
    await gh.gatehouse.store.users.update(user.id, { emailVerified: true });
    const page = await c.get(done.location!, { cookie: `theme=dark; ${c.cookieHeader()}` });
    assert.equal(page.status, 200);
    const seen = page.json();
    assert.equal(seen.url, '/private/report?q=1', 'Caddy proxied it to the app itself');
    assert.match(seen.headers['x-user-id'], /^[0-9a-f-]{36}$/);
    assert.equal(seen.headers['x-user-email'], email);
    assert.equal(seen.headers.cookie, 'theme=dark', "Gatehouse's cookies never reach the app");
  });

  test('allow and deny: public passes anonymously, deny and missing groups are 403, an API gets 401 JSON', async () => {
    const anon = new Client(origin, { dispatcher: cert.agent });
    const pub = await anon.get('/public/x');
    assert.equal(pub.status, 200);
    assert.equal(pub.json().headers['x-user-id'], undefined);
    assert.equal((await anon.get('/blocked/x')).status, 403);
    const api = await anon.get('/private/x');
    assert.equal(api.status, 401);
    assert.equal(api.json().error, 'unauthenticated');
    const user = new Client(origin, { dispatcher: cert.agent });
    assert.equal(
      (await user.postJson('/.auth/register', { email: uniqueEmail('caddy'), password: PASSWORD })).status,
      201,
    );
    assert.equal((await user.get('/private/x')).status, 200);
    assert.equal((await user.get('/admin/x')).status, 403);
  });

  test('a WebSocket handshake: the check sees its Sec-WebSocket-Key and Origin, and refuses a cookie without Origin', async () => {
    const user = new Client(origin, { dispatcher: cert.agent });
    assert.equal(
      (await user.postJson('/.auth/register', { email: uniqueEmail('caddy-ws'), password: PASSWORD })).status,
      201,
    );
    const ws = { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };
    assert.equal((await user.get('/private/live', ws)).status, 403, 'signed in by cookie, no Origin');
    assert.equal((await user.get('/private/live', { ...ws, origin: 'https://evil.example' })).status, 403);
    assert.equal((await user.get('/private/live', { ...ws, origin })).status, 200);
  });

  test('spoofed identity, forwarding and original-URL headers from the client change nothing (security.md #1-5)', async () => {
    const spoof = {
      'x-user-id': 'admin',
      X_User_Id: 'admin',
      'X-User-Email': 'boss@example.com',
      'x-forwarded-uri': '/public/x',
      'x-forwarded-method': 'GET',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil.example',
    };
    const anon = new Client(origin, { dispatcher: cert.agent });
    const pub = await anon.get('/public/y', spoof);
    assert.equal(pub.status, 200);
    for (const h of ['x-user-id', 'x-user-email', 'x_user_id']) assert.equal(pub.json().headers[h], undefined, h);
    assert.equal((await anon.get('/private/x', spoof)).status, 401, 'Caddy sends its own X-Forwarded-Uri');
    const user = new Client(origin, { dispatcher: cert.agent });
    const res = await user.postJson('/.auth/register', { email: uniqueEmail('caddy'), password: PASSWORD }, spoof);
    const id = res.json().user.id;
    const [session] = await gh.gatehouse.store.sessions.listByUser(id);
    assert.equal(session!.ip, '127.0.0.1', "Caddy replaced the client's X-Forwarded-For");
    const seen = (await user.get('/private/x', spoof)).json().headers;
    assert.equal(seen['x-user-id'], id);
    assert.equal(seen['x-user-email'] === 'boss@example.com', false);
  });

  forwardAuthContract(() => ({ origin, cert, gh }));
});
