import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { base64url, decodeJwt, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { hashSessionId } from '../../src/sessions/index.ts';
import { Client } from '../helpers/client.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { signOutAtIdp, startLab, type Lab, labGatehouse } from '../helpers/providers.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { Relay } from '../faults/relay.ts';
import { eventually, pgSchema, postgres } from '../faults/services.ts';

/**
 * OpenID Connect Back-Channel Logout 1.0 against a real OpenID Provider (oidc-provider, whose
 * clients are registered with Gatehouse's back-channel logout URI): a user who signs out at the
 * IdP is signed out of Gatehouse at the next request, in the browser of that IdP session only; a
 * logout token naming only the subject ends every session of it there; and every token that does
 * not hold is refused and ends nothing (security.md, "Back-channel logout").
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab({ backchannel: true, gatehouses: 2 });
  gh = await labGatehouse(lab, {
    providers: lab.providers({ b: { backchannelLogout: false } }),
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

const EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const signedIn = async (c: Client) => (await c.get('/.auth/me')).status === 200;
const sessionHash = (c: Client) => hashSessionId(c.jar.get('gatehouse')!);

/** A fresh browser signed in through IdP `provider` as `account`; with the sid of its IdP session. */
async function browser(provider: 'a' | 'b', account: string): Promise<{ c: Client; sid: string }> {
  const idp = provider === 'a' ? lab.a : lab.b;
  const c = new Client(gh.url);
  idp.autoLogin = account;
  await signIn(c, provider);
  assert.ok(await signedIn(c), `${account} signed in through ${provider}`);
  return { c, sid: String(decodeJwt(idp.issued.at(-1)!.id_token!).sid) };
}

/** A logout token as IdP A makes one, signed with its real key; `change` spoils it. */
function claims(over: JWTPayload = {}): JWTPayload {
  return {
    iss: lab.a.issuer,
    aud: 'gatehouse-a',
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    sub: 'alice',
    events: { [EVENT]: {} },
    ...over,
  };
}
const logoutToken = (c: JWTPayload, header: Record<string, unknown> = { typ: 'logout+jwt' }) =>
  lab.a.signIdToken(c, header);

const post = (token: string, provider = 'a') =>
  new Client(gh.url).postForm(`/.auth/backchannel-logout/${provider}`, { logout_token: token });

describe('back-channel logout from the provider', () => {
  test('signing out at the IdP ends the Gatehouse session of that IdP session at its next request, and no other session', async () => {
    const first = await browser('a', 'alice');
    const second = await browser('a', 'alice');
    const bob = await browser('a', 'bob');
    assert.notEqual(first.sid, second.sid, 'two browsers, two IdP sessions');
    const ended = sessionHash(first.c);

    const done = await signOutAtIdp(first.c, lab.a);
    assert.ok(done.status < 400, `the IdP signed the user out (${done.status})`);
    const call = lab.a.backchannel.at(-1)!;
    assert.deepEqual(
      { clientId: call.clientId, accountId: call.accountId, sid: call.sid, error: call.error },
      { clientId: 'gatehouse-a', accountId: 'alice', sid: first.sid, error: undefined },
      'the IdP posted its logout token to Gatehouse and got 200',
    );
    assert.equal(await signedIn(first.c), false, 'that browser is signed out at its next request');
    assert.equal(await gh.gatehouse.store.sessions.get(ended), undefined);
    assert.equal(
      await gh.gatehouse.store.providerTokens.get(`session:${ended}`, 'a'),
      undefined,
      'its tokens went too',
    );
    assert.ok(await signedIn(second.c), "alice's other browser (another IdP session) stays signed in");
    assert.ok(await signedIn(bob.c));

    const line = gh.logs.findLast((l) => l.event === 'backchannel_logout')!;
    assert.deepEqual([line.provider, line.by, line.sessions], ['a', 'sid', 1]);
    const userId = (await second.c.get('/.auth/me')).json().id;
    await gh.gatehouse.audit.flush();
    const audited = await gh.gatehouse.store.audit.list({ event: 'logout', userId, limit: 10 });
    assert.ok(
      audited.some((e) => e.actor === 'provider:a' && e.detail.provider === 'a' && e.detail.sessions === 1),
      'audited as a logout by the provider',
    );
    const activity = (await second.c.get('/.auth/account/activity')).json().activity as { what: string }[];
    assert.ok(
      activity.some((e) => e.what === 'Signed out at a'),
      "the account page's recent activity says so",
    );
  });

  test("Gatehouse's own logout with endSession: the IdP's back-channel call that follows finds nothing left and gets 200", async () => {
    const { c } = await browser('a', 'bob');
    const calls = lab.a.backchannel.length;
    const out = await c.submitForm('/.auth/logout', {}, { origin: gh.url });
    assert.equal(out.status, 303);
    assert.equal(await signedIn(c), false);
    await signOutAtIdp(c, lab.a);
    assert.equal(lab.a.backchannel.length, calls + 1);
    assert.equal(lab.a.backchannel.at(-1)!.error, undefined, 'answered 200 though no session matched');
    assert.equal(gh.logs.findLast((l) => l.event === 'backchannel_logout')!.sessions, 0);
  });

  test('a logout token naming only the subject ends every session of it through that provider; other users and providers stay', async () => {
    const one = await browser('a', 'erin');
    const two = await browser('a', 'erin');
    const other = await browser('a', 'bob');
    const viaB = await browser('b', 'b-frank');
    const res = await post(await logoutToken(claims({ sub: 'erin' })));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(await signedIn(one.c), false);
    assert.equal(await signedIn(two.c), false);
    assert.ok(await signedIn(other.c));
    assert.ok(await signedIn(viaB.c));
    assert.equal(gh.logs.findLast((l) => l.event === 'backchannel_logout')!.by, 'sub');
  });

  test('a logout token is used once: its replay is refused and cannot end a session made after it', async () => {
    await browser('a', 'erin');
    const token = await logoutToken(claims({ sub: 'erin' }));
    assert.equal((await post(token)).status, 200);
    const later = await browser('a', 'erin');
    const replay = await post(token);
    assert.equal(replay.status, 400);
    assert.deepEqual(replay.json(), {
      error: 'invalid_request',
      error_description: 'this logout token was used already',
    });
    assert.ok(await signedIn(later.c), 'the session made after the token survives its replay');
  });
});

describe('logout tokens that do not hold (the attacker)', () => {
  test('forged, mis-addressed, stale, mistyped or incomplete tokens get 400 with the reason, are logged without the token, and end nothing', async () => {
    const victim = await browser('a', 'alice');
    const { sid } = victim;
    const other = await generateKeyPair('RS256');
    const idToken = lab.a.issued.at(-1)!.id_token!;
    const now = Math.floor(Date.now() / 1000);
    const unsigned = (c: JWTPayload) =>
      `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'logout+jwt' }))}.${base64url.encode(JSON.stringify(c))}.`;
    const cases: [string, string | Promise<string>, RegExp][] = [
      [
        'signed with a key that is not the IdP’s (same kid)',
        new SignJWT(claims({ sid }))
          .setProtectedHeader({ alg: 'RS256', kid: lab.a.publicJwk.kid!, typ: 'logout+jwt' })
          .sign(other.privateKey),
        /signature/,
      ],
      ['alg none', unsigned(claims({ sid })), /alg/i],
      [
        'HS256 with the client secret',
        new SignJWT(claims({ sid }))
          .setProtectedHeader({ alg: 'HS256', typ: 'logout+jwt' })
          .sign(new TextEncoder().encode(lab.secretA)),
        /alg/i,
      ],
      ['for another client', logoutToken(claims({ sid, aud: 'other-client' })), /aud/],
      ['from another issuer', logoutToken(claims({ sid, iss: lab.b.issuer })), /iss/],
      ['B’s token at A’s endpoint', lab.b.signIdToken(claims({ sid, iss: lab.b.issuer, aud: 'gatehouse-b' })), /./],
      ['without events', logoutToken(claims({ sid, events: undefined })), /events/],
      ['another event', logoutToken(claims({ sid, events: { 'https://example.com/other': {} } })), /events/],
      ['an event that is not an object', logoutToken(claims({ sid, events: { [EVENT]: 'yes' } })), /events/],
      ['with a nonce', logoutToken(claims({ sid, nonce: 'n' })), /nonce/],
      ['without jti', logoutToken(claims({ sid, jti: undefined })), /jti/],
      ['neither sid nor sub', logoutToken(claims({ sub: undefined })), /neither/],
      ['a sid that is not a string', logoutToken(claims({ sid: 42 })), /sid/],
      ['issued 10 minutes ago', logoutToken(claims({ sid, iat: now - 600 })), /iat/],
      ['issued in 10 minutes', logoutToken(claims({ sid, iat: now + 600 })), /iat/],
      ['expired', logoutToken(claims({ sid, iat: now - 120, exp: now - 60 })), /exp/],
      ['an access token’s typ', logoutToken(claims({ sid }), { typ: 'at+jwt' }), /typ/],
      ['the session’s own ID token', idToken, /./],
      ['not a JWT', 'not-a-jwt', /./],
    ];
    for (const [what, token, reason] of cases) {
      const text = await token;
      const res = await post(text);
      assert.equal(res.status, 400, `${what}: ${res.text}`);
      assert.equal(res.json().error, 'invalid_request', what);
      assert.match(res.json().error_description, reason, what);
      const line = gh.logs.findLast((l) => l.event === 'backchannel_logout_refused')!;
      assert.equal(line.reason, res.json().error_description, `${what}: logged with its reason`);
      assert.ok(!gh.logText().includes(text), `${what}: the token is never logged`);
    }
    // A good token whose sid and sub do not belong together matches nothing.
    assert.equal((await post(await logoutToken(claims({ sid, sub: 'bob' })))).status, 200);
    assert.ok(await signedIn(victim.c), 'the victim is still signed in after all of them');
    // The same token, genuine, still works: nothing above was a near miss by accident.
    assert.equal((await post(await logoutToken(claims({ sid })))).status, 200);
    assert.equal(await signedIn(victim.c), false);
  });

  test('the endpoint: POST only, a form only, a small body only, and only for an OpenID provider that has it on', async () => {
    const c = new Client(gh.url);
    const token = await logoutToken(claims({ sub: 'nobody' }));
    assert.equal((await c.get('/.auth/backchannel-logout/a')).status, 405);
    const json = await c.postJson('/.auth/backchannel-logout/a', { logout_token: token });
    assert.equal(json.status, 400);
    assert.match(json.json().error_description, /x-www-form-urlencoded/);
    const text = await c.fetch('/.auth/backchannel-logout/a', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: token,
    });
    assert.equal(text.status, 415);
    const big = await c.postForm('/.auth/backchannel-logout/a', { logout_token: 'x'.repeat(17_000) });
    assert.equal(big.status, 413);
    const long = await c.postForm('/.auth/backchannel-logout/a', { logout_token: 'x'.repeat(9_000) });
    assert.equal(long.status, 400);
    assert.equal((await c.postForm('/.auth/backchannel-logout/a', {})).status, 400, 'no logout_token');
    assert.equal((await post(token, 'b')).status, 404, 'backchannelLogout: false');
    assert.equal((await post(token, 'nope')).status, 404, 'no such provider');
  });
});

const service = await postgres();

describeOrSkip(
  'a back-channel logout while the store is away (PostgreSQL through a relay)',
  { skip: service.skip },
  () => {
    let relay: Relay;
    let db: Awaited<ReturnType<typeof pgSchema>>;
    let pg: TestGatehouse;
    after(async () => {
      await pg?.close();
      await relay?.close();
      await db?.drop();
    });

    test('503 with Retry-After while the store is away, and the same token, retried when it is back, ends the session', async () => {
      relay = await Relay.start(service.host, service.port);
      db = await pgSchema('backchannel');
      pg = await startGatehouse(
        () => ({ store: { type: 'postgres', url: db.url(relay.port), poolSize: 3 }, providers: lab.providers() }),
        { port: lab.ports[1] },
      );
      const c = new Client(pg.url);
      lab.a.autoLogin = 'alice';
      await signIn(c, 'a');
      assert.equal((await c.get('/.auth/me')).status, 200);
      const sid = String(decodeJwt(lab.a.issued.at(-1)!.id_token!).sid);
      const token = await logoutToken(claims({ sid }));
      const send = () => new Client(pg.url).postForm('/.auth/backchannel-logout/a', { logout_token: token });

      await relay.cut();
      const down = await send();
      assert.equal(down.status, 503, down.text);
      assert.ok(Number(down.headers['retry-after']) > 0);
      await relay.restore();
      // The issuer retries: the token was not spent by the attempt that failed.
      await eventually('the retried logout token is accepted', async () => (await send()).status === 200);
      assert.equal((await c.get('/.auth/me')).status, 401, 'signed out');
    });
  },
);
