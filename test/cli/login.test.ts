import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { runCli, startCli, userCode, userEnv } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { decideDevice, signedInBrowser, withBearer } from '../oauth/helpers.ts';

/**
 * `gatehouse login | token | logout` end to end: the real CLI as a child process against a
 * real Gatehouse, the approval done over HTTP by a signed-in user, as the person at the
 * terminal would in their browser; and the operator's `gatehouse sessions` on the same store.
 */

let gh: TestGatehouse;
let home: string;
let configFile: string;

before(async () => {
  gh = await startGatehouse(() => ({
    routes: [{ path: '/api/**', unauthenticated: '401' }],
    tokens: { device: { interval: '1s' } },
  }));
  home = mkdtempSync(join(tmpdir(), 'gatehouse-cli-home-'));
  configFile = join(gh.dir, 'gatehouse.yaml');
  writeFileSync(
    configFile,
    `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\n`,
  );
});
after(async () => {
  await gh.close();
  rmSync(home, { recursive: true, force: true });
});

const run = (args: string[], configHome = join(home, 'default')) => runCli(args, undefined, userEnv(configHome));

async function login(configHome: string, decision: 'approve' | 'deny' = 'approve') {
  const { browser, user } = await signedInBrowser(gh);
  const r = startCli(['login', `${gh.url}/api/items`, '--no-browser'], userEnv(configHome));
  const code = await userCode(r);
  await decideDevice(gh, browser, code, decision);
  return { user, result: await r.done };
}

const credentialsOf = (configHome: string) =>
  JSON.parse(readFileSync(join(configHome, 'gatehouse', 'credentials.json'), 'utf8')) as {
    logins: Record<string, { accessToken: string; refreshToken: string; expiresAt: number }>;
  };
/** Makes the stored access token look expired, as it is after 10 minutes. */
function expire(configHome: string): void {
  const file = join(configHome, 'gatehouse', 'credentials.json');
  const data = credentialsOf(configHome);
  for (const l of Object.values(data.logins)) l.expiresAt = Date.now() - 1000;
  writeFileSync(file, JSON.stringify(data));
}
const refreshes = () => gh.logs.filter((l) => l.event === 'oauth_token' && l.grantType === 'refresh_token').length;

describe('gatehouse login / token / logout', { concurrency: true }, () => {
  test('login prints the URL and code, waits for approval, stores the tokens privately; token prints one the app accepts', async () => {
    const configHome = join(home, 'a');
    const { user, result } = await login(configHome);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`open\\n\\n {4}${gh.url.replace(/[.:/]/g, '\\$&')}/\\.auth/device\\n`));
    assert.match(result.stderr, /Signed in to http:\/\/127\.0\.0\.1:\d+\./);
    assert.equal(result.stdout, '', 'nothing on stdout: no token in a terminal scroll-back');
    const dir = join(configHome, 'gatehouse');
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'credentials.json')).mode & 0o777, 0o600);
    const stored = credentialsOf(configHome).logins[gh.url]!;
    assert.match(stored.refreshToken, /^grt\./);

    const t = await run(['token', `${gh.url}/api/items`], configHome);
    assert.equal(t.code, 0, t.stderr);
    const token = t.stdout.trim();
    assert.equal(decodeJwt(token).sub, user.id);
    const r = await withBearer(gh, '/api/items', token);
    assert.equal(r.status, 200);
    assert.equal(r.seen!['x-user-id'], user.id);
    assert.equal(
      (await run(['token', `${gh.url}/other/path`], configHome)).stdout.trim(),
      token,
      'a fresh token is reused for any URL of the app',
    );
  });

  test('token refreshes an expired access token; two at once refresh once and print the same token', async () => {
    const configHome = join(home, 'b');
    assert.equal((await login(configHome)).result.code, 0);
    const before = credentialsOf(configHome).logins[gh.url]!;
    expire(configHome);
    const startRefreshes = refreshes();
    const [x, y] = await Promise.all([run(['token', gh.url], configHome), run(['token', gh.url], configHome)]);
    assert.equal(x.code, 0, x.stderr);
    assert.equal(y.code, 0, y.stderr);
    assert.equal(x.stdout, y.stdout);
    assert.notEqual(x.stdout.trim(), before.accessToken);
    assert.equal(refreshes() - startRefreshes, 1, 'one refresh for both processes (the credentials lock)');
    const after = credentialsOf(configHome).logins[gh.url]!;
    assert.notEqual(after.refreshToken, before.refreshToken, 'the rotated refresh token was kept');
    assert.equal((await withBearer(gh, '/api/x', x.stdout.trim())).status, 200);
  });

  test('the operator lists and revokes the login; the token stops working at the next request and token says so', async () => {
    const configHome = join(home, 'c');
    const { user, result } = await login(configHome);
    assert.equal(result.code, 0);
    const token = (await run(['token', gh.url], configHome)).stdout.trim();
    const list = await run(['sessions', 'list', '--user', user.email, '--json', '--config', configFile]);
    assert.equal(list.code, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as { id: string; kind: string; client: string; site: string; ip: string }[];
    assert.deepEqual(rows.map((r) => r.kind).sort(), ['browser', 'device']);
    const device = rows.find((r) => r.kind === 'device')!;
    // Hex: an id never begins with "-", which the command line would take for an option.
    for (const r of rows) assert.match(r.id, /^[0-9a-f]{12}$/);
    assert.equal(device.client, 'Gatehouse CLI (gatehouse-cli)');
    assert.equal(device.site, gh.url);
    assert.equal(device.ip, '127.0.0.1');
    const table = await run(['sessions', 'list', '--user', user.email, '--config', configFile]);
    assert.match(table.stdout, /ID +KIND +CLIENT +SITE +CREATED +LAST USED +IP +AGENT/);
    const revoke = await run(['sessions', 'revoke', device.id, '--user', user.email, '--config', configFile]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(revoke.stdout, /revoked device login/);
    assert.equal(
      (await withBearer(gh, '/api/x', token)).status,
      401,
      'revoked by another process: refused at the next request',
    );
    expire(configHome);
    const after = await run(['token', gh.url], configHome);
    assert.equal(after.code, 1);
    assert.match(after.stderr, /has ended .* Run: gatehouse login/);
  });

  test('logout revokes at the server and forgets; a denied login and an unknown URL fail with a clear message', async () => {
    const configHome = join(home, 'd');
    assert.equal((await login(configHome)).result.code, 0);
    const token = (await run(['token', gh.url], configHome)).stdout.trim();
    const out = await run(['logout', gh.url], configHome);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /Signed out of/);
    assert.deepEqual(credentialsOf(configHome).logins, {});
    assert.equal((await withBearer(gh, '/api/x', token)).status, 401, 'the server ended the login too');
    const none = await run(['token', gh.url], configHome);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /Not signed in to .* Run: gatehouse login/);

    const denied = await login(join(home, 'e'), 'deny');
    assert.equal(denied.result.code, 1);
    assert.match(denied.result.stderr, /The sign-in was denied\./);
    const plain = await run(['login', 'http://gatehouse.example/']);
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /use https/);
    const nowhere = await run(['login', `${gh.upstream.url}/`]);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.stderr, /does not say where to sign in/);
  });

  test('login refuses protected-resource metadata that names another resource than the URL (RFC 9728 §3.3)', {
    timeout: 30_000,
  }, async () => {
    // A server that points at Gatehouse's real app as "its" resource: tokens for that app
    // would be kept under it, and the real login replaced.
    const impostor = http.createServer((req, res) => {
      if (req.url!.startsWith('/.well-known/oauth-protected-resource')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ resource: gh.url, authorization_servers: [gh.url] }));
      }
      res.writeHead(401, {
        'www-authenticate': `Bearer resource_metadata="http://${req.headers.host}/.well-known/oauth-protected-resource"`,
      });
      res.end();
    });
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(impostor.address() as AddressInfo).port}/`;
      const configHome = join(home, 'f');
      const r = await run(['login', url, '--no-browser'], configHome);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /names .* as the resource to sign in to, which is not .*: refused/);
      assert.doesNotMatch(r.stderr, /enter the code/, 'no device sign-in was started');
    } finally {
      impostor.closeAllConnections();
      await new Promise((resolve) => impostor.close(resolve));
    }
  });
});

describe('gatehouse token --header (tokens.bearerHeader)', () => {
  let gh2: TestGatehouse;
  before(async () => {
    gh2 = await startGatehouse(() => ({
      routes: [{ path: '/api/**', unauthenticated: '401' }],
      tokens: { device: { interval: '1s' }, bearerHeader: 'X-Gatehouse-Token' },
    }));
  });
  after(() => gh2?.close());

  test("login learns the app's token header; token --header prints that line, and with it the app keeps its own Authorization", async () => {
    const configHome = join(home, 'header');
    const { browser, user } = await signedInBrowser(gh2);
    const r = startCli(['login', `${gh2.url}/api/items`, '--no-browser'], userEnv(configHome));
    await decideDevice(gh2, browser, await userCode(r), 'approve');
    const result = await r.done;
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stderr,
      /gatehouse token .* --header\)".*the token goes in X-Gatehouse-Token, Authorization stays yours/,
    );
    const line = await runCli(['token', `${gh2.url}/api/items`, '--header'], undefined, userEnv(configHome));
    assert.equal(line.code, 0, line.stderr);
    const m = /^X-Gatehouse-Token: (\S+)\n$/.exec(line.stdout);
    assert.ok(m, line.stdout);
    assert.equal(decodeJwt(m[1]!).sub, user.id);
    // What `curl -H "$(gatehouse token URL --header)" -H "Authorization: Bearer app" URL` sends.
    const res = await fetch(`${gh2.url}/api/items`, {
      headers: { 'x-gatehouse-token': m[1]!, authorization: 'Bearer the-apps-own', accept: 'application/json' },
    });
    assert.equal(res.status, 200);
    const seen = gh2.upstream.last().headers;
    assert.equal(seen['x-user-id'], user.id);
    assert.equal(seen.authorization, 'Bearer the-apps-own');
    assert.equal(seen['x-gatehouse-token'], undefined);
  });

  test('an app without a token header: --header prints the Authorization line', async () => {
    const configHome = join(home, 'no-header');
    assert.equal((await login(configHome)).result.code, 0);
    const line = await runCli(['token', gh.url, '--header'], undefined, userEnv(configHome));
    assert.equal(line.code, 0, line.stderr);
    assert.match(line.stdout, /^Authorization: Bearer [\w-]+\.[\w-]+\.[\w-]+\n$/);
    assert.equal(line.stderr, '');
  });
});
