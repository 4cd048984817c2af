import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DatabaseSync } from 'node:sqlite';
import { CLI, runCli as run } from '../helpers/cli.ts';
import { Client, PASSWORD, registerJson } from '../helpers/client.ts';
import { freePort } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { eventually } from '../faults/services.ts';

/**
 * `gatehouse backup <file>`: SQLite's online backup of the store taken while `gatehouse serve`
 * runs and writes; the copy, put back in place, is the same Gatehouse: users, sessions and
 * signing keys, and (the master key being generated and kept in the store) a browser signed
 * in before the backup is still signed in.
 */

let dir: string;
let upstream: TestUpstream;
let port: number;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-backup-'));
  upstream = await startUpstream();
  port = await freePort();
});
after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, storePath: string): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    `publicUrl: http://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}}\nupstream: ${upstream.url}\nstore: {type: sqlite, path: ${storePath}}\n`,
  );
  return file;
}

/** `gatehouse serve` as a child process, once it answers. */
async function serve(file: string): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  await eventually('gatehouse serve to start', () => {
    if (child.exitCode !== null) throw new Error(`exited: ${output}`);
    return output.includes('Gatehouse serving');
  });
  return {
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

describe('gatehouse backup', () => {
  test('a copy taken while serve runs and writes: restored, it has the users, sessions and keys, and an earlier sign-in still works', async () => {
    const live = join(dir, 'live.db');
    const liveConfig = config('live.yaml', live);
    const node = await serve(liveConfig);
    const base = `http://127.0.0.1:${port}`;
    let stopWriting = false;
    let writes = 0;
    try {
      const browser = new Client(base);
      const user = await registerJson(browser);
      assert.equal((await browser.get('/x')).status, 200, 'signed in');
      assert.equal((await run(['keys', 'rotate', '--config', liveConfig])).code, 0);
      const keysBefore = JSON.parse((await run(['keys', 'list', '--json', '--config', liveConfig])).stdout);
      assert.equal(keysBefore.length, 2);

      // Sign-ins (a session row each) keep landing in the store while the backup is taken.
      const traffic = (async () => {
        while (!stopWriting) {
          const c = new Client(base);
          const r = await c.postJson('/.auth/login', { email: user.email, password: PASSWORD });
          assert.equal(r.status, 200, r.text);
          writes++;
        }
      })();
      await eventually('sign-ins under way', () => writes >= 3);
      const writesBefore = writes;
      const copy = join(dir, 'copy.db');
      const r = await run(['backup', copy, '--config', liveConfig]);
      stopWriting = true;
      await traffic;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /copy\.db: a consistent copy of .*live\.db \(\d+ pages\)/);
      assert.match(r.stdout, /holds the master key Gatehouse generated/);
      assert.equal(statSync(copy).mode & 0o777, 0o600, 'only its owner can read it');

      const db = new DatabaseSync(copy, { readOnly: true });
      try {
        assert.deepEqual({ ...db.prepare('PRAGMA integrity_check').get() }, { integrity_check: 'ok' });
        const { n } = db.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number };
        assert.ok(n >= 1 + writesBefore, `the sessions made before the backup are in it (${n})`);
      } finally {
        db.close();
      }

      // Restore: stop Gatehouse, put the copy where the store was, start again.
      await node.stop();
      const restored = join(dir, 'restored.db');
      copyFileSync(copy, restored);
      const restoredConfig = config('restored.yaml', restored);
      const again = await serve(restoredConfig);
      try {
        const res = await browser.get('/x');
        assert.equal(res.status, 200, 'the browser signed in before the backup is still signed in');
        assert.equal(upstream.last().headers['x-user-id'], user.id);
        const keysAfter = JSON.parse((await run(['keys', 'list', '--json', '--config', restoredConfig])).stdout);
        assert.deepEqual(
          keysAfter.map((k: { kid: string }) => k.kid),
          keysBefore.map((k: { kid: string }) => k.kid),
        );
        const users = JSON.parse((await run(['users', 'list', '--json', '--config', restoredConfig])).stdout);
        assert.deepEqual(
          users.map((u: { email: string }) => u.email),
          [user.email],
        );
        const fresh = new Client(base);
        const login = await fresh.postJson('/.auth/login', { email: user.email, password: PASSWORD });
        assert.equal(login.status, 200, 'the password works on the restored store');
      } finally {
        await again.stop();
      }
    } finally {
      stopWriting = true;
      await node.stop();
    }
  });

  test('never replaces a file unless --force, nor the store itself; a PostgreSQL store is pg_dump work; no store, no copy', async () => {
    const store = join(dir, 'small.db');
    const db = new DatabaseSync(store);
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
    db.close();
    const file = config('small.yaml', store);
    const target = join(dir, 'exists.db');
    writeFileSync(target, 'keep me');
    const refused = await run(['backup', target, '--config', file]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /exists\.db exists; use --force to replace it/);
    assert.equal(readFileSync(target, 'utf8'), 'keep me');
    const forced = await run(['backup', target, '--force', '--config', file]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(statSync(target).mode & 0o777, 0o600);
    const copy = new DatabaseSync(target, { readOnly: true });
    assert.deepEqual({ ...copy.prepare('SELECT x FROM t').get() }, { x: 1 });
    copy.close();

    const self = await run(['backup', store, '--force', '--config', file]);
    assert.equal(self.code, 1);
    assert.match(self.stderr, /small\.db is the store itself; write the copy somewhere else/);
    const same = new DatabaseSync(store, { readOnly: true });
    assert.deepEqual({ ...same.prepare('SELECT x FROM t').get() }, { x: 1 }, 'the store is untouched');
    same.close();

    const pg = join(dir, 'pg.yaml');
    writeFileSync(
      pg,
      'publicUrl: http://127.0.0.1:1\nupstream: http://127.0.0.1:2\nstore: {type: postgres, url: "postgres://u:hunter2@127.0.0.1:1/x"}\n',
    );
    const p = await run(['backup', join(dir, 'pg.db'), '--config', pg]);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /the store is PostgreSQL: back it up with pg_dump/);
    assert.doesNotMatch(p.stderr, /hunter2/);

    const none = await run(['backup', join(dir, 'none-copy.db'), '--config', config('none.yaml', join(dir, 'no.db'))]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no\.db: no SQLite store here/);
    assert.equal(statSync(join(dir, 'no.db'), { throwIfNoEntry: false }), undefined, 'none created');
    assert.equal(statSync(join(dir, 'none-copy.db'), { throwIfNoEntry: false }), undefined);
  });
});
