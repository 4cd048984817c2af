import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { Client } from '../helpers/client.ts';
import { runCli, withConfigFile } from '../helpers/cli.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { refusal } from '../helpers/config.ts';

/**
 * `upstream: [url, url, ...]`: an app run as several replicas (docs/behind-a-proxy.md "Several
 * replicas of an app"). Real upstream servers; a replica that is down is one that stopped
 * listening, or a port nothing listens on.
 */

const open = { routes: [{ path: '/**', access: 'public' as const }] };

/** The node's metrics text (metrics.listen). */
async function scrape(gh: TestGatehouse): Promise<string> {
  return (await fetch(`http://127.0.0.1:${gh.gatehouse.metricsAddress()!.port}/metrics`)).text();
}

/** Opens a WebSocket through Gatehouse and returns the app's greeting. */
function greeting(gh: TestGatehouse): Promise<{ hello: boolean; headers: Record<string, string> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${gh.port}/ws`, { headers: { origin: gh.url } });
  return new Promise((resolve, reject) => {
    ws.once('message', (m) => {
      ws.close();
      resolve(JSON.parse(String(m)));
    });
    ws.once('error', reject);
  });
}

describe('an app on two replicas', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let gh: TestGatehouse;
  before(async () => {
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
    gh = await startGatehouse(() => ({ upstream: [a.url, b.url], metrics: { listen: '127.0.0.1:0' }, ...open }), {
      upstream: a,
    });
  });
  after(async () => {
    await gh?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  test('requests and WebSockets are spread over both, each sent the first replica’s Host', async () => {
    const c = new Client(gh.url);
    for (let i = 0; i < 10; i++) assert.equal((await c.get(`/spread/${i}`)).status, 200);
    const seen = (u: TestUpstream) => u.requests.filter((r) => r.url.startsWith('/spread/'));
    assert.ok(seen(a).length >= 3 && seen(b).length >= 3, `a: ${seen(a).length}, b: ${seen(b).length}`);
    assert.equal(seen(a).length + seen(b).length, 10, 'each request went to one replica, once');
    const host = new URL(a.url).host;
    for (const r of [...seen(a), ...seen(b)]) assert.equal(r.headers.host, host);
    const before = { a: a.requests.length, b: b.requests.length };
    for (let i = 0; i < 4; i++) assert.equal((await greeting(gh)).hello, true);
    assert.equal(a.requests.length - before.a, 2, 'tunnels take the replicas in turn');
    assert.equal(b.requests.length - before.b, 2);
  });

  test('a replica that goes down is passed over: no GET, POST or WebSocket fails, and the log says which', async () => {
    await b.close();
    const c = new Client(gh.url);
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await c.get(`/after/${i}`)).status);
    for (let i = 0; i < 4; i++)
      statuses.push(
        (
          await c.fetch('/upload', {
            method: 'POST',
            body: 'x'.repeat(10_000),
            headers: { 'content-type': 'text/plain' },
          })
        ).status,
      );
    assert.deepEqual(
      statuses,
      statuses.map(() => 200),
    );
    assert.equal(a.requests.filter((r) => r.url.startsWith('/after/')).length, 12, 'every one reached a');
    assert.deepEqual(
      a.requests.filter((r) => r.url === '/upload').map((r) => r.bodyBytes),
      [10_000, 10_000, 10_000, 10_000],
      'with its whole body',
    );
    for (let i = 0; i < 4; i++) assert.equal((await greeting(gh)).hello, true);
    const passed = gh.logs.filter((l) => l.event === 'upstream_unreachable');
    assert.ok(passed.length >= 1, 'at least the first request after it went down tried it');
    assert.equal(passed[0]!.cause, 'ECONNREFUSED');
    assert.equal(passed[0]!.at, `127.0.0.1:${b.port}`);
    assert.equal(passed[0]!.times, 1);
    assert.ok(!gh.logs.some((l) => l.event === 'upstream_error'), 'no request failed');
    // Every pass is counted; the log says it once per replica per 10 s (two of the four tunnels
    // tried b first, and a request did before them).
    const counted = Number(/^gatehouse_upstream_passed_over_total\{app="app"\} (\d+)$/m.exec(await scrape(gh))?.[1]);
    assert.ok(counted >= 3, `${counted} passes counted`);
    assert.ok(passed.length < counted, `${passed.length} lines for ${counted} passes`);
    assert.ok(passed.reduce((n, l) => n + (l.times as number), 0) <= counted);
  });
});

test('a replica that never listened is passed over; when none answers, 502 as for one app', async () => {
  const [dead1, dead2] = [await freePort(), await freePort()];
  const a = await startUpstream();
  const gh = await startGatehouse(
    () => ({ upstream: [`http://127.0.0.1:${dead1}`, a.url], metrics: { listen: '127.0.0.1:0' }, ...open }),
    { upstream: a },
  );
  const passes = async () =>
    Number(/^gatehouse_upstream_passed_over_total\{app="app"\} (\d+)$/m.exec(await scrape(gh))?.[1] ?? 0);
  try {
    const c = new Client(gh.url);
    for (let i = 0; i < 6; i++) assert.equal((await c.get(`/x/${i}`)).status, 200);
    assert.deepEqual(
      gh.logs.filter((l) => l.event === 'upstream_unreachable').map((l) => l.at),
      [`127.0.0.1:${dead1}`],
    );
    const before = await passes();
    for (let i = 0; i < 2; i++) assert.equal((await greeting(gh)).hello, true);
    assert.equal((await passes()) - before, 1, 'the tunnel that tried the dead one first passed it over');
  } finally {
    await gh.close();
    await a.close();
  }
  const none = await startGatehouse(() => ({
    upstream: [`http://127.0.0.1:${dead1}`, `http://127.0.0.1:${dead2}`],
    ...open,
  }));
  try {
    const r = await new Client(none.url).get('/x', { accept: 'application/json' });
    assert.equal(r.status, 502);
    assert.equal(r.json().error, 'bad_gateway');
    assert.equal(none.logs.filter((l) => l.event === 'upstream_unreachable').length, 1, 'the other was tried once');
    assert.equal(none.logs.filter((l) => l.event === 'upstream_error').length, 1);
  } finally {
    await none.close();
  }
});

test('config: replicas must be copies of one app; check lists each and probes each', async () => {
  const refused = (upstream: string) => refusal(`publicUrl: http://127.0.0.1:8080\nupstream: ${upstream}\n`);
  assert.match(refused('[http://10.0.0.1:3000, https://10.0.0.2:3000]'), /upstream\[1\].*scheme and path of the first/);
  assert.match(refused('[http://10.0.0.1:3000/app, http://10.0.0.2:3000/other]'), /upstream\[1\].*scheme and path/);
  assert.match(refused('[http://10.0.0.1:3000, http://10.0.0.1:3000/]'), /upstream\[1\].*listed twice/);
  assert.match(refused('[]'), /upstream/);
  assert.match(refused('[ftp://10.0.0.1]'), /upstream\[0\].*http or https/);
  // https replicas on different hosts are all checked against the first's name: check says so.
  const https = (tls: string) =>
    lintConfig(
      parseConfig(
        `publicUrl: https://app.example.com\ntrustedProxies: [loopback]\nupstream: [https://a.internal:8443, https://b.internal:8443]\n${tls}`,
        'gatehouse.yaml',
      ),
    ).filter((w) => w.key === 'upstream');
  assert.match(https('')[0]?.message ?? '', /first one's name \(a\.internal\).*serverName/);
  assert.deepEqual(https('upstreamTls: {serverName: app.internal}\n'), []);
  const a = await startUpstream();
  const dead = await freePort();
  try {
    await withConfigFile(
      `publicUrl: http://127.0.0.1:8080\nupstream: [${a.url}, http://127.0.0.1:${dead}]\n`,
      async (file) => {
        const check = await runCli(['check', '--config', file, '--connect']);
        assert.match(check.stdout, new RegExp(`${a.url}/ \\| http://127\\.0\\.0\\.1:${dead}/`));
        assert.match(check.stdout, new RegExp(`upstream ${a.url}/.*HTTP`));
        assert.match(
          check.stdout + check.stderr,
          new RegExp(`upstream http://127\\.0\\.0\\.1:${dead}/[^\\n]*\\n?.*(refused|ECONNREFUSED)`, 'i'),
        );
        assert.notEqual(check.code, 0, 'a replica that cannot be reached fails --connect');
      },
    );
  } finally {
    await a.close();
  }
});
