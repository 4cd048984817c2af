import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import { runCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/gatehouse.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { eventually } from '../faults/services.ts';
import { type Line, Node } from '../workers/node.ts';

/**
 * SIGHUP reloads the configuration file (docs/operations.md "Reloading the configuration"):
 * `gatehouse serve` as a real process, its file edited between signals. The workers' side is in
 * test/workers/workers.test.ts.
 */

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-reload-'));
const file = join(dir, 'gatehouse.yaml');
let node: Node;
let one: TestUpstream;
let two: TestUpstream;
let smtp: TestSmtp;
let port: number;
let url: string;
const alice = new Client('http://127.0.0.1');
const bob = new Client('http://127.0.0.1');
const aliceEmail = uniqueEmail('alice');
const bobEmail = uniqueEmail('bob');

/** The node's configuration: `main` on upstream `to`, /admin for the groups `admins`, and what the rest add. */
function config(o: {
  to: TestUpstream;
  admins: string[];
  apps?: string;
  top?: string;
  from?: string;
  logo?: string;
}): string {
  return `publicUrl: ${url}
listen: {host: 127.0.0.1, port: ${port}, timeouts: {drain: 5s}}
metrics: {listen: "127.0.0.1:0"}
email: {from: "${o.from ?? 'Acme <no-reply@acme.example>'}", smtp: {host: 127.0.0.1, port: ${smtp.port}}, delivery: {retryDelay: 1s}}
store: {type: sqlite, path: ${join(dir, 'reload.db')}}
${o.top ?? ''}
apps:
  - name: main
    upstream: ${o.to.url}
${o.logo ? `    branding: {logo: ${o.logo}}\n` : ''}    routes:
      - {path: /slow, access: public}
      - {path: /admin/**, allow: {groups: [${o.admins.join(', ')}]}}
${o.apps ?? ''}`;
}

const client = (c: Client) => {
  const fresh = new Client(url);
  for (const [k, v] of c.jar) fresh.jar.set(k, v);
  return fresh;
};

/** Sends SIGHUP and returns the config_reload line the node logs after it. */
async function hangup(): Promise<Line> {
  const mark = node.lines.length;
  node.child.kill('SIGHUP');
  return node.until('the node says what it did', () => node.since(mark).find((l) => l.event === 'config_reload'));
}

before(async () => {
  [one, two, smtp] = await Promise.all([startUpstream(), startUpstream(), startSmtp()]);
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  writeFileSync(file, config({ to: one, admins: ['ops'] }));
  node = new Node(file);
  await node.until('the node serves', () => node.lines.some((l) => l.event === 'start'));
  const [a, b] = [new Client(url), new Client(url)];
  await registerJson(a, aliceEmail);
  await registerJson(b, bobEmail);
  for (const [k, v] of a.jar) alice.jar.set(k, v);
  for (const [k, v] of b.jar) bob.jar.set(k, v);
  for (const [email, group] of [
    [aliceEmail, 'ops'],
    [bobEmail, 'finance'],
  ]) {
    const set = await runCli(['users', 'set-groups', email!, group!, '--config', file]);
    assert.equal(set.code, 0, set.stderr);
  }
});

after(async () => {
  node.child.kill('SIGKILL');
  await node.exited;
  await Promise.all([one.close(), two.close(), smtp.close()]);
  rmSync(dir, { recursive: true, force: true });
});

test('SIGHUP serves the edited file from the next request: an allow-list, another upstream, a new app; sessions and a request under way are kept', async () => {
  const first = await client(alice).get('/admin/report');
  assert.equal(first.status, 200, first.text);
  assert.equal((await client(bob).get('/admin/report')).status, 403);
  assert.equal(one.last().url, '/admin/report');
  // Under way on the old upstream while the file changes: it completes there.
  const inFlight = client(alice).get('/slow?ms=1500');
  await node.until('the app has the request', () => one.requests.some((r) => r.url === '/slow?ms=1500'));
  writeFileSync(
    file,
    config({
      to: two,
      admins: ['finance'],
      apps: `  - name: docs\n    upstream: ${two.url}\n    pathPrefix: /docs\n    routes: [{path: /**, access: public}]`,
    }),
  );
  const line = await hangup();
  assert.equal(line.outcome, 'ok', JSON.stringify(line));
  assert.deepEqual(line.changed, ['apps']);
  // The same sessions, read against the new allow-list, on the new upstream.
  assert.equal((await client(bob).get('/admin/report')).status, 200);
  assert.equal(two.last().url, '/admin/report');
  assert.equal((await client(alice).get('/admin/report')).status, 403);
  const docs = await new Client(url).get('/docs/readme');
  assert.equal(docs.status, 200);
  assert.match(two.last().url, /readme/);
  // Upstream one's connections are closed once the request under way there has ended.
  const slow = await inFlight;
  assert.equal(slow.status, 200);
  assert.equal(slow.text, 'slow');
  const open = () => new Promise<number>((resolve) => one.server.getConnections((_e, n) => resolve(n)));
  // Sooner than the pool's own keep-alive timeout (4 s) would close it.
  await eventually('upstream one has no connection from Gatehouse left', async () => (await open()) === 0, 2000);
});

test('a file that cannot be served changes nothing: a syntax error, a key only a restart can change, a logo that cannot be read', async () => {
  const good = config({ to: two, admins: ['finance'] });
  writeFileSync(file, good);
  assert.equal((await hangup()).outcome, 'ok');
  const cases: [string, string, (l: Line) => void][] = [
    ['a YAML syntax error', `${good}\n  - name: [`, (l) => assert.match(l.reason, /gatehouse\.yaml:\d+/)],
    [
      'an unknown key',
      good.replace('    upstream:', '    upsteam: x\n    upstream:'),
      (l) => assert.match(l.reason, /apps\[0\]\.upsteam/),
    ],
    [
      'a secret of the wrong type',
      `${good}\nproviders: [{id: corp, type: oidc, issuer: "https://idp.example", clientId: gh, clientSecret: [hunter2-is-secret]}]`,
      (l) => assert.match(l.reason, /providers\[0\]\.clientSecret/),
    ],
    [
      'listen.port',
      good.replace(`port: ${port}`, `port: ${port + 1}`),
      (l) => {
        assert.equal(l.outcome, 'restart_required');
        assert.deepEqual(l.restart, ['listen']);
      },
    ],
    [
      'a logo that is not there',
      good.replace('    routes:', `    branding: {logo: ${join(dir, 'missing.png')}}\n    routes:`),
      (l) => assert.match(l.reason, /errors/),
    ],
  ];
  for (const [what, text, check] of cases) {
    writeFileSync(file, text);
    const mark = node.lines.length;
    const printed = node.output.length;
    const line = await hangup();
    assert.notEqual(line.outcome, 'ok', what);
    assert.equal(line.level, 'error', what);
    check(line);
    assert.ok(!node.output.slice(printed).join('\n').includes('hunter2'), 'no secret from the file is logged');
    if (what.includes('logo'))
      assert.ok(
        node.since(mark).some((l) => l.event === 'config_error' && l.key === 'apps[0].branding.logo'),
        'the key is named as `check` names it',
      );
    // Still the running configuration.
    assert.equal((await client(bob).get('/admin/report')).status, 200, what);
    assert.equal((await client(alice).get('/admin/report')).status, 403, what);
  }
  const metrics = async () => {
    const res = await fetch(`http://127.0.0.1:${node.metricsPort()}/metrics`);
    return res.text();
  };
  assert.match(await metrics(), /^gatehouse_config_last_reload_successful 0$/m, 'an alert can fire');
  assert.match(await metrics(), /^gatehouse_config_reloads_total\{outcome="failed"\} 4$/m);
  assert.match(await metrics(), /^gatehouse_config_reloads_total\{outcome="restart_required"\} 1$/m);
  writeFileSync(file, good);
  assert.equal((await hangup()).outcome, 'unchanged');
  assert.match(await metrics(), /^gatehouse_config_last_reload_successful 1$/m);
  assert.equal(node.child.exitCode, null, 'no SIGHUP stops the node');
});

test('log.level takes effect at a reload: request lines stop at warn and come back at info', async () => {
  const requestLines = (mark: number) => node.since(mark).filter((l) => l.msg === 'request').length;
  writeFileSync(file, config({ to: two, admins: ['finance'], top: 'log: {level: warn}' }));
  assert.equal((await hangup()).outcome, 'ok', 'the line is written at the level it leaves');
  const quiet = node.lines.length;
  for (let i = 0; i < 3; i++) assert.equal((await client(bob).get('/admin/report')).status, 200);
  writeFileSync(file, config({ to: two, admins: ['finance'] }));
  assert.equal((await hangup()).outcome, 'ok');
  assert.equal(requestLines(quiet), 0);
  const loud = node.lines.length;
  assert.equal((await client(bob).get('/admin/report')).status, 200);
  await node.until('a request line', () => requestLines(loud) === 1);
});

test('a reload that changes email: a message waiting for a retry is still sent, the next with the new settings', async () => {
  const carol = uniqueEmail('carol');
  // The verification mail of this registration is refused once (451): it waits 1 s for its retry.
  smtp.failNext(1, 451);
  const mark = node.lines.length;
  await registerJson(new Client(url), carol);
  await node.until('the first attempt failed', () => node.since(mark).some((l) => l.event === 'mail_retry'));
  writeFileSync(file, config({ to: two, admins: ['finance'], from: 'Acme Billing <billing@acme.example>' }));
  const line = await hangup();
  assert.equal(line.outcome, 'ok');
  assert.ok(line.changed.includes('email'), line.changed);
  const first = await smtp.waitFor((m) => m.to.includes(carol), 15_000);
  assert.match(first.headers.get('from') ?? '', /no-reply@acme\.example/, 'sent as it was queued');
  const dave = uniqueEmail('dave');
  await registerJson(new Client(url), dave);
  const next = await smtp.waitFor((m) => m.to.includes(dave), 15_000);
  assert.match(next.headers.get('from') ?? '', /billing@acme\.example/);
  assert.ok(!node.lines.some((l) => l.event === 'mail_dropped'), 'no message was dropped');
});

test('SIGHUP with the file unchanged: a logo replaced under the same name is shown from the next page; one that cannot be used is not', async () => {
  const logo = join(dir, 'logo.png');
  const png = (fill: number) =>
    Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, fill)]);
  writeFileSync(logo, png(1));
  writeFileSync(file, config({ to: two, admins: ['finance'], logo }));
  assert.equal((await hangup()).outcome, 'ok');
  const shown = async () =>
    /\/\.auth\/brand\/(logo-[\w-]+\.png)/.exec((await new Client(url).html('/.auth/login')).text)?.[1];
  const first = await shown();
  assert.ok(first, 'the sign-in page shows the logo');
  writeFileSync(logo, png(2));
  const mark = node.lines.length;
  assert.equal((await hangup()).outcome, 'unchanged');
  assert.ok(node.since(mark).some((l) => l.event === 'logo_reload' && l.outcome === 'ok'));
  const second = await shown();
  assert.ok(second && second !== first, `${first} → ${second}`);
  const served = await fetch(`${url}/.auth/brand/${second}`);
  assert.deepEqual(Buffer.from(await served.arrayBuffer()), png(2));
  assert.equal((await fetch(`${url}/.auth/brand/${first}`)).status, 404);
  // A replacement that is no image: the reload is refused as check refuses it, and the logo shown stays.
  writeFileSync(logo, '<html>not a logo</html>');
  const again = node.lines.length;
  assert.equal((await hangup()).outcome, 'failed');
  assert.ok(node.since(again).some((l) => l.event === 'config_error' && l.key === 'apps[0].branding.logo'));
  assert.equal(await shown(), second);
});
