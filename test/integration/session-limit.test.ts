import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { deviceLogin, withBearer } from '../oauth/helpers.ts';

/**
 * sessions.maxPerUser (concurrent session control, NIST SP 800-53 AC-10; security.md #263): real
 * sign-ins over HTTP, sessions in the SQLite store.
 */

let gh: TestGatehouse;
before(async () => {
  gh = await startGatehouse(() => ({ sessions: { maxPerUser: 2 } }));
});
after(() => gh?.close());

const me = async (c: Client) => (await c.get('/.auth/me', { accept: 'application/json' })).status;

test('a sign-in past sessions.maxPerUser ends the oldest session; CLI logins and other users are not counted', async () => {
  const email = uniqueEmail('limited');
  const first = new Client(gh.url);
  await registerJson(first, email);
  const signIn = async () => {
    const c = new Client(gh.url);
    assert.equal((await c.postJson('/.auth/login', { email, password: PASSWORD })).status, 200);
    return c;
  };
  const second = await signIn();
  assert.deepEqual([await me(first), await me(second)], [200, 200]);
  // Someone else's sessions are theirs.
  const other = new Client(gh.url);
  await registerJson(other, uniqueEmail('other'));
  const third = await signIn();
  assert.deepEqual([await me(first), await me(second), await me(third)], [401, 200, 200], 'the oldest ended');
  assert.equal(await me(other), 200);
  const line = gh.logs.find((l) => l.event === 'session_limit');
  assert.equal(line?.ended, 1);
  // A CLI login approved from the newest session is not a browser session: it does not count, and
  // the next sign-in ends the oldest browser session, not it.
  const cli = await deviceLogin(gh, third);
  const fourth = await signIn();
  assert.deepEqual([await me(second), await me(third), await me(fourth)], [401, 200, 200]);
  assert.equal((await withBearer(gh, '/anything', cli.access_token)).status, 200);
  const audited = await gh.gatehouse.audit.list({ event: 'sessions_ended', limit: 10 });
  assert.ok(audited.some((e) => e.actor === 'sessions.maxPerUser' && e.detail.ended === 1));
});
