import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { freePort } from '../helpers/gatehouse.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { follow, signIn } from '../helpers/oauth.ts';
import { accountPost, signOutAtIdp, startLab } from '../helpers/providers.ts';
import { selfSigned } from '../helpers/tls.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { type Line, Node } from './node.ts';
import { eventually, pgSchema, postgres, redis, REDIS_URL } from '../faults/services.ts';

/**
 * listen.workers: 2 (docs/workers.md): `gatehouse serve` as a real process, a primary and two
 * workers on one port (own TLS), on SQLite with the memory cache (counters kept by the primary)
 * and on PostgreSQL with Redis. Which worker answered is read from the log: every line says.
 */

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-workers-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const [pgService, redisService] = await Promise.all([postgres(), redis()]);

interface Backend {
  name: string;
  skip: string | false;
  setup(): Promise<{ yaml: string; cleanup(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'SQLite and the memory cache',
    skip: false,
    async setup() {
      return { yaml: `store: {type: sqlite, path: ${join(dir, 'workers.db')}}\n`, cleanup: async () => {} };
    },
  },
  {
    name: 'PostgreSQL and Redis',
    skip: pgService.skip || redisService.skip,
    async setup() {
      const db = await pgSchema('workers');
      const prefix = `gh-test-workers-${process.pid}-${Date.now().toString(36)}:`;
      return {
        yaml: `store: {type: postgres, url: "${db.url()}", poolSize: 3}\ncache: {type: redis, url: "${REDIS_URL}", keyPrefix: "${prefix}"}\n`,
        cleanup: () => db.drop(),
      };
    },
  },
];

/** The CN of the certificate a fresh TLS connection is served. */
function servedCN(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.end();
      resolve(String(Array.isArray(cn) ? cn[0] : cn));
    });
    s.on('error', reject);
  });
}

for (const backend of backends) {
  describeOrSkip(`listen.workers: 2 on ${backend.name}`, { skip: backend.skip, concurrency: false }, () => {
    let node: Node;
    let upstream: TestUpstream;
    let db: Awaited<ReturnType<Backend['setup']>>;
    let url: string;
    let port: number;
    let file: string;
    /** The node's configuration file, with these routes after /slow's (`, {...}`). */
    let writeConfig: (routes: string) => void;
    const one = selfSigned({ cn: 'workers-one' });
    const two = selfSigned({ cn: 'workers-two' });
    const live = {
      cert: join(dir, `live-${backends.indexOf(backend)}.crt`),
      key: join(dir, `live-${backends.indexOf(backend)}.key`),
    };
    // Trusts both certificates. Every request goes on a connection of its own (a client of its
    // own, with the cookies so far), so the primary hands them to the workers in turn.
    const agent = new Agent({ connect: { ca: [one.pem, two.pem] } });
    const client = (jar?: Map<string, string>) => {
      const c = new Client(url, { dispatcher: new Agent({ connect: { ca: [one.pem, two.pem] }, pipelining: 0 }) });
      if (jar) for (const [k, v] of jar) c.jar.set(k, v);
      return c;
    };

    before(async () => {
      upstream = await startUpstream();
      db = await backend.setup();
      port = await freePort();
      url = `https://127.0.0.1:${port}`;
      copyFileSync(one.cert, live.cert);
      copyFileSync(one.key, live.key);
      file = join(dir, `workers-${backends.indexOf(backend)}.yaml`);
      writeConfig = (routes) =>
        writeFileSync(
          file,
          `publicUrl: ${url}
listen: {host: 127.0.0.1, port: ${port}, workers: 2, tls: {cert: ${live.cert}, key: ${live.key}}, timeouts: {drain: 5s}}
upstream: ${upstream.url}
routes: [{path: /slow, access: public}${routes}]
accounts: {rateLimits: {loginPerIp: 1000, loginPerAccount: 4}}
${db.yaml}`,
        );
      writeConfig('');
      node = new Node(file, ['--max-semi-space-size=16']);
      await node.until('both workers serve', () => node.live().size === 2, 90_000);
    });

    after(async () => {
      node.child.kill('SIGKILL');
      await node.exited;
      await upstream.close();
      await db.cleanup();
    });

    test('two workers answer on one port, and every line says which worker wrote it', async () => {
      assert.deepEqual([...node.live().keys()].sort(), [1, 2]);
      assert.ok(
        node.lines.every((l) => typeof l.worker === 'number'),
        'every line carries `worker` (0 is the primary)',
      );
      const primaryLines = node.lines.filter((l) => l.worker === 0);
      assert.ok(primaryLines.some((l) => l.event === 'workers_start' && l.workers === 2));
      assert.ok(!primaryLines.some((l) => l.event === 'start'), 'the primary serves nothing itself');
      const mark = node.lines.length;
      for (let i = 0; i < 8; i++) assert.equal((await client().get('/.auth/health')).status, 200);
      await node.until('both workers answered', () => node.servedBy(mark, '/.auth/health').size === 2);
    });

    test("the workers run with the primary's Node flags: the operator's and those serve adds", () => {
      for (const pid of node.live().values()) {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        assert.ok(argv.includes('--max-semi-space-size=16'), `worker ${pid}: ${argv.join(' ')}`);
        assert.ok(argv.includes('--no-allocation-site-pretenuring'), `worker ${pid}: ${argv.join(' ')}`);
        assert.ok(!argv.includes('--max-semi-space-size=8'), "serve's young-generation size yields to the operator's");
      }
    });

    test('the primary prepares the store once, before any worker starts: every worker signs with the key it made', () => {
      const forked = node.lines.findIndex((l) => l.event === 'workers_start');
      const made = node.lines.findIndex((l) => l.worker === 0 && l.event === 'keys_loaded');
      assert.ok(made >= 0 && made < forked, 'the primary loaded (made) the signing key before forking');
      const kid = node.lines[made]!.signing;
      const workers = node.lines.filter((l) => l.worker > 0 && l.event === 'keys_loaded');
      assert.ok(workers.length >= 2);
      assert.ok(
        workers.every((l) => l.signing === kid && l.keys.length === 1),
        'one key in the store, the same in every worker',
      );
    });

    test('a sign-out through one worker is honoured by the other at the very next request', async () => {
      const c = client();
      await registerJson(c, uniqueEmail('workers'));
      let mark = node.lines.length;
      for (let i = 0; i < 8; i++) assert.equal((await client(c.jar).get('/before')).status, 200);
      await node.until('both workers served the session', () => node.servedBy(mark, '/before').size === 2);
      const cookie = c.cookieHeader()!;
      const seen = upstream.requests.length;
      assert.ok((await client(c.jar).postJson('/.auth/logout', {})).status < 400);
      mark = node.lines.length;
      // The old cookie, replayed straight after, on new connections to both workers.
      for (let i = 0; i < 8; i++) {
        const res = await client().get('/after', { cookie });
        assert.equal(res.status, 401, `request ${i} after the sign-out is refused`);
      }
      await node.until('both workers refused it', () => node.servedBy(mark, '/after').size === 2);
      assert.equal(upstream.requests.length, seen, 'nothing reached the app after the sign-out');
    });

    test('a login rate limit holds across workers: refused at the configured count, not at 2×', async () => {
      const email = uniqueEmail('brute');
      await registerJson(client(), email);
      const mark = node.lines.length;
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++)
        statuses.push((await client().postJson('/.auth/login', { email, password: 'wrong password here' })).status);
      assert.deepEqual(statuses, [401, 401, 401, 401, 429, 429, 429, 429]);
      await node.until('both workers counted attempts', () => node.servedBy(mark, '/.auth/login').size === 2);
      // Even the right password is refused to this (untrusted) browser now, on either worker.
      for (let i = 0; i < 2; i++)
        assert.equal((await client().postJson('/.auth/login', { email, password: PASSWORD })).status, 429);
    });

    test('device flow: a poll too soon on the other worker still gets slow_down (the interval is in the store)', async () => {
      const form = (c: Client, path: string, fields: Record<string, string>) =>
        c.fetch(path, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(fields).toString(),
        });
      const started = await form(client(), '/.auth/oauth/device_authorization', { client_id: 'gatehouse-cli' });
      assert.equal(started.status, 200, started.text);
      const { device_code, interval } = started.json();
      assert.equal(interval, 5);
      const mark = node.lines.length;
      const poll = async () =>
        (
          await form(client(), '/.auth/oauth/token', {
            grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
            device_code,
            client_id: 'gatehouse-cli',
          })
        ).json().error;
      const errors: string[] = [];
      for (let i = 0; i < 4; i++) errors.push(await poll());
      assert.deepEqual(errors, ['authorization_pending', 'slow_down', 'slow_down', 'slow_down']);
      await node.until('both workers answered polls', () => node.servedBy(mark, '/.auth/oauth/token').size === 2);
    });

    test('sign-ins at once on both workers all succeed: writers wait for each other, no SQLITE_BUSY', async () => {
      // Four users, three sign-ins each (under the per-account allowance of 4 attempts at once).
      const emails = [0, 1, 2, 3].map(() => uniqueEmail('together'));
      for (const email of emails) await registerJson(client(), email);
      const mark = node.lines.length;
      const results = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const email = emails[i % 4]!;
          const c = client();
          const res = await c.postJson('/.auth/login', { email, password: PASSWORD });
          // A sign-in writes a session; each is then usable on either worker.
          const me = res.status === 200 ? (await client(c.jar).get('/.auth/me')).status : 0;
          return [res.status, me];
        }),
      );
      assert.deepEqual(
        results,
        results.map(() => [200, 200]),
      );
      await node.until('both workers signed people in', () => node.servedBy(mark, '/.auth/login').size === 2);
    });

    test('SIGHUP: every worker serves the renewed certificate', async () => {
      assert.equal(await servedCN(port), 'workers-one');
      copyFileSync(two.cert, live.cert);
      copyFileSync(two.key, live.key);
      const mark = node.lines.length;
      node.child.kill('SIGHUP');
      const workers = [...node.live().keys()];
      await node.until('every worker reloaded', () =>
        workers.every((w) =>
          node.since(mark).some((l) => l.worker === w && l.event === 'tls_reload' && l.outcome === 'ok'),
        ),
      );
      const served = new Set<string>();
      for (let i = 0; i < 6; i++) served.add(await servedCN(port));
      assert.deepEqual([...served], ['workers-two']);
      assert.equal(node.child.exitCode, null, 'SIGHUP does not stop the node');
    });

    test('SIGHUP: every worker serves the edited configuration, and a worker started after it does too', async () => {
      const status = async () => (await client().get('/reloaded')).status;
      assert.equal(await status(), 401, 'not signed in: an API is asked to sign in');
      writeConfig(', {path: /reloaded, access: deny}');
      const mark = node.lines.length;
      node.child.kill('SIGHUP');
      const workers = [...node.live().keys()];
      await node.until('every worker reloaded', () =>
        workers.every((w) =>
          node.since(mark).some((l) => l.worker === w && l.event === 'config_reload' && l.outcome === 'ok'),
        ),
      );
      assert.deepEqual(
        node.since(mark).find((l) => l.event === 'config_reload')?.changed,
        ['routes'],
        'the line names what changed',
      );
      const served = node.lines.length;
      for (let i = 0; i < 6; i++) assert.equal(await status(), 403);
      await node.until('both workers answered', () => node.servedBy(served, '/reloaded').size === 2);
      // A worker forked now gets the configuration the primary serves, not the one it started with.
      const [victim, pid] = [...node.live()][0]!;
      process.kill(pid, 'SIGKILL');
      await node.until('a new worker serves', () => node.live().size === 2 && !node.live().has(victim), 90_000);
      const replaced = node.lines.length;
      for (let i = 0; i < 6; i++) assert.equal(await status(), 403);
      await node.until('both workers answered', () => node.servedBy(replaced, '/reloaded').size === 2);
      // A change only a restart can make is refused by every worker, which keeps serving.
      writeFileSync(file, readFileSync(file, 'utf8').replace('drain: 5s', 'drain: 6s'));
      const refused = node.lines.length;
      node.child.kill('SIGHUP');
      const now = [...node.live().keys()];
      const lines = await node.until('every worker refused it', () => {
        const said = node.since(refused).filter((l) => l.event === 'config_reload');
        return now.every((w) => said.some((l) => l.worker === w)) && said;
      });
      for (const line of lines) {
        assert.equal(line.outcome, 'restart_required');
        assert.deepEqual(line.restart, ['listen']);
      }
      assert.equal(await status(), 403);
      writeFileSync(file, readFileSync(file, 'utf8').replace('drain: 6s', 'drain: 5s'));
    });

    test('SIGHUP to a worker itself (a terminal hangup reaches the whole group) neither ends it nor reloads it: the primary does', async () => {
      const [id, pid] = [...node.live()][0]!;
      const mark = node.lines.length;
      process.kill(pid, 'SIGHUP');
      // A request the worker serves after the signal: it has run its handler by then.
      await node.until('the worker served a request since', async () => {
        assert.equal((await client().get('/.auth/health')).status, 200);
        return node.servedBy(mark, '/.auth/health').has(id);
      });
      const own = (since: number) =>
        node.since(since).filter((l) => l.worker === id && (l.event === 'config_reload' || l.event === 'tls_reload'));
      assert.deepEqual(own(mark), [], 'it did not reload by itself');
      assert.equal(node.live().get(id), pid, 'the same process serves');
      const relayed = node.lines.length;
      node.child.kill('SIGHUP');
      await node.until('the worker reloaded as the primary asked', () =>
        own(relayed).some((l) => l.event === 'config_reload'),
      );
    });

    test('a worker killed with SIGKILL is replaced, and the port keeps answering', async () => {
      const before = node.live();
      const [victim, pid] = [...before][0]!;
      process.kill(pid, 'SIGKILL');
      const exit = await node.until('the primary saw it die', () =>
        node.lines.find((l) => l.event === 'worker_exit' && l.worker === victim),
      );
      assert.equal(exit.signal, 'SIGKILL');
      assert.equal(exit.worker, victim);
      for (let i = 0; i < 4; i++) assert.equal((await client().get('/.auth/health')).status, 200);
      await node.until('a new worker serves', () => node.live().size === 2 && !node.live().has(victim), 90_000);
      const mark = node.lines.length;
      for (let i = 0; i < 8; i++) assert.equal((await client().get('/.auth/health')).status, 200);
      await node.until('both workers answer again', () => node.servedBy(mark, '/.auth/health').size === 2);
    });

    test('SIGTERM drains every worker: an in-flight request completes, then the node exits 0', async () => {
      const seen = upstream.requests.length;
      const inFlight = request(`${url}/slow?ms=600`, { dispatcher: agent }).then(async (r) => ({
        status: r.statusCode,
        body: await r.body.text(),
      }));
      await node.until('the app has the request', () => upstream.requests.length > seen);
      const mark = node.lines.length;
      node.child.kill('SIGTERM');
      assert.deepEqual(await inFlight, { status: 200, body: 'slow' });
      assert.equal(await node.exited, 0);
      const stopped = node.since(mark).filter((l) => l.event === 'worker_stopped');
      assert.equal(stopped.length, 2);
      assert.ok(stopped.every((l) => l.code === 0));
      assert.equal(node.lines.at(-1)?.event, 'exit');
    });
  });
}

test('a port in use is said once by the primary, before any worker starts', async () => {
  const upstream = await startUpstream();
  const blocker = (await import('node:net')).createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  const file = join(dir, 'in-use.yaml');
  writeFileSync(
    file,
    `publicUrl: http://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}, workers: 2}\nupstream: ${upstream.url}\nstore: {type: sqlite, path: ${join(dir, 'in-use.db')}}\n`,
  );
  try {
    const node = new Node(file);
    assert.equal(await node.exited, 1);
    assert.match(node.output.join('\n'), /cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
    assert.ok(!node.lines.some((l) => l.event === 'workers_start'), 'no worker was started');
  } finally {
    blocker.close();
    await upstream.close();
  }
});

test('the primary killed with SIGKILL: its workers exit, nothing is left holding the port', async () => {
  const upstream = await startUpstream();
  const port = await freePort();
  const file = join(dir, 'orphans.yaml');
  writeFileSync(
    file,
    `publicUrl: http://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}, workers: 2}\nupstream: ${upstream.url}\nstore: {type: sqlite, path: ${join(dir, 'orphans.db')}}\n`,
  );
  const node = new Node(file);
  try {
    await node.until('both workers serve', () => node.live().size === 2, 90_000);
    const pids = [...node.live().values()];
    node.child.kill('SIGKILL');
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await eventually('the workers have exited', () => pids.every((pid) => !alive(pid)));
    // The port is free again: a new node can have it.
    const probe = (await import('node:net')).createServer();
    await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
    probe.close();
  } finally {
    node.child.kill('SIGKILL');
    await upstream.close();
  }
});

/**
 * A node of two workers on SQLite signing in through the IdPs of a lab, for the provider tests;
 * `browser()` puts every request on a new connection (the primary hands them to the workers in
 * turn), with the cookies of `jar` when given.
 */
async function providerNode(name: string, options: { backchannel?: boolean; tokenRelay?: string } = {}) {
  const lab = await startLab({ gatehouses: 1, backchannel: options.backchannel });
  const upstream = await startUpstream();
  const port = lab.ports[0]!;
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({
      publicUrl: `http://127.0.0.1:${port}`,
      listen: { host: '127.0.0.1', port, workers: 2 },
      upstream: upstream.url,
      ...(options.tokenRelay ? { tokenRelay: options.tokenRelay } : {}),
      providers: lab.providers(),
      store: { type: 'sqlite', path: join(dir, `${name}.db`) },
    }),
  );
  const node = new Node(file);
  const close = async () => {
    node.child.kill('SIGKILL');
    await node.exited;
    await upstream.close();
    await lab.close();
  };
  try {
    await node.until('both workers serve', () => node.live().size === 2, 90_000);
  } catch (err) {
    await close();
    throw err;
  }
  const browser = (jar?: Map<string, string>) => {
    const c = new Client(`http://127.0.0.1:${port}`);
    c.defaultHeaders = { connection: 'close' };
    if (jar) for (const [k, v] of jar) c.jar.set(k, v);
    return c;
  };
  return { lab, upstream, node, browser, close };
}

test('a provider sign-in started on one worker completes on the other, both relay its token, and neither once it is unlinked', async () => {
  const { lab, node, browser, close } = await providerNode('providers', { tokenRelay: 'a' });
  try {
    let crossed: { c: Client; account: string } | undefined;
    for (let i = 0; i < 4 && !crossed; i++) {
      const account = `workers-${i}`;
      lab.a.accounts.set(account, { sub: account, email: `${account}@example.com`, email_verified: true });
      lab.a.autoLogin = account;
      const c = browser();
      const mark = node.lines.length;
      const hops = await signIn(c, 'a');
      assert.equal(hops.at(-1)!.res.status, 200, hops.map((h) => `${h.res.status} ${h.url}`).join(' → '));
      const [started] = node.servedBy(mark, '/.auth/login/a');
      const [finished] = node.servedBy(mark, '/.auth/callback/a');
      assert.ok(started && finished);
      if (started !== finished) crossed = { c, account };
    }
    assert.ok(crossed, 'a sign-in whose start and callback were served by different workers');
    const { c, account }: { c: Client; account: string } = crossed;
    const token = lab.a.issued.filter((t) => t.accountId === account).at(-1)!.access_token!;
    const mark = node.lines.length;
    for (let i = 0; i < 6; i++) {
      const res = await c.get('/relayed');
      assert.equal(res.status, 200);
      assert.equal(res.json().headers.authorization, `Bearer ${token}`);
    }
    await node.until('both workers relayed it', () => node.servedBy(mark, '/relayed').size === 2);

    // Both workers now hold the token in memory. Link IdP B (a second way in), then unlink A
    // through one worker: neither may relay A's token again.
    lab.b.accounts.set(`b-${account}`, { sub: `b-${account}`, email: `${account}@example.com`, email_verified: true });
    lab.b.autoLogin = `b-${account}`;
    const link = await accountPost(c, '/.auth/account/link', { provider: 'b' });
    assert.equal(link.status, 303);
    const linked = await follow(c, link.location!, { 'sec-fetch-site': 'cross-site' });
    assert.match(linked.at(-1)!.url, /linked=b/);
    const page = await c.html('/.auth/account');
    const idA =
      /name="identity" value="([^"]+)"><button type="submit" class="secondary" aria-label="Unlink IdP A">/.exec(
        page.text,
      )?.[1];
    assert.ok(idA, 'the account page offers to unlink IdP A');
    assert.equal((await accountPost(c, '/.auth/account/unlink', { identity: idA })).status, 303);
    const after = node.lines.length;
    for (let i = 0; i < 6; i++) {
      const res = await c.get('/after-unlink');
      assert.notEqual(
        res.status === 200 ? res.json().headers.authorization : undefined,
        `Bearer ${token}`,
        `request ${i}: the unlinked provider's token is not relayed`,
      );
    }
    await node.until('both workers answered', () => node.servedBy(after, '/after-unlink').size === 2);
  } finally {
    await close();
  }
});

test("a provider's back-channel logout through one worker signs the session out on both, and its token is refused on both after", async () => {
  const { lab, node, browser, close } = await providerNode('backchannel', { backchannel: true });
  try {
    lab.a.autoLogin = 'alice';
    const c = browser();
    await signIn(c, 'a');
    let mark = node.lines.length;
    for (let i = 0; i < 6; i++) assert.equal((await browser(c.jar).get('/before')).status, 200);
    await node.until('both workers served the session', () => node.servedBy(mark, '/before').size === 2);

    // The user signs out at the IdP, which posts its logout token to one of the workers.
    await signOutAtIdp(c, lab.a);
    assert.equal(lab.a.backchannel.at(-1)!.error, undefined, 'Gatehouse answered the IdP 200');
    mark = node.lines.length;
    for (let i = 0; i < 6; i++)
      assert.equal((await browser(c.jar).get('/after')).status, 401, `request ${i} after the IdP's logout`);
    await node.until('both workers refused it', () => node.servedBy(mark, '/after').size === 2);

    // A logout token is used once, whichever worker it reaches again.
    const token = await lab.a.signIdToken(
      {
        iss: lab.a.issuer,
        aud: 'gatehouse-a',
        iat: Math.floor(Date.now() / 1000),
        jti: `workers-${Date.now()}`,
        sub: 'nobody',
        events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      },
      { typ: 'logout+jwt' },
    );
    mark = node.lines.length;
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push((await browser().postForm('/.auth/backchannel-logout/a', { logout_token: token })).status);
    assert.deepEqual(statuses, [200, 400, 400, 400, 400, 400]);
    await node.until('both workers answered it', () => node.servedBy(mark, '/.auth/backchannel-logout/a').size === 2);
  } finally {
    await close();
  }
});
