import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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
    const ps = problems(`${base}accounts: {registration: invited, reauthenticateAfter: 25h, invitationTtl: 10s}\n`);
    const byKey = Object.fromEntries(ps.map((p) => [p.key, p.message]));
    assert.match(byKey['accounts.registration']!, /open.*closed.*invite/);
    assert.match(byKey['accounts.reauthenticateAfter']!, /between "0s" and "24h"/);
    assert.match(byKey['accounts.invitationTtl']!, /between "1m" and "30d"/);
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
