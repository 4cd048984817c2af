import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { configJsonSchema } from '../../src/config/json-schema.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { BASE_CONFIG, problems } from '../helpers/config.ts';

const base = BASE_CONFIG;

describe('config loading', () => {
  test('a minimal config gets safe defaults', () => {
    const c = parseConfig(base, 'g.yaml', {});
    assert.equal(c.authPrefix, '/.auth');
    assert.deepEqual(c.trustedProxies, []);
    assert.deepEqual(c.store, { type: 'sqlite', path: './data/gatehouse.db' });
    assert.equal(c.sessions.idleTimeout, 12 * 3600_000);
    assert.equal(c.sessions.absoluteTimeout, 7 * 86_400_000);
    assert.equal(c.listen.port, 8080);
  });

  test('accounts: registration modes, reauthenticateAfter and invitationTtl, with their bounds', () => {
    const c = parseConfig(base, 'g.yaml', {});
    assert.deepEqual(
      [c.accounts.registration, c.accounts.reauthenticateAfter, c.accounts.invitationTtl],
      ['open', 10 * 60_000, 7 * 86_400_000],
    );
    const d = parseConfig(
      `${base}accounts: {registration: invite, reauthenticateAfter: 0s, invitationTtl: 2d}\n`,
      'g.yaml',
      {},
    );
    assert.deepEqual(
      [d.accounts.registration, d.accounts.reauthenticateAfter, d.accounts.invitationTtl],
      ['invite', 0, 2 * 86_400_000],
    );
    const ps = problems(`${base}accounts: {registration: invited, reauthenticateAfter: soon, invitationTtl: 10s}\n`);
    const byKey = Object.fromEntries(ps.map((p) => [p.key, p.message]));
    assert.match(byKey['accounts.registration']!, /open.*closed.*invite/);
    assert.match(byKey['accounts.reauthenticateAfter']!, /expected a duration/);
    assert.match(byKey['accounts.invitationTtl']!, /an invitation must be at least 1m/);
  });

  test('${ENV} and ${ENV:-default} are substituted inside values, typed when whole', () => {
    const c = parseConfig(
      'publicUrl: ${URL}\nupstream: http://127.0.0.1:${PORT:-3000}\nlisten:\n  port: ${LPORT}\nsecrets:\n  key: "${KEY}"\n',
      'g.yaml',
      {
        URL: 'https://x.example.com',
        LPORT: '9000',
        KEY: '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      },
    );
    assert.equal(c.publicUrl, 'https://x.example.com');
    assert.equal(c.upstream, 'http://127.0.0.1:3000');
    assert.equal(c.listen.port, 9000);
    assert.equal(c.secrets.key?.length, 64);
  });

  test('${file:PATH} and ${credential:NAME}: a secret file’s text, trailing newlines dropped, read anew at every load', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-secret-'));
    try {
      const key = 'k'.repeat(44);
      writeFileSync(join(dir, 'key'), `${key}\n`);
      mkdirSync(join(dir, 'creds'));
      writeFileSync(join(dir, 'creds', 'client-secret'), 'se${NOT_EXPANDED}cret\r\n\r\n');
      writeFileSync(join(dir, 'port'), '9001\n');
      const text = `${base}secrets: {key: "\${file:key}"}\nlisten: {port: "\${file:${join(dir, 'port')}}"}\nproviders: [{id: corp, type: oidc, issuer: https://idp.example.com, clientId: c, clientSecret: "\${credential:client-secret}"}]\n`;
      const env = { CREDENTIALS_DIRECTORY: join(dir, 'creds') };
      const c = parseConfig(text, join(dir, 'gatehouse.yaml'), env);
      assert.equal(c.secrets.key, key, 'relative to the config file, the newline dropped');
      assert.equal(c.listen.port, 9001, 'typed when whole, as a variable is');
      assert.equal(c.providers[0]!.clientSecret, 'se${NOT_EXPANDED}cret', "a file's text is not read for references");
      writeFileSync(join(dir, 'key'), 'n'.repeat(44));
      assert.equal(
        parseConfig(text, join(dir, 'gatehouse.yaml'), env).secrets.key,
        'n'.repeat(44),
        'a reload reads it again',
      );

      const missing = problems(`${base}secrets: {key: "\${file:${join(dir, 'nope')}}"}\n`);
      assert.equal(missing[0]!.key, 'secrets.key');
      assert.equal(missing[0]!.line, 3);
      assert.match(missing[0]!.message, new RegExp(`cannot read ${join(dir, 'nope')} \\(no such file\\)`));
      const noDir = problems(`${base}secrets: {key: "\${credential:key}"}\n`);
      assert.match(noDir[0]!.message, /needs CREDENTIALS_DIRECTORY \(systemd's LoadCredential=\)/);
      writeFileSync(join(dir, 'big'), 'x'.repeat(65 * 1024));
      assert.match(problems(`${base}title: "\${file:${join(dir, 'big')}}"\n`)[0]!.message, /larger than 64 KiB/);
      writeFileSync(join(dir, 'long'), `${'S'.repeat(5000)}\n`);
      const tooLong = problems(
        `${base}providers: [{id: corp, type: oidc, issuer: https://idp.example.com, clientId: c, clientSecret: "\${file:${join(dir, 'long')}}"}]\n`,
      );
      assert.equal(tooLong[0]!.key, 'providers[0].clientSecret');
      assert.ok(!tooLong[0]!.message.includes('SSSS'), 'a secret is never repeated in an error');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a variable cannot inject YAML structure', () => {
    const c = parseConfig('publicUrl: https://a.example.com\nupstream: http://127.0.0.1:1\ntitle: ${T}\n', 'g.yaml', {
      T: 'x\nauthPrefix: /evil',
    });
    assert.equal(c.title, 'x\nauthPrefix: /evil');
    assert.equal(c.authPrefix, '/.auth');
  });

  test('an unset variable names the key and the line', () => {
    const [p] = problems('publicUrl: https://a.example.com\n\nupstream: ${UPSTREAM_URL}\n');
    assert.equal(p!.key, 'upstream');
    assert.equal(p!.line, 3);
    assert.match(p!.message, /UPSTREAM_URL is not set/);
  });

  test('errors name key and line, with a suggestion for typos', () => {
    const ps = problems(`${base}listen:\n  prot: 80\nsessions:\n  idleTimeout: soon\nroutes:\n  - path: admin\n`);
    const byKey = Object.fromEntries(ps.map((p) => [p.key, p]));
    assert.equal(byKey['listen.prot']?.line, 4);
    assert.match(byKey['listen.prot']!.message, /did you mean "port"/);
    assert.equal(byKey['sessions.idleTimeout']?.line, 6);
    assert.match(byKey['sessions.idleTimeout']!.message, /duration/);
    assert.equal(byKey['routes[0].path']?.line, 8);
  });

  test('contradictions are refused', () => {
    assert.match(problems('publicUrl: https://a.example.com\n')[0]!.message, /upstream.*or apps/);
    assert.match(problems(`${base}apps:\n  - name: a\n    upstream: http://127.0.0.1:1\n`)[0]!.message, /not both/);
    assert.match(
      problems(`${base}routes:\n  - path: /x\n    access: public\n    allow: {groups: [a]}\n`)[0]!.message,
      /only applies/,
    );
    assert.match(
      problems(`publicUrl: ftp://a.example.com\nupstream: http://127.0.0.1:1\n`)[0]!.message,
      /http or https/,
    );
    assert.match(
      problems(`publicUrl: https://a.example.com\nupstream: http://u:p@127.0.0.1:1\n`)[0]!.message,
      /credentials/,
    );
    assert.match(problems(`${base}trustedProxies: [10.0.0.0/33]\n`)[0]!.message, /CIDR/);
    const dupes = problems(
      'publicUrl: https://a.example.com\napps:\n  - name: a\n    upstream: http://127.0.0.1:1\n  - name: a\n    host: b.example.com\n    upstream: http://127.0.0.1:2\n',
    );
    assert.match(dupes[0]!.message, /already named/);
  });

  test('YAML syntax errors and duplicate keys report a line', () => {
    const [p] = problems('publicUrl: https://a.example.com\nupstream: [\n');
    assert.ok(p!.line && p!.line >= 2);
    const [d] = problems(`${base}upstream: http://127.0.0.1:2\n`);
    assert.match(d!.message, /YAML/);
  });

  test('lint warns about mistakes that validate', () => {
    const keys = (yaml: string) => lintConfig(parseConfig(yaml, 'g.yaml', {})).map((w) => w.key);
    assert.ok(keys(base).includes('trustedProxies'));
    assert.ok(keys(base).includes('secrets.key'));
    assert.ok(keys('publicUrl: http://app.example.com\nupstream: http://127.0.0.1:1\n').includes('publicUrl'));
    assert.ok(keys(`${base}trustedProxies: [0.0.0.0/0]\n`).includes('trustedProxies[0]'));
    assert.ok(keys(`${base}routes:\n  - path: /a//b\n`).includes('routes[0].path'));
    assert.ok(!keys('publicUrl: http://127.0.0.1:8080\nupstream: http://127.0.0.1:1\n').includes('publicUrl'));
  });

  test('lint: a drain longer than orchestrators wait, or several nodes without drainDelay, are named (issue 12)', () => {
    const drains = (yaml: string) =>
      lintConfig(parseConfig(`${base}${yaml}`, 'g.yaml', {})).filter((w) => w.key === 'listen.timeouts.drainDelay');
    assert.deepEqual(drains(''), [], 'one SQLite node: nothing to say');
    assert.match(drains('listen: {timeouts: {drain: 25s, drainDelay: 10s}}\n')[0]!.message, /35s.*30 s/);
    const pg = 'store: {type: postgres, url: "postgres://db/g"}\n';
    assert.match(drains(pg)[0]!.message, /probe interval/);
    assert.deepEqual(drains(`${pg}listen: {timeouts: {drainDelay: 10s}}\n`), []);
  });

  test('tokens and assertion headers: defaults, contradictions named with their line, warnings', () => {
    const c = parseConfig(base, 'g.yaml', {});
    const { algorithm, assertionTtl, maxLifetime, clockSkew, keys: keyTimes } = c.tokens;
    assert.deepEqual(
      { algorithm, assertionTtl, maxLifetime, clockSkew, keys: keyTimes },
      {
        algorithm: 'EdDSA',
        assertionTtl: 60_000,
        maxLifetime: 3_600_000,
        clockSkew: 30_000,
        keys: { publishBefore: 600_000, refreshInterval: 60_000 },
      },
    );
    assert.equal(c.headers.assertion, true, 'the assertion is on by default');
    const keys = (yaml: string) => problems(base + yaml).map((p) => `${p.line ?? ''} ${p.key}`);
    assert.deepEqual(keys('tokens:\n  keys:\n    publishBefore: 30s\n    refreshInterval: 1m\n'), [
      '5 tokens.keys.publishBefore',
    ]);
    assert.deepEqual(keys('tokens:\n  assertionTtl: 2h\n'), ['4 tokens.assertionTtl']);
    assert.deepEqual(keys('tokens:\n  algorithm: RS256\n'), ['4 tokens.algorithm']);
    assert.match(problems(base + 'headers:\n  email: Cookie\n')[0]!.message, /part of the request itself/);
    const warned = lintConfig(
      parseConfig(
        base + 'headers: {assertion: false}\ntokens: {keys: {publishBefore: 10s, refreshInterval: 1s}}\n',
        'g.yaml',
        {},
      ),
    ).map((w) => w.key);
    assert.ok(warned.includes('headers.assertion') && warned.includes('tokens.keys.publishBefore'), warned.join(', '));
  });

  test('headers.unverifiedEmail: off by default, only beside email, and check warns about it (issue 10.14)', () => {
    assert.equal(parseConfig(base + 'headers: {email: true}\n', 'g.yaml', {}).headers.unverifiedEmail, false);
    const [p] = problems(base + 'headers:\n  unverifiedEmail: true\n');
    assert.equal(p!.key, 'headers.unverifiedEmail');
    assert.equal(p!.line, 4);
    assert.match(p!.message, /only applies when email is sent/);
    const warnings = (yaml: string, head = base) => lintConfig(parseConfig(head + yaml, 'g.yaml', {}));
    const lenient = warnings(
      'publicUrl: https://app.example.com\napps:\n  - name: crm\n    upstream: http://127.0.0.1:3001\n    headers: {email: X-Auth-Email, unverifiedEmail: true}\n',
      '',
    ).find((w) => w.key === 'apps[0].headers.unverifiedEmail');
    assert.match(
      lenient?.message ?? '',
      /app "crm" gets addresses nobody has verified: whoever registers admin@example\.com first/,
    );
    // Without mail, password users can never verify: the app would get no address for them.
    const noMail = warnings('headers: {email: true}\n').find((w) => w.key === 'headers.email');
    assert.match(
      noMail?.message ?? '',
      /only verified addresses, and without email: users who register with a password can never verify/,
    );
    assert.equal(
      warnings('headers: {email: true}\naccounts: {registration: closed}\n').some((w) => w.key.startsWith('headers.')),
      false,
    );
  });

  test('the committed JSON Schema is generated from the zod schema (npm run schema)', () => {
    const committed = readFileSync(new URL('../../schema/gatehouse.schema.json', import.meta.url), 'utf8');
    assert.equal(committed, configJsonSchema(), 'schema/gatehouse.schema.json is stale: run npm run schema');
  });
});
