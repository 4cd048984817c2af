import assert from 'node:assert/strict';
import { argon2Sync, pbkdf2Sync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { Client } from '../helpers/client.ts';
import { operatorConfig, runCli as run } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * `gatehouse users import`: users of another system with their ids and their password hashes
 * (bcrypt, Django's pbkdf2_sha256, argon2i from another library), checked as they are at the first
 * sign-in and replaced by Gatehouse's argon2id then; a file with problems imports nothing; an
 * import run again skips who is there.
 */

let gh: TestGatehouse;
let config: string;
before(async () => {
  gh = await startGatehouse(({ dir }) => ({
    store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
    headers: { email: true, groups: true },
  }));
  config = operatorConfig(gh);
});
after(() => gh.close());

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
const argon2i = (password: string) => {
  const salt = randomBytes(16);
  const tag = argon2Sync('argon2i', {
    message: Buffer.from(password),
    nonce: salt,
    memory: 4096,
    passes: 3,
    parallelism: 1,
    tagLength: 32,
  });
  return `$argon2i$v=19$m=4096,t=3,p=1$${b64(salt)}$${b64(tag)}`;
};
const django = (password: string) =>
  `pbkdf2_sha256$600000$Qx7sa1t$${pbkdf2Sync(password, 'Qx7sa1t', 600_000, 32, 'sha256').toString('base64')}`;

function jsonl(name: string, lines: unknown[]): string {
  const file = join(gh.dir, name);
  writeFileSync(file, `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`);
  return file;
}

const signIn = (email: string, password: string) => new Client(gh.url).postJson('/.auth/login', { email, password });

describe('gatehouse users import', () => {
  test('users of another system sign in with their old passwords, keep their ids, and get argon2id at the first sign-in', async () => {
    const file = jsonl('users.jsonl', [
      {
        email: 'Ann@Example.com',
        name: 'Ann',
        groups: ['ops'],
        emailVerified: true,
        id: 'auth0|5f7c8ec7c33c6c004bbafe82',
        passwordHash: bcrypt.hashSync('ann has a bcrypt password', 10),
      },
      { email: 'bob@example.com', passwordHash: django('bob from django') },
      { email: 'cy@example.com', passwordHash: argon2i('cy from elsewhere ﬁne') },
      { email: 'dee@example.com', name: 'Dee' },
      { email: 'eve@example.com', disabled: true, passwordHash: bcrypt.hashSync('eve is disabled', 4) },
      '',
    ]);
    const dry = await run(['users', 'import', file, '--dry-run', '--config', config]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(
      dry.stdout,
      /^would import 5 users; password hashes to replace with argon2id at each user's first sign-in: 2 bcrypt, 1 pbkdf2_sha256, 1 argon2i\n$/,
    );
    assert.equal(await gh.gatehouse.store.users.getByEmail('ann@example.com'), undefined, 'a dry run writes nothing');

    const r = await run(['users', 'import', file, '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^imported 5 users;/);
    const listed = async () =>
      new Map(
        (
          JSON.parse((await run(['users', 'list', '--json', '--config', config])).stdout) as {
            email: string;
            password: string;
          }[]
        ).map((u) => [u.email, u.password]),
      );
    const before = await listed();
    assert.deepEqual(
      ['ann', 'bob', 'cy', 'dee'].map((n) => before.get(`${n}@example.com`)),
      ['bcrypt until sign-in', 'pbkdf2_sha256 until sign-in', 'argon2i until sign-in', 'none'],
      'users list says whose imported hash waits for a sign-in',
    );

    // Ann: her old bcrypt password, her old id (the app's data follows her), her name and groups.
    const ann = await signIn('ann@example.com', 'ann has a bcrypt password');
    assert.equal(ann.status, 200, ann.text);
    const c = new Client(gh.url);
    await c.postJson('/.auth/login', { email: 'ann@example.com', password: 'ann has a bcrypt password' });
    const seen = await c.fetch('/dashboard', { headers: { accept: 'application/json' } });
    assert.equal(seen.status, 200);
    const headers = seen.json().headers as Record<string, string>;
    assert.equal(headers['x-user-id'], 'auth0|5f7c8ec7c33c6c004bbafe82');
    assert.equal(headers['x-user-email'], 'ann@example.com');
    assert.equal(headers['x-user-groups'], 'ops');
    const stored = await gh.gatehouse.store.users.getByEmail('ann@example.com');
    assert.match(stored!.passwordHash!, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, 'replaced at the first sign-in');
    assert.equal((await signIn('ann@example.com', 'ann has a bcrypt password')).status, 200, 'and still works');
    assert.equal((await listed()).get('ann@example.com'), 'set');

    assert.equal((await signIn('bob@example.com', 'bob from django')).status, 200);
    // Hashed as typed there (Gatehouse hashes NFKC, where the ligature is "fi"): taken either way.
    assert.equal((await signIn('cy@example.com', 'cy from elsewhere ﬁne')).status, 200);
    assert.equal((await signIn('bob@example.com', 'bob from Django')).status, 401);
    assert.equal((await signIn('dee@example.com', 'anything at all')).status, 401, 'no password: another way in');
    assert.equal((await signIn('eve@example.com', 'eve is disabled')).status, 403);
    const bob = await gh.gatehouse.store.users.getByEmail('bob@example.com');
    assert.equal(bob!.emailVerified, false);
    const audited = await gh.gatehouse.store.audit.list({ event: 'operator', userId: bob!.id, limit: 5 });
    assert.ok(audited.some((e) => e.detail.command === 'users import'));

    // Run again: everyone is there already.
    const again = await run(['users', 'import', file, '--json', '--config', config]);
    assert.equal(again.code, 0, again.stderr);
    const report = JSON.parse(again.stdout) as { imported: unknown[]; skipped: { line: number; reason: string }[] };
    assert.deepEqual(report.imported, []);
    assert.deepEqual(
      report.skipped.map((s) => [s.line, s.reason]),
      [1, 2, 3, 4, 5].map((line) => [line, 'has an account already']),
    );
  });

  test('a file with problems imports nothing and names each problem with its line', async () => {
    const file = jsonl('bad.jsonl', [
      { email: 'fine@example.com' },
      { email: 'not an address' },
      { email: 'md5@example.com', passwordHash: '5f4dcc3b5aa765d61d8327deb882cf99' },
      { email: 'FINE@example.com' },
      { email: 'svc@example.com', id: 'client:ci' },
      '{"email": "broken@example.com"',
      { email: 'extra@example.com', role: 'admin' },
      { email: 'slow@example.com', passwordHash: `$2b$20$${'a'.repeat(53)}` },
    ]);
    const r = await run(['users', 'import', file, '--config', config]);
    assert.equal(r.code, 2);
    for (const line of [
      /line 2: email: not an email address: "not an address"/,
      /line 3: passwordHash: it is none of the formats Gatehouse reads/,
      /line 4: fine@example\.com is on line 1 too/,
      /line 5: id: ids beginning with client: are those of service clients/,
      /line 6: not a JSON object/,
      /line 7: .*role/,
      /line 8: passwordHash: its bcrypt cost is not between 4 and 14/,
      /nothing imported: 7 problems/,
    ])
      assert.match(r.stderr, line);
    assert.equal(await gh.gatehouse.store.users.getByEmail('fine@example.com'), undefined);
  });
});
