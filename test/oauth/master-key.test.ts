import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as oauth from 'openid-client';
import { Agent, setGlobalDispatcher } from 'undici';
import { Client, PASSWORD } from '../helpers/client.ts';
import { freePort, startGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { cliClient, deviceLogin, signedInBrowser, withBearer } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-master-key-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('rotating the master key (old one in secrets.previousKeys): CLI logins, access tokens, browser sessions and open forms keep working', async () => {
  const upstream = await startUpstream();
  const port = await freePort();
  const store = { type: 'sqlite' as const, path: join(dir, 'gatehouse.db') };
  const [a, b] = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
  try {
    const before = await startGatehouse(() => ({ store, secrets: { key: a } }), { upstream, port });
    const { browser, user } = await signedInBrowser(before);
    const tokens = await deviceLogin(before, browser);
    const form = new Client(before.url);
    const page = await form.html('/.auth/login');
    assert.equal(page.status, 200);
    await before.close();
    // Same port, new process: connections kept alive to the old one are gone.
    setGlobalDispatcher(new Agent());

    const after = await startGatehouse(() => ({ store, secrets: { key: b, previousKeys: [a] } }), { upstream, port });
    try {
      assert.equal(
        (await withBearer(after, '/api/x', tokens.access_token)).seen?.['x-user-id'],
        user.id,
        'an access token signed before the switch',
      );
      const refreshed = await oauth.refreshTokenGrant(await cliClient(after), tokens.refresh_token!);
      assert.equal(
        (await withBearer(after, '/api/x', refreshed.access_token)).status,
        200,
        'the refresh token issued before the switch',
      );
      assert.equal((await browser.get('/private')).status, 200, 'the browser session');
      const hidden = Object.fromEntries(
        [...page.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!]),
      );
      const login = await form.postForm(
        '/.auth/login',
        { ...hidden, email: user.email, password: PASSWORD },
        { origin: after.url },
      );
      assert.equal(login.status, 303, 'a sign-in form opened before the switch');
    } finally {
      await after.close();
    }
  } finally {
    await upstream.close();
  }
});
