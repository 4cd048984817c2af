import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'openid-client';
import { operatorConfig, runCli as run } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { forms, postForm, registerClient, signedInBrowser, withBearer } from '../oauth/helpers.ts';

/**
 * `gatehouse clients list|remove`: the operator sees every OAuth client with its live logins, and
 * removes a client that registered itself (a rogue or abandoned MCP client) with every login it
 * holds, at the next request; a configured client is left to the config.
 */

const REDIRECT = 'http://127.0.0.1:9/callback';
let gh: TestGatehouse;
let config: string;

before(async () => {
  gh = await startGatehouse(({ dir }) => ({
    store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
    tokens: { clients: [{ id: 'acme-desktop', name: 'Acme Desktop', redirectUris: [REDIRECT] }] },
  }));
  config = operatorConfig(
    gh,
    `tokens:\n  clients:\n    - {id: acme-desktop, name: Acme Desktop, redirectUris: ['${REDIRECT}']}\n`,
  );
});
after(() => gh.close());

/** A client that registers itself (RFC 7591), as an MCP client does, and a user's login through it. */
async function registeredClientWithLogin(): Promise<{ id: string; access: string; refresh: string }> {
  const reg = await registerClient(gh, { client_name: 'Some MCP client' });
  assert.equal(reg.status, 201);
  const id = String(reg.json.client_id);
  const { browser } = await signedInBrowser(gh);
  const verifier = oauth.randomPKCECodeVerifier();
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: id,
    redirect_uri: REDIRECT,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    scope: 'offline_access',
    resource: gh.url,
  });
  const page = await browser.html(`/.auth/oauth/authorize?${q}`);
  const allow = forms(page.text).find((f) => f.fields.decision === 'approve')!;
  const back = await browser.postForm(allow.action, allow.fields, { origin: gh.url });
  const code = new URL(back.location!).searchParams.get('code')!;
  const t = await postForm(`${gh.url}/.auth/oauth/token`, {
    grant_type: 'authorization_code',
    client_id: id,
    code,
    redirect_uri: REDIRECT,
    code_verifier: verifier,
  });
  assert.equal(t.status, 200, JSON.stringify(t.json));
  return { id, access: String(t.json.access_token), refresh: String(t.json.refresh_token) };
}

describe('gatehouse clients', () => {
  test('list shows every client with its logins; remove takes a registered one away with its logins, at once', async () => {
    const c = await registeredClientWithLogin();
    assert.equal((await withBearer(gh, '/x', c.access)).status, 200);

    const list = await run(['clients', 'list', '--json', '--config', config]);
    assert.equal(list.code, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as { id: string; kind: string; name: string; logins: number; from: string }[];
    assert.deepEqual(
      rows.filter((r) => r.id !== c.id).map((r) => [r.id, r.kind, r.name]),
      [
        ['gatehouse-cli', 'built-in', 'Gatehouse CLI'],
        ['acme-desktop', 'config', 'Acme Desktop'],
      ],
    );
    const mine = rows.find((r) => r.id === c.id)!;
    assert.deepEqual([mine.kind, mine.name, mine.logins, mine.from], ['registered', 'Some MCP client', 1, '127.0.0.1']);
    assert.match((await run(['clients', 'list', '--config', config])).stdout, /^ID\s+KIND\s+NAME\s+LOGINS/);

    const removed = await run(['clients', 'remove', c.id, '--config', config]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout.trim(), `removed ${c.id}; 1 login(s) ended`);
    // At the next request: its token, its refresh token, and any new authorization.
    assert.equal((await withBearer(gh, '/x', c.access)).status, 401);
    const refresh = await postForm(`${gh.url}/.auth/oauth/token`, {
      grant_type: 'refresh_token',
      client_id: c.id,
      refresh_token: c.refresh,
    });
    assert.deepEqual([refresh.status, refresh.json.error], [401, 'invalid_client']);
    const after = JSON.parse((await run(['clients', 'list', '--json', '--config', config])).stdout) as { id: string }[];
    assert.equal(
      after.some((r) => r.id === c.id),
      false,
    );
    const audited = await gh.gatehouse.store.audit.list({ event: 'operator', limit: 20 });
    assert.ok(audited.some((e) => e.detail.command === 'clients remove' && e.detail.client === c.id));
  });

  test('a configured, built-in or unknown client is not removed, and says why', async () => {
    for (const [id, why] of [
      ['acme-desktop', /acme-desktop is in tokens\.clients: remove it from the config/],
      ['gatehouse-cli', /gatehouse-cli is built in/],
      ['dcr_nobody', /no registered client dcr_nobody/],
    ] as const) {
      const r = await run(['clients', 'remove', id, '--config', config]);
      assert.equal(r.code, 2, id);
      assert.match(r.stderr, why);
    }
  });
});
