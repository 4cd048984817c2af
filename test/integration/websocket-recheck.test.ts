import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import { WebSocket } from 'ws';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { BASE_CONFIG, refusal } from '../helpers/config.ts';
import { until } from '../helpers/timing.ts';
import { Clock, cliClient, deviceLogin } from '../oauth/helpers.ts';

/**
 * An open WebSocket is not a request: after its handshake nothing would ask about its user again.
 * sessions.webSocketRecheck checks each one's session or login again (here every second), so
 * signing out, a revoked CLI login, a disabled user or a rule that no longer admits them closes
 * the tunnels they had open (security.md #282).
 */
let gh: TestGatehouse;
const clock = new Clock();

before(async () => {
  gh = await startGatehouse(
    () => ({
      sessions: { webSocketRecheck: '1s' },
      routes: [
        { path: '/admin/**', allow: { groups: ['admins'] } },
        { path: '/pub/**', access: 'public' as const },
      ],
    }),
    { clock: clock.now },
  );
});
after(() => gh.close());

interface Tunnel {
  ws: WebSocket;
  /** Who the app was told opened it. */
  user: string | undefined;
  /** The close code and reason, once the tunnel is closed. */
  closed: Promise<{ code: number; reason: string }>;
  /** The app's echo of a message, while the tunnel is open. */
  echo(text: string): Promise<string>;
}

function open(path: string, headers: Record<string, string>): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${gh.url.replace('http', 'ws')}${path}`, { headers });
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      ws.once('close', (code, reason) => done({ code, reason: String(reason) })),
    );
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    ws.once('error', reject);
    ws.once('message', (m) =>
      resolve({
        ws,
        user: JSON.parse(String(m)).headers['x-user-id'],
        closed,
        echo: (text) =>
          new Promise((answer) => {
            ws.once('message', (e) => answer(String(e)));
            ws.send(text);
          }),
      }),
    );
  });
}

const withCookie = (c: Client) => ({ cookie: c.cookieHeader()!, origin: gh.url });

/** Whether the tunnel is closed by now, without waiting for it. */
const isClosed = (t: Tunnel) => t.ws.readyState === WebSocket.CLOSED;

describe('open WebSockets are checked again (sessions.webSocketRecheck)', () => {
  test('signing out closes the WebSockets of that session with 1008 and the reason; another session’s stay open', async () => {
    const email = uniqueEmail('ws-out');
    const a = new Client(gh.url);
    const user = await registerJson(a, email);
    const b = new Client(gh.url);
    assert.equal((await b.postJson('/.auth/login', { email, password: 'a long enough passphrase' })).status, 200);
    const first = await open('/ws', withCookie(a));
    const second = await open('/ws', withCookie(a));
    const other = await open('/ws', withCookie(b));
    assert.equal(first.user, user.id);
    assert.equal(await first.echo('hello'), 'hello');

    assert.equal((await a.postJson('/.auth/logout', {}, { origin: gh.url })).status, 200);
    const [one, two] = await Promise.all([first.closed, second.closed]);
    assert.deepEqual(one, { code: 1008, reason: 'signed out' });
    assert.deepEqual(two, { code: 1008, reason: 'signed out' });
    // The round that closed them checked the other session's tunnel too: it is still open and served.
    assert.equal(isClosed(other), false);
    assert.equal(await other.echo('still here'), 'still here');
    const line = await until('the websocket_closed line', () =>
      gh.logs.find((l) => l.event === 'websocket_closed' && l.user === user.id),
    );
    assert.equal(line.reason, 'signed out');
    assert.equal(line.app, 'app');
    other.ws.close();
  });

  test('a disabled user’s WebSockets close, from a browser session and from a CLI login alike', async () => {
    const browser = new Client(gh.url);
    const user = await registerJson(browser, uniqueEmail('ws-off'));
    const tokens = await deviceLogin(gh, browser);
    const byCookie = await open('/ws', withCookie(browser));
    const byToken = await open('/ws', { authorization: `Bearer ${tokens.access_token}` });
    assert.equal(byToken.user, user.id);

    await gh.gatehouse.store.users.update(user.id, { disabled: true });
    assert.deepEqual(await byCookie.closed, { code: 1008, reason: 'the account is disabled' });
    assert.deepEqual(await byToken.closed, { code: 1008, reason: 'the login was revoked' });
  });

  test('a CLI login revoked closes its WebSockets; its access token expiring does not (the login is what a tunnel lives by)', async () => {
    const browser = new Client(gh.url);
    await registerJson(browser, uniqueEmail('ws-cli'));
    const kept = await deviceLogin(gh, browser);
    const revoked = await deviceLogin(gh, browser);
    const lives = await open('/ws', { authorization: `Bearer ${kept.access_token}` });
    const ends = await open('/ws', { authorization: `Bearer ${revoked.access_token}` });

    // Past the access tokens' expiry: a new handshake with one is refused, the open tunnel stays.
    clock.advance((kept.expires_in! + 60) * 1000);
    await assert.rejects(open('/ws', { authorization: `Bearer ${kept.access_token}` }), /handshake answered 401/);
    await oauth.tokenRevocation(await cliClient(gh), revoked.refresh_token!);
    assert.deepEqual(await ends.closed, { code: 1008, reason: 'the login was revoked' });
    assert.equal(isClosed(lives), false, 'checked in the same round, and still open');
    assert.equal(await lives.echo('after expiry'), 'after expiry');
    lives.ws.close();
  });

  test('a user taken out of the group a route asks for loses its WebSockets there, and only there', async () => {
    const browser = new Client(gh.url);
    const user = await registerJson(browser, uniqueEmail('ws-group'));
    await gh.gatehouse.store.users.update(user.id, { groups: ['admins'] });
    const admin = await open('/admin/ws', withCookie(browser));
    const plain = await open('/ws', withCookie(browser));

    await gh.gatehouse.store.users.update(user.id, { groups: [] });
    assert.deepEqual(await admin.closed, { code: 1008, reason: 'no longer allowed here' });
    assert.equal(isClosed(plain), false);
    assert.equal(await plain.echo('mine'), 'mine');
    plain.ws.close();
  });

  test('a reload that closes the app for maintenance closes its open WebSockets, anonymous ones too; its operators’ stay', async () => {
    const browser = new Client(gh.url);
    await registerJson(browser, uniqueEmail('ws-user'));
    const operator = new Client(gh.url);
    const opEmail = uniqueEmail('ws-op');
    const op = await registerJson(operator, opEmail);
    await gh.gatehouse.store.users.update(op.id, { emailVerified: true });
    const users = await open('/ws', withCookie(browser));
    const anonymous = await open('/pub/ws', { origin: gh.url });
    const operators = await open('/ws', withCookie(operator));
    const served = gh.config;
    assert.equal(
      (await gh.gatehouse.reload({ ...served, maintenance: { retryAfter: 60_000, allow: { emails: [opEmail] } } }))
        .outcome,
      'ok',
    );
    try {
      assert.deepEqual(await users.closed, { code: 1008, reason: 'the app is closed for maintenance' });
      assert.deepEqual(await anonymous.closed, { code: 1008, reason: 'the app is closed for maintenance' });
      assert.equal(isClosed(operators), false);
      assert.equal(await operators.echo('still working'), 'still working');
    } finally {
      assert.equal((await gh.gatehouse.reload(served)).outcome, 'ok');
      operators.ws.close();
    }
  });

  test('config: webSocketRecheck is a duration from 1s to 1h', () => {
    for (const bad of ['500ms', '0s', '2h'])
      assert.match(
        refusal(`${BASE_CONFIG}sessions: { webSocketRecheck: ${bad} }\n`),
        /gatehouse\.yaml:3 {2}sessions\.webSocketRecheck: expected a duration between "1s" and "1h"/,
      );
  });
});

/**
 * The Close frame goes in between two of the app's frames, never inside one (a client reading a
 * frame cut by another would fail the connection, 1002/1006, and never see why): a frame under way
 * when the tunnel is closed is passed on whole first, if the app finishes it within 2 s; else the
 * connection is cut. An app that writes raw frames, under the test's control.
 */
describe('closing an open WebSocket between the app’s frames', () => {
  const sockets: Socket[] = [];
  /** The app's sockets whose other side (Gatehouse) has closed. */
  const ended = new WeakSet<Socket>();
  let app: http.Server;
  let gh2: TestGatehouse;
  before(async () => {
    app = http.createServer((_req, res) => res.end('websocket only'));
    app.on('upgrade', (req, socket: Socket) => {
      const accept = createHash('sha1')
        .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      socket.write(Buffer.from([0x81, 2, 0x68, 0x69])); // "hi"
      socket.on('data', () => {});
      socket.on('error', () => {});
      socket.on('end', () => ended.add(socket));
      sockets.push(socket);
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    gh2 = await startGatehouse(() => ({
      upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
      sessions: { webSocketRecheck: '1s' },
    }));
  });
  after(async () => {
    await gh2?.close();
    for (const s of sockets) s.destroy();
    app?.close();
  });

  /** A tunnel of a signed-in browser, once the app's greeting came through; every message after it, and how it closed. */
  async function tunnel() {
    const c = new Client(gh2.url);
    const user = await registerJson(c, uniqueEmail('ws-frame'));
    const ws = new WebSocket(`${gh2.url.replace('http', 'ws')}/ws`, {
      headers: { cookie: c.cookieHeader()!, origin: gh2.url },
    });
    const messages: Buffer[] = [];
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      ws.once('close', (code, reason) => done({ code, reason: String(reason) })),
    );
    ws.on('error', () => {});
    await new Promise<void>((resolve) => ws.once('message', () => resolve()));
    ws.on('message', (m: Buffer) => messages.push(m));
    const socket = sockets.at(-1)!;
    const signedOut = async () => {
      assert.equal((await c.postJson('/.auth/logout', {}, { origin: gh2.url })).status, 200);
      await until('the tunnel is being closed', () =>
        gh2.logs.find((l) => l.event === 'websocket_closed' && l.user === user.id),
      );
    };
    return { socket, messages, closed, signedOut };
  }

  test('a frame under way is passed on whole, then the Close with its reason', async () => {
    const t = await tunnel();
    const payload = Buffer.from('0123456789');
    t.socket.write(Buffer.concat([Buffer.from([0x82, payload.length]), payload.subarray(0, 4)]));
    await t.signedOut();
    t.socket.write(payload.subarray(4));
    assert.deepEqual(await t.closed, { code: 1008, reason: 'signed out' });
    assert.deepEqual(t.messages, [payload], 'the whole frame, then nothing of the app’s');
  });

  test('a frame the app does not finish is cut with the connection', async () => {
    const t = await tunnel();
    t.socket.write(Buffer.from([0x82, 10, 0x30, 0x31]));
    await t.signedOut();
    assert.equal((await t.closed).code, 1006, 'the connection dropped: no Close inside a frame');
    assert.deepEqual(t.messages, []);
    await until('Gatehouse closed the app’s side', () => ended.has(t.socket));
  });
});
