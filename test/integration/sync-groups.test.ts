import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { lintConfig } from '../../src/cli/lint.ts';
import { Client } from '../helpers/client.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { labGatehouse, type Lab, startLab } from '../helpers/providers.ts';
import { until } from '../helpers/timing.ts';

/**
 * providers[].syncGroups (security.md #284): the company IdP decides who is in which group. At
 * every sign-in through it the user's groups (what allow.groups, X-User-Groups and the assertion
 * read, on every session and CLI login of the user) become the groups its groupsClaim sends; a
 * provider without it leaves them alone. Real oidc-provider IdPs (test/helpers/providers.ts).
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab();
  gh = await labGatehouse(lab, {
    headers: { groups: true },
    routes: [{ path: '/admin/**', allow: { groups: ['admins'] } }],
    providers: lab.providers({ a: { groupsClaim: 'groups', syncGroups: true }, b: { groupsClaim: 'groups' } }),
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

async function signedIn(provider: 'a' | 'b', account: string): Promise<Client> {
  (provider === 'a' ? lab.a : lab.b).autoLogin = account;
  const c = new Client(gh.url);
  const hops = await signIn(c, provider, '/start');
  assert.equal(hops.at(-1)!.res.status, 200, `${account} signed in through ${provider}`);
  return c;
}

const me = async (c: Client) => (await c.get('/.auth/me')).json();
const admin = async (c: Client) => (await c.get('/admin/x', { accept: 'application/json' })).status;

/** An account at a lab IdP, with these groups. */
const idpAccount = (sub: string, groups: string[]) => ({
  sub,
  email: `${sub}@example.com`,
  email_verified: true,
  groups,
});

/** A browser signed in to `at` through the lab's IdP `idp` as `sub`, who has `groups` there. */
async function signedInTo(l: Lab, at: TestGatehouse, idp: 'a' | 'b', sub: string, groups: string[]): Promise<Client> {
  l[idp].accounts.set(sub, idpAccount(sub, groups));
  l[idp].autoLogin = sub;
  const c = new Client(at.url);
  assert.equal((await signIn(c, idp, '/start')).at(-1)!.res.status, 200);
  return c;
}

describe('providers[].syncGroups', () => {
  test('the IdP’s groups become the user’s: a route for admins opens, the app is told, the change is logged', async () => {
    lab.a.accounts.set('ann', {
      sub: 'ann',
      email: 'ann@example.com',
      email_verified: true,
      groups: ['staff', 'admins'],
    });
    const c = await signedIn('a', 'ann');
    const user = await me(c);
    assert.deepEqual(user.groups, ['staff', 'admins']);
    const res = await c.get('/admin/x');
    assert.equal(res.status, 200);
    assert.equal(res.json().headers['x-user-groups'], 'staff,admins');
    const line = gh.logs.find((l) => l.event === 'groups_synced' && l.userId === user.id);
    assert.deepEqual(line?.added, ['staff', 'admins']);
    assert.equal(line?.provider, 'a');
  });

  test('removed from a group at the IdP: the next sign-in takes it away, from every session of the user at once', async () => {
    lab.a.accounts.set('ben', { sub: 'ben', email: 'ben@example.com', email_verified: true, groups: ['admins'] });
    const laptop = await signedIn('a', 'ben');
    assert.equal(await admin(laptop), 200);
    lab.a.accounts.set('ben', { sub: 'ben', email: 'ben@example.com', email_verified: true, groups: ['staff'] });
    const phone = await signedIn('a', 'ben');
    assert.deepEqual((await me(phone)).groups, ['staff']);
    assert.equal(await admin(phone), 403);
    assert.equal(await admin(laptop), 403, 'the earlier session reads the user as it is now');
  });

  test('groups an operator set are replaced by the IdP’s; a provider without syncGroups leaves them alone', async () => {
    lab.b.accounts.set('b-cat', {
      sub: 'b-cat',
      email: 'cat@example.com',
      email_verified: true,
      groups: ['b-readers'],
    });
    const viaB = await signedIn('b', 'b-cat');
    const id = (await me(viaB)).id;
    await gh.gatehouse.store.users.update(id, { groups: ['admins'] });
    await signedIn('b', 'b-cat');
    assert.deepEqual((await gh.gatehouse.store.users.get(id))!.groups, ['admins'], 'B does not sync');
    assert.deepEqual((await me(viaB)).identities[0].groups, ['b-readers'], 'B’s groups are kept on its identity');

    lab.a.accounts.set('cat', { sub: 'cat', email: 'cat-a@example.com', email_verified: true, groups: ['staff'] });
    const viaA = await signedIn('a', 'cat');
    const other = (await me(viaA)).id;
    await gh.gatehouse.store.users.update(other, { groups: ['admins', 'ops'] });
    await signedIn('a', 'cat');
    assert.deepEqual((await gh.gatehouse.store.users.get(other))!.groups, ['staff'], 'A is the source of truth');
    const line = gh.logs.findLast((l) => l.event === 'groups_synced' && l.userId === other);
    assert.deepEqual([line?.added, line?.removed], [['staff'], ['admins', 'ops']]);
  });
});

/**
 * syncGroups at a refresh (security.md #286): with revalidate, the sign-in's refresh token is spent
 * at least every revalidate (5 s here, its shortest; real time passes, every wait polls), and the
 * groups the IdP states then become the user's, without signing out: IdP A in the new ID token, IdP
 * B (claims only at userinfo) at userinfo. A provider without syncGroups leaves them alone.
 */
describe('providers[].syncGroups at a refresh of the sign-in’s tokens', () => {
  let lab2: Lab;
  let gh2: TestGatehouse;
  before(async () => {
    lab2 = await startLab();
    gh2 = await labGatehouse(lab2, {
      headers: { groups: true },
      routes: [{ path: '/admin/**', allow: { groups: ['admins', 'b-admins'] } }],
      providers: lab2.providers({
        a: { groupsClaim: 'groups', syncGroups: true, revalidate: '5s' },
        b: { groupsClaim: 'groups', syncGroups: true, revalidate: '5s' },
      }),
    });
  });
  after(async () => {
    await gh2?.close();
    await lab2?.close();
  });

  test('gatehouse check says when synced groups are read only at sign-in (no revalidate)', () => {
    const warned = (config: TestGatehouse['config']) =>
      lintConfig(config).filter((w) => /syncGroups/.test(w.key) && /does not revalidate/.test(w.message));
    assert.deepEqual(warned(gh2.config), [], 'with revalidate: read again at every refresh');
    assert.deepEqual(
      warned(gh.config).map((w) => w.key),
      ['providers[0].syncGroups'],
      'A syncs without revalidate (B does not sync)',
    );
  });

  for (const [idp, where] of [
    ['a', 'the refreshed ID token'],
    ['b', 'userinfo'],
  ] as const) {
    test(`IdP ${idp.toUpperCase()}: a group removed at the IdP is lost at the next refresh (from ${where}), still signed in`, async () => {
      const account = `refresh-${idp}`;
      const group = idp === 'a' ? 'admins' : 'b-admins';
      const c = await signedInTo(lab2, gh2, idp, account, ['staff', group]);
      const user = await me(c);
      assert.equal(await admin(c), 200);
      assert.equal(lab2[idp].refreshCount(account), 0);

      lab2[idp].accounts.set(account, idpAccount(account, ['staff']));
      await until('the admin route closes at a refresh', async () => (await admin(c)) === 403);
      assert.ok(lab2[idp].refreshCount(account) >= 1, 'the refresh token was spent');
      const now = await me(c);
      assert.deepEqual(now.groups, ['staff'], 'signed in still, with the IdP’s groups');
      assert.equal((await c.get('/x')).json().headers['x-user-groups'], 'staff', 'the app is told');
      const line = gh2.logs.find((l) => l.event === 'groups_synced' && l.userId === user.id && l.at === 'refresh');
      assert.deepEqual([line?.added, line?.removed, line?.provider], [[], [group], idp]);

      lab2[idp].accounts.set(account, idpAccount(account, ['staff', group]));
      await until('the group comes back at the next refresh', async () => (await admin(c)) === 200);
    });
  }
});

/**
 * A refresh answered without an ID token (OpenID Connect Core §12.2 allows it; many issuers send
 * none): the groups come from userinfo, asked for the subject of the sign-in's ID token; an issuer
 * whose userinfo does not state the claim leaves them as they are (an answer that says nothing must
 * not empty them). The sign-in's ID token is kept for the logout at the provider.
 */
describe('providers[].syncGroups at a refresh without an ID token', () => {
  let lab3: Lab;
  let gh3: TestGatehouse;
  before(async () => {
    lab3 = await startLab({ a: { groupsOnlyInIdToken: true } });
    lab3.a.refreshWithoutIdToken = true;
    lab3.b.refreshWithoutIdToken = true;
    gh3 = await labGatehouse(lab3, {
      routes: [{ path: '/admin/**', allow: { groups: ['admins', 'b-admins'] } }],
      providers: lab3.providers({
        a: { groupsClaim: 'groups', syncGroups: true, revalidate: '5s' },
        b: { groupsClaim: 'groups', syncGroups: true, revalidate: '5s', endSession: true },
      }),
    });
  });
  after(async () => {
    await gh3?.close();
    await lab3?.close();
  });

  test('from userinfo, for the sign-in’s subject; signing out still names the sign-in’s ID token to the IdP', async () => {
    const c = await signedInTo(lab3, gh3, 'b', 'no-id-b', ['staff', 'b-admins']);
    const user = await me(c);
    assert.equal(await admin(c), 200);
    const signInToken = lab3.b.issued.filter((t) => t.accountId === 'no-id-b').at(-1)!.id_token;
    assert.ok(signInToken, 'the sign-in had an ID token');

    lab3.b.accounts.set('no-id-b', idpAccount('no-id-b', ['staff']));
    await until('the admin route closes at a refresh', async () => (await admin(c)) === 403);
    const refreshes = lab3.b.issued.filter((t) => t.accountId === 'no-id-b').slice(1);
    assert.ok(refreshes.length >= 1, 'refreshed');
    assert.ok(
      refreshes.every((t) => t.id_token === undefined),
      'no refresh answer had an ID token',
    );
    assert.deepEqual((await me(c)).groups, ['staff'], 'signed in still, with the groups userinfo states');
    const line = gh3.logs.find((l) => l.event === 'groups_synced' && l.userId === user.id && l.at === 'refresh');
    assert.deepEqual([line?.added, line?.removed], [[], ['b-admins']]);

    const res = await c.submitForm('/.auth/logout', {}, { origin: gh3.url });
    assert.equal(res.status, 303);
    const end = new URL(res.location!);
    assert.equal(end.origin + end.pathname, `${lab3.b.issuer}/session/end`);
    assert.equal(end.searchParams.get('id_token_hint'), signInToken, 'the ID token of the sign-in, kept');
  });

  test('a userinfo that does not state the groups leaves them as they are; the next ID token decides', async () => {
    const c = await signedInTo(lab3, gh3, 'a', 'no-id-a', ['staff', 'admins']);
    const user = await me(c);
    assert.equal(await admin(c), 200);

    lab3.a.accounts.set('no-id-a', idpAccount('no-id-a', ['staff']));
    const before = lab3.a.refreshCount('no-id-a');
    await until('a refresh without an ID token', async () => {
      assert.equal(await admin(c), 200, 'still admitted: nothing said about the groups');
      return lab3.a.refreshCount('no-id-a') > before;
    });
    assert.equal(await admin(c), 200);
    assert.deepEqual([...(await me(c)).groups].sort(), ['admins', 'staff'], 'not emptied');
    assert.equal(
      gh3.logs.some((l) => l.event === 'groups_synced' && l.userId === user.id && l.at === 'refresh'),
      false,
    );

    lab3.a.refreshWithoutIdToken = false;
    await until('the next refresh’s ID token removes the group', async () => (await admin(c)) === 403);
    assert.deepEqual((await me(c)).groups, ['staff']);
  });
});
