import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, PASSWORD } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { runCli as run } from '../helpers/cli.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('gatehouse check', () => {
  test('a valid config: OK, what is served, and warnings that name keys', async () => {
    const file = writeConfig(
      'ok.yaml',
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\nroutes:\n  - path: /public/**\n    access: public\n',
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: OK \(\d+ warnings?\)/);
    assert.match(
      r.stdout,
      /https:\/\/app\.example\.com\/ → http:\/\/127\.0\.0\.1:3000\/ {2}app "app", 1 rule, default authenticated/,
    );
    assert.match(r.stderr, /warning: secrets\.key:/);
    assert.doesNotMatch(r.stderr, /error:/);
  });

  test('a config under which no sign-in can work: an error, exit 2 (https publicUrl, plain listener, no trusted proxy)', async () => {
    const file = writeConfig('nosignin.yaml', 'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\n');
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error: trustedProxies: publicUrl is https, .*no sign-in can work/m);
    assert.match(r.stdout, /: not OK \(1 error, \d+ warnings?\)/);
    const explained = await run(['check', '--config', file, '--explain', '/x']);
    assert.equal(explained.code, 2, 'with --explain too');
  });

  test('providers: the exact redirect URIs to register, and warnings about provider settings', async () => {
    const file = writeConfig(
      'providers.yaml',
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\ntokenRelay: kc\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com/realms/acme\n    clientId: gatehouse\n    endSession: true\n  - id: github\n    type: github\n    clientId: Iv1.x\n    clientSecret: s\n',
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /providers \(register these URIs at each provider\):\n {2}kc \(oidc, https:\/\/kc\.example\.com\/realms\/acme\)\n {4}redirect URI: +https:\/\/app\.example\.com\/\.auth\/callback\/kc\n {4}post-logout redirect URI: https:\/\/app\.example\.com\/\.auth\/signed-out/,
    );
    assert.match(
      r.stdout,
      /github \(github, https:\/\/github\.com\)\n {4}redirect URI: +https:\/\/app\.example\.com\/\.auth\/callback\/github/,
    );
    assert.match(r.stderr, /warning: providers\[0\]\.clientSecret: no clientSecret/);
    assert.match(r.stderr, /warning: providers\[0\]\.scopes: tokenRelay uses "kc" but its scopes lack offline_access/);
  });

  test('an invalid config: every problem with key and line, exit 2; serve refuses with the same text', async () => {
    const file = writeConfig(
      'bad.yaml',
      'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\nsesions:\n  idleTimeout: 1h\nlisten:\n  port: 99999\n',
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      new RegExp(`${file.replace(/[.]/g, '\\.')}:3 +sesions: unknown key "sesions"; did you mean "sessions"\\?`),
    );
    assert.match(r.stderr, /:6 +listen\.port: /);
    const s = await run(['serve', '--config', file]);
    assert.equal(s.code, 2);
    assert.match(s.stderr, /refusing to start/);
    assert.match(s.stderr, /:3 +sesions: unknown key/);
  });

  test('a missing file or unset variable is named', async () => {
    const missing = await run(['check', '--config', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.yaml.*file not found/);
    const env = writeConfig('env.yaml', 'publicUrl: ${GH_TEST_SURELY_UNSET}\nupstream: http://127.0.0.1:3000\n');
    const r = await run(['check', '--config', env]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /env\.yaml:1 +publicUrl: environment variable GH_TEST_SURELY_UNSET is not set/);
  });

  test('--explain tells which rule decides a URL, and why', async () => {
    const file = writeConfig(
      'explain.yaml',
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\nroutes:\n  - path: /docs/**\n    methods: [GET]\n    access: public\n  - path: /admin/**\n    allow: {groups: [admins]}\n',
    );
    const r = await run(['check', '--config', file, '--explain', 'https://app.example.com/docs/../admin/x?y=1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /GET https:\/\/app\.example\.com\/admin\/x +\(normalized from \/docs\/\.\.\/admin\/x\)/);
    assert.match(r.stdout, / {3}rule 0: \/docs\/\*\* \[GET\] → public: path does not match/);
    assert.match(r.stdout, / → rule 1: \/admin\/\*\* → authenticated: matches/);
    assert.match(r.stdout, /decision: sign-in required, then only groups admins/);
    const post = await run(['check', '--config', file, '--explain', '/docs/a', '--method', 'post']);
    assert.match(post.stdout, /method POST not in \[GET\]/);
    assert.match(post.stdout, /no rule matches; default: authenticated/);
    const bad = await run(['check', '--config', file, '--explain', '/a/..;/b']);
    assert.match(bad.stdout, /refused with 400/);
    const other = await run(['check', '--config', file, '--explain', 'https://evil.example/']);
    assert.match(other.stdout, /no site answers for this host → 421/);
  });

  test('usage errors exit 2 with a message', async () => {
    const r = await run(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "frobnicate"/);
    assert.equal((await run(['--nope'])).code, 2);
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /gatehouse users add/);
  });
});

describe('operator commands against a running Gatehouse', () => {
  let gh: TestGatehouse;
  let file: string;
  before(async () => {
    gh = await startGatehouse(({ dir: d }) => ({
      store: { type: 'sqlite', path: join(d, 'gatehouse.db') },
      routes: [{ path: '/admin/**', allow: { groups: ['admins'] } }],
    }));
    file = writeConfig(
      'live.yaml',
      `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\n`,
    );
  });
  after(() => gh.close());

  test('users add (password on stdin, never argv), list, set-groups; the user signs in', async () => {
    const add = await run(
      ['users', 'add', 'Ops@Example.com', '--name', 'Ops Person', '--groups', 'admins,ops', '--config', file],
      `${PASSWORD}\n`,
    );
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /added ops@example\.com \(/);
    const weak = await run(['users', 'add', 'weak@example.com', '--config', file], 'password\n');
    assert.equal(weak.code, 2);
    assert.match(weak.stderr, /too common/);
    const dup = await run(['users', 'add', 'ops@example.com', '--config', file], `${PASSWORD}\n`);
    assert.notEqual(dup.code, 0);

    const list = await run(['users', 'list', '--json', '--config', file]);
    const users = JSON.parse(list.stdout) as { email: string; groups: string; verified: string; status: string }[];
    const ops = users.find((u) => u.email === 'ops@example.com')!;
    assert.deepEqual([ops.groups, ops.verified, ops.status], ['admins,ops', 'yes', 'active']);
    const table = await run(['users', 'list', '--config', file]);
    assert.match(table.stdout, /^ID +EMAIL +VERIFIED/m);

    const c = new Client(gh.url);
    assert.equal((await c.postJson('/.auth/login', { email: 'ops@example.com', password: PASSWORD })).status, 200);
    assert.equal((await c.get('/admin/panel')).status, 200);
    await run(['users', 'set-groups', 'ops@example.com', 'ops', '--config', file]);
    assert.equal((await c.get('/admin/panel')).status, 403, 'groups are read live, not copied into the session');
  });

  test('disable ends sessions at the next request; enable restores sign-in', async () => {
    const c = new Client(gh.url);
    await c.postJson('/.auth/register', { email: 'mallory@example.com', password: PASSWORD });
    assert.equal((await c.get('/x')).status, 200);
    const r = await run(['users', 'disable', 'mallory@example.com', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await c.get('/x')).status, 401);
    assert.equal(
      (await new Client(gh.url).postJson('/.auth/login', { email: 'mallory@example.com', password: PASSWORD })).status,
      403,
    );
    await run(['users', 'enable', 'mallory@example.com', '--config', file]);
    assert.equal(
      (await new Client(gh.url).postJson('/.auth/login', { email: 'mallory@example.com', password: PASSWORD })).status,
      200,
    );
  });

  test('set-password: new password works, old one and old sessions do not', async () => {
    const c = new Client(gh.url);
    await c.postJson('/.auth/register', { email: 'reset@example.com', password: PASSWORD });
    const r = await run(['users', 'set-password', 'reset@example.com', '--config', file], 'a brand new passphrase\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await c.get('/x')).status, 401);
    assert.equal(
      (await new Client(gh.url).postJson('/.auth/login', { email: 'reset@example.com', password: PASSWORD })).status,
      401,
    );
    assert.equal(
      (
        await new Client(gh.url).postJson('/.auth/login', {
          email: 'reset@example.com',
          password: 'a brand new passphrase',
        })
      ).status,
      200,
    );
    assert.notEqual(
      (await run(['users', 'set-password', 'nobody@example.com', '--config', file], 'whatever passphrase\n')).code,
      0,
    );
  });

  test('sessions list and revoke, one or all', async () => {
    const a = new Client(gh.url);
    await a.postJson(
      '/.auth/register',
      { email: 'multi@example.com', password: PASSWORD },
      { 'user-agent': 'Browser A' },
    );
    const b = new Client(gh.url);
    await b.postJson('/.auth/login', { email: 'multi@example.com', password: PASSWORD }, { 'user-agent': 'Browser B' });
    const list = JSON.parse(
      (await run(['sessions', 'list', '--user', 'multi@example.com', '--json', '--config', file])).stdout,
    ) as { id: string; agent: string }[];
    assert.equal(list.length, 2);
    const idB = list.find((s) => s.agent === 'Browser B')!.id;
    const one = await run(['sessions', 'revoke', idB, '--user', 'multi@example.com', '--config', file]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal((await b.get('/x')).status, 401);
    assert.equal((await a.get('/x')).status, 200);
    await run(['sessions', 'revoke', '--user', 'multi@example.com', '--config', file]);
    assert.equal((await a.get('/x')).status, 401);
  });
});
