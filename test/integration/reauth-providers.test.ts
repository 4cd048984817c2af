import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client, decodeEntities } from '../helpers/client.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';
import { follow, signIn } from '../helpers/oauth.ts';
import { accountPost, csrfOf, startLab, type Lab, labGatehouse } from '../helpers/providers.ts';

/**
 * "Confirm it's you" for an account without a password (security.md #204): the /reauth page
 * offers a fresh sign-in at the providers linked to the account; the real OIDC provider is asked
 * with prompt=login and max_age=0, and the answer counts only in the session that asked, for the
 * identity linked to its user.
 */

let lab: Lab;
let gh: TestGatehouse;
const sameOrigin = (c: Client) => ({ origin: c.base, 'sec-fetch-site': 'same-origin' });

before(async () => {
  lab = await startLab();
  gh = await labGatehouse(lab);
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

/** A browser signed in through IdP A as `account`, its sign-in made 11 minutes old. */
async function staleProviderSession(account: string): Promise<{ c: Client; idHash: string }> {
  const c = new Client(gh.url);
  lab.a.autoLogin = account;
  await signIn(c, 'a');
  const idHash = hashSessionId(c.jar.get('gatehouse')!);
  const s = (await gh.gatehouse.store.sessions.get(idHash))!;
  await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });
  return { c, idHash };
}

const authTime = async (idHash: string) => (await gh.gatehouse.store.sessions.get(idHash))!.authTime;

describe('re-authentication through a provider', () => {
  test('an account without a password confirms by signing in again at its provider (prompt=login, max_age=0) and comes back', async () => {
    const { c, idHash } = await staleProviderSession('alice');
    const device = await c.html('/.auth/device');
    assert.equal(device.status, 303);
    const page = await c.html(new URL(device.location!).pathname + new URL(device.location!).search);
    assert.equal(page.status, 200);
    const text = decodeEntities(page.text);
    assert.doesNotMatch(text, /type="password"/, 'no password to ask for');
    assert.match(text, /<form method="post" action="\/\.auth\/reauth\/provider">/);
    assert.match(text, /Continue with IdP A/);
    assert.doesNotMatch(text, /IdP B/, 'only the providers linked to the account');
    assert.match(
      String(page.headers['content-security-policy']),
      new RegExp(`form-action 'self' ${lab.a.issuer.replace(/[.]/g, '\\.')}`),
    );
    const json = await c.get('/.auth/reauth');
    assert.deepEqual(json.json().methods, ['provider']);

    const before = await authTime(idHash);
    const start = await c.postForm(
      '/.auth/reauth/provider',
      { csrf: csrfOf(page), provider: 'a', rd: '/.auth/device' },
      sameOrigin(c),
    );
    assert.equal(start.status, 303);
    const authorize = new URL(start.location!);
    assert.equal(authorize.searchParams.get('prompt'), 'login');
    assert.equal(authorize.searchParams.get('max_age'), '0');
    const hops = await follow(c, start.location!, { 'sec-fetch-site': 'cross-site' });
    const last = hops[hops.length - 1]!;
    assert.equal(last.url, `${gh.url}/.auth/device`, hops.map((h) => `${h.res.status} ${h.url}`).join(' → '));
    assert.equal(last.res.status, 200, 'back at the device page, now recent enough');
    assert.equal(hashSessionId(c.jar.get('gatehouse')!), idHash, 'the same session goes on');
    assert.ok((await authTime(idHash)) > before);
    assert.ok((await gh.gatehouse.store.sessions.get(idHash))!.amr.includes('idp:a'));
    assert.ok(gh.logs.some((l) => l.event === 'reauthenticated' && l.method === 'provider'));
    await gh.gatehouse.audit.flush();
    const audited = await gh.gatehouse.store.audit.list({ event: 'reauthenticated', limit: 100 });
    assert.ok(
      audited.some((e) => e.detail.method === 'provider' && e.detail.provider === 'a'),
      'in the audit trail',
    );
  });

  test('signing in there as someone else confirms nothing; a provider not linked is refused', async () => {
    const { c, idHash } = await staleProviderSession('bob');
    const before = await authTime(idHash);
    const page = await c.html('/.auth/reauth');
    lab.a.autoLogin = 'erin';
    const start = await c.postForm('/.auth/reauth/provider', { csrf: csrfOf(page), provider: 'a' }, sameOrigin(c));
    // At the IdP in a browser without bob's session there (the IdP would ask about switching).
    const browser = new Client(gh.url);
    for (const [name, value] of c.jar) if (name.startsWith('gatehouse')) browser.jar.set(name, value);
    const hops = await follow(browser, start.location!, { 'sec-fetch-site': 'cross-site' });
    const last = hops[hops.length - 1]!;
    assert.equal(
      last.res.status,
      403,
      hops.map((h) => `${h.res.status} ${h.url}`).join(' → ') + last.res.text.slice(0, 500),
    );
    assert.match(
      decodeEntities(last.res.text),
      /You signed in at IdP A as someone else than the account you are confirming/,
    );
    assert.equal(await authTime(idHash), before);
    assert.equal(hashSessionId(browser.jar.get('gatehouse')!), idHash, 'and the session stays who it was');

    const other = await c.postForm('/.auth/reauth/provider', { csrf: csrfOf(page), provider: 'b' }, sameOrigin(c));
    assert.equal(other.status, 400);
    const csrf = await c.postForm('/.auth/reauth/provider', { provider: 'a' }, sameOrigin(c));
    assert.equal(csrf.status, 403);
  });
});

describe('unlinking a provider', () => {
  test('from a sign-in grown old it asks to confirm first (browser to /reauth, JSON 401) and unlinks nothing; right after a sign-in it unlinks (security.md #204)', async () => {
    lab.a.accounts.set('a-frank', { sub: 'a-frank', email: 'frank@example.com', email_verified: true });
    lab.b.accounts.set('b-frank', { sub: 'b-frank', email: 'frank@example.com', email_verified: true });
    const c = new Client(gh.url);
    lab.a.autoLogin = 'a-frank';
    await signIn(c, 'a');
    lab.b.autoLogin = 'b-frank';
    const started = await accountPost(c, '/.auth/account/link', { provider: 'b' });
    assert.equal(started.status, 303, 'a fresh sign-in links at once');
    await follow(c, started.location!, { 'sec-fetch-site': 'cross-site' });
    const idHash = hashSessionId(c.jar.get('gatehouse')!);
    const s = (await gh.gatehouse.store.sessions.get(idHash))!;
    const identities = () => gh.gatehouse.store.identities.listByUser(s.userId);
    assert.deepEqual((await identities()).map((i) => i.provider).sort(), ['a', 'b']);
    const idA = (await identities()).find((i) => i.provider === 'a')!.id;

    await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now() - 11 * 60_000, amr: s.amr });
    const form = await accountPost(c, '/.auth/account/unlink', { identity: idA });
    assert.equal(form.status, 303);
    assert.equal(new URL(form.location!).pathname, '/.auth/reauth', 'the browser confirms first');
    const json = await c.postJson('/.auth/account/unlink', { identity: idA }, sameOrigin(c));
    assert.equal(json.status, 401);
    assert.equal(json.json().error, 'reauthentication_required');
    assert.equal((await identities()).length, 2, 'nothing unlinked');

    await gh.gatehouse.store.sessions.setAuth(idHash, { authTime: Date.now(), amr: s.amr });
    const unlinked = await accountPost(c, '/.auth/account/unlink', { identity: idA });
    assert.equal(unlinked.location, `${gh.url}/.auth/account?unlinked=a`);
    assert.deepEqual(
      (await identities()).map((i) => i.provider),
      ['b'],
    );
  });
});
