import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  type JSONWebKeySet,
} from 'jose';
import { AppEvents, GIVE_UP_MS } from '../../src/events/index.ts';
import { createLogger } from '../../src/log/index.ts';
import { EVENT_URIS, verifyAssertion, verifyEvent } from '../../src/verify/index.ts';
import { runCli } from '../helpers/cli.ts';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import { emailConfig, linkIn, mailTo, sameOrigin } from '../helpers/email.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * Apps told of account events (src/events/, docs/events.md): a deleted, disabled or enabled
 * account is POSTed to each app that asked, as a Security Event Token signed with Gatehouse's
 * keys, from the server or the CLI, retried until the app takes it (security.md #241-#243), and
 * recorded in the transaction of the change that causes it (security.md #245).
 */

type Answer = { status: number; body?: string } | 'hang up';

/** An app's events endpoint: keeps what it got; answers what `answer` says for its path. */
interface Receiver {
  url: string;
  got: { path: string; contentType: string | undefined; body: string }[];
  answer: (path: string) => Answer;
  /** Resolves once `n` requests have come in all. */
  waitFor(n: number): Promise<void>;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const waiters: { n: number; resolve: () => void }[] = [];
  const r: Receiver = {
    url: '',
    got: [],
    answer: () => ({ status: 202 }),
    waitFor: (n) => (r.got.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      r.got.push({ path: req.url!, contentType: req.headers['content-type'], body });
      const a = r.answer(req.url!);
      if (a === 'hang up') req.socket.destroy();
      else res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body ?? '');
      for (const w of waiters.filter((w) => r.got.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return r;
}

let receiver: Receiver;
let smtp: TestSmtp;
let gh: TestGatehouse;

before(async () => {
  receiver = await startReceiver();
  smtp = await startSmtp();
  gh = await startGatehouse(({ upstream }) => ({
    email: emailConfig(smtp),
    apps: [
      { name: 'crm', upstream, headers: { email: true }, events: { url: `${receiver.url}/crm` } },
      {
        // Asks for address changes too, but gets no addresses: it is not told of them.
        name: 'billing',
        pathPrefix: '/billing',
        upstream,
        events: { url: `${receiver.url}/billing`, types: ['account_deleted', 'email_changed'] },
      },
      { name: 'wiki', pathPrefix: '/wiki', upstream },
    ],
    metrics: { listen: '127.0.0.1:0' },
  }));
});
after(async () => {
  await gh?.close();
  await receiver?.close();
  await smtp?.close();
});

async function jwks() {
  const res = await fetch(`${gh.url}/.well-known/jwks.json`);
  return createLocalJWKSet((await res.json()) as JSONWebKeySet);
}

async function deleteAccount(): Promise<{ id: string; email: string }> {
  const c = new Client(gh.url);
  const email = uniqueEmail('events');
  const { id } = await registerJson(c, email);
  const r = await c.postJson('/.auth/account/delete', { confirm: email }, sameOrigin(c));
  assert.equal(r.status, 200, r.text);
  return { id, email };
}

/** Waits until the outbox holds nothing due before `at`: what the courier is doing has ended. */
async function settled(at = Date.now()) {
  await gh.gatehouse.events.deliverDue(at);
}

const logsOf = (event: string) => gh.logs.filter((l) => l.event === event);

/** gatehouse_app_events_total for the app and outcome. */
async function counted(app: string, outcome: string): Promise<number> {
  const metric = await gh.gatehouse.metrics!.appEvents.get();
  return metric.values.find((v) => v.labels.app === app && v.labels.outcome === outcome)?.value ?? 0;
}

describe('an account deleted on the account page', () => {
  test('each app that asked gets a Security Event Token it verifies with the JWKS; an app that did not ask hears nothing', async () => {
    receiver.got.length = 0;
    receiver.answer = () => ({ status: 202 });
    const { id, email } = await deleteAccount();
    await receiver.waitFor(2);
    await settled();
    assert.deepEqual(receiver.got.map((g) => g.path).sort(), ['/billing', '/crm'], 'crm and billing, not wiki');
    const keys = await jwks();
    for (const got of receiver.got) {
      const app = got.path.slice(1);
      assert.equal(got.contentType, 'application/secevent+jwt');
      assert.equal(decodeProtectedHeader(got.body).typ, 'secevent+jwt');
      const { payload } = await jwtVerify(got.body, keys, { issuer: gh.url, audience: app, typ: 'secevent+jwt' });
      assert.equal(payload.sub, id);
      assert.equal(payload.exp! - payload.iat!, 300, 'valid five minutes from its signature');
      assert.deepEqual(payload.sub_id, { format: 'opaque', id });
      assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
      const event = (payload.events as Record<string, { event_timestamp: number }>)[EVENT_URIS.account_deleted];
      assert.ok(event, 'the RISC account-purged event');
      assert.ok(Math.abs(event.event_timestamp * 1000 - Date.now()) < 60_000);
      assert.ok(!got.body.includes(email) && !JSON.stringify(payload).includes(email), 'no address in the event');
      // gatehouse/verify, as a Node app would use it.
      const verified = await verifyEvent(got.body, { issuer: gh.url, audience: app, keys });
      assert.deepEqual([verified.type, verified.userId, verified.id], ['account_deleted', id, payload.jti]);
    }
    assert.deepEqual(await gh.gatehouse.store.appEvents.list(), [], 'the outbox is empty once both took it');
    assert.equal(logsOf('app_event_delivered').filter((l) => l.userId === id).length, 2);
  });

  test('an event verifies for its own app only, and is never taken for an assertion (nor an assertion for an event); a forged one fails', async () => {
    receiver.got.length = 0;
    receiver.answer = () => ({ status: 202 });
    await deleteAccount();
    await receiver.waitFor(2);
    const keys = await jwks();
    const crm = receiver.got.find((g) => g.path === '/crm')!.body;
    await assert.rejects(verifyEvent(crm, { issuer: gh.url, audience: 'billing', keys }), { code: 'wrong_audience' });
    await assert.rejects(verifyAssertion(crm, { issuer: gh.url, audience: 'crm', keys }), { code: 'wrong_type' });
    // An assertion the app got with a request is no event either.
    const c = new Client(gh.url);
    await registerJson(c, uniqueEmail('assertion'));
    const seen = (await c.get('/echo')).json() as { headers: Record<string, string> };
    const assertion = seen.headers['x-gatehouse-assertion']!;
    assert.ok(assertion);
    await assert.rejects(verifyEvent(assertion, { issuer: gh.url, audience: 'crm', keys }), { code: 'wrong_type' });
    // Signed by someone else under Gatehouse's kid; or by Gatehouse, of an event it never sends.
    const claims = decodeJwt(crm);
    const mine = await generateKeyPair('EdDSA');
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ ...decodeProtectedHeader(crm), alg: 'EdDSA' } as { alg: string })
      .sign(mine.privateKey);
    await assert.rejects(verifyEvent(forged, { issuer: gh.url, audience: 'crm', keys }), {
      code: 'invalid_signature',
    });
    const other = await gh.gatehouse.keys.sign(
      {
        jti: 'x',
        events: { 'https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required': {} },
      },
      { typ: 'secevent+jwt', ttlMs: 60_000, audience: 'crm', subject: String(claims.sub) },
    );
    await assert.rejects(verifyEvent(other, { issuer: gh.url, audience: 'crm', keys }), { code: 'invalid_claims' });
    // A body an app's framework parsed into something else is a mistake of the app's, said so.
    await assert.rejects(verifyEvent({} as unknown as string, { issuer: gh.url, audience: 'crm', keys }), {
      name: 'TypeError',
      message: /takes the request body as a string/,
    });
  });
});

/** Registers and asks for a new address on the account page (JSON); returns the mailed link's token. */
async function askNewAddress(c: Client): Promise<{ id: string; email: string; moved: string; token: string }> {
  const email = uniqueEmail('mover');
  const { id } = await registerJson(c, email);
  const moved = uniqueEmail('moved');
  const n = smtp.messages.length;
  const asked = await c.postJson('/.auth/account/email', { email: moved }, sameOrigin(c));
  assert.equal(asked.status, 202, asked.text);
  assert.equal(receiver.got.length, 0, 'nothing before the new address is confirmed');
  const link = linkIn(await mailTo(smtp, moved, /^Confirm your new email address for /, n), '/.auth/confirm-email');
  return { id, email, moved, token: new URL(link).searchParams.get('token')! };
}

/** askNewAddress, then the new address confirmed with the link. */
async function changeAddress(c: Client): Promise<{ id: string; moved: string }> {
  const { id, moved, token } = await askNewAddress(c);
  assert.equal((await new Client(gh.url).postJson('/.auth/confirm-email', { token })).status, 200);
  return { id, moved };
}

describe('an address changed with the link sent to it', () => {
  test('the apps that get addresses are told the new one; an app that gets none is not, though it asked', async () => {
    receiver.got.length = 0;
    receiver.answer = () => ({ status: 202 });
    const { id, moved } = await changeAddress(new Client(gh.url));
    await receiver.waitFor(1);
    await settled();
    assert.deepEqual(
      receiver.got.map((g) => g.path),
      ['/crm'],
    );
    const keys = await jwks();
    const event = await verifyEvent(receiver.got[0]!.body, { issuer: gh.url, audience: 'crm', keys });
    assert.deepEqual([event.type, event.userId, event.email], ['email_changed', id, moved]);
    const claims = decodeJwt(receiver.got[0]!.body);
    assert.deepEqual(Object.keys(claims.events as object), [EVENT_URIS.email_changed]);
    assert.deepEqual(await gh.gatehouse.store.appEvents.list(), [], 'the address is not kept once taken');
  });

  test('an address change still waiting for an app is dropped when the account is deleted', async () => {
    receiver.got.length = 0;
    receiver.answer = (path) => (path === '/crm' ? { status: 503 } : { status: 202 });
    const c = new Client(gh.url);
    const { id, moved } = await changeAddress(c);
    await receiver.waitFor(1);
    await settled();
    const waiting = (await gh.gatehouse.store.appEvents.list()).filter((e) => e.userId === id);
    assert.deepEqual(
      waiting.map((e) => [e.app, e.type, e.value]),
      [['crm', 'email_changed', moved]],
    );
    assert.equal((await c.postJson('/.auth/account/delete', { confirm: moved }, sameOrigin(c))).status, 200);
    await settled();
    const left = (await gh.gatehouse.store.appEvents.list()).filter((e) => e.userId === id);
    assert.deepEqual(
      left.map((e) => [e.app, e.type, e.value]),
      [['crm', 'account_deleted', null]],
      'only the deletion waits for crm; the new address is gone from the outbox',
    );
    receiver.answer = () => ({ status: 202 });
    assert.equal((await gh.gatehouse.events.deliverDue(Date.now() + 60_000)).delivered, 1);
  });
});

describe('delivery', () => {
  test('an app that is down is tried again with backoff, with the same jti, until it takes the event', async () => {
    receiver.got.length = 0;
    let down = true;
    receiver.answer = (path) => (path === '/crm' && down ? { status: 503 } : { status: 202 });
    const [failedBefore, deliveredBefore] = [await counted('crm', 'failed'), await counted('crm', 'delivered')];
    const { id } = await deleteAccount();
    await receiver.waitFor(2);
    await settled();
    const [waiting] = await gh.gatehouse.store.appEvents.list();
    assert.ok(waiting, 'crm has not taken it: it waits in the outbox');
    assert.deepEqual([waiting.app, waiting.userId, waiting.attempts, waiting.lastError], ['crm', id, 1, 'HTTP 503']);
    const wait = waiting.nextAt - Date.now();
    assert.ok(wait > 20_000 && wait <= 33_000, `the first retry is about 30 s away (${wait} ms)`);
    const failed = logsOf('app_event_failed').find((l) => l.userId === id)!;
    assert.equal(failed.cause, 'HTTP 503');

    assert.deepEqual(await gh.gatehouse.events.deliverDue(), { delivered: 0, retried: 0, dropped: 0 }, 'not yet');
    // 35 s later: the app is still down; the next wait is longer.
    assert.deepEqual(await gh.gatehouse.events.deliverDue(Date.now() + 35_000), {
      delivered: 0,
      retried: 1,
      dropped: 0,
    });
    const [again] = await gh.gatehouse.store.appEvents.list();
    assert.equal(again!.attempts, 2);
    assert.ok(again!.nextAt - (Date.now() + 35_000) > 50_000, 'a minute after the second attempt');
    down = false;
    assert.deepEqual(await gh.gatehouse.events.deliverDue(Date.now() + 120_000), {
      delivered: 1,
      retried: 0,
      dropped: 0,
    });
    const crm = receiver.got.filter((g) => g.path === '/crm').map((g) => decodeJti(g.body));
    assert.equal(crm.length, 3);
    assert.equal(new Set(crm).size, 1, 'every attempt carries the same jti');
    assert.equal((await counted('crm', 'failed')) - failedBefore, 2, 'gatehouse_app_events_total');
    assert.equal((await counted('crm', 'delivered')) - deliveredBefore, 1);
    assert.deepEqual(await gh.gatehouse.store.appEvents.list(), []);
  });

  test('a connection the app cuts is tried again like a 5xx', async () => {
    receiver.got.length = 0;
    receiver.answer = (path) => (path === '/crm' ? 'hang up' : { status: 202 });
    await deleteAccount();
    await receiver.waitFor(2);
    await settled();
    const [waiting] = await gh.gatehouse.store.appEvents.list();
    assert.equal(waiting?.app, 'crm');
    assert.match(String(waiting?.lastError), /^(UND_ERR_SOCKET|ECONNRESET|SocketError)$/);
    receiver.answer = () => ({ status: 204 });
    assert.equal((await gh.gatehouse.events.deliverDue(Date.now() + 60_000)).delivered, 1);
  });

  test('an event the app refuses (400, RFC 8935) is not sent again, and the refusal is logged with its reason', async () => {
    receiver.got.length = 0;
    receiver.answer = (path) =>
      path === '/crm'
        ? { status: 400, body: JSON.stringify({ err: 'invalid_key', description: 'no key with that kid' }) }
        : { status: 202 };
    const { id } = await deleteAccount();
    await receiver.waitFor(2);
    await settled();
    assert.deepEqual(await gh.gatehouse.store.appEvents.list(), []);
    const refused = logsOf('app_event_rejected').find((l) => l.userId === id)!;
    assert.deepEqual(
      [refused.level, refused.app, refused.err, refused.description],
      ['error', 'crm', 'invalid_key', 'no key with that kid'],
    );
    assert.deepEqual(await gh.gatehouse.events.deliverDue(Date.now() + 3_600_000), {
      delivered: 0,
      retried: 0,
      dropped: 0,
    });
    assert.equal(receiver.got.filter((g) => g.path === '/crm').length, 1);
    assert.ok((await counted('crm', 'rejected')) >= 1);
  });

  test('an event for an app that no longer takes it (the config changed) is dropped, not sent', async () => {
    receiver.got.length = 0;
    receiver.answer = (path) => (path === '/crm' ? { status: 503 } : { status: 202 });
    await deleteAccount();
    await receiver.waitFor(2);
    await settled();
    assert.equal((await gh.gatehouse.store.appEvents.list()).length, 1, 'crm has not taken it');
    // The node restarted with crm taking only address changes now.
    const restarted = new AppEvents({
      store: gh.gatehouse.store,
      ring: gh.gatehouse.keys,
      apps: [
        {
          name: 'crm',
          headers: gh.gatehouse.sites.get(new URL(gh.url).host)!.apps.find((a) => a.name === 'crm')!.headers,
          events: { url: new URL(`${receiver.url}/crm`), types: new Set(['email_changed'] as const) },
        },
      ],
      logger: createLogger('silent'),
    });
    assert.deepEqual(await restarted.deliverDue(Date.now() + 60_000), { delivered: 0, retried: 0, dropped: 1 });
    assert.deepEqual(await gh.gatehouse.store.appEvents.list(), []);
    assert.equal(receiver.got.length, 2, 'nothing more was sent');
  });

  test('after three days of failures an event is dropped with an error in the log', async () => {
    receiver.got.length = 0;
    receiver.answer = (path) => (path === '/crm' ? { status: 500 } : { status: 202 });
    const { id } = await deleteAccount();
    await receiver.waitFor(2);
    await settled();
    assert.equal((await gh.gatehouse.store.appEvents.list()).length, 1);
    assert.deepEqual(await gh.gatehouse.events.deliverDue(Date.now() + GIVE_UP_MS + 60_000), {
      delivered: 0,
      retried: 0,
      dropped: 1,
    });
    assert.deepEqual(await gh.gatehouse.store.appEvents.list(), []);
    const dropped = logsOf('app_event_dropped').find((l) => l.userId === id)!;
    assert.deepEqual([dropped.level, dropped.cause], ['error', 'HTTP 500']);
  });
});

describe('an event that cannot be recorded', () => {
  test('the change is not made: the account is neither deleted, disabled nor moved, and the user gets an error, not a success', async () => {
    receiver.got.length = 0;
    receiver.answer = () => ({ status: 202 });
    const c = new Client(gh.url);
    const { id, email, moved, token } = await askNewAddress(c);
    // The outbox refuses every row, on the store's own file (as a full disk or a broken table would).
    const db = new DatabaseSync(join(gh.dir, 'gatehouse.db'));
    db.exec(
      `CREATE TRIGGER app_events_refused BEFORE INSERT ON app_events BEGIN SELECT RAISE(ABORT, 'no events today'); END`,
    );
    try {
      const deleted = await c.postJson('/.auth/account/delete', { confirm: email }, sameOrigin(c));
      assert.equal(deleted.status, 500, deleted.text);
      assert.doesNotMatch(deleted.text, /"ok":\s*true/);
      const confirmed = await new Client(gh.url).postJson('/.auth/confirm-email', { token });
      assert.equal(confirmed.status, 500, confirmed.text);
      await assert.rejects(gh.gatehouse.accounts.setDisabled(id, true), /no events today/);

      const user = await gh.gatehouse.store.users.get(id);
      assert.deepEqual([user?.email, user?.disabled], [email, false], 'still there, as it was');
      assert.equal(await gh.gatehouse.store.users.getByEmail(moved), undefined);
      const echoed = await c.get('/echo');
      assert.equal(echoed.status, 200, 'still signed in');
      assert.equal((echoed.json() as { headers: Record<string, string> }).headers['x-user-id'], id);
      assert.deepEqual(await gh.gatehouse.store.appEvents.list(), []);
      assert.equal(
        logsOf('internal_error').filter((l) => /no events today/.test(JSON.stringify(l.err))).length,
        2,
        'both requests failed on the outbox',
      );
    } finally {
      db.exec('DROP TRIGGER app_events_refused');
      db.close();
    }
    await settled();
    assert.equal(receiver.got.length, 0, 'no app was told of a change that was not made');
  });
});

describe('with a short tokens.maxLifetime', () => {
  let short: TestGatehouse;
  before(async () => {
    short = await startGatehouse(() => ({
      events: { url: `${receiver.url}/short` },
      tokens: { maxLifetime: '2m' },
    }));
  });
  after(() => short?.close());

  test('the event lives no longer than any token Gatehouse signs', async () => {
    receiver.got.length = 0;
    receiver.answer = () => ({ status: 202 });
    const c = new Client(short.url);
    const email = uniqueEmail('short');
    await registerJson(c, email);
    assert.equal((await c.postJson('/.auth/account/delete', { confirm: email }, sameOrigin(c))).status, 200);
    await receiver.waitFor(1);
    const claims = decodeJwt(receiver.got[0]!.body);
    assert.equal(claims.exp! - claims.iat!, 120);
  });
});

describe('from the CLI', () => {
  test('users disable and enable tell the apps that asked; events list shows what waits and events send tries it now; what the CLI could not send, the server does', async () => {
    receiver.got.length = 0;
    receiver.answer = () => ({ status: 202 });
    const email = uniqueEmail('cli-events');
    const { id } = await registerJson(new Client(gh.url), email);
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-events-'));
    try {
      const file = join(dir, 'gatehouse.yaml');
      const app = (name: string, prefix: string, events: string) =>
        `  - {name: ${name}, ${prefix}upstream: ${gh.upstream.url}${events}}\n`;
      writeFileSync(
        file,
        `publicUrl: ${gh.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\napps:\n` +
          app('crm', '', `, events: {url: ${receiver.url}/crm}`) +
          app(
            'billing',
            'pathPrefix: /billing, ',
            `, events: {url: ${receiver.url}/billing, types: [account_deleted]}`,
          ) +
          app('wiki', 'pathPrefix: /wiki, ', ''),
      );
      const off = await runCli(['users', 'disable', email, '--config', file]);
      assert.equal(off.code, 0, off.stderr);
      assert.equal(off.stdout, `disabled ${email}; their sessions have ended; 1 app event(s) delivered\n`);
      assert.equal(receiver.got.length, 1, 'crm only: billing asked for deletions alone');
      const keys = await jwks();
      const disabled = await verifyEvent(receiver.got[0]!.body, { issuer: gh.url, audience: 'crm', keys });
      assert.deepEqual([disabled.type, disabled.userId], ['account_disabled', id]);

      const again = await runCli(['users', 'disable', email, '--config', file]);
      assert.equal(again.stdout, `disabled ${email}; their sessions have ended\n`, 'no change, no event');

      receiver.answer = () => ({ status: 503 });
      const on = await runCli(['users', 'enable', email, '--config', file]);
      assert.equal(on.code, 0, on.stderr);
      assert.equal(on.stdout, `enabled ${email}; 1 not taken yet (gatehouse serve retries them)\n`);
      const listed = await runCli(['events', 'list', '--json', '--config', file]);
      assert.equal(listed.code, 0, listed.stderr);
      const [waiting] = JSON.parse(listed.stdout) as Record<string, unknown>[];
      assert.deepEqual(
        [waiting?.app, waiting?.type, waiting?.user, waiting?.attempts, waiting?.['last error']],
        ['crm', 'account_enabled', id, 1, 'HTTP 503'],
      );
      receiver.answer = () => ({ status: 202 });
      const sent = await runCli(['events', 'send', '--config', file]);
      assert.equal(sent.code, 0, sent.stderr);
      assert.equal(sent.stdout, '1 waiting event(s) tried now; 1 app event(s) delivered\n');
      const enabled = await verifyEvent(receiver.got.at(-1)!.body, { issuer: gh.url, audience: 'crm', keys });
      assert.deepEqual([enabled.type, enabled.userId], ['account_enabled', id]);
      assert.equal((await runCli(['events', 'list', '--config', file])).stdout, 'no events waiting for an app\n');

      // What the CLI could not send, the running server's courier finds in the shared store.
      receiver.answer = () => ({ status: 503 });
      const off2 = await runCli(['users', 'disable', email, '--config', file]);
      assert.match(off2.stdout, /; 1 not taken yet \(gatehouse serve retries them\)\n$/);
      receiver.answer = () => ({ status: 202 });
      assert.equal((await gh.gatehouse.events.deliverDue(Date.now() + 60_000)).delivered, 1);
      const later = await verifyEvent(receiver.got.at(-1)!.body, { issuer: gh.url, audience: 'crm', keys });
      assert.deepEqual([later.type, later.userId], ['account_disabled', id]);
      const trail = await gh.gatehouse.store.audit.list({ event: 'operator', limit: 20 });
      assert.ok(
        trail.some((e) => e.detail.command === 'events send'),
        'events send is audited',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function decodeJti(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
}
