import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { operatorConfig, runCli as run } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import * as oauth from 'openid-client';
import {
  cliClient,
  decideDevice,
  deviceLogin,
  oauthError,
  postForm,
  signedInBrowser,
  withBearer,
} from '../oauth/helpers.ts';

/**
 * `gatehouse sessions revoke --all --yes`, the incident-response switch: every browser session
 * and every CLI/MCP login of every user ends at its next request; without --yes nothing does.
 */

let gh: TestGatehouse;
let config: string;

before(async () => {
  gh = await startGatehouse(({ dir }) => ({
    store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
    tokens: { device: { interval: '1s' } },
  }));
  config = operatorConfig(gh);
});
after(() => gh.close());

describe('gatehouse sessions revoke --all', () => {
  test('every browser session and every CLI login of every user ends; without --yes nothing does', async () => {
    const ann = new Client(gh.url);
    await registerJson(ann);
    const bob = new Client(gh.url);
    await registerJson(bob);
    const { browser } = await signedInBrowser(gh);
    const cli = await deviceLogin(gh, browser);
    // A second device login, approved but not yet collected by its program.
    const config2 = await cliClient(gh);
    const waiting = await oauth.initiateDeviceAuthorization(config2, { scope: 'offline_access', resource: gh.url });
    await decideDevice(gh, browser, waiting.user_code, 'approve');

    const asked = await run(['sessions', 'revoke', '--all', '--config', config]);
    assert.equal(asked.code, 2);
    assert.match(asked.stderr, /every user is signed out everywhere; add --yes/);
    const mixed = await run(['sessions', 'revoke', '--all', '--yes', '--user', 'x@example.com', '--config', config]);
    assert.equal(mixed.code, 2);
    for (const c of [ann, bob, browser]) assert.equal((await c.get('/.auth/me')).status, 200, 'nothing ended yet');
    assert.equal((await withBearer(gh, '/x', cli.access_token)).status, 200);

    const r = await run(['sessions', 'revoke', '--all', '--yes', '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout.trim(),
      'revoked every session: 3 browser session(s) and 1 CLI/MCP login(s), and 1 approval(s) not yet collected; everyone signs in again',
    );
    for (const c of [ann, bob, browser]) assert.equal((await c.get('/.auth/me')).status, 401);
    assert.equal((await withBearer(gh, '/x', cli.access_token)).status, 401);
    const refresh = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: 'refresh_token',
      client_id: 'gatehouse-cli',
      refresh_token: cli.refresh_token!,
    });
    assert.deepEqual([refresh.status, refresh.json.error], [400, 'invalid_grant']);
    assert.equal(await oauthError(oauth.pollDeviceAuthorizationGrant(config2, waiting)), 'access_denied');
    const audited = await gh.gatehouse.store.audit.list({ event: 'operator', limit: 10 });
    assert.ok(audited.some((e) => e.detail.command === 'sessions revoke' && e.detail.all === true));
  });
});
