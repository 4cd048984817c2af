import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openStore } from '../../src/store/index.ts';
import { LATEST_VERSION } from '../../src/store/migrations.ts';
import { postgres, redis } from '../faults/services.ts';
import { runCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/gatehouse.ts';
import { startGithub, type GithubStandIn } from '../helpers/github.ts';
import { type Lab, startLab } from '../helpers/providers.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * `gatehouse check --connect`: every service the config names is reached from this host, as
 * `serve` would, and each gets a line: what answered, or what failed and what to look at. Real
 * services: an app, two OIDC providers and a GitHub stand-in, SMTP, PostgreSQL and Redis.
 */

const pg = await postgres();
const rd = await redis();

let dir: string;
let lab: Lab;
let github: GithubStandIn;
let smtp: TestSmtp;
let app: TestUpstream;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-connect-'));
  [lab, github, smtp, app] = await Promise.all([
    startLab(),
    startGithub(['http://127.0.0.1:8080/.auth/callback/gh']),
    startSmtp(),
    startUpstream(),
  ]);
});
after(async () => {
  await Promise.all([lab?.close(), github?.close(), smtp?.close(), app?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
/** A config file (JSON is YAML) and `gatehouse check --connect` on it. */
async function check(config: Record<string, unknown>) {
  const file = join(dir, `g${files++}.yaml`);
  writeFileSync(file, JSON.stringify({ publicUrl: 'http://127.0.0.1:8080', ...config }));
  const r = await runCli(['check', '--config', file, '--connect']);
  const lines = r.stdout
    .slice(r.stdout.indexOf('connections:\n') + 13)
    .trimEnd()
    .split('\n');
  return { ...r, lines };
}

const federatedClient = (issuer: string) => ({
  id: 'ci',
  name: 'CI',
  grantTypes: ['client_credentials'],
  apps: ['app'],
  federated: { issuer, subject: 'repo:acme/app:ref:refs/heads/main' },
});

const githubProvider = () => ({
  id: 'gh',
  type: 'github',
  clientId: github.clientId,
  clientSecret: github.clientSecret,
  url: github.url,
  apiUrl: github.apiUrl,
});

describe('gatehouse check --connect', () => {
  test('everything answers: one ok line each, exit 0, and nothing is written to the store', async () => {
    const db = join(dir, 'new', 'gatehouse.db');
    const r = await check({
      store: { type: 'sqlite', path: db },
      upstream: app.url,
      events: { url: `${app.url}/gatehouse/events` },
      providers: [...lab.providers(), githubProvider()],
      email: { from: 'Acme <no-reply@acme.example>', smtp: { host: '127.0.0.1', port: smtp.port } },
      // A service client whose proof is a token of an OpenID issuer: here one of the lab's.
      tokens: { clients: [federatedClient(lab.b.issuer)] },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(
      r.lines.map((l) => l.replace(/: .*/, '')),
      [
        `  ok    store (sqlite ${db})`,
        `  ok    app "app" upstream ${app.url}/`,
        `  ok    app "app" events ${app.url}/gatehouse/events`,
        `  ok    provider "a" (${lab.a.issuer})`,
        `  ok    provider "b" (${lab.b.issuer})`,
        `  ok    provider "gh" (${github.url})`,
        `  ok    federated issuer ${lab.b.issuer} (client ci)`,
        '  ok    email (smtp 127.0.0.1:' + smtp.port + ')',
      ],
    );
    assert.match(r.stdout, /store \(sqlite .*\): no database yet: serve creates it/);
    assert.equal(existsSync(db), false, 'check made no database');
    assert.match(r.stdout, /upstream .*: HTTP 200 in \d+ ms/);
    assert.match(
      r.stdout,
      new RegExp(`provider "a" .*: discovered ${lab.a.issuer.replace(/[/.]/g, '\\$&')}: \\d+ signing key`),
    );
    assert.match(r.stdout, /federated issuer .*: discovered .*: [1-9]\d* signing key\(s\)/);
    assert.match(r.stdout, /provider "gh" .*: sign-in HTTP \d+, API HTTP 401/);
    assert.match(r.stdout, /email .*: greeted/);
    assert.equal(app.requests.filter((q) => q.method === 'HEAD').length >= 1, true, 'the app got a HEAD');
    assert.equal(
      app.requests.some((q) => q.method === 'POST'),
      false,
      'no event was sent',
    );
    assert.equal(smtp.messages.length, 0, 'no mail was sent');
    // The store's schema, once there is one.
    const store = await openStore({ type: 'sqlite', path: db });
    await store.close();
    const again = await check({ store: { type: 'sqlite', path: db }, upstream: app.url });
    assert.match(again.stdout, new RegExp(`store \\(sqlite .*\\): schema ${LATEST_VERSION}, up to date`));
  });

  test('what does not answer fails with what to look at, and exit 1', async () => {
    const closed = await freePort();
    const r = await check({
      store: { type: 'sqlite', path: join(dir, 'x', 'gatehouse.db') },
      upstream: `http://127.0.0.1:${closed}`,
      events: { url: `http://127.0.0.1:${closed}/events` },
      providers: [{ id: 'corp', type: 'oidc', issuer: `${lab.a.issuer}/not-it`, clientId: 'c', clientSecret: 's' }],
      email: { from: 'a@acme.example', smtp: { host: '127.0.0.1', port: closed } },
      tokens: { clients: [federatedClient(`http://127.0.0.1:${closed}`)] },
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /5 connections failed/);
    assert.match(
      r.stdout,
      /FAIL {2}federated issuer .*\(client ci\): .*is federated\.issuer exactly the platform's issuer/,
    );
    assert.match(r.stdout, /FAIL {2}app "app" upstream .*ECONNREFUSED.*is the app running/);
    assert.match(r.stdout, /FAIL {2}app "app" events .*ECONNREFUSED.*is this the address the app takes them at/);
    assert.match(r.stdout, /FAIL {2}provider "corp" .*provider_unreachable.*is issuer exactly the provider's issuer/);
    assert.match(r.stdout, /FAIL {2}email .*ECONNREFUSED.*check email\.smtp/);
    assert.match(r.stdout, /ok {4}store/);
  });
});

describeOrSkip('gatehouse check --connect with PostgreSQL and Redis', { skip: pg.skip || rd.skip }, () => {
  test('the store and the cache answer; a wrong port is named', async () => {
    const r = await check({
      store: { type: 'postgres', url: pg.url },
      cache: { type: 'redis', url: rd.url },
      upstream: app.url,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ok {4}store \(postgres [^\s/]+:\d+\/\w+\): (schema \d+|reachable, no schema yet)/);
    assert.match(r.stdout, /ok {4}cache \(redis redis:\/\/[^\s/]+:\d+\): PING answered/);
    const closed = await freePort();
    const down = await check({
      store: { type: 'postgres', url: `postgres://postgres:hunter2@127.0.0.1:${closed}/test` },
      cache: { type: 'redis', url: `redis://127.0.0.1:${closed}` },
      upstream: app.url,
    });
    assert.equal(down.code, 1);
    assert.match(down.stdout, /FAIL {2}store \(postgres 127\.0\.0\.1:\d+\/test\): .*ECONNREFUSED/);
    assert.doesNotMatch(down.stdout + down.stderr, /hunter2/, 'the password is not printed');
    assert.match(down.stdout, /FAIL {2}cache \(redis .*\): .*is Redis running/);
  });
});
