import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import * as oauth from 'openid-client';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client } from '../helpers/client.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { type Lab, labGatehouse, startLab } from '../helpers/providers.ts';
import { until } from '../helpers/timing.ts';
import { cliClient, deviceLogin, oauthError, withBearer } from '../oauth/helpers.ts';

/**
 * providers[].revalidate against real IdPs: IdP A issues refresh tokens, IdP B none. Sessions
 * signed in through them are confirmed with the provider every 5 s (the shortest revalidate);
 * time passes for real and every wait polls a condition, never a fixed sleep. Each test signs in
 * its own IdP account, so the tests run side by side and count only their own refreshes.
 */

const EVERY_MS = 5_000;
let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab({ noRefreshB: true });
  gh = await labGatehouse(lab, {
    providers: lab.providers({ a: { revalidate: '5s' }, b: { revalidate: '5s' } }),
    routes: [{ path: '/api/**', unauthenticated: '401' }],
    metrics: { listen: '127.0.0.1:0' },
    tokens: { device: { interval: '1s' } },
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

let accounts = 0;
let lock: Promise<unknown> = Promise.resolve();
/** A fresh account at the IdP and a browser signed in with it (one sign-in at a time: autoLogin names the account). */
function signedIn(idp: 'a' | 'b'): Promise<{ c: Client; account: string; at: number }> {
  const run = lock.then(async () => {
    const account = `reval-${idp}-${accounts++}`;
    lab[idp].accounts.set(account, { sub: account, email: `${account}@example.com`, email_verified: true });
    lab[idp].autoLogin = account;
    const c = new Client(gh.url);
    const at = Date.now();
    const hops = await signIn(c, idp);
    assert.equal(hops.at(-1)!.res.status, 200);
    return { c, account, at };
  });
  lock = run.catch(() => {});
  return run;
}

/** gatehouse_session_revalidations_total for the provider and outcome. */
async function counted(provider: string, outcome: string): Promise<number> {
  const metric = await gh.gatehouse.metrics!.revalidations.get();
  return metric.values.find((v) => v.labels.provider === provider && v.labels.outcome === outcome)?.value ?? 0;
}

const sessionOf = (c: Client) => hashSessionId(c.jar.get('gatehouse')!);
/** The log's session_revalidation lines that ended a session of `userId`. */
const ended = (userId: string) =>
  gh.logs.filter((l) => l.event === 'session_revalidation' && l.outcome === 'ended' && l.userId === userId);

// One test at a time: the third makes IdP A's token endpoint fail for everyone.
describe('providers[].revalidate', () => {
  test('a session is confirmed with its refresh token once per revalidate, and ends at the next request once the provider refuses it', async () => {
    const { c, account, at } = await signedIn('a');
    const me = (await c.get('/.auth/me')).json();
    assert.equal((await c.get('/api/x')).status, 200);
    assert.equal(lab.a.refreshCount(account), 0, 'nothing asked within revalidate of the sign-in');

    // Past revalidate: the next request spends the refresh token, once; those after it ask nothing.
    await until('the first revalidation', async () => {
      assert.equal((await c.get('/api/x')).status, 200, 'the session stands throughout');
      return lab.a.refreshCount(account) === 1;
    });
    assert.ok(Date.now() - at >= EVERY_MS);
    for (let i = 0; i < 5; i++) assert.equal((await c.get('/api/x')).status, 200);
    assert.equal(lab.a.refreshCount(account), 1, 'one refresh for the whole interval');

    // The user is removed at the IdP (every refresh token of theirs destroyed): the next
    // confirmation is refused, and that request finds the session over.
    const hash = sessionOf(c);
    await lab.a.revokeRefreshTokens(account);
    const refused = await until('the refused revalidation', async () => {
      const r = await c.html('/page');
      return r.status !== 200 && r;
    });
    assert.equal(refused.status, 302, 'the browser is sent to sign in again');
    assert.match(String(refused.headers.location), /\/\.auth\/login\?rd=%2Fpage/);
    assert.equal((await c.get('/api/x')).status, 401);
    assert.equal(await gh.gatehouse.store.sessions.get(hash), undefined, 'the session is gone from the store');
    assert.equal(await gh.gatehouse.store.providerTokens.get(`session:${hash}`, 'a'), undefined, 'with its tokens');
    const [line] = ended(me.id);
    assert.deepEqual([line?.provider, line?.reason], ['a', 'refused']);
    assert.deepEqual([await counted('a', 'confirmed'), await counted('a', 'ended')], [1, 1], 'the metric');
    await gh.gatehouse.audit.flush();
    const audited = await gh.gatehouse.store.audit.list({ event: 'logout', userId: me.id, limit: 5 });
    assert.ok(audited.some((e) => e.actor === 'provider:a' && e.detail.revalidation === 'refused'));
  });

  test('a sign-in that left no refresh token lasts revalidate from its start, then the user signs in again', async () => {
    const { c, account, at } = await signedIn('b');
    const me = (await c.get('/.auth/me')).json();
    assert.equal((await c.get('/api/x')).status, 200);
    await until('the end of the sign-in', async () => (await c.get('/api/x')).status === 401);
    assert.ok(Date.now() - at >= EVERY_MS, 'not before revalidate has passed');
    assert.deepEqual(
      ended(me.id).map((l) => l.reason),
      ['no_refresh_token'],
    );
    lab.b.autoLogin = account;
    const again = await signIn(c, 'b');
    assert.equal(again.at(-1)!.res.status, 200);
    assert.equal((await c.get('/api/x')).status, 200, 'a new sign-in, a new interval');
  });

  test('a provider that cannot be asked ends nothing: the session stands and it is asked again later', async () => {
    const { c } = await signedIn('a');
    const me = (await c.get('/.auth/me')).json();
    lab.a.failToken = 503;
    try {
      await until('a refresh attempt that fails', async () => {
        assert.equal((await c.get('/api/x')).status, 200, 'the session stands while the IdP is down');
        return gh.logs.some(
          (l) => l.event === 'provider_token_refresh_failed' && l.permanent === false && l.userId === me.id,
        );
      });
      for (let i = 0; i < 3; i++) assert.equal((await c.get('/api/x')).status, 200);
      assert.equal(ended(me.id).length, 0);
      assert.equal(await counted('a', 'unavailable'), 1, 'the metric');
      assert.equal(
        gh.logs.filter((l) => l.event === 'provider_token_refresh_failed' && l.userId === me.id).length,
        1,
        'asked once, not at every request (again after half a minute)',
      );
    } finally {
      lab.a.failToken = undefined;
    }
  });

  test('a CLI login approved from such a session is confirmed with its own tokens after the browser signed out, and revoked once the provider refuses', async () => {
    const { c, account } = await signedIn('a');
    const me = (await c.get('/.auth/me')).json();
    const cli = await cliClient(gh);
    const tokens = await deviceLogin(gh, c, cli);
    const grant = String(decodeJwt(tokens.access_token).sid);
    assert.equal((await withBearer(gh, '/api/x', tokens.access_token)).status, 200);
    await c.submitForm('/.auth/logout', {}, { origin: gh.url });
    assert.equal((await c.get('/api/x')).status, 401, 'the browser signed out');

    // Past revalidate: the login's own copy of the refresh token is spent, once, and it stands.
    await until('the CLI login confirmed', async () => {
      const r = await withBearer(gh, '/api/x', tokens.access_token);
      assert.equal(r.status, 200, `the login stands throughout: ${r.body}`);
      return lab.a.refreshCount(account) === 1;
    });
    for (let i = 0; i < 3; i++) assert.equal((await withBearer(gh, '/api/x', tokens.access_token)).status, 200);
    assert.equal(lab.a.refreshCount(account), 1, 'one refresh for the whole interval');

    // Removed at the IdP: the next confirmation is refused and the login is revoked there and then.
    await lab.a.revokeRefreshTokens(account);
    const refused = await until('the refused revalidation', async () => {
      const r = await withBearer(gh, '/api/x', tokens.access_token);
      return r.status !== 200 && r;
    });
    assert.equal(refused.status, 401);
    assert.match(String(refused.wwwAuthenticate), /invalid_token/);
    const stored = await gh.gatehouse.store.oauth.grants.get(grant);
    assert.ok(stored?.revokedAt, 'the login is revoked in the store, for every node');
    assert.equal(stored.revokedReason, 'provider:a');
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(cli, tokens.refresh_token!, { resource: gh.url })),
      'invalid_grant',
      'its refresh token gets nothing more',
    );
    const [line] = ended(me.id);
    assert.deepEqual([line?.provider, line?.reason, line?.grant], ['a', 'refused', grant]);
    await gh.gatehouse.audit.flush();
    const audited = await gh.gatehouse.store.audit.list({ event: 'login_revoked', userId: me.id, limit: 5 });
    assert.ok(audited.some((e) => e.actor === 'provider:a' && e.detail.grant === grant));
  });

  test('a CLI login from a sign-in that left no refresh token lasts revalidate from its approval', async () => {
    const { c } = await signedIn('b');
    const me = (await c.get('/.auth/me')).json();
    const cli = await cliClient(gh);
    const tokens = await deviceLogin(gh, c, cli);
    const approved = Date.now();
    assert.equal((await withBearer(gh, '/api/x', tokens.access_token)).status, 200);
    await until(
      'the end of the login',
      async () => (await withBearer(gh, '/api/x', tokens.access_token)).status === 401,
    );
    assert.ok(Date.now() - approved >= EVERY_MS - 1_000, 'not before revalidate has passed');
    assert.ok(
      ended(me.id).some((l) => l.reason === 'no_refresh_token' && l.grant === decodeJwt(tokens.access_token).sid),
    );
    assert.equal(
      await oauthError(oauth.refreshTokenGrant(cli, tokens.refresh_token!, { resource: gh.url })),
      'invalid_grant',
    );
  });

  test('with revalidateGrace, a sign-in the provider cannot confirm for longer than revalidate and the grace ends, as a refusal would', async () => {
    // The same node with a grace of 5 s for provider a (a reload: its sessions stay).
    const input = {
      publicUrl: gh.url,
      listen: { host: '127.0.0.1', port: gh.port },
      store: { type: 'sqlite', path: join(gh.dir, 'gatehouse.db') },
      upstream: gh.upstream.url,
      providers: lab.providers({ a: { revalidate: '5s', revalidateGrace: '5s' }, b: { revalidate: '5s' } }),
      routes: [{ path: '/api/**', unauthenticated: '401' }],
      metrics: { listen: '127.0.0.1:0' },
      tokens: { device: { interval: '1s' } },
      accounts: {
        rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000, providerStartsPerIp: 1000 },
      },
    };
    assert.equal((await gh.gatehouse.reload(ConfigSchema.parse(input))).outcome, 'ok');
    const { c, at } = await signedIn('a');
    const me = (await c.get('/.auth/me')).json();
    lab.a.failToken = 503;
    try {
      const refused = await until(
        'the session ends unconfirmed',
        async () => {
          const r = await c.get('/api/x');
          return r.status !== 200 && r;
        },
        30_000,
      );
      assert.equal(refused.status, 401);
      assert.ok(Date.now() - at >= 2 * EVERY_MS, 'not before revalidate and the grace have passed');
      const [line] = ended(me.id);
      assert.deepEqual([line?.provider, line?.reason], ['a', 'unconfirmed']);
      assert.ok(
        gh.logs.some((l) => l.event === 'provider_token_refresh_failed' && l.userId === me.id),
        'it was asked',
      );
    } finally {
      lab.a.failToken = undefined;
    }
  });
});

test('config: revalidateGrace without revalidate is said by the lint', () => {
  const findings = lintConfig(
    parseConfig(
      'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\nproviders: [{id: corp, type: oidc, issuer: https://idp.example.com, clientId: gh, clientSecret: s, revalidateGrace: 1h}]\n',
      'g.yaml',
    ),
  );
  assert.match(
    findings.find((f) => f.key === 'providers[0].revalidateGrace')?.message ?? '',
    /only applies with revalidate/,
  );
});
