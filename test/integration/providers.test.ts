import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, decodeJwt, type JWTPayload } from 'jose';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client, decodeEntities, PASSWORD, registerJson, uniqueEmail, type Response } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { resign } from '../helpers/idp.ts';
import { callbackHop, follow, signIn, stopAtCallback } from '../helpers/oauth.ts';
import {
  accountPost,
  csrfOf,
  failures,
  idpLogoutForm,
  rawDb,
  startLab,
  type Lab,
  labGatehouse,
} from '../helpers/providers.ts';

/**
 * Sign-in through two real OpenID Providers (oidc-provider on loopback) with the HTTP
 * client: first and later sign-ins, claims, return targets, linking by email, the account
 * page, registration rules, every way a callback can fail (security.md #13, #22, #30-38),
 * RP-initiated logout, and what is kept where.
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab();
  lab.a.autoLogin = 'alice';
  lab.b.autoLogin = 'b-alice';
  gh = await labGatehouse(lab, {
    headers: { email: true },
    routes: [
      { path: '/public/**', access: 'public' },
      { path: '/api/**', unauthenticated: '401', tokenRelay: 'a' },
    ],
    providers: lab.providers({ a: { groupsClaim: 'groups' }, b: { linkByEmail: true } }),
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

const session = (c: Client) => c.jar.get('gatehouse');
const last = <T>(list: T[]) => list[list.length - 1]!;
const me = async (c: Client) => (await c.get('/.auth/me')).json();

/** Signs in through a provider as `account` in a fresh browser; returns the browser and where it landed. */
async function signedIn(provider: 'a' | 'b', account: string, rd?: string): Promise<{ c: Client; final: Response }> {
  const idp = provider === 'a' ? lab.a : lab.b;
  const c = new Client(gh.url);
  idp.autoLogin = account;
  const hops = await signIn(c, provider, rd);
  return { c, final: last(hops).res };
}

/** Asserts the one error page of a failed flow, and that it was logged once. */
function assertFailure(res: Response, status: number, reason: string, text: RegExp, before = 0): void {
  assert.equal(res.status, status, `status for ${reason}: ${res.text.slice(0, 400)}`);
  assert.match(res.headers['content-type'] as string, /text\/html/);
  assert.match(decodeEntities(res.text), text);
  assert.match(
    res.text,
    /<a class="button secondary" href="\/\.auth\/(login|account)[^"]*">(Try again|Back to your account)<\/a>/,
    'one way on: a link, never an automatic redirect',
  );
  assert.equal(res.location, undefined);
  assert.equal(
    res.headers['referrer-policy'],
    'no-referrer',
    'the callback URL held a code: no referrer leaves (security.md #38)',
  );
  assert.match(res.headers['content-security-policy'] as string, /default-src 'none'/);
  assert.ok(!res.cookies.some((c) => c.startsWith('gatehouse=') && !/max-age=0/i.test(c)), 'no session is made');
  assert.equal(failures(gh, reason).length, before + 1, `logged once as oauth_callback_failed reason=${reason}`);
}

describe('signing in with a provider', () => {
  test('protected page → login page with one button per provider → the IdP → back on the page with X-User-Id; the first sign-in creates the user, the next reuses it', async () => {
    const c = new Client(gh.url);
    const target = '/reports/q3?year=2026';
    const protectedPage = await c.html(target);
    assert.equal(protectedPage.status, 302);
    const loginUrl = new URL(protectedPage.location!);
    const login = await c.html(loginUrl.pathname + loginUrl.search);
    const buttons = [
      ...login.text.matchAll(
        /<a class="button secondary" href="([^"]+)">(?:<img[^>]*>)?<span>Continue with ([^<]+)<\/span><\/a>/g,
      ),
    ].map((m) => [decodeEntities(m[1]!), m[2]]);
    assert.deepEqual(buttons, [
      [`/.auth/login/a?rd=${encodeURIComponent(target)}`, 'IdP A'],
      [`/.auth/login/b?rd=${encodeURIComponent(target)}`, 'IdP B'],
    ]);
    assert.match(login.text, /name="password"/, 'the password form is still there');

    lab.a.autoLogin = 'alice';
    const before = await gh.gatehouse.store.users.count();
    const hops = await follow(c, buttons[0]![0]!, { 'sec-fetch-site': 'same-origin' });
    assert.equal(hops[0]!.res.status, 303);
    const authorize = new URL(hops[0]!.res.location!);
    assert.equal(authorize.origin, lab.a.issuer);
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256', 'PKCE S256, always');
    assert.match(authorize.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.match(authorize.searchParams.get('state') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.match(authorize.searchParams.get('nonce') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.equal(authorize.searchParams.get('redirect_uri'), `${gh.url}/.auth/callback/a`);
    assert.equal(authorize.searchParams.get('scope'), 'openid email profile');
    assert.ok(
      !authorize.search.includes(encodeURIComponent(target)) && !authorize.search.includes('reports'),
      'the return target stays on the server',
    );
    const callback = callbackHop(hops);
    assert.ok(new URL(callback.url).searchParams.get('iss'), 'the IdP sent iss (RFC 9207)');
    assert.equal(callback.res.status, 303);
    assert.equal(callback.res.location, gh.url + target);
    const landed = last(hops);
    assert.equal(landed.url, gh.url + target);
    assert.equal(landed.res.status, 200);
    const seen = landed.res.json();
    assert.match(seen.headers['x-user-id'], /^[0-9a-f-]{36}$/);
    assert.equal(seen.headers['x-user-email'], 'alice@example.com');
    assert.equal(seen.headers.authorization, undefined, 'no token relay on this route');
    assert.equal(await gh.gatehouse.store.users.count(), before + 1, 'the first sign-in created a user');

    const profile = await me(c);
    assert.equal(profile.id, seen.headers['x-user-id']);
    assert.equal(profile.email, 'alice@example.com');
    assert.equal(profile.emailVerified, true, 'the provider verified the address');
    assert.equal(profile.name, 'Alice Liddell');
    assert.deepEqual(profile.session.amr, ['idp:a']);
    assert.deepEqual(
      profile.identities.map((i: Record<string, unknown>) => [i.provider, i.name, i.email, i.emailVerified, i.groups]),
      [['a', 'IdP A', 'alice@example.com', true, ['staff', 'admins']]],
      'the linked provider, with the groups claim kept for later policies',
    );

    // Another browser, the same identity: the same user, no new account.
    const again = await signedIn('a', 'alice', '/x');
    assert.equal(again.final.json().headers['x-user-id'], profile.id);
    assert.equal(await gh.gatehouse.store.users.count(), before + 1, 'the second sign-in reused the user');
    const identities = await gh.gatehouse.store.identities.listByUser(profile.id);
    assert.equal(identities.length, 1);
    assert.ok(identities[0]!.lastLoginAt >= identities[0]!.createdAt);
  });

  test('claims the ID token lacks come from userinfo (IdP B puts only sub in it)', async () => {
    const { c } = await signedIn('b', 'b-frank');
    const profile = await me(c);
    assert.equal(profile.email, 'frank@example.com');
    assert.equal(profile.name, 'Frank');
    assert.deepEqual(profile.identities[0].groups, []);
    const idToken = decodeJwt(lab.b.issued.at(-1)!.id_token!);
    assert.equal(idToken.email, undefined, 'B really left email out of the ID token');
  });

  test("a provider's name with line-break, bidi or invisible characters is cleaned, not refused; such a group is dropped (issue 10.15)", async () => {
    lab.a.accounts.set('spoofer', {
      sub: 'spoofer',
      email: 'spoofer@example.com',
      email_verified: true,
      name: 'Ann\u2028Lee\u202E\u200B',
      groups: ['staff', 'ad\u200Bmins'],
    });
    const { c, final } = await signedIn('a', 'spoofer', '/x');
    assert.equal(final.status, 200, 'signed in: the user cannot fix the name at the provider');
    const profile = await me(c);
    assert.equal(profile.name, 'Ann Lee', 'stored cleaned');
    assert.equal(profile.identities[0].name, 'IdP A');
    assert.deepEqual(profile.identities[0].groups, ['staff'], 'a group with an invisible character is dropped');
  });

  test('every sign-in gets a new session id; a planted cookie is never adopted and the old one dies (security.md #22)', async () => {
    const c = new Client(gh.url);
    const planted = 'A'.repeat(43);
    c.jar.set('gatehouse', planted);
    lab.a.autoLogin = 'bob';
    await signIn(c, 'a');
    const first = session(c)!;
    assert.notEqual(first, planted);
    await signIn(c, 'a');
    const second = session(c)!;
    assert.notEqual(second, first);
    assert.equal(
      await gh.gatehouse.store.sessions.get(hashSessionId(first)),
      undefined,
      'the session the browser came with ended',
    );
    const stale = new Client(gh.url);
    stale.jar.set('gatehouse', first);
    assert.equal((await stale.get('/.auth/me')).status, 401);
  });

  test('the return target is the one stored at the start: rd on the callback, and unsafe rd at the start, are ignored (security.md #8-13)', async () => {
    const c = new Client(gh.url);
    lab.a.autoLogin = 'bob';
    const cb = await stopAtCallback(c, `/.auth/login/a?rd=${encodeURIComponent('/inbox')}`);
    const res = await c.fetch(`${cb}&rd=${encodeURIComponent('https://evil.example/')}`, {
      headers: { accept: 'text/html' },
    });
    assert.equal(res.status, 303);
    assert.equal(res.location, `${gh.url}/inbox`);
    for (const rd of ['//evil.example', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
      const hops = await signIn(new Client(gh.url), 'a', rd);
      assert.equal(callbackHop(hops).res.location, `${gh.url}/`, `rd ${rd} falls back to /`);
    }
  });

  test('a sign-in link from another site asks first: a button, whose POST needs the CSRF token (forced login, security.md #28)', async () => {
    const c = new Client(gh.url);
    const page = await c.html('/.auth/login/a?rd=%2Fdocs', { 'sec-fetch-site': 'cross-site' });
    assert.equal(page.status, 200);
    assert.equal(page.location, undefined, 'nothing starts on a cross-site GET');
    assert.match(page.text, /<button type="submit" autofocus>Continue with IdP A<\/button>/);
    assert.match(
      page.headers['content-security-policy'] as string,
      new RegExp(`form-action 'self' ${lab.a.issuer}`),
      "the form's redirect to the IdP is allowed by the CSP",
    );
    assert.equal(
      (await c.postForm('/.auth/login/a', { rd: '/docs' }, { origin: gh.url })).status,
      403,
      'no token, no flow',
    );
    assert.equal(
      (await c.postForm('/.auth/login/a', { csrf: csrfOf(page), rd: '/docs' }, { origin: 'https://evil.example' }))
        .status,
      403,
      'a foreign Origin, no flow',
    );
    const started = await c.postForm(
      '/.auth/login/a',
      { csrf: csrfOf(page), rd: '/docs' },
      { origin: gh.url, 'sec-fetch-site': 'same-origin' },
    );
    assert.equal(started.status, 303);
    assert.equal(new URL(started.location!).origin, lab.a.issuer);
    const noHeader = await new Client(gh.url).html('/.auth/login/a');
    assert.equal(noHeader.status, 200, 'without Sec-Fetch-Site or a same-origin Referer it asks too');
    const referred = await new Client(gh.url).html('/.auth/login/a', { referer: `${gh.url}/.auth/login` });
    assert.equal(referred.status, 303, 'an older browser coming from the login page starts at once');
    assert.equal((await c.html('/.auth/login/nope', { 'sec-fetch-site': 'same-origin' })).status, 404);
  });
});

describe('who a provider identity is (security.md #37)', () => {
  test('auto-linking by email: only with linkByEmail on the provider and both addresses verified', async () => {
    // An operator-made user (verified address) and B, which allows linking by email.
    const grace = await gh.gatehouse.store.users.create({
      email: 'grace@example.com',
      emailVerified: true,
      name: 'Grace (operator)',
    });
    const { c } = await signedIn('b', 'b-grace');
    const profile = await me(c);
    assert.equal(profile.id, grace.id, 'joined the existing user');
    assert.deepEqual(
      profile.identities.map((i: { provider: string }) => i.provider),
      ['b'],
    );
    assert.ok(gh.logs.some((l) => l.event === 'identity_linked' && l.by === 'verified_email' && l.userId === grace.id));
  });

  test('no takeover of a self-registered (unverified) account, nor without linkByEmail', async () => {
    const n = failures(gh, 'email_taken').length;
    // frank@example.com registered with a password: nobody verified that address.
    const frankEmail = 'frank-local@example.com';
    lab.b.accounts.set('b-frank-local', {
      sub: 'b-frank-local',
      email: frankEmail,
      email_verified: true,
      name: 'Frank at B',
    });
    const local = await registerJson(new Client(gh.url), frankEmail);
    const viaB = await signedIn('b', 'b-frank-local');
    assertFailure(
      viaB.final,
      409,
      'email_taken',
      /An account for frank-local@example\.com already exists\..*link IdP B on your account page/s,
      n,
    );
    assert.deepEqual(
      await gh.gatehouse.store.identities.listByUser(local.id),
      [],
      'nothing was linked to the unverified account',
    );

    // A does not allow linking by email: a verified operator account is not joined either.
    await gh.gatehouse.store.users.create({ email: 'bob-op@example.com', emailVerified: true });
    lab.a.accounts.set('bob-op', { sub: 'bob-op', email: 'bob-op@example.com', email_verified: true });
    const viaA = await signedIn('a', 'bob-op');
    assertFailure(viaA.final, 409, 'email_taken', /already exists/, n + 1);
  });

  test('the same sub at another issuer is another person; an email that is not one is no email', async () => {
    lab.b.accounts.set('alice', {
      sub: 'alice',
      email: 'alice-at-b@example.com',
      email_verified: true,
      name: 'Another Alice',
    });
    const atA = await me((await signedIn('a', 'alice')).c);
    const atB = await me((await signedIn('b', 'alice')).c);
    assert.notEqual(atA.id, atB.id, 'sub "alice" at B is not sub "alice" at A');
    const n = failures(gh, 'no_email').length;
    const mallory = await signedIn('a', 'mallory');
    assertFailure(mallory.final, 403, 'no_email', /did not share an email address/, n);
    assert.equal(await gh.gatehouse.store.users.getByEmail('a@corp.com'), undefined);
  });

  test('an unverified provider email, or none, creates no account; a disabled user cannot sign in', async () => {
    let n = failures(gh, 'email_unverified').length;
    assertFailure(
      (await signedIn('a', 'carol')).final,
      403,
      'email_unverified',
      /has not verified your email address carol@example\.com/,
      n,
    );
    assert.equal(await gh.gatehouse.store.users.getByEmail('carol@example.com'), undefined);
    n = failures(gh, 'no_email').length;
    assertFailure((await signedIn('a', 'dave')).final, 403, 'no_email', /did not share an email address/, n);

    const { c } = await signedIn('a', 'erin');
    const erin = await me(c);
    await gh.gatehouse.accounts.setDisabled(erin.id, true);
    assert.equal((await c.get('/.auth/me')).status, 401, 'disabling ended the session');
    n = failures(gh, 'account_disabled').length;
    assertFailure((await signedIn('a', 'erin')).final, 403, 'account_disabled', /This account is disabled/, n);
  });
});

describe('registration rules for first sign-ins', () => {
  let closed: TestGatehouse;
  let closedLab: Lab;
  before(async () => {
    closedLab = await startLab();
    closed = await startGatehouse(
      () => ({
        providers: closedLab.providers({ a: { linkByEmail: true }, b: { registration: 'open' } }),
        accounts: { registration: 'closed', allowedDomains: ['example.com'] },
      }),
      { port: closedLab.ports[0] },
    );
  });
  after(async () => {
    await closed?.close();
    await closedLab?.close();
  });

  test('registration closed: an unknown identity gets no account, an operator-made user can still link by email', async () => {
    closedLab.a.autoLogin = 'bob';
    const c = new Client(closed.url);
    const res = last(await signIn(c, 'a')).res;
    assert.equal(res.status, 403);
    assert.match(
      decodeEntities(res.text),
      /There is no account for this IdP A identity, and new accounts are not accepted/,
    );
    assert.equal(await closed.gatehouse.store.users.count(), 0);
    const op = await closed.gatehouse.store.users.create({ email: 'bob@example.com', emailVerified: true });
    const ok = last(await signIn(new Client(closed.url), 'a')).res;
    assert.equal(ok.status, 200);
    assert.equal(ok.json().headers['x-user-id'], op.id);
  });

  test('starting sign-ins is rate-limited per client IP (each keeps a pending state)', async () => {
    const limited = await startGatehouse(() => ({
      providers: closedLab.providers(),
      accounts: { rateLimits: { providerStartsPerIp: 3 } },
    }));
    try {
      const c = new Client(limited.url);
      for (let i = 0; i < 3; i++)
        assert.equal((await c.html('/.auth/login/a', { 'sec-fetch-site': 'same-origin' })).status, 303);
      const res = await c.html('/.auth/login/b', { 'sec-fetch-site': 'same-origin' });
      assert.equal(res.status, 429);
      assert.equal(res.headers['retry-after'], '900');
      assert.match(res.text, /Too many sign-in attempts/);
      const db = rawDb(limited);
      try {
        assert.equal(
          (await db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM login_states`))!.n,
          3,
          'the refused start stored nothing',
        );
      } finally {
        await db.close();
      }
    } finally {
      await limited.close();
    }
  });

  test("a provider's own registration: open, but accounts.allowedDomains still applies to its verified email", async () => {
    closedLab.b.autoLogin = 'b-frank';
    const frank = last(await signIn(new Client(closed.url), 'b')).res;
    assert.equal(frank.status, 200, 'B is open although accounts are closed');
    closedLab.b.accounts.set('b-erin', { sub: 'b-erin', email: 'erin@elsewhere.org', email_verified: true });
    closedLab.b.autoLogin = 'b-erin';
    const erin = last(await signIn(new Client(closed.url), 'b')).res;
    assert.equal(erin.status, 403);
    assert.match(decodeEntities(erin.text), /Accounts can only be created for addresses at example\.com/);
    assert.equal(await closed.gatehouse.store.users.getByEmail('erin@elsewhere.org'), undefined);
  });
});

describe('a callback that goes wrong ends on one page, logged once, and never loops (security.md #30-36)', () => {
  const open = (c: Client, url: string) => c.fetch(url, { headers: { accept: 'text/html' } });
  const withParams = (url: string, set: Record<string, string | null>) => {
    const u = new URL(url);
    for (const [k, v] of Object.entries(set)) v === null ? u.searchParams.delete(k) : u.searchParams.set(k, v);
    return u.href;
  };

  test('the user cancels at the provider', async () => {
    const n = failures(gh, 'denied').length;
    lab.a.deny = true;
    const hops = await signIn(new Client(gh.url), 'a', '/wanted');
    const res = last(hops).res;
    assertFailure(res, 403, 'denied', /Signing in with IdP A was cancelled/, n);
    assert.match(
      res.text,
      /href="\/\.auth\/login\?rd=%2Fwanted">Try again/,
      '"Try again" goes back to the sign-in page with the stored return target',
    );
  });

  test('a missing, tampered, replayed or expired state', async () => {
    lab.a.autoLogin = 'bob';
    const c = new Client(gh.url);
    const cb = await stopAtCallback(c, '/.auth/login/a');
    let n = failures(gh, 'state_missing').length;
    assertFailure(await open(c, withParams(cb, { state: null })), 400, 'state_missing', /not valid/, n);
    n = failures(gh, 'state_unknown').length;
    const state = new URL(cb).searchParams.get('state')!;
    const tampered = (state[0] === 'A' ? 'B' : 'A') + state.slice(1);
    assertFailure(
      await open(c, withParams(cb, { state: tampered })),
      400,
      'state_unknown',
      /not valid or has been changed/,
      n,
    );
    const u = new URL(cb);
    u.search = `${u.search}&state=${state}`;
    assertFailure(await open(c, u.href), 400, 'state_unknown', /not valid/, n + 1);
    assert.equal((await open(c, cb)).status, 303, 'the real callback still works once');
    n = failures(gh, 'state_used').length;
    assertFailure(await open(c, cb), 400, 'state_used', /already used/, n);

    const late = await stopAtCallback(c, '/.auth/login/a');
    const db = rawDb(gh);
    try {
      await db.run(`UPDATE login_states SET expires_at = 1 WHERE used_at IS NULL`);
    } finally {
      await db.close();
    }
    n = failures(gh, 'state_expired').length;
    assertFailure(await open(c, late), 400, 'state_expired', /took too long/, n);
  });

  test("an attacker's code and state opened in the victim's browser get nowhere (login CSRF, security.md #30-31)", async () => {
    lab.a.autoLogin = 'bob';
    const attacker = new Client(gh.url);
    const cb = await stopAtCallback(attacker, '/.auth/login/a');
    // A victim without the binding cookie: the named "missing cookie" path, explained by the
    // deployment diagnosis (diagnosis/): the callback must be on publicUrl.
    const victim = new Client(gh.url);
    let n = failures(gh, 'state_cookie_missing').length;
    const missing = await open(victim, cb);
    assert.equal(missing.status, 400);
    assert.equal(missing.location, undefined, 'an explanation, never a redirect');
    assert.match(decodeEntities(missing.text), /came back from the identity provider without the cookie/);
    assert.ok(decodeEntities(missing.text).includes(`${gh.url}/.auth/callback/`), 'names the callback URL to register');
    assert.ok(!missing.cookies.some((c) => c.startsWith('gatehouse=') && !/max-age=0/i.test(c)), 'no session is made');
    assert.equal(failures(gh, 'state_cookie_missing').length, n + 1, 'logged once as oauth_callback_failed');
    // A victim with a binding cookie of its own (it started a sign-in itself).
    await stopAtCallback(victim, '/.auth/login/a');
    n = failures(gh, 'state_cookie_mismatch').length;
    assertFailure(await open(victim, cb), 400, 'state_cookie_mismatch', /started in another browser/, n);
    assert.equal(session(victim), undefined, 'the victim is not signed in as the attacker');
  });

  test('mix-up: an answer of provider B never completes a sign-in started with A (security.md #34)', async () => {
    lab.a.autoLogin = 'alice';
    lab.b.autoLogin = 'b-frank';
    const victim = new Client(gh.url);
    const cbA = new URL(await stopAtCallback(victim, '/.auth/login/a'));
    const cbB = new URL(await stopAtCallback(new Client(gh.url), '/.auth/login/b'));
    const stateA = cbA.searchParams.get('state')!;
    const tokenRequestsA = lab.a.tokenEvents.length;
    const tokenRequestsB = lab.b.tokenEvents.length;

    // A's state at B's callback: refused before any code is spent.
    let n = failures(gh, 'wrong_provider').length;
    assertFailure(
      await open(
        victim,
        `${gh.url}/.auth/callback/b?code=${cbB.searchParams.get('code')}&state=${stateA}&iss=${encodeURIComponent(cbB.searchParams.get('iss')!)}`,
      ),
      400,
      'wrong_provider',
      /does not belong to a sign-in started with IdP B/,
      n,
    );
    // B's code and iss at A's callback with A's state: the RFC 9207 iss check refuses it.
    n = failures(gh, 'issuer_mismatch').length;
    assertFailure(
      await open(
        victim,
        `${gh.url}/.auth/callback/a?code=${cbB.searchParams.get('code')}&state=${stateA}&iss=${encodeURIComponent(cbB.searchParams.get('iss')!)}`,
      ),
      400,
      'issuer_mismatch',
      /did not come from IdP A/,
      n,
    );
    assert.equal(lab.a.tokenEvents.length, tokenRequestsA, "A never saw B's code");
    assert.equal(lab.b.tokenEvents.length, tokenRequestsB, "B's code was not spent either");
  });

  test("a code injected into the victim's flow fails at the token endpoint: PKCE (security.md #32)", async () => {
    lab.a.autoLogin = 'bob';
    const victim = new Client(gh.url);
    const cbVictim = new URL(await stopAtCallback(victim, '/.auth/login/a'));
    const cbAttacker = new URL(await stopAtCallback(new Client(gh.url), '/.auth/login/a'));
    cbVictim.searchParams.set('code', cbAttacker.searchParams.get('code')!);
    const n = failures(gh, 'token_exchange_failed').length;
    assertFailure(await open(victim, cbVictim.href), 502, 'token_exchange_failed', /did not accept the sign-in/, n);
    const refused = lab.a.tokenEvents.at(-1)!;
    assert.deepEqual(
      [refused.grantType, refused.ok],
      ['authorization_code', false],
      'the IdP refused the code: its verifier is not ours',
    );
  });

  test('ID tokens that must be refused, from a real token endpoint (security.md #33, #35, #36)', async () => {
    const { privateKey: evilKey, publicKey: evilPublic } = await generateKeyPair('RS256', { extractable: true });
    const evilJwk = await exportJWK(evilPublic);
    const now = Math.floor(Date.now() / 1000);
    const parts = (t: string) => t.split('.');
    const encode = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const retyped = async (b: Record<string, unknown>, typ: string) => ({
      ...b,
      id_token: await lab.a.signIdToken(decodeJwt(String(b.id_token)), { typ }),
    });
    const cases: [string, (body: Record<string, unknown>) => Promise<Record<string, unknown>>, RegExp][] = [
      [
        'a nonce that is not the one sent',
        (b) => resign(lab.a, b, (c) => ({ ...c, nonce: 'not-the-nonce-we-sent' })),
        /nonce/,
      ],
      ['no nonce at all', (b) => resign(lab.a, b, ({ nonce: _, ...c }) => c), /nonce/],
      [
        'an ID token for another client',
        (b) => resign(lab.a, b, (c) => ({ ...c, aud: 'other-client', azp: 'other-client' })),
        /aud/,
      ],
      ['another issuer', (b) => resign(lab.a, b, (c) => ({ ...c, iss: 'https://evil.example' })), /iss/],
      [
        'an expired ID token',
        (b) => resign(lab.a, b, (c) => ({ ...c, iat: now - 7200, exp: now - 3600 })),
        /exp|timestamp/i,
      ],
      [
        'not valid before a time in the future',
        (b) => resign(lab.a, b, (c) => ({ ...c, nbf: now + 3600 })),
        /nbf|timestamp/i,
      ],
      [
        'alg none',
        async (b) => ({ ...b, id_token: `${encode({ alg: 'none', typ: 'JWT' })}.${parts(String(b.id_token))[1]}.` }),
        /alg/,
      ],
      [
        'HS256 keyed with the IdP public key',
        async (b) => ({
          ...b,
          id_token: await new SignJWT(decodeJwt(String(b.id_token)) as JWTPayload)
            .setProtectedHeader({ alg: 'HS256', kid: lab.a.publicJwk.kid! })
            .sign(new TextEncoder().encode(JSON.stringify(lab.a.publicJwk))),
        }),
        /alg/,
      ],
      [
        'a broken signature',
        async (b) => {
          const [h, p, s] = parts(String(b.id_token));
          return { ...b, id_token: `${h}.${p}.${s!.startsWith('A') ? 'B' : 'A'}${s!.slice(1)}` };
        },
        /signature/i,
      ],
      [
        'a key the IdP does not have (unknown kid)',
        async (b) => ({
          ...b,
          id_token: await new SignJWT(decodeJwt(String(b.id_token)) as JWTPayload)
            .setProtectedHeader({ alg: 'RS256', kid: 'evil-key' })
            .sign(evilKey),
        }),
        /key|kid/i,
      ],
      [
        'the attacker key embedded as jwk / jku',
        async (b) => ({
          ...b,
          id_token: await new SignJWT(decodeJwt(String(b.id_token)) as JWTPayload)
            .setProtectedHeader({
              alg: 'RS256',
              kid: lab.a.publicJwk.kid!,
              jwk: evilJwk,
              jku: `${gh.upstream.url}/evil/jwks.json`,
            })
            .sign(evilKey),
        }),
        /signature|jwk/i,
      ],
      [
        "an x5u header naming the attacker's certificate",
        async (b) => ({
          ...b,
          id_token: await new SignJWT(decodeJwt(String(b.id_token)) as JWTPayload)
            .setProtectedHeader({ alg: 'RS256', kid: lab.a.publicJwk.kid!, x5u: `${gh.upstream.url}/evil/cert.pem` })
            .sign(evilKey),
        }),
        /signature/i,
      ],
      ['the access token in place of the ID token', async (b) => ({ ...b, id_token: b.access_token }), /JWT|id_token/i],
      // An access token (RFC 9068) signed with the IdP's own key, for this client: typ is all that says what it is (issue 10.20).
      ['typ: at+jwt', (b) => retyped(b, 'at+jwt'), /typ/],
      ['typ: application/at+jwt', (b) => retyped(b, 'application/at+jwt'), /typ/],
      ['typ: AT+JWT (any letter case)', (b) => retyped(b, 'AT+JWT'), /typ/],
      ['typ: logout+jwt (another kind of JWT)', (b) => retyped(b, 'logout+jwt'), /typ/],
      [
        'issued in the future, beyond the allowed 30 s',
        (b) => resign(lab.a, b, (c) => ({ ...c, iat: now + 120, exp: now + 3720 })),
        /iat/,
      ],
      [
        'no ID token at all',
        async (b) => {
          const { id_token: _, ...rest } = b;
          return rest;
        },
        /id_token/,
      ],
    ];
    lab.a.autoLogin = 'bob';
    for (const [what, tamper, detail] of cases) {
      const n = failures(gh, 'id_token_invalid').length;
      lab.a.tamperNext = tamper;
      const res = last(await signIn(new Client(gh.url), 'a')).res;
      assert.equal(lab.a.tamperNext, undefined, `${what}: the IdP answered with the tampered token`);
      assert.notEqual(res.status, 200, `${what} was accepted`);
      assertFailure(res, 502, 'id_token_invalid', /answer could not be verified/, n);
      const logged = failures(gh, 'id_token_invalid').at(-1)!;
      assert.match(String(logged.detail), detail, `${what}: the log says why (${String(logged.detail)})`);
    }
    assert.deepEqual(
      gh.upstream.requests.filter((r) => r.url.startsWith('/evil/')).map((r) => r.url),
      [],
      "keys are taken from the provider's JWKS only: a jku or x5u URL in the header is never fetched",
    );
  });

  test('ID tokens that must still pass: no typ, typ JWT or application/jwt, iat a little ahead within the tolerance (issue 10.20)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, (body: Record<string, unknown>) => Promise<Record<string, unknown>>][] = [
      [
        'no typ',
        async (b) => ({ ...b, id_token: await lab.a.signIdToken(decodeJwt(String(b.id_token)), { typ: undefined }) }),
      ],
      [
        'typ application/jwt',
        async (b) => ({
          ...b,
          id_token: await lab.a.signIdToken(decodeJwt(String(b.id_token)), { typ: 'application/JWT' }),
        }),
      ],
      ['iat 20 s ahead (a clock a little fast)', (b) => resign(lab.a, b, (c) => ({ ...c, iat: now + 20 }))],
    ];
    lab.a.autoLogin = 'bob';
    for (const [what, tamper] of cases) {
      lab.a.tamperNext = tamper;
      const res = last(await signIn(new Client(gh.url), 'a', '/fine')).res;
      assert.equal(lab.a.tamperNext, undefined, `${what}: the IdP answered with the changed token`);
      assert.equal(res.status, 200, `${what} was refused: ${res.text.slice(0, 300)}`);
    }
  });

  test('the token endpoint fails, or the provider goes down mid-flow: an error page, and then it works again', async () => {
    lab.a.autoLogin = 'bob';
    lab.a.failToken = 500;
    let n = failures(gh, 'token_exchange_failed').length;
    try {
      assertFailure(
        last(await signIn(new Client(gh.url), 'a')).res,
        502,
        'token_exchange_failed',
        /did not accept the sign-in/,
        n,
      );
    } finally {
      lab.a.failToken = undefined;
    }
    const c = new Client(gh.url);
    const cb = await stopAtCallback(c, '/.auth/login/a');
    await lab.a.down();
    n = failures(gh, 'provider_unreachable').length;
    try {
      const res = await open(c, cb);
      assertFailure(res, 503, 'provider_unreachable', /IdP A cannot be reached right now/, n);
      assert.equal(res.headers['retry-after'], '5');
    } finally {
      await lab.a.up();
    }
    assert.equal(last(await signIn(new Client(gh.url), 'a')).res.status, 200);
  });

  test('HEAD on the callback does not spend the state; an unknown provider is a 404 page', async () => {
    lab.a.autoLogin = 'bob';
    const c = new Client(gh.url);
    const cb = await stopAtCallback(c, '/.auth/login/a');
    assert.equal((await c.fetch(cb, { method: 'HEAD' })).status, 405);
    assert.equal((await open(c, cb)).status, 303, 'the state was still there');
    const n = failures(gh, 'unknown_provider').length;
    assert.equal((await open(c, `${gh.url}/.auth/callback/nope?code=x&state=y`)).status, 404);
    assert.equal(failures(gh, 'unknown_provider').length, n + 1);
  });
});

describe('a provider that is down when Gatehouse starts', () => {
  test('Gatehouse starts, password sign-in works, the button says so; once the provider is back, it signs in', async () => {
    const { startIdp } = await import('../helpers/idp.ts');
    const { freePort } = await import('../helpers/gatehouse.ts');
    const port = await freePort();
    const idp = await startIdp({
      name: 'idpc',
      accounts: [{ sub: 'zed', email: 'zed@example.com', email_verified: true }],
      clients: [
        {
          client_id: 'gh-c',
          client_secret: 'secret-c-0123456789',
          redirect_uris: [`http://127.0.0.1:${port}/.auth/callback/c`],
        },
      ],
    });
    await idp.down();
    const node = await startGatehouse(
      () => ({
        providers: [
          { id: 'c', type: 'oidc', issuer: idp.issuer, clientId: 'gh-c', clientSecret: 'secret-c-0123456789' },
        ],
      }),
      { port },
    );
    try {
      const waitFor = async (what: string, check: () => boolean | Promise<boolean>) => {
        const deadline = Date.now() + 10_000;
        while (!(await check())) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      await waitFor('the discovery failure to be logged', () =>
        node.logs.some((l) => l.event === 'provider_discovery_failed' && l.provider === 'c'),
      );
      const user = new Client(node.url);
      await registerJson(user);
      assert.equal((await user.get('/.auth/me')).status, 200, 'password accounts are not affected');
      const button = await new Client(node.url).html('/.auth/login/c', { 'sec-fetch-site': 'same-origin' });
      assert.equal(button.status, 503);
      assert.match(decodeEntities(button.text), /C cannot be reached right now/);
      assert.match(button.text, /Try again/);
      const db = rawDb(node);
      try {
        assert.equal(
          (await db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM login_states`))!.n,
          0,
          'a start that cannot reach the provider stores nothing',
        );
      } finally {
        await db.close();
      }
      await idp.up();
      idp.autoLogin = 'zed';
      // Discovery is retried after a short back-off: poll the button until it leads to the IdP.
      await waitFor(
        'discovery to succeed',
        async () =>
          (await new Client(node.url).html('/.auth/login/c', { 'sec-fetch-site': 'same-origin' })).status === 303,
      );
      const landed = last(await signIn(new Client(node.url), 'c')).res;
      assert.equal(landed.status, 200);
      assert.match(landed.json().headers['x-user-id'], /^[0-9a-f-]{36}$/);
    } finally {
      await node.close();
      await idp.close();
    }
  });
});

describe('the account page: linking and unlinking', () => {
  test('a signed-in user links a second provider; either then signs in the same user; unlinking never removes the last way in', async () => {
    lab.b.accounts.set('b-bob', { sub: 'b-bob', email: 'bob@example.com', email_verified: true, name: 'Bob at B' });
    const { c } = await signedIn('a', 'bob');
    const bob = await me(c);
    let page = await c.html('/.auth/account');
    assert.equal(page.status, 200);
    assert.match(decodeEntities(page.text), /Signed in as <strong class="who">bob@example\.com<\/strong>/);
    assert.match(
      page.text,
      /IdP A<small>bob@example\.com<\/small><\/span><small>Your only way to sign in<\/small>/,
      'no Unlink button on the only way in',
    );
    assert.match(
      page.text,
      /<form method="post" action="\/\.auth\/account\/link"><input type="hidden" name="csrf" value="[^"]+"><input type="hidden" name="provider" value="b"><button type="submit" class="secondary">Link IdP B<\/button><\/form>/,
    );
    assert.match(
      page.headers['content-security-policy'] as string,
      new RegExp(`form-action 'self' [^;]*${lab.b.issuer}`),
      "the link form's redirect to B is allowed",
    );

    lab.b.autoLogin = 'b-bob';
    const started = await accountPost(c, '/.auth/account/link', { provider: 'b' });
    assert.equal(started.status, 303);
    assert.equal(new URL(started.location!).origin, lab.b.issuer);
    const hops = await follow(c, started.location!, { 'sec-fetch-site': 'cross-site' });
    assert.equal(callbackHop(hops).res.location, `${gh.url}/.auth/account?linked=b`);
    page = last(hops).res;
    assert.match(page.text, /<p class="notice" role="status">IdP B is linked to your account\.<\/p>/);
    assert.deepEqual(
      (await me(c)).identities.map((i: { provider: string }) => i.provider),
      ['a', 'b'],
    );
    assert.equal((await me(c)).id, bob.id, 'linking keeps the session and the user');
    assert.ok(gh.logs.some((l) => l.event === 'identity_linked' && l.by === 'user' && l.userId === bob.id));

    const viaB = await signedIn('b', 'b-bob');
    assert.equal((await me(viaB.c)).id, bob.id, 'B now signs in the same user');

    // Unlink A: B remains.
    page = await c.html('/.auth/account');
    const idA = (await gh.gatehouse.store.identities.listByUser(bob.id)).find((i) => i.provider === 'a')!.id;
    assert.match(
      page.text,
      new RegExp(
        `name="identity" value="${idA}"><button type="submit" class="secondary" aria-label="Unlink IdP A">Unlink</button>`,
      ),
    );
    const unlinked = await accountPost(c, '/.auth/account/unlink', { identity: idA });
    assert.equal(unlinked.status, 303);
    assert.equal(unlinked.location, `${gh.url}/.auth/account?unlinked=a`);
    assert.match((await c.html('/.auth/account?unlinked=a')).text, /IdP A is no longer linked\./);
    assert.deepEqual(
      (await me(c)).identities.map((i: { provider: string }) => i.provider),
      ['b'],
    );
    assert.equal(
      await gh.gatehouse.store.providerTokens.get(`session:${hashSessionId(session(c)!)}`, 'a'),
      undefined,
      "A's relayed tokens went with the link",
    );
    const n = failures(gh, 'email_taken').length;
    assertFailure(
      last(await signIn(new Client(gh.url), 'a')).res,
      409,
      'email_taken',
      /An account for bob@example\.com already exists/,
      n,
    );

    // B is the last way in: refused, and nothing changes.
    const idB = (await gh.gatehouse.store.identities.listByUser(bob.id))[0]!.id;
    const refused = await accountPost(c, '/.auth/account/unlink', { identity: idB });
    assert.equal(refused.status, 409);
    assert.match(decodeEntities(refused.text), /This is your only way to sign in/);
    assert.equal((await gh.gatehouse.store.identities.listByUser(bob.id)).length, 1);
    assert.equal(
      (await accountPost(c, '/.auth/account/unlink', { identity: '00000000-0000-0000-0000-000000000000' })).status,
      404,
    );
  });

  test('an identity linked to one user cannot be linked to another; a link completes only in the session that started it', async () => {
    lab.b.accounts.set('b-henry', { sub: 'b-henry', email: 'henry@example.com', email_verified: true });
    await signedIn('b', 'b-henry'); // b-henry is now its own user
    const { c } = await signedIn('a', 'alice');
    const alice = await me(c);
    lab.b.autoLogin = 'b-henry';
    let n = failures(gh, 'identity_taken').length;
    const started = await accountPost(c, '/.auth/account/link', { provider: 'b' });
    const res = last(await follow(c, started.location!)).res;
    assertFailure(res, 409, 'identity_taken', /This IdP B account is already linked to another user/, n);
    assert.match(res.text, /href="\/\.auth\/account">Back to your account/);
    assert.deepEqual(
      (await me(c)).identities.map((i: { provider: string }) => i.provider),
      alice.identities.map((i: { provider: string }) => i.provider),
      'nothing changed',
    );

    // A link started in one session, finished after the browser signed in afresh.
    lab.b.accounts.set('b-ivy', { sub: 'b-ivy', email: 'ivy@example.com', email_verified: true });
    lab.b.autoLogin = 'b-ivy';
    const link = await accountPost(c, '/.auth/account/link', { provider: 'b' });
    const cb = await stopAtCallback(c, link.location!, { 'sec-fetch-site': 'cross-site' });
    lab.a.autoLogin = 'alice';
    await signIn(c, 'a');
    n = failures(gh, 'link_session_mismatch').length;
    assertFailure(
      await c.fetch(cb, { headers: { accept: 'text/html' } }),
      400,
      'link_session_mismatch',
      /must finish in the session that started it/,
      n,
    );
    assert.equal(await gh.gatehouse.store.identities.find(lab.b.issuer, 'b-ivy'), undefined);
  });

  test('the account routes: sign-in required, CSRF-protected POSTs', async () => {
    const anon = new Client(gh.url);
    const page = await anon.html('/.auth/account');
    assert.equal(page.status, 302);
    assert.equal(page.location, `${gh.url}/.auth/login?rd=${encodeURIComponent('/.auth/account')}`);
    assert.equal((await anon.get('/.auth/account')).status, 401);
    const { c } = await signedIn('a', 'alice');
    const token = csrfOf(await c.html('/.auth/account'));
    assert.equal(
      (await c.postForm('/.auth/account/link', { provider: 'b' }, { origin: gh.url })).status,
      403,
      'no token',
    );
    assert.equal(
      (await c.postForm('/.auth/account/link', { csrf: token, provider: 'b' }, { origin: 'https://evil.example' }))
        .status,
      403,
      'foreign Origin',
    );
    assert.equal(
      (await c.postJson('/.auth/account/unlink', { identity: 'x' }, { 'sec-fetch-site': 'cross-site' })).status,
      403,
      'cross-site JSON',
    );
    assert.equal(
      (await c.postForm('/.auth/account/link', { csrf: token, provider: 'nope' }, { origin: gh.url })).status,
      400,
    );
    assert.equal((await anon.postJson('/.auth/account/link', { provider: 'b' })).status, 401);
  });
});

describe('logout, and RP-initiated logout at the provider', () => {
  test("logout ends the Gatehouse session, then the IdP's session (id_token_hint), and comes back to the sign-in page", async () => {
    lab.a.autoLogin = 'alice';
    const c = new Client(gh.url);
    await signIn(c, 'a');
    const idToken = lab.a.issued.at(-1)!.id_token!;
    const sid = hashSessionId(session(c)!);
    // While the IdP session lives, a sign-in needs no login form there.
    lab.a.autoLogin = undefined;
    assert.equal(last(await signIn(c, 'a')).res.status, 200, 'the IdP session signs the browser in without a form');
    const current = hashSessionId(session(c)!);
    assert.notEqual(current, sid);

    const res = await c.submitForm('/.auth/logout', {}, { origin: gh.url });
    assert.equal(res.status, 303);
    const end = new URL(res.location!);
    assert.equal(end.origin + end.pathname, `${lab.a.issuer}/session/end`);
    assert.equal(end.searchParams.get('id_token_hint'), lab.a.issued.at(-1)!.id_token, "the session's own ID token");
    assert.notEqual(end.searchParams.get('id_token_hint'), idToken);
    assert.equal(end.searchParams.get('post_logout_redirect_uri'), `${gh.url}/.auth/signed-out`);
    assert.equal(end.searchParams.get('client_id'), 'gatehouse-a');
    assert.equal((await c.get('/.auth/me')).status, 401, 'signed out of Gatehouse before leaving');
    assert.equal(await gh.gatehouse.store.sessions.get(current), undefined);
    assert.equal(
      await gh.gatehouse.store.providerTokens.get(`session:${current}`, 'a'),
      undefined,
      'its tokens went with it',
    );

    const confirm = await c.fetch(end.href, { headers: { accept: 'text/html' } });
    assert.equal(confirm.status, 200);
    const form = idpLogoutForm(confirm.text);
    assert.ok(form.action, `the IdP asks to confirm: ${confirm.text.slice(0, 300)}`);
    const done = await c.postForm(form.action!, { ...form.hidden, logout: 'yes' });
    assert.equal(done.status, 303);
    assert.equal(done.location, `${gh.url}/.auth/signed-out`);
    const back = await follow(c, done.location!);
    assert.equal(last(back).url, `${gh.url}/.auth/login?signed_out=1`);
    assert.match(last(back).res.text, /You have signed out\./);
    assert.equal(lab.a.endSessions.length >= 1, true);

    // The IdP session is gone: signing in with A now shows its login form.
    const again = last(await signIn(c, 'a')).res;
    assert.equal(again.status, 200);
    assert.match(again.text, /Sign in to idpa/, 'the IdP asks who you are again');
  });

  test('JSON logout says where to go; a provider without endSession only ends the Gatehouse session', async () => {
    lab.a.autoLogin = 'alice';
    const c = new Client(gh.url);
    await signIn(c, 'a');
    const json = await c.postJson('/.auth/logout', {});
    assert.equal(json.status, 200);
    assert.match(json.json().redirect, new RegExp(`^${lab.a.issuer}/session/end\\?`));
    assert.equal((await c.get('/.auth/me')).status, 401);

    const { c: viaB } = await signedIn('b', 'b-frank');
    const res = await viaB.submitForm('/.auth/logout', {}, { origin: gh.url });
    assert.equal(res.location, `${gh.url}/.auth/login?signed_out=1`);
    assert.equal((await viaB.get('/.auth/me')).status, 401);
  });
});

describe('tokens stay on the server and secrets out of the logs', () => {
  test('tokenRelay sends the access token instead of the client Authorization; the stored row is ciphertext bound to its session', async () => {
    lab.a.autoLogin = 'alice';
    const c = new Client(gh.url);
    await signIn(c, 'a');
    const issued = lab.a.issued.at(-1)!;
    const res = await c.get('/api/orders', { authorization: 'Basic ZXZpbDpldmls' });
    assert.equal(res.status, 200);
    assert.equal(
      res.json().headers.authorization,
      `Bearer ${issued.access_token}`,
      "the provider's access token, not the client's header",
    );
    assert.equal(await lab.a.accepts(issued.access_token!), true);
    assert.ok(!c.cookieHeader()!.includes(issued.access_token!), 'never in a cookie');
    assert.ok(!res.text.includes(issued.refresh_token!));

    const owner = `session:${hashSessionId(session(c)!)}`;
    const db = rawDb(gh);
    try {
      const row = await db.get<{ data: string; expires_at: number }>(
        `SELECT data, expires_at FROM provider_tokens WHERE owner = ? AND provider = 'a'`,
        [owner],
      );
      assert.ok(row, 'tokens are stored for the session');
      assert.match(
        row.data,
        /^v1\.[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/,
        'AES-256-GCM ciphertext with a key id',
      );
      for (const t of [issued.access_token!, issued.refresh_token!, issued.id_token!])
        assert.ok(!row.data.includes(t) && !row.data.includes(Buffer.from(t).toString('base64url')));
      const states = await db.all<{ secret: string }>(`SELECT secret FROM login_states`);
      for (const s of states) assert.match(s.secret, /^v1\./, 'PKCE verifiers and nonces are encrypted too');

      // The ciphertext moved to another session's row does not decrypt there (its context names the owner).
      const other = new Client(gh.url);
      await signIn(other, 'a');
      await db.run(`UPDATE provider_tokens SET data = ? WHERE owner = ?`, [
        row.data,
        `session:${hashSessionId(session(other)!)}`,
      ]);
      const stolen = await other.get('/api/orders');
      assert.equal(stolen.status, 401);
      assert.equal(stolen.json().error, 'provider_token_required');
    } finally {
      await db.close();
    }
    // Routes without tokenRelay pass the client's Authorization on as before.
    assert.equal(
      (await c.get('/elsewhere', { authorization: 'Bearer app-token' })).json().headers.authorization,
      'Bearer app-token',
    );
  });

  test('a signed-in user without tokens of the relayed provider gets 401 with where to sign in', async () => {
    const { c } = await signedIn('b', 'b-frank');
    const res = await c.get('/api/orders');
    assert.equal(res.status, 401);
    assert.deepEqual(res.json(), {
      error: 'provider_token_required',
      message: 'Sign in with IdP A again to use this resource.',
      login: `${gh.url}/.auth/login/a?rd=${encodeURIComponent('/api/orders')}`,
    });
    assert.equal(res.headers['www-authenticate'], `Bearer realm="${gh.url}", error="invalid_token"`);
  });

  test('no token, code, state, client secret or cookie value in any log line', () => {
    const text = gh.logText();
    const secrets = new Set<string>([lab.secretA, lab.secretB]);
    for (const idp of [lab.a, lab.b])
      for (const t of idp.issued) for (const v of [t.access_token, t.refresh_token, t.id_token]) if (v) secrets.add(v);
    assert.ok(secrets.size > 20, `enough secrets to look for (${secrets.size})`);
    for (const s of secrets) assert.ok(!text.includes(s), `a secret leaked into the logs: ${s.slice(0, 12)}…`);
    assert.doesNotMatch(
      text,
      /code=|state=|code_verifier|id_token_hint|Bearer /,
      'no query strings or authorization values',
    );
    assert.ok(
      text.includes('"event":"oauth_callback_failed"') && text.includes('"event":"login"'),
      'the logs were written',
    );
  });
});
