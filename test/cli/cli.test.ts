import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
    assert.doesNotMatch(r.stdout, /cors/);
  });

  test('secrets from systemd credentials (${credential:NAME}): check reads them, never prints them; a missing one is an error', async () => {
    const creds = join(dir, 'credentials');
    mkdirSync(creds, { recursive: true });
    const key = randomBytes(32).toString('base64');
    writeFileSync(join(creds, 'gatehouse-key'), `${key}\n`);
    const file = writeConfig(
      'credentials.yaml',
      `publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\nsecrets: {key: "\${credential:gatehouse-key}"}\nstore: {type: sqlite, path: ${join(dir, 'credentials.db')}}\n`,
    );
    const r = await run(['check', '--config', file], undefined, { ...process.env, CREDENTIALS_DIRECTORY: creds });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /warning: secrets\.key:/, 'the key is set');
    assert.ok(!`${r.stdout}${r.stderr}`.includes(key), 'never printed');
    const missing = await run(['check', '--config', file], undefined, { ...process.env, CREDENTIALS_DIRECTORY: dir });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /credentials\.yaml:4 {2}secrets\.key: cannot read .*gatehouse-key \(no such file\)/);
  });

  test('check says which other origins may call an app, and warns about plain-http ones with cookies', async () => {
    const file = writeConfig(
      'cors.yaml',
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\ncors:\n  origins: [https://spa.example.com, http://old.example.com]\n  credentials: true\n',
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /\n {4}cors: https:\/\/spa\.example\.com, http:\/\/old\.example\.com, with cookies; preflights answered by Gatehouse\n/,
    );
    assert.match(r.stderr, /warning: cors\.origins: http:\/\/old\.example\.com: a page served over plain http/);
  });

  test('check says where each app is told of account events, and which', async () => {
    const file = writeConfig(
      'events.yaml',
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\napps:\n  - {name: crm, upstream: http://127.0.0.1:3000, events: {url: http://127.0.0.1:3000/gatehouse/events}}\n  - {name: wiki, pathPrefix: /wiki, upstream: http://127.0.0.1:3001, headers: {email: true}, events: {url: http://127.0.0.1:3001/ev, types: [account_deleted, email_changed]}}\n',
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /app "crm".*\n.*\n {4}events: account_deleted, account_disabled, account_enabled POSTed to http:\/\/127\.0\.0\.1:3000\/gatehouse\/events as signed Security Event Tokens; email_changed is not sent: the app gets no addresses \(headers\.email\)\n/,
    );
    assert.match(
      r.stdout,
      /\n {4}events: account_deleted, email_changed POSTed to http:\/\/127\.0\.0\.1:3001\/ev as signed Security Event Tokens\n/,
    );
    const bad = writeConfig(
      'events-bad.yaml',
      'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\nevents: {url: ftp://x/, types: [account_purged]}\n',
    );
    const refused = await run(['check', '--config', bad]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /events\.url.*http or https/);
    assert.match(refused.stderr, /events\.types\[0\]/);
  });

  test('check names the service clients that may call each app', async () => {
    const secret = 's'.repeat(32);
    const file = writeConfig(
      'services.yaml',
      `publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\napps:\n  - {name: api, pathPrefix: /api, upstream: http://127.0.0.1:3000}\n  - {name: web, upstream: http://127.0.0.1:3001}\ntokens:\n  clients:\n    - {id: deployer, name: Deployer, secret: ${secret}, grantTypes: [client_credentials], apps: [api, web], groups: [ci, ops]}\n    - {id: reporter, name: Reporter, secret: ${secret}x, grantTypes: [client_credentials], apps: [api]}\n    - {id: ci, name: CI, grantTypes: [client_credentials], apps: [web], federated: {issuer: https://token.actions.githubusercontent.com, subject: 'repo:acme/web:ref:refs/heads/main'}}\n`,
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /app "api".*\n.*\n {4}service clients \(client_credentials\): client:deployer \(groups ci, ops\), client:reporter\n/,
    );
    assert.match(
      r.stdout,
      /app "web".*\n.*\n {4}service clients \(client_credentials\): client:deployer \(groups ci, ops\), client:ci \(tokens of https:\/\/token\.actions\.githubusercontent\.com for repo:acme\/web:ref:refs\/heads\/main\)\n/,
    );
  });

  test("check names each app's identity headers as configured (the oauth2-proxy preset) and the second token header; a clash is an error with its line", async () => {
    const file = writeConfig(
      'o2p.yaml',
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\nheaders: {preset: oauth2-proxy, assertionBearer: X-OAUTH2-PROXY-ID-TOKEN}\ntokens: {bearerHeader: X-Gatehouse-Token}\n',
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /headers: X-Forwarded-User \(user id\), X-Forwarded-Email \(verified email\), X-Forwarded-Preferred-Username \(name\), X-Forwarded-Groups \(groups\), X-Gatehouse-Assertion \(assertion\), X-OAUTH2-PROXY-ID-TOKEN \(Bearer assertion\); client copies removed/,
    );
    assert.match(r.stdout, /Gatehouse tokens: Authorization or X-Gatehouse-Token/);
    const clash = writeConfig(
      'clash.yaml',
      'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\nheaders:\n  preset: oauth2-proxy\n  name: x-forwarded-user\n',
    );
    const bad = await run(['check', '--config', clash]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /:5 +headers\.name: x-forwarded-user is already the id header of this app/);
  });

  test('a rule that makes every path public, and an upstream that is Gatehouse itself, are named (security.md #124)', async () => {
    const file = writeConfig(
      'self.yaml',
      [
        'publicUrl: https://app.example.com',
        'trustedProxies: [10.0.0.5]',
        'listen: {port: 8080}',
        'apps:',
        '  - name: site',
        '    upstream: https://app.example.com',
        '    routes:',
        '      - {path: "/**", access: public}',
        '  - name: api',
        '    pathPrefix: /api',
        '    upstream: http://127.0.0.1:8080',
        '    routes:',
        '      - {path: "/**", methods: [GET], access: public}',
        '  - name: admin',
        '    pathPrefix: /admin',
        '    upstream: http://localhost:8080/admin',
        '  - name: wiki',
        '    pathPrefix: /wiki',
        '    upstream: http://127.0.0.1:3000',
        '    routes:',
        '      - {path: "/public/**", access: public}',
        '',
      ].join('\n'),
    );
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    const warned = r.stderr.split('\n').filter((l) => /^warning: apps\[/.test(l));
    assert.deepEqual(warned, [
      'warning: apps[0].routes[0].path: every path is public: Gatehouse protects nothing in this app.',
      'warning: apps[0].upstream: the upstream is Gatehouse itself: requests would loop.',
      'warning: apps[1].upstream: the upstream is Gatehouse itself (listen.port 8080 on this machine): requests would loop.',
      'warning: apps[2].upstream: the upstream is Gatehouse itself (listen.port 8080 on this machine): requests would loop.',
    ]);
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
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\ntokenRelay: kc\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com/realms/acme\n    clientId: gatehouse\n    endSession: true\n    revalidate: 1h\n  - id: github\n    type: github\n    clientId: Iv1.x\n    clientSecret: s\n    revalidate: 30s\n',
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
    // revalidate: how sessions through each provider are confirmed, and what defeats it.
    assert.match(
      r.stdout,
      /post-logout redirect URI: .*\n(.*\n)* {4}sessions revalidated: +every 1h with the refresh token/,
    );
    assert.match(
      r.stderr,
      /warning: providers\[0\]\.revalidate: the scopes of "kc" lack offline_access.*each sign-in through it then lasts revalidate \(1h\)/,
    );
    // GitHub's OAuth apps give no refresh token, but their access token confirms the sign-in.
    assert.doesNotMatch(r.stderr, /providers\[1\]\.revalidate: .*no refresh token/);
    assert.match(
      r.stdout,
      /sessions revalidated: +every 30s with the refresh token \(an OAuth app's: the access token\)/,
    );
    assert.match(
      r.stderr,
      /warning: providers\[1\]\.revalidate: every active session signed in through "github" asks the provider every 30s/,
    );
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

  test('every kind of problem, from check (exit 2) and serve (refuses, exit 2): file:line, key, expected and found', async () => {
    const file = writeConfig(
      'kinds.yaml',
      [
        'publicUrl: 127.0.0.1:8090',
        'upstream: http://127.0.0.1:3000',
        'listen:',
        '  port: eighty',
        '  prot: 80',
        'headers: yes',
        'trustedProxies: 10.0.0.0/8',
        'defaultAccess: public',
        'sessions:',
        '  idleTimeout: soon',
        '  cookieName: "a b"',
        'store:',
        '  type: mysql',
        'routes:',
        '  - path: /a',
        '    unauthenticated: 403',
        '    tokenRelay: [x]',
        'accounts:',
        '  minPasswordLength: 4',
        'tokens:',
        '  clients:',
        '    - {id: a, name: A, grantTypes: [device_code], secret: hunter2}',
        'cache:',
        '  type: redis',
        '',
      ].join('\n'),
    );
    const expected = [
      '1  publicUrl: expected an absolute URL with http:// or https://, such as https://app.example.com, found "127.0.0.1:8090"',
      '4  listen.port: expected a number, found "eighty"',
      '5  listen.prot: unknown key "prot"; did you mean "port"?',
      '6  headers: expected a map of preset, id, email, unverifiedEmail, name, groups, ..., found "yes"',
      '7  trustedProxies: expected a list, such as [10.0.0.0/8], found "10.0.0.0/8"',
      '8  defaultAccess: expected one of authenticated, deny, found "public"',
      '10  sessions.idleTimeout: expected a duration such as "30s", "15m", "12h" or "90d", found "soon"',
      '11  sessions.cookieName: expected a cookie name of letters, digits, "_" and "-", found "a b"',
      '13  store.type: expected one of sqlite, postgres, found "mysql"',
      '16  routes[0].unauthenticated: expected one of 401, redirect, found 403',
      '17  routes[0].tokenRelay: expected a provider id, or false, found a list',
      '19  accounts.minPasswordLength: expected a number at least 8, found 4',
      '22  tokens.clients[0].secret: a client secret needs at least 32 characters (openssl rand -base64 32); found 7 characters',
      '23  cache.url: is required',
    ].map((line) => `  ${file}:${line}`);
    const r = await run(['check', '--config', file]);
    assert.equal(r.code, 2);
    assert.deepEqual(r.stderr.trimEnd().split('\n').slice(1).sort(), expected.sort());
    assert.match(r.stderr, /^Invalid configuration \(14 problems\):$/m);
    const s = await run(['serve', '--config', file]);
    assert.equal(s.code, 2);
    assert.match(s.stderr, /^gatehouse: refusing to start\.$/m);
    for (const line of expected) assert.ok(s.stderr.includes(line), line);
    assert.doesNotMatch(r.stderr + s.stderr, /hunter2/);

    // Checks across keys and checks of a value's meaning run once every value has its type.
    const across = writeConfig(
      'across.yaml',
      'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\nheaders: {email: Cookie}\nsessions:\n  idleTimeout: 8d\n',
    );
    const a = await run(['check', '--config', across]);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /:3 +headers\.email: this header is part of the request itself.*; found "Cookie"$/m);
    assert.match(a.stderr, /:5 +sessions\.idleTimeout: idleTimeout is longer than absoluteTimeout$/m);
    assert.equal((await run(['serve', '--config', across])).code, 2);
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
      'publicUrl: https://app.example.com\ntrustedProxies: [10.0.0.5]\nupstream: http://127.0.0.1:3000\nroutes:\n  - path: /docs/**\n    methods: [GET]\n    access: public\n  - path: /admin/**\n    allow: {groups: [admins]}\n    rateLimit: {requests: 30, per: 1m}\n',
    );
    const r = await run(['check', '--config', file, '--explain', 'https://app.example.com/docs/../admin/x?y=1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /GET https:\/\/app\.example\.com\/admin\/x +\(normalized from \/docs\/\.\.\/admin\/x\)/);
    assert.match(r.stdout, / {3}rule 0: \/docs\/\*\* \[GET\] → public: path does not match/);
    assert.match(r.stdout, / → rule 1: \/admin\/\*\* → authenticated: matches/);
    assert.match(r.stdout, /decision: sign-in required, then only groups admins/);
    assert.match(
      r.stdout,
      /rate limit: 30 requests per 1m for each user \(each client address when nobody is signed in\), then 429; the answers say what is left \(RateLimit-Policy, RateLimit\)$/m,
    );
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

describe('the command line', () => {
  /** No config file anywhere: a usage mistake must be found before one is looked for. */
  const noConfig = { ...process.env, GATEHOUSE_CONFIG: join(tmpdir(), 'gatehouse-surely-absent.yaml') };
  const cli = (args: string[]) => run(args, '', noConfig);

  test('--version and -v print the package version', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    for (const flag of ['--version', '-v']) {
      const r = await cli([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `gatehouse ${version}\n`);
    }
  });

  test('a command without its subcommand or argument prints its own usage (exit 2), not "file not found"', async () => {
    for (const [command, needs, form] of [
      [
        'users',
        'add, list, disable, enable, set-password, set-groups, reset-mfa, invite, import, delete',
        /gatehouse users set-groups <email> <a,b>/,
      ],
      ['sessions', 'list, revoke', /gatehouse sessions revoke \[id\] --user <email>/],
      ['keys', 'list, rotate', /gatehouse keys rotate --now/],
      ['backup', '<file>', /gatehouse backup <file> \[--force\]/],
    ] as const) {
      const r = await cli([command]);
      assert.equal(r.code, 2, command);
      assert.ok(
        r.stderr.startsWith(`gatehouse: ${command} needs ${command === 'backup' ? '' : 'a command: '}${needs}\n`),
        r.stderr,
      );
      assert.match(r.stderr, form);
      assert.doesNotMatch(r.stderr, /not found|gatehouse login/, 'only this command, and no config was read');
      const help = await cli([command, '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, form);
    }
  });

  test('an unknown option or command: "did you mean", and the usage, never Node\'s parseArgs text', async () => {
    const cases: [string[], string, RegExp][] = [
      [
        ['backup', 'copy.db', '--forc'],
        'unknown option --forc for gatehouse backup; did you mean --force?',
        /backup <file>/,
      ],
      [['users', 'list', '--jsn'], 'unknown option --jsn for gatehouse users; did you mean --json?', /users list/],
      [
        ['serve', '--confg', 'x.yaml'],
        'unknown option --confg for gatehouse serve; did you mean --config?',
        /serve \[/,
      ],
      [['check', '--now'], 'unknown option --now for gatehouse check', /check \[--config f\] --explain/],
      [['check', '-x'], 'unknown option -x for gatehouse check', /check \[--config f\]/],
      [['check', '--config'], '--config needs a value', /check \[--config f\]/],
      [['keys', 'list', '--json=yes'], '--json takes no value', /keys list/],
      [['lgoin', 'https://app.example.com'], 'unknown command "lgoin"; did you mean "login"?', /gatehouse serve/],
      [['users', 'lst'], 'unknown command "users lst"; did you mean "users list"?', /users add/],
    ];
    for (const [args, message, usage] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stderr.split('\n')[0], `gatehouse: ${message}`);
      assert.match(r.stderr, usage, args.join(' '));
      assert.doesNotMatch(r.stderr, /To specify a positional argument|ERR_PARSE_ARGS|file not found/);
    }
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
    const users = JSON.parse(list.stdout) as {
      id: string;
      email: string;
      groups: string;
      verified: string;
      status: string;
    }[];
    const ops = users.find((u) => u.email === 'ops@example.com')!;
    assert.deepEqual([ops.groups, ops.verified, ops.status], ['admins,ops', 'yes', 'active']);
    const added = await gh.gatehouse.store.audit.list({ event: 'operator', userId: ops.id, limit: 5 });
    assert.ok(
      added.some((e) => e.detail.command === 'users add' && e.outcome === 'success'),
      'the command is recorded against the user it made',
    );
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

  test('users delete asks for --yes; with it the user, their sessions and sign-in are gone, audited with the operator and the id', async () => {
    const c = new Client(gh.url);
    const reg = await c.postJson('/.auth/register', { email: 'leaver@example.com', password: PASSWORD });
    const { id } = reg.json().user as { id: string };
    const unsure = await run(['users', 'delete', 'leaver@example.com', '--config', file]);
    assert.equal(unsure.code, 2);
    assert.match(
      unsure.stderr,
      /users delete leaver@example\.com --yes: deletes leaver@example\.com .* cannot be undone/,
    );
    assert.equal((await c.get('/x')).status, 200, 'without --yes nothing changed');

    const r = await run(['users', 'delete', 'leaver@example.com', '--yes', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `deleted leaver@example.com (${id})\n`);
    assert.equal((await c.get('/x')).status, 401, 'the session ended with the account');
    assert.equal(
      (await new Client(gh.url).postJson('/.auth/login', { email: 'leaver@example.com', password: PASSWORD })).status,
      401,
    );
    assert.equal(await gh.gatehouse.store.users.get(id), undefined);
    const trail = await gh.gatehouse.store.audit.list({ userId: id, limit: 10 });
    const deleted = trail.find((e) => e.event === 'account_deleted');
    assert.match(String(deleted?.actor), /^operator:/);
    const command = trail.find((e) => e.event === 'operator');
    assert.deepEqual(command?.detail, { command: 'users delete', target: 'leaver@example.com' });
    assert.equal(command?.userId, id, 'the command is recorded against the id it deleted');

    const again = await run(['users', 'delete', 'leaver@example.com', '--yes', '--config', file]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /no user leaver@example\.com/);
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
