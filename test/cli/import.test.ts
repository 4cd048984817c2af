import assert from 'node:assert/strict';
import { argon2Sync, pbkdf2Sync, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { Client } from '../helpers/client.ts';
import { operatorConfig, runCli as run } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';

/**
 * `gatehouse users import`: users of another system with their ids and their password hashes
 * (bcrypt, Django's pbkdf2_sha256, argon2i from another library; a Keycloak realm export with its
 * pbkdf2 and argon2 credentials), checked as they are at the first sign-in and replaced by
 * Gatehouse's argon2id then; a file with problems imports nothing; an import run again skips who
 * is there.
 */

let gh: TestGatehouse;
let config: string;
before(async () => {
  gh = await startGatehouse(({ dir }) => ({
    store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
    headers: { email: true, name: true, groups: true },
  }));
  config = operatorConfig(gh);
});
after(() => gh.close());

/** `users list`'s password column, by address. */
const passwords = async () =>
  new Map(
    (
      JSON.parse((await run(['users', 'list', '--json', '--config', config])).stdout) as {
        email: string;
        password: string;
      }[]
    ).map((u) => [u.email, u.password]),
  );

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

/**
 * A Keycloak password credential as a realm export has it, hashed here as Keycloak hashes
 * (keycloak/keycloak: server-spi-private/.../credential/hash/Pbkdf2PasswordHashProvider.java and
 * crypto/default/.../crypto/hash/Argon2PasswordHashProvider.java): 16 random bytes of salt; PBKDF2
 * through PBEKeySpec, so over the password's UTF-8, not normalized, padded with \0 to 14 characters
 * (Keycloak's FIPS padding), a key of derivedKeySize bits; argon2 through Bouncy Castle's
 * Argon2BytesGenerator over the password's UTF-8 with Keycloak's defaults (Argon2Parameters: id,
 * 1.3, hashLength 32, memory 7168, iterations 5, parallelism 1). Value and salt in padded base64,
 * each side a JSON string, as Keycloak exports them.
 */
const DIGEST = { pbkdf2: 'sha1', 'pbkdf2-sha256': 'sha256', 'pbkdf2-sha512': 'sha512' } as const;
function keycloakPbkdf2(algorithm: keyof typeof DIGEST, iterations: number, keyBits: number, password: string) {
  const salt = randomBytes(16);
  const value = pbkdf2Sync(password.padEnd(14, '\0'), salt, iterations, keyBits / 8, DIGEST[algorithm]);
  return keycloakCredential(value, salt, { hashIterations: iterations, algorithm, additionalParameters: {} });
}
function keycloakArgon2(password: string) {
  const salt = randomBytes(16);
  const value = argon2Sync('argon2id', {
    message: Buffer.from(password),
    nonce: salt,
    memory: 7168,
    passes: 5,
    parallelism: 1,
    tagLength: 32,
  });
  return keycloakCredential(value, salt, {
    hashIterations: 5,
    algorithm: 'argon2',
    additionalParameters: { hashLength: ['32'], memory: ['7168'], type: ['id'], version: ['1.3'], parallelism: ['1'] },
  });
}
const keycloakCredential = (value: Buffer, salt: Buffer, credentialData: object) => ({
  id: randomUUID(),
  type: 'password',
  userLabel: 'My password',
  createdDate: 1_700_000_000_000,
  secretData: JSON.stringify({
    value: value.toString('base64'),
    salt: salt.toString('base64'),
    additionalParameters: {},
  }),
  credentialData: JSON.stringify(credentialData),
});

/** A user of a Keycloak realm export, with what Keycloak gives everyone. */
const keycloakUser = (username: string, user: object) => ({
  id: randomUUID(),
  username,
  enabled: true,
  emailVerified: false,
  createdTimestamp: 1_700_000_000_000,
  totp: false,
  realmRoles: ['default-roles-acme'],
  notBefore: 0,
  requiredActions: [],
  ...user,
});

/** A realm export, pretty-printed as `kc.sh export` writes it. */
function realm(name: string, users: unknown[]): string {
  const file = join(gh.dir, name);
  const groups = [
    { name: 'engineering', path: '/engineering', subGroups: [{ name: 'backend', path: '/engineering/backend' }] },
  ];
  writeFileSync(file, JSON.stringify({ realm: 'acme', enabled: true, groups, users, clients: [] }, null, 2));
  return file;
}

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
    const before = await passwords();
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
    assert.equal((await passwords()).get('ann@example.com'), 'set');

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

  test('a Keycloak realm export: its users sign in with their Keycloak passwords, keep their ids, names and groups, and get argon2id at the first sign-in; service accounts are skipped', async () => {
    const [annId, ciId] = [randomUUID(), randomUUID()];
    const file = realm('realm.json', [
      keycloakUser('ann', {
        id: annId,
        email: 'Ann@Acme.example',
        emailVerified: true,
        firstName: 'Ann',
        lastName: 'Lee',
        groups: ['/engineering/backend', '/ops'],
        realmRoles: ['default-roles-acme', 'offline_access', 'uma_authorization', 'admin'],
        credentials: [
          keycloakArgon2('ann’s keycloak 24 password'),
          { type: 'otp', secretData: '{"value":"JBSWY3DPEHPK3PXP"}', credentialData: '{"subType":"totp"}' },
        ],
      }),
      keycloakUser('bob', {
        email: 'bob@acme.example',
        credentials: [keycloakPbkdf2('pbkdf2-sha256', 600_000, 256, 'bob ﬁne on keycloak')],
      }),
      keycloakUser('cy', {
        email: 'cy@acme.example',
        firstName: 'Cy',
        credentials: [keycloakPbkdf2('pbkdf2-sha256', 27_500, 512, 'cy-short')],
      }),
      keycloakUser('dee', {
        email: 'dee@acme.example',
        credentials: [keycloakPbkdf2('pbkdf2-sha512', 210_000, 512, 'dee from fips mode')],
      }),
      keycloakUser('eve', {
        email: 'eve@acme.example',
        credentials: [keycloakPbkdf2('pbkdf2', 20_000, 512, 'eve is old')],
      }),
      keycloakUser('fay', { email: 'fay@acme.example', enabled: false, credentials: [keycloakArgon2('fay is off')] }),
      keycloakUser('service-account-ci', {
        id: ciId,
        serviceAccountClientId: 'ci',
        realmRoles: ['default-roles-acme', 'deploy'],
      }),
      keycloakUser('gus', { email: 'gus@acme.example', federationLink: randomUUID() }),
    ]);
    const dry = await run(['users', 'import', file, '--dry-run', '--config', config]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(
      dry.stdout,
      'users[6] (service-account-ci): the service account of client ci, not a person: skipped\n' +
        "would import 7 users, skipped 1; password hashes to replace with argon2id at each user's first sign-in: " +
        '2 argon2id, 2 pbkdf2-sha256, 1 pbkdf2-sha512, 1 pbkdf2-sha1\n',
    );
    assert.equal(await gh.gatehouse.store.users.getByEmail('ann@acme.example'), undefined, 'a dry run writes nothing');

    const r = await run(['users', 'import', file, '--json', '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      imported: { user: number; username: string; id: string }[];
      skipped: { user: number; username: string; reason: string }[];
    };
    assert.deepEqual(
      report.imported.map((u) => u.username),
      ['ann', 'bob', 'cy', 'dee', 'eve', 'fay', 'gus'],
    );
    assert.deepEqual(
      report.skipped.map((s) => [s.user, s.username]),
      [[6, 'service-account-ci']],
      'a service account is not a person',
    );
    const people = ['ann', 'bob', 'cy', 'dee', 'eve', 'gus'].map((n) => `${n}@acme.example`);
    const listed = await passwords();
    assert.deepEqual(
      people.map((e) => listed.get(e)),
      [
        'argon2id until sign-in',
        'pbkdf2-sha256 until sign-in',
        'pbkdf2-sha256 until sign-in',
        'pbkdf2-sha512 until sign-in',
        'pbkdf2-sha1 until sign-in',
        'none',
      ],
    );

    // Ann: her Keycloak id is her id at the app; her name and groups arrive, her realm roles do not.
    const c = new Client(gh.url);
    const ann = await c.postJson('/.auth/login', { email: 'ann@acme.example', password: 'ann’s keycloak 24 password' });
    assert.equal(ann.status, 200, ann.text);
    const seen = await c.fetch('/dashboard', { headers: { accept: 'application/json' } });
    assert.equal(seen.status, 200);
    const headers = seen.json().headers as Record<string, string>;
    assert.equal(headers['x-user-id'], annId);
    assert.equal(headers['x-user-email'], 'ann@acme.example');
    assert.equal(headers['x-user-name'], 'Ann Lee');
    assert.equal(headers['x-user-groups'], 'engineering/backend,ops');
    assert.equal((await gh.gatehouse.store.users.getByEmail('ann@acme.example'))!.emailVerified, true);
    assert.equal((await gh.gatehouse.store.users.getByEmail('bob@acme.example'))!.emailVerified, false);

    // Each Keycloak hash takes its own password, as typed (bob's "ﬁ" ligature), and only it.
    assert.equal((await signIn('bob@acme.example', 'bob fine on keycloak')).status, 401, 'not normalized, as Keycloak');
    assert.equal((await signIn('cy@acme.example', 'cy-shorT')).status, 401);
    for (const [email, password] of [
      ['bob@acme.example', 'bob ﬁne on keycloak'],
      ['cy@acme.example', 'cy-short'],
      ['dee@acme.example', 'dee from fips mode'],
      ['eve@acme.example', 'eve is old'],
    ] as const)
      assert.equal((await signIn(email, password)).status, 200, email);
    assert.equal((await signIn('fay@acme.example', 'fay is off')).status, 403, 'disabled in Keycloak');
    assert.equal((await signIn('gus@acme.example', 'anything at all')).status, 401, 'LDAP kept his password');

    const after = await passwords();
    assert.deepEqual(
      people.map((e) => after.get(e)),
      ['set', 'set', 'set', 'set', 'set', 'none'],
      'replaced with argon2id at the first sign-in',
    );
    assert.match(
      (await gh.gatehouse.store.users.getByEmail('eve@acme.example'))!.passwordHash!,
      /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/,
    );
    assert.equal((await signIn('eve@acme.example', 'eve is old')).status, 200, 'and still works');
    assert.equal(await gh.gatehouse.store.users.get(ciId), undefined, 'the service account made no user');
  });

  test('a Keycloak export with problems imports nothing and names each problem with its user', async () => {
    const file = realm('acme-users-0.json', [
      keycloakUser('fine', { email: 'fine2@acme.example' }),
      keycloakUser('slow', {
        email: 'slow@acme.example',
        credentials: [
          keycloakCredential(randomBytes(32), randomBytes(16), {
            hashIterations: 10_000_000,
            algorithm: 'pbkdf2-sha256',
          }),
        ],
      }),
      keycloakUser('md5', {
        email: 'md5@acme.example',
        credentials: [keycloakCredential(randomBytes(16), randomBytes(16), { hashIterations: 1, algorithm: 'md5' })],
      }),
      keycloakUser('nomail', { firstName: 'No', lastName: 'Mail' }),
      keycloakUser('huge', {
        email: 'huge@acme.example',
        credentials: [
          keycloakCredential(randomBytes(32), randomBytes(16), {
            hashIterations: 5,
            algorithm: 'argon2',
            additionalParameters: {
              hashLength: ['32'],
              memory: ['4194304'],
              type: ['id'],
              version: ['1.3'],
              parallelism: ['1'],
            },
          }),
        ],
      }),
      keycloakUser('clear', {
        email: 'clear@acme.example',
        credentials: [{ type: 'password', value: 'hunter2', temporary: false }],
      }),
      keycloakUser('twice', { email: 'FINE2@acme.example' }),
    ]);
    const r = await run(['users', 'import', file, '--config', config]);
    assert.equal(r.code, 2);
    for (const problem of [
      /users\[1\] \(slow\): password credential: its iterations are not between 1 and 5000000/,
      /users\[2\] \(md5\): password credential: algorithm "md5" is none of pbkdf2-sha256, pbkdf2-sha512, pbkdf2, argon2/,
      /users\[3\] \(nomail\): no email/,
      /users\[4\] \(huge\): password credential: its argon2 parameters exceed m=262144/,
      /users\[5\] \(clear\): password credential: no secretData and credentialData/,
      /users\[6\] \(twice\): fine2@acme\.example is on users\[0\] \(fine\) too/,
      /nothing imported: 6 problems/,
    ])
      assert.match(r.stderr, problem);
    assert.equal(await gh.gatehouse.store.users.getByEmail('fine2@acme.example'), undefined);

    // The realm file of `--users different_files` has no users: it says where they are.
    const bare = join(gh.dir, 'acme-realm.json');
    writeFileSync(bare, JSON.stringify({ realm: 'acme', enabled: true }, null, 2));
    const none = await run(['users', 'import', bare, '--config', config]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /without users: with --users different_files they are in acme-users-<n>\.json/);
  });
});
