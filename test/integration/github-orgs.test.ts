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

/**
 * GitHub organizations and teams (security.md #283): with `organizations`, only their members
 * sign in through the provider; with read:org (which `organizations` adds), the user's
 * organizations and teams are the identity's groups (`acme`, `acme/admins`), and with
 * `syncGroups` the user's, for allow-lists and X-User-Groups. Against the local GitHub stand-in (test/helpers/github.ts), which pages lists as
 * GitHub does.
 */

let gh: TestGatehouse;
let github: GithubStandIn;

const member = (id: number, login: string, orgs: string[], teams: string[] = []) =>
  github.users.set(id, {
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
    assert.ok(lines.includes("    user's groups:            set from its groups at every sign-in (syncGroups)"));
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
