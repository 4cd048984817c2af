import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli as run } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { deviceLogin, withBearer } from '../oauth/helpers.ts';
import { passwordStep, totpCode, userWithTotp } from './helpers.ts';
import { Client, registerJson, uniqueEmail } from '../helpers/client.ts';

/**
 * What CLIs, MCP clients and operators see of second factors: a device login carries the amr of
 * the session that approved it (step-up routes take its token only when that had a second
 * factor), `gatehouse users list` shows each user's factors, and `gatehouse users reset-mfa`
 * removes them and ends the user's sessions and CLI/MCP logins.
 */

let gh: TestGatehouse;
let file: string;

before(async () => {
  gh = await startGatehouse(() => ({
    routes: [{ path: '/admin/**', allow: { mfa: true } }],
    tokens: { device: { interval: '1s' } },
    accounts: { rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000 } },
  }));
  file = join(gh.dir, 'ops.yaml');
  writeFileSync(
    file,
    `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\n`,
  );
});
after(() => gh.close());

describe('CLI logins and operators', () => {
  test('a device login approved by a session with a second factor carries its amr; one approved with a password alone gets 401 insufficient_user_authentication on a step-up route', async () => {
    const u = await userWithTotp(gh);
    const strong = await passwordStep(gh, u.email);
    await strong.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    const good = await deviceLogin(gh, strong);
    const ok = await withBearer(gh, '/admin/x', good.access_token);
    assert.equal(ok.status, 200, ok.body);
    const claims = JSON.parse(Buffer.from(ok.seen!['x-gatehouse-assertion']!.split('.')[1]!, 'base64url').toString());
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);

    const weak = new Client(gh.url);
    await registerJson(weak, uniqueEmail('weak'));
    const plain = await deviceLogin(gh, weak);
    const refused = await withBearer(gh, '/admin/x', plain.access_token);
    assert.equal(refused.status, 401);
    assert.match(refused.wwwAuthenticate!, /error="insufficient_user_authentication"/);
    assert.equal(refused.seen, undefined, 'the app saw nothing');
    assert.equal((await withBearer(gh, '/other', plain.access_token)).status, 200, 'elsewhere the token is good');
  });

  test('users list shows factors; users reset-mfa removes them and ends sessions and CLI logins', async () => {
    const u = await userWithTotp(gh);
    const c = await passwordStep(gh, u.email);
    await c.postJson('/.auth/second-factor', { code: totpCode(u.secret) });
    const cli = await deviceLogin(gh, c);
    const list = await run(['users', 'list', '--json', '--config', file]);
    assert.equal(list.code, 0, list.stderr);
    const row = (JSON.parse(list.stdout) as { email: string; factors: string }[]).find((r) => r.email === u.email);
    assert.equal(row?.factors, 'totp,recovery_codes');
    assert.match((await run(['users', 'list', '--config', file])).stdout, /FACTORS/);

    const reset = await run(['users', 'reset-mfa', u.email, '--config', file]);
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(
      reset.stdout,
      /second factors of .* removed \(totp, recovery_codes\); their sessions and CLI\/MCP logins have ended/,
    );
    assert.equal((await c.get('/.auth/me')).status, 401, 'the session ended');
    assert.equal((await withBearer(gh, '/x', cli.access_token)).status, 401, 'the CLI login ended');
    const again = await new Client(gh.url).postJson('/.auth/login', {
      email: u.email,
      password: 'a long enough passphrase',
    });
    assert.equal(again.json().user.email, u.email, 'the password alone signs in now');
  });
});
