import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, decodeEntities } from '../helpers/client.ts';
import { BASE_CONFIG, refusal } from '../helpers/config.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { parseConfig } from '../../src/config/load.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { githubProvider, startGithub, type GithubStandIn } from '../helpers/github.ts';
import { signIn } from '../helpers/oauth.ts';
import { providerRegistrations } from '../../src/providers/lint.ts';
import { failures } from '../helpers/providers.ts';
import { until } from '../helpers/timing.ts';

/**
 * GitHub organizations and teams (security.md #283): with `organizations`, only their members
 * sign in through the provider; with read:org (which `organizations` adds), the user's
 * organizations and teams are the identity's groups (`acme`, `acme/admins`), and with
 * `syncGroups` the user's, for allow-lists and X-User-Groups. Against the local GitHub stand-in (test/helpers/github.ts), which pages lists as
 * GitHub does.
 */

let gh: TestGatehouse;
let github: GithubStandIn;

/** A GitHub user at the stand-in (`at`: another one than the file's). */
const member = (id: number, login: string, orgs: string[], teams: string[] = [], at: GithubStandIn = github) =>
  at.users.set(id, {
    id,
    login,
    name: login,
    email: null,
    emails: [{ email: `${login}@example.com`, primary: true, verified: true }],
    orgs,
    teams,
  });

before(async () => {
  const port = await freePort();
  github = await startGithub([`http://127.0.0.1:${port}/.auth/callback/github`]);
  gh = await startGatehouse(
    () => ({
      headers: { groups: true },
      routes: [{ path: '/admin/**', allow: { groups: ['acme/admins'] } }],
      providers: [githubProvider(github, 'github', { organizations: ['Acme'], syncGroups: true })],
    }),
    { port },
  );
});
after(async () => {
  await gh?.close();
  await github?.close();
});

const landed = async (as: number, rd = '/start') => {
  github.next = as;
  const c = new Client(gh.url);
  const hops = await signIn(c, 'github', rd);
  return { c, hops, res: hops.at(-1)!.res };
};

describe('GitHub organizations and teams', () => {
  test('a member signs in: read:org asked for, organizations and teams become groups, a team opens its route', async () => {
    member(501, 'ann', ['acme', 'Other-Org'], ['acme/admins', 'Other-Org/readers']);
    const { c, hops, res } = await landed(501);
    const authorize = new URL(hops[0]!.res.location!);
    assert.equal(authorize.searchParams.get('scope'), 'read:user user:email read:org');
    assert.equal(res.status, 200);
    const me = (await c.get('/.auth/me')).json();
    assert.deepEqual(me.groups, ['acme', 'other-org', 'acme/admins', 'other-org/readers']);
    const admin = await c.get('/admin/panel');
    assert.equal(admin.status, 200);
    assert.equal(admin.json().headers['x-user-groups'], me.groups.join(','));
  });

  test('someone in none of the organizations is refused with a page that names them; no account is made', async () => {
    member(502, 'bob', ['other-org'], ['other-org/readers']);
    const n = failures(gh, 'organization_not_allowed').length;
    const { res } = await landed(502);
    assert.equal(res.status, 403);
    assert.match(decodeEntities(res.text), /Only members of Acme on GitHub can sign in here\./);
    assert.match(decodeEntities(res.text), /Third-party access/);
    assert.equal(failures(gh, 'organization_not_allowed').length, n + 1);
    assert.equal(await gh.gatehouse.store.users.getByEmail('bob@example.com'), undefined);
  });

  test('a member who leaves the organization cannot sign in again; one who leaves a team loses its group and route', async () => {
    member(503, 'cleo', ['acme'], ['acme/admins']);
    const first = await landed(503);
    assert.equal((await first.c.get('/admin/x')).status, 200);
    github.users.get(503)!.teams = [];
    const second = await landed(503);
    assert.deepEqual((await second.c.get('/.auth/me')).json().groups, ['acme']);
    assert.equal((await second.c.get('/admin/x', { accept: 'application/json' })).status, 403);
    github.users.get(503)!.orgs = [];
    const third = await landed(503);
    assert.equal(third.res.status, 403);
    assert.match(decodeEntities(third.res.text), /Only members of Acme/);
  });

  test('every page of a long team list is read', async () => {
    const teams = Array.from({ length: 230 }, (_, i) => `acme/team-${i}`);
    member(504, 'dora', ['acme'], teams);
    const before = github.apiRequests.length;
    const { c } = await landed(504);
    const groups: string[] = (await c.get('/.auth/me')).json().groups;
    assert.ok(groups.includes('acme/team-229'), 'the last team, on the third page');
    assert.equal(groups.length, 231);
    assert.deepEqual(
      github.apiRequests
        .slice(before)
        .map((r) => r.path)
        .filter((p) => p.startsWith('/api/user/teams')),
      [1, 2, 3].map((p) => `/api/user/teams?per_page=100&page=${p}`),
    );
  });

  test('memberships that cannot be read fail the sign-in (never admit); it works once they can', async () => {
    member(505, 'eve', ['acme']);
    github.failMemberships = 502;
    try {
      const { res } = await landed(505);
      assert.equal(res.status, 502);
      assert.match(res.text, /did not say who you are/);
      assert.equal(await gh.gatehouse.store.users.getByEmail('eve@example.com'), undefined);
    } finally {
      github.failMemberships = undefined;
    }
    assert.equal((await landed(505)).res.status, 200);
  });

  test('gatehouse check says who may sign in through GitHub, and that teams are groups; warns of syncGroups without them', () => {
    const lines = providerRegistrations(gh.config);
    assert.ok(lines.includes('    groups:                   organizations and teams (read:org); members of Acme only'));
    assert.ok(
      lines.includes(
        "    user's groups:            set from its groups at every sign-in and token refresh (syncGroups)",
      ),
    );
    const warned = lintConfig(
      parseConfig(
        `${BASE_CONFIG}providers:\n  - { id: github, type: github, clientId: x, clientSecret: y, syncGroups: true }\n`,
        'g.yaml',
      ),
    );
    assert.ok(warned.some((w) => w.key === 'providers[0].syncGroups' && /empties the user's groups/.test(w.message)));
  });

  test('config: organizations are GitHub logins and need read:org among explicit scopes', () => {
    const provider = (more: string) =>
      `${BASE_CONFIG}providers:\n  - { id: github, type: github, clientId: x, clientSecret: y, ${more} }\n`;
    assert.match(
      refusal(provider('organizations: [acme], scopes: [read:user, user:email]')),
      /providers\[0\]\.scopes: organizations needs the "read:org" scope/,
    );
    for (const bad of ['-acme', 'ac--me', 'acme/admins', 'a'.repeat(40)])
      assert.match(refusal(provider(`organizations: ["${bad}"]`)), /expected an organization login/);
  });
});

/**
 * Between sign-ins (security.md #286), with revalidate: a GitHub App's expiring token is refreshed,
 * an OAuth app's (which does not expire) confirmed with GET /user; either way the memberships are
 * read again with the token. A team left is a group lost within revalidate, without signing out;
 * leaving every allowed organization, or revoking the app, ends the session. Real time passes
 * (revalidate's shortest, 5 s); every wait polls a condition.
 */
function betweenSignIns(expiring: boolean) {
  let app: GithubStandIn;
  let gh2: TestGatehouse;
  before(async () => {
    const port = await freePort();
    app = await startGithub([`http://127.0.0.1:${port}/.auth/callback/github`]);
    app.expiring = expiring;
    gh2 = await startGatehouse(
      () => ({
        headers: { groups: true },
        routes: [
          { path: '/admin/**', allow: { groups: ['acme/admins'] } },
          { path: '/api/**', unauthenticated: '401' },
        ],
        providers: [githubProvider(app, 'github', { organizations: ['acme'], syncGroups: true, revalidate: '5s' })],
      }),
      { port },
    );
  });
  after(async () => {
    await gh2?.close();
    await app?.close();
  });
  /** How the provider was asked again for the user: refreshes (App) or confirmations (OAuth app). */
  const asked = (userId: string) =>
    gh2.logs.filter(
      (l) => l.event === (expiring ? 'provider_token_refreshed' : 'provider_token_confirmed') && l.userId === userId,
    ).length;
  const signedIn = async (id: number, login: string) => {
    member(id, login, ['acme'], ['acme/admins'], app);
    app.next = id;
    const c = new Client(gh2.url);
    assert.equal((await signIn(c, 'github', '/start')).at(-1)!.res.status, 200);
    return { c, me: (await c.get('/.auth/me')).json() };
  };
  const adminStatus = async (c: Client) => (await c.get('/admin/panel', { accept: 'application/json' })).status;
  /** The session ends at the next check, refused as `reason`. */
  const ends = async (c: Client, userId: string, reason: string) => {
    await until('the session ends', async () => (await c.get('/api/x')).status === 401);
    assert.equal((await c.get('/.auth/me')).status, 401);
    const refused = gh2.logs.find((l) => l.event === 'provider_token_refresh_failed' && l.userId === userId);
    assert.equal(refused?.reason, reason);
    assert.equal(refused?.permanent, true);
    const ended = gh2.logs.find((l) => l.event === 'session_revalidation' && l.userId === userId);
    assert.equal(ended?.reason, 'refused');
  };
  return {
    stand: () => app,
    /** A team left: the group goes at the next check; the organization left: the session ends. */
    async teamThenOrganization(id: number, login: string) {
      const { c, me } = await signedIn(id, login);
      assert.deepEqual(me.groups, ['acme', 'acme/admins']);
      assert.equal(await adminStatus(c), 200);
      app.users.get(id)!.teams = [];
      await until('the admin route closes at the next check', async () => (await adminStatus(c)) === 403);
      assert.ok(asked(me.id) >= 1, expiring ? 'the token was refreshed' : 'the sign-in was confirmed');
      assert.deepEqual((await c.get('/.auth/me')).json().groups, ['acme'], 'still signed in, one group fewer');
      const synced = gh2.logs.find((l) => l.event === 'groups_synced' && l.userId === me.id && l.at === 'refresh');
      assert.deepEqual(synced?.removed, ['acme/admins']);
      app.users.get(id)!.orgs = ['elsewhere'];
      await ends(c, me.id, 'organization_not_allowed');
    },
    /** Lists GitHub cannot read at a check decide nothing; the next check reads them. */
    async unreadable(id: number, login: string) {
      const { c, me } = await signedIn(id, login);
      app.failMemberships = 502;
      try {
        await until('a check while GitHub cannot list memberships', async () => {
          assert.equal(await adminStatus(c), 200, 'still an admin, still signed in');
          return asked(me.id) >= 1;
        });
      } finally {
        app.failMemberships = undefined;
      }
      // A rotated refresh token was kept: the next check works and reads the lists again.
      app.users.get(id)!.teams = [];
      await until('the next check reads the lists', async () => (await adminStatus(c)) === 403);
      assert.equal(asked(me.id), 2);
      assert.equal((await c.get('/.auth/me')).status, 200);
    },
    /** The user revokes the app at GitHub: the next check ends the session. */
    async revoked(id: number, login: string) {
      const { c, me } = await signedIn(id, login);
      assert.equal(await adminStatus(c), 200);
      app.revoke(id);
      await ends(c, me.id, 'token_exchange_failed');
    },
  };
}

describe('GitHub organizations at a refresh of a GitHub App token', () => {
  const s = betweenSignIns(true);
  test('a team left at GitHub is a group lost at the next refresh; leaving the organization ends the session', () =>
    s.teamThenOrganization(601, 'gus'));
  test('memberships that cannot be read at a refresh decide nothing: the new tokens are kept, the groups stay', () =>
    s.unreadable(602, 'hal'));
});

describe('GitHub organizations for an OAuth app, confirmed with its access token', () => {
  const s = betweenSignIns(false);
  test('an OAuth app’s sign-in is confirmed with its access token: a team left is a group lost, leaving the organization ends the session', () =>
    s.teamThenOrganization(611, 'ida'));
  test('memberships that cannot be read at a confirmation decide nothing; the next one reads them', () =>
    s.unreadable(612, 'jon'));
  test('an OAuth app revoked at GitHub ends its sessions at the next confirmation', async () => {
    await s.revoked(613, 'kai');
    assert.equal(s.stand().refreshes, 0, 'no refresh token was ever spent');
  });
});
