import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import { runCli } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { type TestCa, testCa } from '../helpers/tls.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * upstreamTls: an app on https with a certificate from a private CA that takes requests only
 * from holders of a client certificate it trusts (mutual TLS), so that nothing but Gatehouse
 * can talk to it. Real TLS both ways: node:https as the app, certificates made by openssl.
 */

let dir: string;
let ca: TestCa;
let stranger: TestCa;
/** The app: https, its certificate for 127.0.0.1 and app.internal, a client certificate from `ca` required. */
let app: TestUpstream;
/** The same app's twin whose certificate names app.internal only. */
let named: TestUpstream;
let client: { cert: string; key: string };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-upstream-tls-'));
  for (const d of ['ca', 'stranger']) mkdirSync(join(dir, d));
  ca = testCa({ dir: join(dir, 'ca'), cn: 'apps CA' });
  stranger = testCa({ dir: join(dir, 'stranger'), cn: 'another CA' });
  const server = ca.issue({ name: 'app', cn: 'app', use: 'server', hosts: ['127.0.0.1', 'app.internal'] });
  const onlyNamed = ca.issue({ name: 'named', cn: 'named', use: 'server', hosts: ['app.internal'] });
  const issued = ca.issue({ name: 'gatehouse-1', cn: 'gatehouse-1', use: 'client' });
  // Gatehouse reads its client certificate from these paths; a renewal overwrites them.
  client = { cert: join(dir, 'client.crt'), key: join(dir, 'client.key') };
  copyFileSync(issued.cert, client.cert);
  copyFileSync(issued.key, client.key);
  const demand = { ca: ca.pem, requestCert: true, rejectUnauthorized: true };
  [app, named] = await Promise.all([
    startUpstream({ tls: { ...demand, cert: server.pem, key: readFileSync(server.key) } }),
    startUpstream({ tls: { ...demand, cert: onlyNamed.pem, key: readFileSync(onlyNamed.key) } }),
  ]);
});
after(async () => {
  await Promise.all([app?.close(), named?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** A signed-in client of `gh` and what the app echoed for its GET /hello. */
async function helloThrough(gh: TestGatehouse): Promise<{ status: number; body: Record<string, any>; id: string }> {
  const c = new Client(gh.url);
  const { id } = await registerJson(c, uniqueEmail('mtls'));
  const r = await c.get('/hello');
  return { status: r.status, body: r.status === 200 ? r.json() : {}, id };
}

describe('mutual TLS to the app', () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse(
      () => ({
        upstream: app.url,
        upstreamTls: { ca: ca.cert, ...client },
        events: { url: `${app.url}/events`, types: ['account_disabled'] },
      }),
      { upstream: app },
    );
  });
  after(() => gh?.close());

  test('the app, which refuses anyone without a client certificate, gets every request, WebSocket and event from Gatehouse', async () => {
    // Straight to the app, trusting its CA but with no client certificate: refused in the handshake.
    const bare = new Agent({ connect: { ca: ca.pem } });
    await assert.rejects(request(`${app.url}/hello`, { dispatcher: bare }).then((r) => r.body.dump()));
    await bare.close();

    const { status, body, id } = await helloThrough(gh);
    assert.equal(status, 200);
    assert.equal(body.clientCn, 'gatehouse-1', 'the app saw the client certificate of upstreamTls.cert');
    assert.equal(body.headers['x-user-id'], id);

    const c = new Client(gh.url);
    await registerJson(c, uniqueEmail('mtls-ws'));
    const ws = new WebSocket(`ws://127.0.0.1:${gh.port}/ws`, {
      headers: { cookie: c.cookieHeader()!, origin: gh.url },
    });
    const hello = await new Promise<{ clientCn: string }>((resolve, reject) => {
      ws.once('message', (m) => resolve(JSON.parse(String(m))));
      ws.once('error', reject);
    });
    ws.close();
    assert.equal(hello.clientCn, 'gatehouse-1', 'the WebSocket tunnel presented it too');

    // An event for the app, POSTed to its events URL on the same origin: with the same certificate.
    await gh.gatehouse.accounts.setDisabled(id, true);
    await gh.gatehouse.events.deliverDue(Date.now());
    const delivered = gh.logs.filter((l) => l.event === 'app_event_delivered' && l.userId === id);
    assert.equal(delivered.length, 1, JSON.stringify(gh.logs.filter((l) => String(l.event).startsWith('app_event'))));
    assert.ok(app.requests.some((r) => r.method === 'POST' && r.url === '/events'));
  });

  test('SIGHUP: a renewed client certificate is presented on new connections; files that cannot be used keep the old one', async () => {
    const renewed = ca.issue({ name: 'gatehouse-2', cn: 'gatehouse-2', use: 'client' });
    copyFileSync(renewed.cert, client.cert);
    copyFileSync(renewed.key, client.key);
    gh.gatehouse.reloadTls();
    assert.equal((await helloThrough(gh)).body.clientCn, 'gatehouse-2');
    assert.equal(gh.logs.filter((l) => l.event === 'upstream_tls_reload' && l.outcome === 'ok').length, 1);

    // A half-written renewal (the key of another certificate): logged, and the old pair stays in use.
    copyFileSync(ca.issue({ name: 'gatehouse-3', cn: 'gatehouse-3', use: 'client' }).key, client.key);
    gh.gatehouse.reloadTls();
    const failed = gh.logs.filter((l) => l.event === 'upstream_tls_reload' && l.outcome === 'failed');
    assert.equal(failed.length, 1);
    assert.match(JSON.stringify(failed[0]), /upstreamTls\.key: .* is not the key of the certificate/);
    const after = await helloThrough(gh);
    assert.equal(after.status, 200);
    assert.equal(after.body.clientCn, 'gatehouse-2');
    copyFileSync(renewed.key, client.key);
  });
});

describe('an app whose certificate does not pass is never sent the request', () => {
  const started: TestGatehouse[] = [];
  after(() => Promise.all(started.map((g) => g.close())));
  /** `host` replaces 127.0.0.1 in the upstream URL (the name the request carries, and the SNI). */
  async function through(upstream: TestUpstream, upstreamTls?: Record<string, string>, host = '127.0.0.1') {
    const url = upstream.url.replace('127.0.0.1', host);
    const gh = await startGatehouse(() => ({ upstream: url, ...(upstreamTls ? { upstreamTls } : {}) }), { upstream });
    started.push(gh);
    const before = upstream.requests.length;
    const r = await helloThrough(gh);
    const line = gh.logs.find((l) => l.event === 'upstream_error');
    return { status: r.status, clientCn: r.body.clientCn, reached: upstream.requests.length > before, line };
  }

  test('the system CAs, another CA, a certificate for another name, no client certificate: 502, logged with the cause', async () => {
    const system = await through(app);
    assert.deepEqual([system.status, system.reached], [502, false]);
    assert.match(JSON.stringify(system.line), /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY/);

    const other = await through(app, { ca: stranger.cert, ...client });
    assert.deepEqual([other.status, other.reached], [502, false]);

    // A certificate valid for app.internal only, reached as localhost: its name does not match ...
    const wrongName = await through(named, { ca: ca.cert, ...client }, 'localhost');
    assert.deepEqual([wrongName.status, wrongName.reached], [502, false]);
    assert.match(JSON.stringify(wrongName.line), /ERR_TLS_CERT_ALTNAME_INVALID/);
    // ... unless serverName says which name it must be valid for.
    const right = await through(named, { ca: ca.cert, ...client, serverName: 'app.internal' }, 'localhost');
    assert.equal(right.status, 200);
    assert.match(right.clientCn, /^gatehouse-\d$/);

    // The right CA but no client certificate: the app refuses the handshake.
    const anonymous = await through(app, { ca: ca.cert });
    assert.deepEqual([anonymous.status, anonymous.reached], [502, false]);
  });
});

describe('gatehouse check and serve', () => {
  let n = 0;
  function config(upstreamTls: Record<string, string>, upstream = app.url): string {
    const file = join(dir, `g${n++}.yaml`);
    writeFileSync(
      file,
      JSON.stringify({
        publicUrl: 'http://127.0.0.1:8080',
        upstream,
        upstreamTls,
        store: { type: 'sqlite', path: join(dir, 'g.db') },
      }),
    );
    return file;
  }

  test('check prints what the app is reached with, and --connect shakes hands as serve would', async () => {
    const good = await runCli(['check', '--config', config({ ca: ca.cert, ...client }), '--connect']);
    assert.equal(good.code, 0, good.stderr + good.stdout);
    assert.match(
      good.stdout,
      new RegExp(`upstream TLS: the app's certificate must chain to ${ca.cert}, Gatehouse presents ${client.cert}`),
    );
    assert.match(
      good.stdout,
      /ok {4}app "app" upstream https:\/\/127\.0\.0\.1:\d+\/: HTTP \d+ in \d+ ms, with the client certificate/,
    );

    const bad = await runCli(['check', '--config', config({ ca: stranger.cert, ...client }), '--connect']);
    assert.equal(bad.code, 1, bad.stderr + bad.stdout);
    assert.match(
      bad.stdout,
      /FAIL {2}app "app" upstream .*the TLS handshake with the app failed: does its certificate chain to upstreamTls\.ca/,
    );
  });

  test('a file that cannot be used, or keys that do not fit together: check says which key, serve does not start', async () => {
    const missing = config({ ca: join(dir, 'nope.pem'), ...client });
    const checked = await runCli(['check', '--config', missing]);
    assert.equal(checked.code, 2, checked.stdout);
    assert.match(
      checked.stderr,
      /error: upstreamTls\.ca: cannot read .*nope\.pem \(no such file\): Gatehouse will not start/,
    );
    const served = await runCli(['serve', '--config', missing]);
    assert.equal(served.code, 1);
    assert.match(served.stderr, /cannot start: upstreamTls\.ca: cannot read .*nope\.pem \(no such file\)/);

    const notMine = config({ cert: client.cert, key: ca.issue({ name: 'other', cn: 'other', use: 'client' }).key });
    assert.match(
      (await runCli(['check', '--config', notMine])).stderr,
      /error: upstreamTls\.key: .* is not the key of the certificate/,
    );

    const plain = await runCli(['check', '--config', config({ ca: ca.cert }, 'http://127.0.0.1:3000')]);
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /upstreamTls only applies to an https upstream/);
    const half = await runCli(['check', '--config', config({ cert: client.cert })]);
    assert.match(half.stderr, /upstreamTls\.key.*upstreamTls\.cert and upstreamTls\.key go together/);
  });
});
