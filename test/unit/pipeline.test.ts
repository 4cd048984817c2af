import assert from 'node:assert/strict';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.ts';
import { normalizeTarget } from '../../src/http/target.ts';
import type { BearerResult, BearerSession } from '../../src/oauth/bearer.ts';
import { type BearerCheck, decide, type Decision, type SessionLookup } from '../../src/pipeline/decide.ts';
import { outcome } from '../../src/pipeline/outcome.ts';
import type { Lookup } from '../../src/sessions/index.ts';
import { buildSites, type Site } from '../../src/sites/index.ts';
import type { Grant, User } from '../../src/store/index.ts';

/**
 * The pipeline's decide() (pipeline/decide.ts) and outcome() (pipeline/outcome.ts) on their own,
 * with a real request object and a stand-in for the session store: what the proxy, WebSocket
 * upgrades and forward-auth all do with a (site, method, path).
 */

const PREFIX = '/.auth';

function siteOf(yaml: string): Site {
  const config = parseConfig(
    `publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\n${yaml}`,
    'g.yaml',
    {},
  );
  return buildSites(config).values().next().value!;
}

const site = siteOf(`headers: {email: true}
routes:
  - {path: /public/**, access: public}
  - {path: /admin/**, access: authenticated, allow: {groups: [admins]}}
  - {path: /blocked/**, access: deny}
  - {path: /api/**, access: authenticated, unauthenticated: '401'}
  - {path: /always-login/**, access: authenticated, unauthenticated: redirect}
`);

function request(headers: Record<string, string> = {}): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.method = 'GET';
  req.headers = headers;
  return req;
}

function user(o: Partial<User> = {}): User {
  return {
    id: 'u1',
    email: 'ann@example.com',
    emailVerified: true,
    name: 'Ann',
    groups: [],
    passwordHash: null,
    disabled: false,
    createdAt: 0,
    updatedAt: 0,
    ...o,
  };
}

function active(u: User = user()) {
  const session = {
    idHash: 'h',
    userId: u.id,
    site: site.origin,
    createdAt: 0,
    lastSeenAt: 0,
    expiresAt: Number.MAX_SAFE_INTEGER,
    amr: ['pwd'],
    ip: null,
    userAgent: null,
    authTime: 0,
  };
  return { session, user: u };
}

/** The session store's answer for any request (what sessions.lookup would find). */
function sessions(found: Lookup): SessionLookup & { calls: number } {
  return {
    calls: 0,
    async lookup() {
      this.calls++;
      return found;
    },
  };
}

const grant: Grant = {
  id: 'g1',
  userId: 'u1',
  clientId: 'cli',
  clientName: 'CLI',
  kind: 'device',
  scope: 'openid',
  resource: 'https://app.example.com',
  amr: ['pwd'],
  authTime: 0,
  createdAt: 0,
  lastUsedAt: 0,
  ip: null,
  userAgent: null,
  expiresAt: Number.MAX_SAFE_INTEGER,
  revokedAt: null,
  revokedReason: null,
  refreshHash: null,
  previousHash: null,
  rotatedAt: null,
  successor: null,
  generation: 0,
};

/** Gatehouse's bearer check: tokens starting "gh_" are its own; "gh_good" is valid. */
function bearer(u: User = user()): BearerCheck {
  const session: BearerSession = { ...active(u), grant, clientId: 'cli', scope: 'openid' };
  return {
    tokenOf: (req) => req.headers.authorization?.replace(/^Bearer /, ''),
    headerTokenOf: (req) => req.headers['x-gatehouse-token'] as string | undefined,
    isOwnToken: (token) => token.startsWith('gh_'),
    authenticate: async (token): Promise<BearerResult> =>
      token === 'gh_good' ? { ok: true, active: session } : { ok: false, description: 'the token has expired' },
    recheck: async (): Promise<BearerResult> => ({ ok: true, active: session }),
  };
}

const ctx = (req: IncomingMessage, path: string, query = '') => ({ req, site, path, query });

describe('decide()', () => {
  test('every kind of decision', async () => {
    const none = sessions({ state: 'none' });
    const signedIn = sessions({ state: 'active', active: active() });
    const admin = sessions({ state: 'active', active: active(user({ groups: ['admins'] })) });
    const unverified = siteOf('accounts: {requireVerifiedEmail: true}\n');
    const kinds = async (
      s: SessionLookup,
      path: string,
      o: { req?: IncomingMessage; on?: Site; b?: BearerCheck } = {},
    ) => decide(s, o.on ?? site, o.req ?? request(), 'GET', path, '203.0.113.7', o.b);

    const prefixed = parseConfig(
      'publicUrl: https://app.example.com\napps:\n  - {name: wiki, pathPrefix: /wiki, upstream: http://127.0.0.1:3000}\n',
      'g.yaml',
      {},
    );
    const wikiOnly = buildSites(prefixed).values().next().value!;
    assert.deepEqual(await decide(none, wikiOnly, request(), 'GET', '/elsewhere', '203.0.113.7'), { kind: 'no_app' });
    assert.equal((await kinds(none, '/blocked/x')).kind, 'deny');
    assert.equal((await kinds(signedIn, '/blocked/x')).kind, 'deny', 'deny is for everyone');
    const anon = await kinds(none, '/private');
    assert.equal(anon.kind, 'unauthenticated');
    assert.deepEqual(anon.kind === 'unauthenticated' && anon.lookup, { state: 'none' });
    assert.equal((await kinds(signedIn, '/admin/x')).kind, 'forbidden', 'not in the group');
    assert.equal((await kinds(admin, '/admin/x')).kind, 'allow');
    const allowed = await kinds(signedIn, '/private');
    assert.equal(allowed.kind === 'allow' && allowed.active?.user.id, 'u1');
    const notVerified = sessions({ state: 'active', active: active(user({ emailVerified: false })) });
    const blocked = await kinds(notVerified, '/private', { on: unverified });
    assert.equal(blocked.kind === 'forbidden' && blocked.reason, 'email_unverified');
    // Public: nobody needed, and a session is only looked up when the cookie is there.
    const pub = sessions({ state: 'active', active: active() });
    const open = await kinds(pub, '/public/x');
    assert.equal(open.kind === 'allow' && open.active, undefined);
    assert.equal(pub.calls, 0, 'no cookie, no lookup');
    const withCookie = await kinds(pub, '/public/x', { req: request({ cookie: `${site.cookies.session}=x` }) });
    assert.equal(withCookie.kind === 'allow' && withCookie.active?.user.id, 'u1', 'the app still learns who it is');
    // Gatehouse's bearer tokens decide on their own; anyone else's Authorization is the app's.
    const good = await kinds(none, '/private', { req: request({ authorization: 'Bearer gh_good' }), b: bearer() });
    assert.equal(good.kind === 'allow' && good.ownToken, 'authorization');
    const bad = await kinds(signedIn, '/private', { req: request({ authorization: 'Bearer gh_old' }), b: bearer() });
    assert.equal(
      bad.kind === 'invalid_token' && bad.description,
      'the token has expired',
      'no fall-back to the cookie',
    );
    const foreign = await kinds(signedIn, '/private', { req: request({ authorization: 'Bearer other' }), b: bearer() });
    assert.equal(foreign.kind === 'allow' && foreign.ownToken, undefined, 'the app gets its own token');
    const tokenNotInGroup = await kinds(none, '/admin/x', {
      req: request({ authorization: 'Bearer gh_good' }),
      b: bearer(),
    });
    assert.equal(tokenNotInGroup.kind, 'forbidden');
  });

  test('tokens.bearerHeader: its token decides, whatever Authorization holds; a Gatehouse token there is still kept from the app', async () => {
    const signedIn = sessions({ state: 'active', active: active() });
    const both = await decide(
      signedIn,
      site,
      request({ 'x-gatehouse-token': 'gh_good', authorization: 'Bearer app-token' }),
      'GET',
      '/private',
      '203.0.113.7',
      bearer(),
    );
    assert.equal(both.kind === 'allow' && both.ownToken, 'header', 'Authorization is the app’s');
    const twoOwn = await decide(
      signedIn,
      site,
      request({ 'x-gatehouse-token': 'gh_good', authorization: 'Bearer gh_other' }),
      'GET',
      '/private',
      '203.0.113.7',
      bearer(),
    );
    assert.equal(
      twoOwn.kind === 'allow' && twoOwn.ownToken,
      'authorization',
      'a Gatehouse token in Authorization is dropped',
    );
    // A bad token in the header decides too: no fall-back to Authorization or the cookie.
    const bad = await decide(
      signedIn,
      site,
      request({ 'x-gatehouse-token': 'not-ours', authorization: 'Bearer gh_good' }),
      'GET',
      '/private',
      '203.0.113.7',
      bearer(),
    );
    assert.equal(bad.kind, 'invalid_token');
    const publicBad = await decide(
      signedIn,
      site,
      request({ 'x-gatehouse-token': 'not-ours', cookie: `${site.cookies.session}=x` }),
      'GET',
      '/public/x',
      '203.0.113.7',
      bearer(),
    );
    assert.equal(publicBad.kind === 'allow' && publicBad.active, undefined, 'a public route: nobody, never the cookie');
  });

  test('an unreachable store fails closed on a protected rule, and is ignored on a public one', async () => {
    const down: SessionLookup = {
      lookup: async () => {
        throw new Error('store down');
      },
    };
    await assert.rejects(async () => decide(down, site, request(), 'GET', '/private', '203.0.113.7'), /store down/);
    const pub = await decide(
      down,
      site,
      request({ cookie: `${site.cookies.session}=x` }),
      'GET',
      '/public/x',
      '203.0.113.7',
    );
    assert.equal(pub.kind === 'allow' && pub.active, undefined);
  });

  test('a session the store holds in memory is decided without a promise; the same answer as the lookup', async () => {
    const active = { session: { id: 's' }, user: { id: 'u1', emailVerified: true, groups: [] } } as never;
    const lookup: SessionLookup = {
      lookup: async () => ({ state: 'active', active }),
      lookupNow: () => ({ state: 'active', active }),
    };
    const now = decide(
      lookup,
      site,
      request({ cookie: `${site.cookies.session}=x` }),
      'GET',
      '/private',
      '203.0.113.7',
    );
    assert.ok(!(now instanceof Promise));
    assert.equal(now.kind, 'allow');
    const later = await decide({ lookup: lookup.lookup }, site, request(), 'GET', '/private', '203.0.113.7');
    assert.deepEqual(later, now);
  });
});

describe('outcome()', () => {
  const unauthenticated = async (path: string, req = request()) =>
    decide(sessions({ state: 'none' }), site, req, req.method ?? 'GET', path, '203.0.113.7');
  const browser = () => request({ accept: 'text/html,application/xhtml+xml' });
  const api = () => request({ accept: 'application/json' });

  test('browser vs API: a redirect to the login page or a 401, as the rule says', async () => {
    const d = await unauthenticated('/private', browser());
    const b = outcome(d, ctx(browser(), '/private', '?q=1'), PREFIX, 'GET');
    assert.equal(b.kind === 'sign_in' && b.redirect, true);
    assert.equal(b.kind === 'sign_in' && b.login, 'https://app.example.com/.auth/login?rd=%2Fprivate%3Fq%3D1');
    const a = outcome(await unauthenticated('/private', api()), ctx(api(), '/private'), PREFIX, 'GET');
    assert.deepEqual(a.kind === 'sign_in' && [a.status, a.redirect, a.loginHeader], [401, false, false]);
    const post = outcome(await unauthenticated('/private', browser()), ctx(browser(), '/private'), PREFIX, 'POST');
    assert.equal(post.kind === 'sign_in' && post.status, 401, 'only GET and HEAD are redirected');
    // The rule decides over the client's Accept.
    const forced401 = outcome(await unauthenticated('/api/x', browser()), ctx(browser(), '/api/x'), PREFIX, 'GET');
    assert.equal(forced401.kind === 'sign_in' && forced401.status, 401);
    const forcedRedirect = outcome(
      await unauthenticated('/always-login/x', api()),
      ctx(api(), '/always-login/x'),
      PREFIX,
      'GET',
    );
    assert.equal(forcedRedirect.kind === 'sign_in' && forcedRedirect.status, 302);
  });

  test("forward-auth's nginx variant: 401 with the login URL in X-Gatehouse-Login instead of a redirect", async () => {
    const d = await unauthenticated('/private', browser());
    const o = outcome(d, ctx(browser(), '/private'), PREFIX, 'GET', true);
    assert.deepEqual(o.kind === 'sign_in' && [o.status, o.redirect, o.loginHeader], [401, false, true]);
    const apiCall = outcome(await unauthenticated('/private', api()), ctx(api(), '/private'), PREFIX, 'GET', true);
    assert.equal(apiCall.kind === 'sign_in' && apiCall.loginHeader, false, 'no redirect was meant');
  });

  test('refusals, the verification page, a bad token; an allowed request is its own decision', async () => {
    const cases: [Decision, unknown][] = [
      [{ kind: 'no_app' }, { kind: 'refuse', status: 404 }],
      [
        { kind: 'deny', app: site.apps[0]!, rule: site.apps[0]!.fallback },
        { kind: 'refuse', status: 403 },
      ],
      [
        { kind: 'forbidden', app: site.apps[0]!, rule: site.apps[0]!.fallback, active: active() },
        { kind: 'refuse', status: 403 },
      ],
      [
        {
          kind: 'forbidden',
          app: site.apps[0]!,
          rule: site.apps[0]!.fallback,
          active: active(),
          reason: 'email_unverified',
        },
        { kind: 'verify_email', status: 403 },
      ],
    ];
    for (const [d, want] of cases) {
      const o = outcome(d, ctx(browser(), '/x'), PREFIX, 'GET');
      assert.deepEqual({ kind: o.kind, status: 'status' in o ? o.status : undefined }, want);
    }
    const token: Decision = {
      kind: 'invalid_token',
      app: site.apps[0]!,
      rule: site.apps[0]!.fallback,
      description: 'x',
    };
    assert.equal(outcome(token, ctx(api(), '/x'), PREFIX, 'GET'), token);
    const allow: Decision = { kind: 'allow', app: site.apps[0]!, rule: site.apps[0]!.fallback, active: undefined };
    assert.equal(outcome(allow, ctx(api(), '/x'), PREFIX, 'GET'), allow, 'the same object: nothing allocated');
  });
});

describe('properties', () => {
  /** Request targets as clients write them: segments with dots, doubled slashes, escapes, case. */
  const segment = fc.oneof(
    fc.constantFrom('public', 'PUBLIC', 'admin', 'blocked', 'api', 'always-login', 'x', '.', '..', '', '%2e', '%7Ex'),
    fc.stringMatching(/^[A-Za-z0-9._~-]{1,6}$/),
  );
  const rawPath = fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => `/${s.join('/')}`);
  const query = fc.oneof(fc.constant(''), fc.stringMatching(/^\?[a-z0-9=&%/.:]{0,12}$/));
  const method = fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE');
  const found = fc.constantFrom<Lookup>(
    { state: 'none' },
    { state: 'active', active: active() },
    {
      state: 'invalid',
      reason: 'expired',
    },
  );

  test('the decision on a raw target is the decision on its normalized path', async () => {
    await fc.assert(
      fc.asyncProperty(rawPath, method, found, async (raw, m, lookup) => {
        const t = normalizeTarget(raw);
        fc.pre(t.ok);
        if (!t.ok) return;
        const once = normalizeTarget(t.path);
        assert.ok(once.ok && once.path === t.path, 'normalizing is idempotent');
        const a = await decide(sessions(lookup), site, request(), m, t.path, '203.0.113.7');
        const b = await decide(sessions(lookup), site, request(), m, once.ok ? once.path : '', '203.0.113.7');
        assert.deepEqual(a, b);
      }),
      { numRuns: 300 },
    );
  });

  test('the outcome never redirects off the site, whatever the target', async () => {
    await fc.assert(
      fc.asyncProperty(rawPath, query, method, fc.boolean(), fc.boolean(), async (raw, q, m, html, nginx) => {
        const t = normalizeTarget(raw + q);
        fc.pre(t.ok);
        if (!t.ok) return;
        const req = request(html ? { accept: 'text/html' } : {});
        const d = await decide(sessions({ state: 'none' }), site, req, m, t.path, '203.0.113.7');
        const o = outcome(d, ctx(req, t.path, t.query), PREFIX, m, nginx);
        if (o.kind !== 'sign_in') return;
        const login = new URL(o.login);
        assert.equal(login.origin, site.origin);
        assert.equal(login.pathname, `${PREFIX}/login`);
        assert.equal(login.searchParams.get('rd'), t.path + t.query, 'the return target is the request itself');
        if (o.redirect) assert.ok(!nginx, 'nginx auth_request never gets a redirect');
      }),
      { numRuns: 300 },
    );
  });
});
