import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { Client } from '../helpers/client.ts';
import { runCli, withConfigFile } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { until } from '../helpers/timing.ts';
import { parseConfig } from '../../src/config/load.ts';
import { refusal } from '../helpers/config.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { checkReplica } from '../../src/proxy/health.ts';
import { Agent } from 'undici';

/**
 * `healthCheck`: active health checks of an app's replicas (docs/behind-a-proxy.md "Health
 * checks"). Each replica is a real server whose health endpoint the test turns sick, slow or well.
 */

type Health = 'ok' | 'sick' | 'hang';

interface Replica {
  name: string;
  url: string;
  health: Health;
  /** Health checks answered, by what they were answered with. */
  checks: { ok: number; sick: number; hang: number };
  /** Health check requests as received (their Host and User-Agent). */
  checkHeaders: http.IncomingHttpHeaders[];
  /** Other requests received, by path. */
  served: string[];
  /** Requests to /hold waiting for release(). */
  held: http.ServerResponse[];
  release(): void;
  close(): Promise<void>;
}

async function replica(name: string): Promise<Replica> {
  const hung: http.ServerResponse[] = [];
  const r: Replica = {
    name,
    url: '',
    health: 'ok',
    checks: { ok: 0, sick: 0, hang: 0 },
    checkHeaders: [],
    served: [],
    held: [],
    release() {
      for (const res of r.held.splice(0)) res.end(name);
    },
    async close() {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      r.checkHeaders.push(req.headers);
      r.checks[r.health]++;
      if (r.health === 'hang') return void hung.push(res);
      res.writeHead(r.health === 'ok' ? 200 : 503).end(r.health);
      return;
    }
    r.served.push(req.url!);
    // /hold waits on the second replica only: the test finds it there by sending until it stays.
    if (req.url === '/hold' && name === 'b') return void r.held.push(res);
    res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.send(name));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return r;
}

const open = { routes: [{ path: '/**', access: 'public' as const }] };

/** Which replica answered each of `n` GETs. */
async function spread(gh: TestGatehouse, n: number): Promise<string[]> {
  const c = new Client(gh.url);
  const answers: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await c.get(`/spread/${i}`);
    assert.equal(res.status, 200);
    answers.push(res.text);
  }
  return answers;
}

/** Which replica a WebSocket through Gatehouse reached. */
function tunnel(gh: TestGatehouse): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${gh.port}/ws`, { headers: { origin: gh.url } });
  return new Promise((resolve, reject) => {
    ws.once('message', (m) => {
      ws.close();
      resolve(String(m));
    });
    ws.once('error', reject);
  });
}

/** gatehouse_upstream_healthy of a replica (undefined: no such series). */
async function gauge(gh: TestGatehouse, r: Replica): Promise<number | undefined> {
  const metric = await gh.gatehouse.metrics!.upstreamHealthy.get();
  return metric.values.find((v) => v.labels.replica === r.url)?.value;
}

const healthLines = (gh: TestGatehouse, r: Replica) =>
  gh.logs.filter((l) => l.event === 'upstream_health' && l.replica === r.url);

describe('an app on two replicas with health checks', () => {
  let a: Replica;
  let b: Replica;
  let gh: TestGatehouse;
  const healthCheck = { path: '/healthz', interval: '200ms', timeout: '1s', unhealthyAfter: 2, healthyAfter: 2 };
  const settings = () => ({ upstream: [a.url, b.url], healthCheck, metrics: { listen: '127.0.0.1:0' }, ...open });
  before(async () => {
    [a, b] = await Promise.all([replica('a'), replica('b')]);
    gh = await startGatehouse(settings);
    await until('both replicas checked twice', () => a.checks.ok >= 2 && b.checks.ok >= 2);
  });
  after(async () => {
    await gh?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  test('each replica is asked its health path with the app’s Host; a single failed check takes none out', async () => {
    const host = new URL(a.url).host;
    for (const h of [...a.checkHeaders, ...b.checkHeaders]) {
      assert.equal(h.host, host, 'every replica is sent the first one’s Host, as requests are');
      assert.equal(h['user-agent'], 'Gatehouse health check');
      assert.equal(h.cookie, undefined);
    }
    assert.equal(await gauge(gh, a), 1);
    assert.equal(await gauge(gh, b), 1);
    // One failed check (unhealthyAfter: 2), then well again: b stays in.
    b.health = 'sick';
    await until('b failed a check', () => b.checks.sick >= 1);
    b.health = 'ok';
    const passed = b.checks.ok;
    await until('b passed three more checks', () => b.checks.ok >= passed + 3);
    assert.equal(b.checks.sick, 1);
    assert.deepEqual(healthLines(gh, b), [], 'a blip is not a change');
    const answers = await spread(gh, 10);
    assert.ok(answers.includes('a') && answers.includes('b'), answers.join());
  });

  test('a replica that fails its checks gets no requests or WebSockets until it passes again; its requests under way finish', async () => {
    // A request under way on b when it is taken out.
    const c = new Client(gh.url);
    let held: Promise<{ status: number; text: string }> | undefined;
    await until('a request held by b', async () => {
      const before = a.served.length;
      const sent = c.get('/hold');
      await until('a replica got it', () => a.served.length > before || b.held.length > 0);
      if (!b.held.length) return void assert.equal((await sent).text, 'a');
      held = sent;
      return true;
    });
    b.health = 'sick';
    const out = await until('b taken out', () => healthLines(gh, b).at(-1));
    assert.equal(out.healthy, false);
    assert.equal(out.cause, 'HTTP 503');
    assert.equal(out.healthyReplicas, '1 of 2');
    assert.equal(out.level, 'warn');
    assert.ok(b.checks.sick >= 2, 'only after unhealthyAfter failed checks in a row');
    assert.equal(await gauge(gh, b), 0);
    assert.match(
      await (await fetch(`http://127.0.0.1:${gh.gatehouse.metricsAddress()!.port}/metrics`)).text(),
      new RegExp(`^gatehouse_upstream_healthy\\{app="app",replica="${b.url}"\\} 0$`, 'm'),
    );
    b.release();
    assert.deepEqual(await held!.then((r) => [r.status, r.text]), [200, 'b'], 'the request under way on b finished');
    const servedByB = b.served.length;
    assert.deepEqual(await spread(gh, 20), Array(20).fill('a'));
    for (let i = 0; i < 4; i++) assert.equal(await tunnel(gh), 'a');
    assert.equal(b.served.length, servedByB, 'nothing reached b');
    b.health = 'ok';
    const back = await until('b put back', () => healthLines(gh, b).find((l) => l.healthy === true));
    assert.equal(back.healthyReplicas, '2 of 2');
    assert.equal(await gauge(gh, b), 1);
    const answers = await spread(gh, 20);
    assert.ok(answers.filter((x) => x === 'b').length >= 5, answers.join());
    const tunnels = [await tunnel(gh), await tunnel(gh)];
    assert.deepEqual(tunnels.toSorted(), ['a', 'b'], 'tunnels take both in turn again');
  });

  test('when every replica fails, requests go to all of them; a check that hangs fails at its timeout', async () => {
    a.health = 'hang';
    b.health = 'sick';
    await until('both taken out', () => healthLines(gh, a).at(-1)?.healthy === false && b.checks.sick > 0);
    await until('b out', () => healthLines(gh, b).at(-1)?.healthy === false);
    assert.equal(healthLines(gh, a).at(-1)!.cause, 'timeout');
    const last = gh.logs.filter((l) => l.event === 'upstream_health').at(-1)!;
    assert.equal(last.healthyReplicas, '0 of 2');
    assert.match(String(last.msg), /every replica .* requests go to all of them/);
    const answers = await spread(gh, 20);
    assert.ok(answers.includes('a') && answers.includes('b'), `both still get requests: ${answers.join()}`);
    a.health = 'ok';
    b.health = 'ok';
    await until('both back', () => healthLines(gh, a).at(-1)?.healthy && healthLines(gh, b).at(-1)?.healthy);
  });

  test('a reload that changes healthCheck stops the old checks; one without it drops their gauges', async () => {
    b.health = 'sick';
    await until('b out', () => healthLines(gh, b).at(-1)?.healthy === false);
    const ready = (r: Replica) => r.served.filter((u) => u === '/ready').length;
    // The configuration as startGatehouse made it, with another healthCheck.
    const reload = async (check: object | undefined) =>
      (
        await gh.gatehouse.reload(
          ConfigSchema.parse({
            publicUrl: gh.url,
            listen: { host: '127.0.0.1', port: gh.port },
            store: { type: 'sqlite', path: join(gh.dir, 'gatehouse.db') },
            ...settings(),
            healthCheck: check,
          }),
        )
      ).outcome;
    assert.equal(await reload({ ...healthCheck, path: '/ready' }), 'ok');
    assert.equal(await gauge(gh, b), 1, 'new checks start with every replica in, as at start');
    await until('b asked the new path', () => ready(b) >= 1);
    const old = b.checks.sick;
    await until('b asked it twice more', () => ready(b) >= 3);
    assert.equal(b.checks.sick, old, 'the old path is not asked any more');
    assert.equal(await gauge(gh, b), 1, 'b passes the new checks');
    assert.equal(await reload(undefined), 'ok');
    assert.equal(await gauge(gh, a), undefined);
    assert.equal(await gauge(gh, b), undefined);
    const answers = await spread(gh, 20);
    assert.ok(answers.includes('a') && answers.includes('b'), answers.join());
  });
});

test('one upstream with healthCheck: its failures are logged and measured, and it still gets every request', async () => {
  const only = await replica('only');
  const gh = await startGatehouse(() => ({
    upstream: only.url,
    healthCheck: { path: '/healthz', interval: '200ms', timeout: '1s', unhealthyAfter: 1 },
    metrics: { listen: '127.0.0.1:0' },
    ...open,
  }));
  try {
    only.health = 'sick';
    const line = await until('the check failed', () => healthLines(gh, only).at(-1));
    assert.equal(line.healthy, false);
    assert.equal(line.healthyReplicas, '0 of 1');
    assert.match(String(line.msg), /only upstream it still gets every request/);
    assert.equal(await gauge(gh, only), 0);
    assert.deepEqual(await spread(gh, 3), ['only', 'only', 'only']);
  } finally {
    await gh.close();
    await only.close();
  }
});

test('config: healthCheck is checked; check --connect asks each replica its health path', async () => {
  const refused = (yaml: string) =>
    refusal(`publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\n${yaml}`);
  assert.match(refused('healthCheck: {path: healthz}'), /healthCheck\.path.*a path on the app such as \/healthz/);
  assert.match(refused('healthCheck: {}'), /healthCheck\.path/);
  assert.match(refused('healthCheck: {path: /h, interval: 50ms}'), /healthCheck\.interval.*between/);
  assert.match(refused('healthCheck: {path: /h, unhealthyAfter: 0}'), /healthCheck\.unhealthyAfter/);
  assert.match(refused('healthCheck: {path: /h, every: 5s}'), /healthCheck.*every/);
  assert.match(
    refused('healthCheck: {path: /h, status: [99]}'),
    /healthCheck\.status\[0\]: expected a number at least 100/,
  );
  assert.match(refused('healthCheck: {path: /h, status: []}'), /healthCheck\.status/);
  assert.match(refused('healthCheck: {path: /h, body: ""}'), /healthCheck\.body/);
  const defaults = parseConfig(
    'publicUrl: http://127.0.0.1:8080\nupstream: http://10.0.0.1:3000\nhealthCheck: {path: /healthz}\n',
    'gatehouse.yaml',
  ).healthCheck;
  assert.deepEqual(defaults, { path: '/healthz', interval: 10_000, timeout: 2000, unhealthyAfter: 2, healthyAfter: 2 });

  const [well, sick] = await Promise.all([replica('well'), replica('sick')]);
  sick.health = 'sick';
  try {
    await withConfigFile(
      `publicUrl: http://127.0.0.1:8080\nupstream: [${well.url}, ${sick.url}]\nhealthCheck: {path: /healthz}\n`,
      async (file) => {
        const check = await runCli(['check', '--config', file, '--connect']);
        const out = check.stdout + check.stderr;
        assert.match(out, new RegExp(`upstream ${well.url}/.*healthCheck /healthz: HTTP 200`));
        assert.match(out, new RegExp(`upstream ${sick.url}/[^\\n]*healthCheck /healthz: HTTP 503`));
        assert.match(out, /serve would take this replica out/);
        assert.match(
          out,
          /health checks: GET \/healthz every 10s \(timeout 2s\), passing with a 2xx or 3xx; 2 failed in a row take a replica out, 2 passed put it back\n/,
        );
        assert.notEqual(check.code, 0, 'a replica that fails its health check fails --connect');
        assert.equal(well.checks.ok, 1);
      },
    );
  } finally {
    await Promise.all([well.close(), sick.close()]);
  }
});

test('healthCheck.status and body: the statuses that pass, and text the answer must hold in its first 64 KiB', async () => {
  const filler = 'x'.repeat(70 * 1024);
  const answers: Record<string, [number, string]> = {
    '/up': [200, '{"status":"UP"}'],
    '/down': [200, '{"status":"DOWN"}'],
    '/moved': [302, ''],
    '/teapot': [418, '{"status":"UP"}'],
    '/late': [200, `${filler}"status":"UP"`],
    '/split': [200, `${'é'.repeat(40_000)}"status":"UP"`],
  };
  const server = http.createServer((req, res) => {
    const [status, body] = answers[req.url!] ?? [404, ''];
    res.writeHead(status, { 'content-type': 'application/json' });
    // In small writes, so the text may fall across chunks.
    for (let i = 0; i < body.length; i += 1000) res.write(body.slice(i, i + 1000));
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const agent = new Agent();
  const check = (path: string, more: { status?: number[]; body?: string } = {}) =>
    checkReplica(agent, origin, origin.host, { path, timeout: 2000, ...more });
  try {
    assert.deepEqual(await check('/moved'), { status: 302 }, 'by default a 3xx passes');
    assert.deepEqual(await check('/down'), { status: 200 }, 'and any 2xx, whatever its body');
    assert.deepEqual(await check('/moved', { status: [200] }), { status: 302, cause: 'HTTP 302' });
    assert.deepEqual(await check('/teapot', { status: [200, 204] }), { status: 418, cause: 'HTTP 418' });
    const up = { body: '"status":"UP"' };
    assert.deepEqual(await check('/up', up), { status: 200 });
    assert.deepEqual(await check('/down', up), { status: 200, cause: 'body without "\\"status\\":\\"UP\\""' });
    assert.deepEqual(await check('/teapot', { status: [418], ...up }), { status: 418 });
    assert.equal((await check('/late', up)).cause, 'body without "\\"status\\":\\"UP\\""', 'past 64 KiB');
    assert.deepEqual(await check('/split', up), { status: 200 }, 'UTF-8 across chunks, within 64 KiB of text');
    assert.deepEqual(await check('/up', { status: [200], body: 'UP' }), { status: 200 });
  } finally {
    await agent.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
