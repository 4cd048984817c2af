import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { freePort } from '../helpers/gatehouse.ts';
import { Relay } from './relay.ts';
import { postgres, redis, viaPort } from './services.ts';

/**
 * A bad store or cache setting stops `gatehouse serve` at once, with a message that names the
 * config key to fix, instead of a node that starts and then fails every request.
 */
const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-startup-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const [pgService, redisService] = await Promise.all([postgres(), redis()]);

function run(
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    // A node that did start would serve forever: stop it, and the test fails on the exit code.
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

let files = 0;
async function config(body: string): Promise<string> {
  const port = await freePort();
  const file = join(dir, `gatehouse-${files++}.yaml`);
  writeFileSync(
    file,
    `publicUrl: http://127.0.0.1:${port}\nlisten:\n  host: 127.0.0.1\n  port: ${port}\nupstream: http://127.0.0.1:9\n${body}`,
  );
  return file;
}

/** The startup error, without the config warnings logged before it. */
const startupError = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('gatehouse:'))
    .join('\n');

describe('gatehouse serve refuses to start on a bad store', () => {
  test('SQLite path under a regular file: exits non-zero naming store.path and the file', async () => {
    writeFileSync(join(dir, 'not-a-dir'), 'x');
    const path = join(dir, 'not-a-dir', 'gatehouse.db');
    const r = await run(['serve', '--config', await config(`store:\n  type: sqlite\n  path: ${path}\n`)]);
    assert.notEqual(r.code, 0);
    assert.equal(r.code, 1);
    const msg = startupError(r.stderr);
    assert.match(msg, /cannot start/);
    assert.match(msg, /store\.path/);
    assert.ok(msg.includes(path), `names the file: ${msg}`);
  });

  test('SQLite path nobody may write (even root: /proc), a directory, or a file that is not a database: store.path named', async () => {
    const notDb = join(dir, 'notes.txt');
    writeFileSync(notDb, 'these are not the tables you are looking for\n'.repeat(200));
    mkdirSync(join(dir, 'adir'), { recursive: true });
    for (const path of ['/proc/gatehouse-test.db', join(dir, 'adir'), notDb]) {
      const r = await run(['serve', '--config', await config(`store:\n  type: sqlite\n  path: ${path}\n`)]);
      assert.equal(r.code, 1, r.stderr);
      const msg = startupError(r.stderr);
      assert.match(msg, /store\.path/, msg);
      assert.ok(msg.includes(path), `names the file: ${msg}`);
    }
  });

  test('PostgreSQL not reachable: exits quickly, naming store.url and where, never the password', {
    skip: pgService.skip,
  }, async () => {
    const relay = await Relay.start(pgService.host, pgService.port);
    await relay.cut(); // nothing listens on its port now
    const url = new URL(viaPort(pgService.url, relay.port));
    url.password = 'hunter2secret';
    const r = await run(['serve', '--config', await config(`store:\n  type: postgres\n  url: ${url}\n`)]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.ms < 10_000, `gave up after ${r.ms} ms`);
    const msg = startupError(r.stderr);
    assert.match(msg, /store\.url/);
    assert.match(msg, new RegExp(`127\\.0\\.0\\.1:${relay.port}`));
    assert.match(msg, /ECONNREFUSED/);
    assert.doesNotMatch(r.stderr + r.stdout, /hunter2secret/);
  });

  test('PostgreSQL database that does not exist: store.url and the database named', {
    skip: pgService.skip,
  }, async () => {
    const url = new URL(pgService.url);
    url.pathname = '/gatehouse_no_such_database';
    const r = await run(['serve', '--config', await config(`store:\n  type: postgres\n  url: ${url}\n`)]);
    assert.equal(r.code, 1, r.stderr);
    const msg = startupError(r.stderr);
    assert.match(msg, /store\.url/);
    assert.match(msg, /gatehouse_no_such_database/);
  });

  test('Redis not reachable at start: the node starts and serves anyway, says so naming its address (never the password), ready says degraded (security.md #197)', {
    skip: redisService.skip,
  }, async () => {
    const relay = await Relay.start(redisService.host, redisService.port);
    await relay.cut();
    const url = new URL(viaPort(redisService.url, relay.port));
    url.password = 'hunter2secret';
    const file = await config(
      `store:\n  type: sqlite\n  path: ${join(dir, 'redis-case.db')}\ncache:\n  type: redis\n  url: ${url}\n`,
    );
    const port = Number(/port: (\d+)/.exec(readFileSync(file, 'utf8'))![1]);
    const child = spawn(process.execPath, [CLI, 'serve', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: dir,
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      let ready: Response | undefined;
      for (let i = 0; i < 200 && !ready; i++) {
        ready = await fetch(`http://127.0.0.1:${port}/.auth/ready`).catch(() => undefined);
        if (!ready) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(ready, `the node started: ${output}`);
      assert.equal(ready.status, 200, 'a balancer takes the node');
      assert.deepEqual(await ready.json(), {
        status: 'degraded',
        store: 'ok',
        cache: 'unavailable',
        unavailable: ['cache'],
      });
      const line = output.split('\n').find((l) => l.includes('cache_unreachable_at_start'));
      assert.ok(line, output);
      assert.match(line, new RegExp(`redis://127\\.0\\.0\\.1:${relay.port}`), 'the address to check');
      assert.match(line, /cache\.url/);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      await relay.close();
    }
    assert.doesNotMatch(output, /hunter2secret/);
  });
});

/**
 * The last word of a node that cannot start: a JSON `fatal` event as the last line on stdout,
 * after every line logged before it ("signing key set" must not be what a log collector saw
 * last), and one line on stderr that says what to fix.
 */
function assertFatalLast(r: { stdout: string; stderr: string }, reason: RegExp): Record<string, unknown> {
  const lines = r.stdout.trimEnd().split('\n');
  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const last = logged.at(-1)!;
  assert.equal(last.level, 'fatal', `the last line on stdout: ${lines.at(-1)}`);
  assert.equal(last.event, 'fatal');
  assert.match(String(last.msg), reason);
  assert.equal(logged.filter((l) => l.level === 'fatal').length, 1);
  const stderr = r.stderr.trimEnd().split('\n');
  assert.equal(stderr.length, 1, r.stderr);
  assert.equal(stderr[0], `gatehouse: ${last.msg}`);
  return last;
}

describe('a node that cannot start says so last: a fatal event on stdout, one line on stderr', () => {
  test('the port is in use: after "signing key set", the fatal event names the address and listen.port', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as AddressInfo;
    try {
      const file = join(dir, `port-in-use-${port}.yaml`);
      writeFileSync(
        file,
        `publicUrl: http://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}}\nupstream: http://127.0.0.1:9\nstore: {type: sqlite, path: ${join(dir, 'in-use.db')}}\n`,
      );
      const r = await run(['serve', '--config', file]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /"msg":"signing key set"/, 'the node got that far');
      const fatal = assertFatalLast(
        r,
        new RegExp(
          `^cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use; stop the other process or set listen\\.port$`,
        ),
      );
      assert.equal(fatal.code, 'EADDRINUSE');
    } finally {
      holder.close();
    }
  });

  test('PostgreSQL unreachable: the fatal event names store.url, never the password', {
    skip: pgService.skip,
  }, async () => {
    const relay = await Relay.start(pgService.host, pgService.port);
    await relay.cut();
    const url = new URL(viaPort(pgService.url, relay.port));
    url.password = 'hunter2secret';
    const r = await run(['serve', '--config', await config(`store:\n  type: postgres\n  url: ${url}\n`)]);
    assert.equal(r.code, 1, r.stderr);
    const fatal = assertFatalLast(r, /^cannot start: the store is unreachable .*check store\.url/);
    assert.equal(fatal.code, 'ECONNREFUSED');
    assert.doesNotMatch(r.stderr + r.stdout, /hunter2secret/);
  });
});

describe('gatehouse check names a typo in the store or cache section with its line', () => {
  test('store.pth and cache.ulr: key and line for each, exit 2; serve refuses with the same', async () => {
    const file = await config(
      `store:\n  type: sqlite\n  pth: ./data/gatehouse.db\ncache:\n  type: redis\n  ulr: redis://127.0.0.1:6379\n`,
    );
    // Lines: 1 publicUrl, 2-4 listen, 5 upstream, 6 store, 7 type, 8 pth, 9 cache, 10 type, 11 ulr
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`${file.replace(/[.]/g, '\\.')}:8\\s+store\\.pth: unknown key "pth"`));
    assert.match(r.stderr, /:11\s+cache\.ulr: unknown key "ulr"/, r.stderr);
    assert.match(
      r.stderr,
      /:9\s+cache\.url: is required/,
      'and what is missing because of it, at the map it is missing from',
    );
    const s = await run(['serve', '--config', file]);
    assert.equal(s.code, 2);
    assert.match(s.stderr, /refusing to start/);
    assert.match(s.stderr, /:8\s+store\.pth/);
  });

  test('a store type that does not exist is named with its line', async () => {
    const file = await config(`store:\n  type: mysql\n  url: mysql://x\n`);
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /:7\s+store\.type/, r.stderr);
  });
});
