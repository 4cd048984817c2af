import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';
import { eventually } from '../faults/services.ts';
import { freePort } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { type Line, Node } from './node.ts';

/**
 * metrics.listen with listen.workers (docs/workers.md, Metrics): `gatehouse serve` as a real
 * process. With 2 workers the primary serves the scrape and sums the workers' registries; the
 * facts of the node (sessions active, the version) are not doubled; a worker that does not answer
 * makes the scrape a 503 in about 2 s, not a hang. With 1 worker nothing changes.
 */

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-workers-metrics-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A GET on a connection of its own (so the primary hands each to the next worker). */
function get(url: string): Promise<{ status: number; text: string; ms: number }> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, text, ms: Date.now() - start }));
      })
      .on('error', reject);
  });
}

/** The sum of a metric's samples whose labels include `labels`. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** The lines of one metric (its samples), to say what was scraped when an assertion fails. */
const samples = (text: string, name: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');

const N = 24;

for (const workers of [2, 1]) {
  describe(`metrics.listen with listen.workers: ${workers}`, { concurrency: false }, () => {
    let node: Node;
    let upstream: TestUpstream;
    let url: string;
    let metricsUrl: string;
    let spawnedAt: number;

    before(async () => {
      upstream = await startUpstream();
      const port = await freePort();
      url = `http://127.0.0.1:${port}`;
      const file = join(dir, `metrics-${workers}.yaml`);
      writeFileSync(
        file,
        `publicUrl: ${url}
listen: {host: 127.0.0.1, port: ${port}, workers: ${workers}, timeouts: {drain: 2s}}
upstream: ${upstream.url}
routes: [{path: /pub/**, access: public}]
metrics: {listen: "127.0.0.1:0"}
store: {type: sqlite, path: ${join(dir, `metrics-${workers}.db`)}}
`,
      );
      spawnedAt = Date.now();
      node = new Node(file);
      await node.until('every worker serves', () => node.started().size === workers, 90_000);
      metricsUrl = `http://127.0.0.1:${await node.until('metrics listen', () => node.metricsPort())}/metrics`;
    });

    after(async () => {
      node.child.kill('SIGKILL');
      await node.exited;
      await upstream.close();
    });

    test(`one scrape counts the ${N} requests every worker served, and no fact of the node is multiplied`, async () => {
      if (workers > 1) {
        const binders = node.lines.filter((l) => l.event === 'metrics_listening').map((l) => l.worker);
        assert.deepEqual(binders, [0], 'only the primary listens on metrics.listen');
      }
      await registerJson(new Client(url), uniqueEmail('metrics'));
      const mark = node.lines.length;
      for (let i = 0; i < N; i++) assert.equal((await get(`${url}/pub/${i}`)).status, 200);
      const servedBy = () =>
        new Set(
          node.lines
            .slice(mark)
            .filter((l) => l.req?.path?.startsWith('/pub/') && l.status)
            .map((l) => l.worker),
        );
      if (workers > 1) await node.until('both workers served', () => servedBy().size === 2);

      const res = await get(metricsUrl);
      assert.equal(res.status, 200, res.text);
      const proxied = value(res.text, 'gatehouse_http_requests_total', { kind: 'proxied' });
      assert.equal(proxied, N, samples(res.text, 'gatehouse_http_requests_total'));
      assert.equal(value(res.text, 'gatehouse_http_requests_total', { kind: 'proxied', status: '2xx' }), N);
      assert.equal(value(res.text, 'gatehouse_http_request_duration_seconds_count', { kind: 'proxied' }), N);
      assert.equal(value(res.text, 'gatehouse_registrations_total'), 1);
      assert.equal(value(res.text, 'gatehouse_sessions_active'), 1, 'one session in the store, read by each worker');
      assert.equal(value(res.text, 'gatehouse_build_info'), 1);
      assert.equal(value(res.text, 'nodejs_version_info'), 1);
      assert.ok(value(res.text, 'process_resident_memory_bytes') > 0);
      const age = value(res.text, 'gatehouse_signing_key_age_seconds');
      assert.ok(age >= 0 && age <= (Date.now() - spawnedAt) / 1000 + 1, `key age ${age} s: not a sum`);
    });

    if (workers > 1) {
      test('a worker that does not answer (stopped) makes the scrape a 503 naming it, in about 2 s; then all is back', async () => {
        const [id, pid] = [...node.started()].sort((a, b) => a[0] - b[0])[0]!;
        process.kill(pid, 'SIGSTOP');
        try {
          const res = await get(metricsUrl);
          assert.equal(res.status, 503);
          assert.match(res.text, new RegExp(`worker ${id} did not answer within 2000 ms`));
          assert.ok(res.ms < 5000, `answered after ${res.ms} ms`);
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        // Its late reply is dropped; the next scrape has every worker's numbers again.
        const again = await get(metricsUrl);
        assert.equal(again.status, 200, again.text);
        assert.equal(value(again.text, 'gatehouse_http_requests_total', { kind: 'proxied' }), N);
        assert.equal(node.child.exitCode, null, 'the primary is still running');
      });
    }
  });
}

test('metrics.listen in use with listen.workers: 2 is said once by the primary, before any worker starts', async () => {
  const upstream = await startUpstream();
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const taken = (blocker.address() as { port: number }).port;
  const port = await freePort();
  const file = join(dir, 'metrics-in-use.yaml');
  writeFileSync(
    file,
    `publicUrl: http://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}, workers: 2}\nupstream: ${upstream.url}\nmetrics: {listen: "127.0.0.1:${taken}"}\nstore: {type: sqlite, path: ${join(dir, 'metrics-in-use.db')}}\n`,
  );
  try {
    const node = new Node(file);
    assert.equal(await node.exited, 1);
    assert.match(node.output.join('\n'), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken}: the port is in use`));
    assert.ok(!node.lines.some((l) => l.event === 'workers_start'), 'no worker was started');
  } finally {
    blocker.close();
    await upstream.close();
  }
});

test('healthCheck with listen.workers: 2: one worker checks for the node, the other follows it; both take the failing replica out, the scrape says 0 for it and 1 for the other; the checking worker replaced, its replacement checks on', async () => {
  // Replica b answers its health path with `bHealth`; both answer other paths with their name.
  let bHealth = 503;
  const replicas = await Promise.all(
    ['a', 'b'].map(async (name) => {
      const server = http.createServer((req, res) => {
        if (req.url === '/healthz') return void res.writeHead(name === 'a' ? 200 : bHealth).end();
        res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
    }),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const file = join(dir, 'health.yaml');
  writeFileSync(
    file,
    `publicUrl: ${url}
listen: {host: 127.0.0.1, port: ${port}, workers: 2, timeouts: {drain: 2s}}
upstream: [${replicas.map((r) => r.url).join(', ')}]
healthCheck: {path: /healthz, interval: 200ms, unhealthyAfter: 1, healthyAfter: 1}
routes: [{path: /**, access: public}]
metrics: {listen: "127.0.0.1:0"}
store: {type: sqlite, path: ${join(dir, 'health.db')}}
`,
  );
  const node = new Node(file);
  /** The workers that logged b's health turning to `healthy` (after `mark`). */
  const told = (healthy: boolean, mark = 0) =>
    new Set(
      node
        .since(mark)
        .filter((l) => l.event === 'upstream_health' && l.healthy === healthy && l.replica === replicas[1]!.url)
        .map((l) => l.worker as number),
    );
  /** 12 requests, each on a connection of its own: which replicas answered, and which workers served them. */
  const spread = async (path: string) => {
    const mark = node.lines.length;
    const answers = new Set<string>();
    for (let i = 0; i < 12; i++) answers.add((await get(`${url}/${path}/${i}`)).text);
    const lines = () => node.since(mark).filter((l) => l.req?.path?.startsWith(`/${path}/`));
    await node.until('the request lines', () => lines().length === 12);
    return { answers, workers: new Set(lines().map((l) => l.worker)) };
  };
  try {
    await node.until('both workers serve', () => node.started().size === 2, 90_000);
    const [checker] = await node.until('b taken out', () => told(false).size > 0 && [...told(false)]);
    const metricsUrl = `http://127.0.0.1:${await node.until('metrics listen', () => node.metricsPort())}/metrics`;
    // The other worker follows the checking one: every answer is a's, from both workers.
    await eventually('both workers send everything to a', async () => {
      const { answers, workers } = await spread('x');
      return workers.size === 2 && answers.size === 1 && answers.has('a');
    });
    const scrape = (await get(metricsUrl)).text;
    assert.equal(
      value(scrape, 'gatehouse_upstream_healthy', { replica: replicas[1]!.url }),
      0,
      samples(scrape, 'gatehouse_upstream_healthy'),
    );
    assert.equal(
      value(scrape, 'gatehouse_upstream_healthy', { replica: replicas[0]!.url }),
      1,
      'one sample, not the workers summed',
    );
    assert.deepEqual([...told(false)], [checker], 'one worker checked and said so: the node checks once');

    // The checking worker killed: the worker started in its place checks on, b comes back for both.
    const pid = node.live().get(checker!)!;
    const mark = node.lines.length;
    process.kill(pid, 'SIGKILL');
    await node.until('the checking worker replaced', () =>
      node.since(mark).some((l) => l.event === 'start' && l.worker > 0),
    );
    // It starts as any checker does, every replica in, and finds b failing; then b passes again.
    const [successor] = await node.until(
      'b taken out by the successor',
      () => told(false, mark).size > 0 && [...told(false, mark)],
    );
    assert.notEqual(successor, checker);
    bHealth = 200;
    await node.until('b back in', () => told(true, mark).size > 0);
    await eventually('both workers send to b again', async () => {
      const { answers, workers } = await spread('y');
      return workers.size === 2 && answers.has('b');
    });
    assert.deepEqual([...told(false, mark), ...told(true, mark)], [successor, successor], 'the successor alone checks');
  } finally {
    node.child.kill('SIGKILL');
    await node.exited;
    for (const r of replicas) r.server.close();
  }
});
