import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, decodeEntities } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { githubProvider, startGithub, type GithubStandIn } from '../helpers/github.ts';
import { signIn } from '../helpers/oauth.ts';
import { failures } from '../helpers/providers.ts';

/**
 * The github provider type against a local stand-in of the four GitHub endpoints it calls
 * (test/helpers/github.ts): OAuth2 code flow with state and PKCE, then who the user is from
 * the API. The subject is GitHub's numeric id; only a verified address counts.
 */

let gh: TestGatehouse;
let github: GithubStandIn;

before(async () => {
  const port = await freePort();
  github = await startGithub([
    `http://127.0.0.1:${port}/.auth/callback/github`,
    `http://127.0.0.1:${port}/.auth/callback/gh-noemail`,
  ]);
  github.users.set(583231, {
    id: 583231,
    login: 'octocat',
    name: 'The Octocat',
    email: 'octocat@public.example.com',
    emails: [
      { email: 'octo-old@example.com', primary: false, verified: false },
      { email: 'octocat@example.com', primary: true, verified: true },
    ],
  });
  github.users.set(42, {
    id: 42,
    login: 'unverified',
    name: null,
    email: null,
    emails: [{ email: 'nobody@example.com', primary: true, verified: false }],
  });
  github.users.set(7, {
    id: 7,
    login: 'second-verified',
    name: 'Seven',
    email: null,
    emails: [
      { email: 'seven-primary@example.com', primary: true, verified: false },
      { email: 'seven@example.com', primary: false, verified: true },
    ],
  });
  gh = await startGatehouse(
    () => ({
      providers: [
        githubProvider(github, 'github'),
        githubProvider(github, 'gh-noemail', { name: 'GitHub (no email scope)', scopes: ['read:user'] }),
      ],
    }),
    { port },
  );
});
after(async () => {
  await gh?.close();
  await github?.close();
});

const landed = async (as: number, provider = 'github', c = new Client(gh.url)) => {
  github.next = as;
  const hops = await signIn(c, provider, '/repos');
  return { c, hops, res: hops.at(-1)!.res };
};

describe('Sign in with GitHub (OAuth2 + the REST API)', () => {
  test('first sign-in creates the user with the primary verified email; PKCE S256, state and the client secret were used', async () => {
    const { c, hops, res } = await landed(583231);
    const authorize = new URL(hops[0]!.res.location!);
    assert.equal(authorize.origin + authorize.pathname, `${github.url}/login/oauth/authorize`);
    assert.equal(authorize.searchParams.get('scope'), 'read:user user:email');
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authorize.searchParams.get('nonce'), null, 'GitHub is not OIDC: no nonce');
    assert.equal(res.status, 200);
    assert.equal(hops.at(-1)!.url, `${gh.url}/repos`);
    const token = github.tokenRequests.at(-1)!;
    assert.equal(token.get('client_secret'), github.clientSecret);
    assert.equal(token.get('redirect_uri'), `${gh.url}/.auth/callback/github`);
    assert.match(
      token.get('code_verifier') ?? '',
      /^[A-Za-z0-9_-]{43}$/,
      'the stand-in checked it against the challenge',
    );
    const api = github.apiRequests.slice(-2);
    assert.deepEqual(
      api.map((r) => r.path),
      ['/api/user', '/api/user/emails'],
    );
    assert.ok(
      api.every((r) => r.authorization === `Bearer ${github.issued.at(-1)}` && r.userAgent === 'Gatehouse'),
      'a bearer token and a User-Agent, as the API requires',
    );

    const me = (await c.get('/.auth/me')).json();
    assert.equal(me.email, 'octocat@example.com', 'the primary verified address, not the public or an unverified one');
    assert.equal(me.emailVerified, true);
    assert.equal(me.name, 'The Octocat');
    assert.deepEqual(me.session.amr, ['idp:github']);
    assert.deepEqual(
      me.identities.map((i: Record<string, unknown>) => [i.provider, i.name, i.email]),
      [['github', 'GitHub', 'octocat@example.com']],
    );
    const identity = await gh.gatehouse.store.identities.find(github.url, '583231');
    assert.equal(identity?.userId, me.id, 'keyed by (GitHub URL, numeric id)');
    assert.equal(res.json().headers['x-user-id'], me.id);
  });

  test('a renamed GitHub account is the same user (the id is the subject, not the login)', async () => {
    const before = (await (await landed(583231)).c.get('/.auth/me')).json().id;
    const u = github.users.get(583231)!;
    u.login = 'octocat-renamed';
    u.name = 'Mona';
    const after = (await (await landed(583231)).c.get('/.auth/me')).json();
    assert.equal(after.id, before);
  });

  test('only a verified address makes an account; a verified non-primary one is used when the primary is not', async () => {
    const n = failures(gh, 'email_unverified').length;
    const { res } = await landed(42);
    assert.equal(res.status, 403);
    assert.match(decodeEntities(res.text), /GitHub has not verified your email address nobody@example\.com/);
    assert.equal(failures(gh, 'email_unverified').length, n + 1);
    assert.equal(await gh.gatehouse.store.users.getByEmail('nobody@example.com'), undefined);
    const seven = await landed(7);
    assert.equal((await seven.c.get('/.auth/me')).json().email, 'seven@example.com');
  });

  test('without the user:email scope the emails list is refused: the public address is unverified, so no account', async () => {
    github.users.set(99, {
      id: 99,
      login: 'public-only',
      name: null,
      email: 'public-only@example.com',
      emails: [{ email: 'public-only@example.com', primary: true, verified: true }],
    });
    const { res } = await landed(99, 'gh-noemail');
    assert.equal(res.status, 403);
    assert.match(decodeEntities(res.text), /has not verified your email address public-only@example\.com/);
  });

  test("GitHub's 200 + error answer to a bad code, and an API that fails, end on the error page", async () => {
    let n = failures(gh, 'token_exchange_failed').length;
    github.failNextToken = 'bad_verification_code';
    const bad = await landed(583231);
    assert.equal(bad.res.status, 502);
    assert.match(bad.res.text, /did not accept the sign-in/);
    assert.equal(failures(gh, 'token_exchange_failed').length, n + 1);
    assert.match(
      String(failures(gh, 'token_exchange_failed').at(-1)!.detail),
      /invalid_grant/,
      'mapped to the OAuth error it means',
    );

    n = failures(gh, 'userinfo_failed').length;
    github.failUser = 500;
    try {
      const down = await landed(583231);
      assert.equal(down.res.status, 502);
      assert.match(down.res.text, /GitHub did not say who you are/);
    } finally {
      github.failUser = undefined;
    }
    assert.equal(failures(gh, 'userinfo_failed').length, n + 1);
    assert.ok(
      !gh.logText().includes(github.clientSecret) && github.issued.every((t) => !gh.logText().includes(t)),
      'no secret or token in the logs',
    );
  });
});
