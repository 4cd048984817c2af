import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { StoreConflictError, type Session, type SigningKey, type Store } from '../../src/store/index.ts';
import { auditStoreContract } from './audit-contract.ts';
import { appEventStoreContract } from './app-events-contract.ts';
import { emailTokenStoreContract } from './email-tokens-contract.ts';
import { mfaStoreContract } from './mfa-contract.ts';
import { providerStoreContract } from './providers-contract.ts';
import { oauthStoreContract } from './oauth-contract.ts';
import { laterRequest } from './later-request.ts';

/**
 * The Store contract: what every implementation must do, as Gatehouse and its users rely on
 * it. test/store/sqlite.test.ts and test/store/postgres.test.ts run it against each one.
 */

export interface OpenedStore {
  store: Store;
  /** A second, independent handle on the same database (a restart, another node, the CLI). */
  reopen(): Promise<Store>;
}

/** Runs a test body on a fresh store (and a way to open it again), closing all it opened. */
export type WithStore = (
  fn: (store: Store, opened: OpenedStore, extra: Store[]) => Promise<void>,
) => () => Promise<void>;

export interface StoreHarness {
  /** A fresh, empty database with the schema applied. The test closes the stores it gets. */
  open(): Promise<OpenedStore>;
}

let emails = 0;
const email = (tag = 'u') => `${tag}-${process.pid}-${emails++}@example.com`;
const idHash = () => randomBytes(32).toString('base64url');

let kids = 0;
function signingKey(over: Partial<SigningKey> = {}): SigningKey {
  const now = Date.now();
  const kid = `kid-${process.pid}-${kids++}`;
  return {
    kid,
    alg: 'EdDSA',
    publicJwk: JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: randomBytes(32).toString('base64url'), kid }),
    privateJwk: `v1.abc.${randomBytes(60).toString('base64url')}`,
    createdAt: now,
    activatesAt: now + 600_000,
    retiresAt: null,
    ...over,
  };
}

function session(userId: string, over: Partial<Session> = {}): Session {
  const now = Date.now();
  return {
    idHash: idHash(),
    userId,
    site: 'https://app.example.com',
    createdAt: now,
    lastSeenAt: now,
    expiresAt: now + 3_600_000,
    amr: ['pwd'],
    ip: '203.0.113.9',
    userAgent: 'test-agent/1.0',
    authTime: now,
    ...over,
  };
}

export function storeContract(name: string, harness: StoreHarness): void {
  /** Runs fn on a fresh store and always closes what was opened. */
  const withStore = (fn: (store: Store, opened: OpenedStore, extra: Store[]) => Promise<void>) => async () => {
    const opened = await harness.open();
    const extra: Store[] = [];
    try {
      await fn(opened.store, opened, extra);
    } finally {
      await Promise.allSettled([opened.store.close(), ...extra.map((s) => s.close())]);
    }
  };

  describe(`Store contract: ${name}`, () => {
    describe('users', () => {
      test(
        'create returns the stored user; get and getByEmail find it; unknown ids and emails find nothing',
        withStore(async (store) => {
          const before = Date.now();
          const u = await store.users.create({
            email: email(),
            name: 'Ada Lovelace',
            groups: ['admins', 'ops'],
            passwordHash: 'hash-1',
          });
          assert.match(u.id, /^[0-9a-f-]{36}$/);
          assert.equal(u.emailVerified, false, 'unverified by default');
          assert.equal(u.disabled, false);
          assert.deepEqual(u.groups, ['admins', 'ops']);
          assert.ok(u.createdAt >= before && u.createdAt <= Date.now());
          assert.equal(u.updatedAt, u.createdAt);
          assert.deepEqual(await store.users.get(u.id), u);
          assert.deepEqual(await store.users.getByEmail(u.email), u);
          const fetched = (await store.users.get(u.id))!;
          assert.equal(typeof fetched.createdAt, 'number', 'times come back as numbers, not strings');
          assert.equal(await store.users.get('00000000-0000-0000-0000-000000000000'), undefined);
          assert.equal(await store.users.getByEmail(email('nobody')), undefined);
        }),
      );

      test(
        'defaults: no name, no groups, no password (an account made by an operator or an IdP)',
        withStore(async (store) => {
          const u = await store.users.create({ email: email(), emailVerified: true });
          const got = (await store.users.get(u.id))!;
          assert.equal(got.name, null);
          assert.deepEqual(got.groups, []);
          assert.equal(got.passwordHash, null);
          assert.equal(got.emailVerified, true);
        }),
      );

      test(
        "update moves a user to a new address; another user's address is a StoreConflictError and changes nothing",
        withStore(async (store) => {
          const [a, b] = [await store.users.create({ email: email() }), await store.users.create({ email: email() })];
          const fresh = email();
          const moved = (await store.users.update(a.id, { email: fresh, emailVerified: true }))!;
          assert.deepEqual([moved.email, moved.emailVerified], [fresh, true]);
          assert.equal((await store.users.getByEmail(fresh))?.id, a.id);
          assert.equal(await store.users.getByEmail(a.email), undefined, 'the old address is free');
          await assert.rejects(store.users.update(a.id, { email: b.email }), StoreConflictError);
          assert.equal((await store.users.get(a.id))?.email, fresh);
        }),
      );

      test(
        'text round-trips exactly: non-ASCII names and groups, quotes, long hashes',
        withStore(async (store) => {
          const tricky = {
            name: 'Zoë O\'Brien "the" 名前 🚀',
            groups: ['élite', 'a,b', 'x"y', ''],
            passwordHash: '$scrypt$' + 'x'.repeat(500),
          };
          const u = await store.users.create({ email: email(), ...tricky });
          const got = (await store.users.getByEmail(u.email))!;
          assert.equal(got.name, tricky.name);
          assert.deepEqual(got.groups, tricky.groups);
          assert.equal(got.passwordHash, tricky.passwordHash);
        }),
      );

      test(
        'an email is taken once: a second registration is a StoreConflictError and changes nothing',
        withStore(async (store) => {
          const address = email('dup');
          const first = await store.users.create({ email: address, name: 'first', passwordHash: 'first-hash' });
          await assert.rejects(
            store.users.create({ email: address, name: 'second', passwordHash: 'attacker-hash' }),
            StoreConflictError,
          );
          assert.equal(await store.users.count(), 1);
          assert.deepEqual(
            await store.users.getByEmail(address),
            first,
            "the first account's password is not replaced",
          );
        }),
      );

      test(
        'concurrent registrations of one email: exactly one wins, the rest conflict',
        withStore(async (store) => {
          const address = email('race');
          const results = await Promise.allSettled(
            Array.from({ length: 8 }, (_, i) => store.users.create({ email: address, name: `racer ${i}` })),
          );
          const won = results.filter((r) => r.status === 'fulfilled');
          const lost = results.filter((r) => r.status === 'rejected');
          assert.equal(won.length, 1);
          for (const r of lost)
            assert.ok(r.reason instanceof StoreConflictError, `a loser gets a conflict, not ${String(r.reason)}`);
          assert.equal(await store.users.count(), 1);
        }),
      );

      test(
        'count and list: every user once, in creation order, page by page',
        withStore(async (store) => {
          assert.equal(await store.users.count(), 0);
          assert.deepEqual(await store.users.list(), []);
          const created = [];
          for (let i = 0; i < 7; i++) created.push(await store.users.create({ email: email(`list${i}`) }));
          assert.equal(await store.users.count(), 7);
          const all = await store.users.list();
          assert.deepEqual(all.map((u) => u.id).sort(), created.map((u) => u.id).sort());
          for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.createdAt <= all[i]!.createdAt, 'oldest first');
          const paged = [];
          for (let offset = 0; offset < 10; offset += 3) paged.push(...(await store.users.list({ limit: 3, offset })));
          assert.deepEqual(
            paged.map((u) => u.id),
            all.map((u) => u.id),
            'pages neither skip nor repeat a user',
          );
          assert.deepEqual(await store.users.list({ limit: 3, offset: 7 }), []);
        }),
      );

      test(
        'update changes only what the patch names, and is what later reads see',
        withStore(async (store) => {
          const u = await store.users.create({ email: email(), name: 'Old', groups: ['a'], passwordHash: 'h1' });
          while (Date.now() <= u.updatedAt) await new Promise((r) => setTimeout(r, 1)); // the clock moves on, so updatedAt can
          const changed = await store.users.update(u.id, { groups: ['b', 'c'], disabled: true });
          assert.ok(changed);
          assert.deepEqual(changed.groups, ['b', 'c']);
          assert.equal(changed.disabled, true);
          assert.equal(changed.name, 'Old');
          assert.equal(changed.passwordHash, 'h1');
          assert.equal(changed.email, u.email);
          assert.equal(changed.createdAt, u.createdAt);
          assert.ok(changed.updatedAt > u.updatedAt, 'updatedAt moves on');
          assert.deepEqual(await store.users.get(u.id), changed);

          const cleared = await store.users.update(u.id, {
            name: null,
            passwordHash: null,
            emailVerified: true,
            disabled: false,
          });
          assert.equal(cleared?.name, null);
          assert.equal(cleared?.passwordHash, null);
          assert.equal(cleared?.emailVerified, true);
          assert.equal(cleared?.disabled, false);
          assert.deepEqual(await store.users.getByEmail(u.email), cleared);

          const untouched = await store.users.update(u.id, {});
          assert.deepEqual(untouched?.groups, ['b', 'c'], 'an empty patch changes nothing but the time');
        }),
      );

      test(
        'update of an unknown user returns undefined and creates nothing',
        withStore(async (store) => {
          assert.equal(await store.users.update('00000000-0000-0000-0000-000000000000', { name: 'ghost' }), undefined);
          assert.equal(await store.users.count(), 0);
        }),
      );

      test(
        'delete removes the user and every session of theirs (cascade), and only theirs',
        withStore(async (store) => {
          const gone = await store.users.create({ email: email('gone') });
          const stays = await store.users.create({ email: email('stays') });
          const s1 = session(gone.id);
          const s2 = session(gone.id);
          const kept = session(stays.id);
          for (const s of [s1, s2, kept]) await store.sessions.create(s);
          assert.equal(await store.users.delete(gone.id), true);
          assert.equal(await store.users.get(gone.id), undefined);
          assert.equal(await store.users.getByEmail(gone.email), undefined);
          assert.equal(await store.sessions.get(s1.idHash), undefined, "a deleted user's session cookie is dead");
          assert.equal(await store.sessions.getWithUser(s2.idHash), undefined);
          assert.deepEqual(await store.sessions.listByUser(gone.id), []);
          assert.ok(await store.sessions.get(kept.idHash));
          assert.equal(await store.users.count(), 1);
          assert.equal(await store.users.delete(gone.id), false, 'deleting twice reports nothing deleted');
          // The address is free again.
          assert.ok(await store.users.create({ email: gone.email }));
        }),
      );
    });

    describe('sessions', () => {
      test(
        'create, get and getWithUser round-trip every field',
        withStore(async (store) => {
          const u = await store.users.create({ email: email(), name: 'Sam', groups: ['g'] });
          const s = session(u.id, { amr: ['pwd', 'otp'], ip: null, userAgent: null });
          await store.sessions.create(s);
          assert.deepEqual(await store.sessions.get(s.idHash), s);
          const found = await store.sessions.getWithUser(s.idHash);
          assert.deepEqual(found, { session: s, user: u });
          assert.equal(await store.sessions.get(idHash()), undefined);
          assert.equal(await store.sessions.getWithUser(idHash()), undefined);
        }),
      );

      test(
        "getWithUser sees the user's current state (a disabled account, new groups)",
        withStore(async (store) => {
          const u = await store.users.create({ email: email(), groups: ['staff'] });
          const s = session(u.id);
          await store.sessions.create(s);
          assert.deepEqual(
            (await store.sessions.getWithUser(s.idHash))?.user.groups,
            ['staff'],
            'read once before: a store may keep it',
          );
          await store.users.update(u.id, { disabled: true, groups: [] });
          const found = (await store.sessions.getWithUser(s.idHash))!;
          assert.equal(found.user.disabled, true);
          assert.deepEqual(found.user.groups, []);
        }),
      );

      test(
        'getWithUser after touch shows the latest lastSeenAt, read before or not',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const s = session(u.id, { lastSeenAt: 1_000_000 });
          await store.sessions.create(s);
          assert.equal((await store.sessions.getWithUser(s.idHash))?.session.lastSeenAt, 1_000_000);
          await store.sessions.touch(s.idHash, 2_000_000);
          assert.equal((await store.sessions.getWithUser(s.idHash))?.session.lastSeenAt, 2_000_000);
          await store.sessions.touch(s.idHash, 1_500_000);
          assert.equal(
            (await store.sessions.getWithUser(s.idHash))?.session.lastSeenAt,
            2_000_000,
            'an older time does not win',
          );
        }),
      );

      test(
        'a session for a user that does not exist is refused',
        withStore(async (store) => {
          await assert.rejects(store.sessions.create(session('00000000-0000-0000-0000-000000000000')));
          assert.equal(await store.users.count(), 0);
        }),
      );

      test(
        'touch moves lastSeenAt forward and never backwards (late writes from a slow node lose)',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const s = session(u.id, { lastSeenAt: 1_000_000 });
          await store.sessions.create(s);
          await store.sessions.touch(s.idHash, 2_000_000);
          assert.equal((await store.sessions.get(s.idHash))?.lastSeenAt, 2_000_000);
          await store.sessions.touch(s.idHash, 1_500_000);
          assert.equal((await store.sessions.get(s.idHash))?.lastSeenAt, 2_000_000, 'an older time does not win');
          await Promise.all([3_000_000, 2_500_000, 2_700_000].map((t) => store.sessions.touch(s.idHash, t)));
          assert.equal(
            (await store.sessions.get(s.idHash))?.lastSeenAt,
            3_000_000,
            'concurrent touches: the latest time stays',
          );
          const after = (await store.sessions.get(s.idHash))!;
          assert.equal(after.createdAt, s.createdAt);
          assert.equal(after.expiresAt, s.expiresAt, 'touch never extends the absolute expiry');
          await store.sessions.touch(idHash(), 5_000_000); // unknown: no error, nothing created
          assert.equal((await store.sessions.listByUser(u.id)).length, 1);
        }),
      );

      test(
        'setAuth records a re-authentication: auth time and methods, seen by getWithUser; nothing else changes',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const s = session(u.id, { authTime: 1_000_000, amr: ['idp:github'] });
          await store.sessions.create(s);
          assert.equal((await store.sessions.getWithUser(s.idHash))?.session.authTime, 1_000_000);
          assert.equal(
            await store.sessions.setAuth(s.idHash, { authTime: 2_000_000, amr: ['idp:github', 'pwd'] }),
            true,
          );
          const after = (await store.sessions.getWithUser(s.idHash))!.session;
          assert.deepEqual(after, { ...s, authTime: 2_000_000, amr: ['idp:github', 'pwd'] });
          assert.equal(await store.sessions.setAuth(idHash(), { authTime: 3, amr: [] }), false, 'unknown: false');
        }),
      );

      test(
        'delete ends one session and says whether it existed',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const a = session(u.id);
          const b = session(u.id);
          await store.sessions.create(a);
          await store.sessions.create(b);
          assert.equal(await store.sessions.delete(a.idHash), true);
          assert.equal(await store.sessions.get(a.idHash), undefined);
          assert.ok(await store.sessions.get(b.idHash), 'the other session is untouched');
          assert.equal(await store.sessions.delete(a.idHash), false);
        }),
      );

      test(
        'deleteAll ends every session of every user',
        withStore(async (store) => {
          const [u, v] = [
            await store.users.create({ email: email() }),
            await store.users.create({ email: email('v') }),
          ];
          for (const s of [session(u.id), session(u.id), session(v.id)]) await store.sessions.create(s);
          assert.equal(await store.sessions.deleteAll(), 3);
          assert.deepEqual([await store.sessions.listByUser(u.id), await store.sessions.listByUser(v.id)], [[], []]);
          assert.equal(await store.sessions.deleteAll(), 0);
        }),
      );

      test(
        "deleteByUser ends all of a user's sessions, or all but the caller's own, and no one else's",
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const other = await store.users.create({ email: email('other') });
          const mine = [session(u.id), session(u.id), session(u.id)];
          const theirs = session(other.id);
          for (const s of [...mine, theirs]) await store.sessions.create(s);

          assert.equal(await store.sessions.deleteByUser(u.id, mine[0]!.idHash), 2);
          assert.deepEqual(
            (await store.sessions.listByUser(u.id)).map((s) => s.idHash),
            [mine[0]!.idHash],
            "'sign out everywhere else' keeps this device",
          );
          assert.equal(await store.sessions.deleteByUser(u.id), 1);
          assert.deepEqual(await store.sessions.listByUser(u.id), []);
          assert.ok(await store.sessions.get(theirs.idHash), "another user's session survives");
          assert.equal(await store.sessions.deleteByUser(u.id), 0);
        }),
      );

      test(
        'deleteByProviderSession ends the sessions of one provider session, or of one subject there, and no others',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const other = await store.users.create({ email: email('other') });
          const [s1, s2, s3, s4, s5, local] = [
            session(u.id),
            session(u.id),
            session(u.id),
            session(u.id),
            session(other.id),
            session(u.id),
          ];
          for (const s of [s1, s2, s3, s4, s5, local]) await store.sessions.create(s!);
          await store.sessions.setProviderSession(s1!.idHash, { provider: 'a', subject: 'alice', sid: 'sid-1' });
          await store.sessions.setProviderSession(s2!.idHash, { provider: 'a', subject: 'alice', sid: 'sid-2' });
          await store.sessions.setProviderSession(s3!.idHash, { provider: 'a', subject: 'alice', sid: null });
          await store.sessions.setProviderSession(s4!.idHash, { provider: 'b', subject: 'alice', sid: 'sid-1' });
          await store.sessions.setProviderSession(s5!.idHash, { provider: 'a', subject: 'bob', sid: 'sid-5' });
          // Gone already: nothing recorded, no error.
          await store.sessions.setProviderSession(idHash(), { provider: 'a', subject: 'alice', sid: 'sid-x' });
          const ended = async (provider: string, match: { sid?: string; subject?: string }) =>
            (await store.sessions.deleteByProviderSession(provider, match)).map((e) => e.userId);
          const left = async () =>
            new Set(
              (await Promise.all([s1, s2, s3, s4, s5, local].map((s) => store.sessions.get(s!.idHash))))
                .filter((s) => s !== undefined)
                .map((s) => s.idHash),
            );

          assert.deepEqual(await ended('a', {}), [], 'no sid and no sub: nothing');
          assert.deepEqual(await ended('a', { sid: 'sid-1', subject: 'bob' }), []);
          assert.deepEqual(await ended('a', { sid: 'sid-1' }), [u.id]);
          assert.deepEqual(await left(), new Set([s2, s3, s4, s5, local].map((s) => s!.idHash)), "b's sid-1 stays");
          // A re-authentication at the provider replaces the recorded provider session.
          await store.sessions.setProviderSession(s2!.idHash, { provider: 'a', subject: 'alice', sid: 'sid-2b' });
          assert.deepEqual(await ended('a', { sid: 'sid-2' }), []);
          assert.deepEqual(await ended('a', { subject: 'alice' }), [u.id, u.id]);
          assert.deepEqual(await left(), new Set([s4, s5, local].map((s) => s!.idHash)));
          assert.deepEqual(await store.sessions.deleteByProviderSession('b', { sid: 'sid-1', subject: 'alice' }), [
            { idHash: s4!.idHash, userId: u.id },
          ]);
          assert.deepEqual(await left(), new Set([s5, local].map((s) => s!.idHash)), 'a password session stays');
          // The record goes with its session: a purge or a logout leaves nothing to match.
          await store.sessions.delete(s5!.idHash);
          assert.deepEqual(await ended('a', { subject: 'bob' }), []);
        }),
      );

      test(
        'a session single sign-on made from another ends with it: at its delete, and when a provider ends it (security.md #285)',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const [home, other] = [session(u.id), session(u.id)];
          const [child1, child2] = [
            session(u.id, { parentHash: home.idHash }),
            session(u.id, { parentHash: home.idHash }),
          ];
          const otherChild = session(u.id, { parentHash: other.idHash });
          for (const s of [home, other, child1, child2, otherChild]) await store.sessions.create(s);
          assert.deepEqual(await store.sessions.get(child1.idHash), child1, 'parentHash round-trips');
          assert.equal((await store.sessions.get(home.idHash))?.parentHash, undefined);
          assert.equal(await store.sessions.delete(home.idHash), true);
          for (const s of [home, child1, child2]) assert.equal(await store.sessions.get(s.idHash), undefined);
          assert.equal(await store.sessions.delete(child1.idHash), false, 'gone with its parent');
          await store.sessions.setProviderSession(other.idHash, { provider: 'a', subject: 'alice', sid: 'sid-9' });
          const ended = await store.sessions.deleteByProviderSession('a', { sid: 'sid-9' });
          assert.deepEqual(new Set(ended.map((e) => e.idHash)), new Set([other.idHash, otherChild.idHash]));
          assert.equal(await store.sessions.get(otherChild.idHash), undefined);
        }),
      );

      test(
        'listByUser: only that user, most recently seen first',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const other = await store.users.create({ email: email('other') });
          const old = session(u.id, { lastSeenAt: 1000 });
          const recent = session(u.id, { lastSeenAt: 3000 });
          const middle = session(u.id, { lastSeenAt: 2000 });
          for (const s of [old, recent, middle, session(other.id)]) await store.sessions.create(s);
          assert.deepEqual(
            (await store.sessions.listByUser(u.id)).map((s) => s.idHash),
            [recent.idHash, middle.idHash, old.idHash],
          );
          await store.sessions.touch(old.idHash, 4000);
          assert.equal((await store.sessions.listByUser(u.id))[0]!.idHash, old.idHash);
        }),
      );

      test(
        'purgeExpired removes sessions past their absolute or idle expiry, keeps live ones, counts',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const now = 10_000_000;
          const idle = 60_000;
          const live = session(u.id, { createdAt: now - 1000, lastSeenAt: now - 1000, expiresAt: now + 1000 });
          const absolute = session(u.id, { createdAt: now - 5000, lastSeenAt: now - 10, expiresAt: now - 1 });
          const absoluteEdge = session(u.id, { lastSeenAt: now - 10, expiresAt: now });
          const idled = session(u.id, { lastSeenAt: now - idle - 1, expiresAt: now + 1_000_000 });
          const idleEdge = session(u.id, { lastSeenAt: now - idle, expiresAt: now + 1_000_000 });
          const almostIdle = session(u.id, { lastSeenAt: now - idle + 1, expiresAt: now + 1_000_000 });
          for (const s of [live, absolute, absoluteEdge, idled, idleEdge, almostIdle]) await store.sessions.create(s);
          assert.equal(await store.sessions.purgeExpired(now, idle), 4);
          assert.deepEqual(
            (await store.sessions.listByUser(u.id)).map((s) => s.idHash).sort(),
            [live.idHash, almostIdle.idHash].sort(),
          );
          assert.equal(await store.sessions.purgeExpired(now, idle), 0, 'nothing left to purge');
        }),
      );
    });

    describe('kv', () => {
      test(
        'get of an unset name is undefined; set stores and overwrites',
        withStore(async (store) => {
          assert.equal(await store.kv.get('secret.master'), undefined);
          await store.kv.set('secret.master', 'v1');
          assert.equal(await store.kv.get('secret.master'), 'v1');
          await store.kv.set('secret.master', 'v2');
          assert.equal(await store.kv.get('secret.master'), 'v2');
          const opaque = 'line1\nline2 \t? $1 ? \'"; DROP TABLE kv; -- ' + 'é'.repeat(5000);
          await store.kv.set('other', opaque);
          assert.equal(await store.kv.get('other'), opaque, 'values are opaque: stored exactly, "?" included');
          assert.equal(await store.kv.get('secret.master'), 'v2');
        }),
      );

      test(
        'putIfAbsent: the first value stays, later callers get it back',
        withStore(async (store) => {
          assert.equal(await store.kv.putIfAbsent('k', 'first'), 'first');
          assert.equal(await store.kv.putIfAbsent('k', 'second'), 'first');
          assert.equal(await store.kv.get('k'), 'first');
          await store.kv.set('k', 'third');
          assert.equal(await store.kv.putIfAbsent('k', 'fourth'), 'third');
        }),
      );

      test(
        'putIfAbsent: concurrent callers (nodes generating a key at first start) all agree on one value',
        withStore(async (store, opened, extra) => {
          const second = await opened.reopen();
          extra.push(second);
          const candidates = Array.from({ length: 10 }, (_, i) => `candidate-${i}`);
          const results = await Promise.all(
            candidates.map((v, i) => (i % 2 ? second : store).kv.putIfAbsent('master-key', v)),
          );
          assert.equal(
            new Set(results).size,
            1,
            `every caller got the same value, not ${[...new Set(results)].join(', ')}`,
          );
          assert.ok(candidates.includes(results[0]!));
          assert.equal(await store.kv.get('master-key'), results[0]);
          assert.equal(await second.kv.get('master-key'), results[0]);
        }),
      );
    });

    describe('signing keys', () => {
      test(
        'add and list round-trip every field, oldest first; an empty store has none',
        withStore(async (store) => {
          assert.deepEqual(await store.keys.list(), []);
          const a = signingKey({ createdAt: 1_000, activatesAt: 1_000 });
          const b = signingKey({ alg: 'ES256', createdAt: 2_000, activatesAt: 5_000, retiresAt: 9_000_000_000_000 });
          await store.keys.add(b);
          await store.keys.add(a);
          const listed = await store.keys.list();
          assert.deepEqual(listed, [a, b]);
          assert.equal(typeof listed[1]!.retiresAt, 'number', 'times come back as numbers');
          assert.equal(listed[0]!.retiresAt, null);
        }),
      );

      test(
        'a kid is taken once: a second add is a StoreConflictError and changes nothing',
        withStore(async (store) => {
          const a = signingKey();
          await store.keys.add(a);
          await assert.rejects(store.keys.add({ ...a, alg: 'ES256' }), StoreConflictError);
          assert.deepEqual(await store.keys.list(), [a]);
        }),
      );

      test(
        'a rotation retires every key without a retirement time, in the same step, and only those',
        withStore(async (store) => {
          const old = signingKey({ createdAt: 1, activatesAt: 1, retiresAt: 500 });
          const current = signingKey({ createdAt: 2, activatesAt: 2 });
          await store.keys.add(old);
          await store.keys.add(current);
          const next = signingKey({ createdAt: 3, activatesAt: 1_000 });
          await store.keys.add(next, 7_000);
          const byKid = new Map((await store.keys.list()).map((k) => [k.kid, k]));
          assert.equal(byKid.get(old.kid)!.retiresAt, 500, 'an already retiring key keeps its time');
          assert.equal(byKid.get(current.kid)!.retiresAt, 7_000);
          assert.equal(byKid.get(next.kid)!.retiresAt, null, 'the new key is not retired by its own rotation');
        }),
      );

      test(
        'a failed rotation (kid taken) retires nothing',
        withStore(async (store) => {
          const current = signingKey();
          await store.keys.add(current);
          await assert.rejects(store.keys.add({ ...current }, 7_000), StoreConflictError);
          assert.equal((await store.keys.list())[0]!.retiresAt, null);
        }),
      );

      test(
        'deleteRetired drops keys whose time has come, keeps the rest, counts',
        withStore(async (store) => {
          const gone = signingKey({ createdAt: 1, retiresAt: 1_000 });
          const edge = signingKey({ createdAt: 2, retiresAt: 2_000 });
          const later = signingKey({ createdAt: 3, retiresAt: 3_000 });
          const current = signingKey({ createdAt: 4 });
          for (const k of [gone, edge, later, current]) await store.keys.add(k);
          assert.equal(await store.keys.deleteRetired(2_000), 2);
          assert.deepEqual(
            (await store.keys.list()).map((k) => k.kid),
            [later.kid, current.kid],
          );
          assert.equal(await store.keys.deleteRetired(2_000), 0);
        }),
      );

      test(
        'addFirst: of several nodes starting at once on an empty store, exactly one adds its key',
        withStore(async (store, opened, extra) => {
          const second = await opened.reopen();
          extra.push(second);
          const candidates = Array.from({ length: 8 }, () => signingKey());
          const results = await Promise.all(candidates.map((k, i) => (i % 2 ? second : store).keys.addFirst(k)));
          assert.equal(results.filter(Boolean).length, 1, `one winner, got ${results.join(',')}`);
          const listed = await second.keys.list();
          assert.deepEqual(listed, [candidates[results.indexOf(true)]]);
          assert.equal(
            await store.keys.addFirst(signingKey()),
            false,
            'no second "first" key while the first is there',
          );
        }),
      );
    });

    describe('sign-in through providers', () => providerStoreContract(withStore));

    describe('mailed links', () => emailTokenStoreContract(withStore));

    describe('the audit trail', () => auditStoreContract(withStore));

    describe('events for apps', () => appEventStoreContract(withStore));

    describe('background jobs', () => {
      test(
        'a job lease is taken by one holder at a time, renewed only by its holder, and free again once expired',
        withStore(async (store, opened) => {
          const other = await opened.reopen();
          try {
            const now = 1_000_000;
            // Two nodes ask at once: exactly one gets it.
            const won = await Promise.all([
              store.jobs.acquire('sessions', 'node-a', now, now + 60_000),
              other.jobs.acquire('sessions', 'node-b', now, now + 60_000),
            ]);
            assert.deepEqual(won.filter(Boolean).length, 1, `one winner: ${won}`);
            const [winner, loser] = won[0] ? ['node-a', 'node-b'] : ['node-b', 'node-a'];
            assert.equal(await store.jobs.acquire('sessions', loser, now + 59_999, now + 120_000), false, 'held');
            assert.equal(await store.jobs.acquire('oauth', loser, now, now + 60_000), true, 'per job name');
            assert.equal(await store.jobs.renew('sessions', loser, now + 500_000), false, 'only its holder renews');
            assert.equal(await store.jobs.renew('sessions', winner, now + 90_000), true);
            assert.equal(await store.jobs.acquire('sessions', loser, now + 60_000, now + 120_000), false, 'renewed');
            assert.equal(await store.jobs.acquire('sessions', loser, now + 90_000, now + 150_000), true, 'expired');
            assert.equal(await store.jobs.renew('sessions', winner, now + 500_000), false, 'the old holder lost it');
          } finally {
            await other.close();
          }
        }),
      );

      test(
        'purges delete in bounded batches: at most the limit per call, until none is left',
        withStore(async (store) => {
          const u = await store.users.create({ email: email() });
          const now = 10_000_000;
          for (let i = 0; i < 25; i++)
            await store.sessions.create(session(u.id, { lastSeenAt: now - 10, expiresAt: now - 1 }));
          const live = session(u.id, { lastSeenAt: now, expiresAt: now + 1000 });
          await store.sessions.create(live);
          assert.equal(await store.sessions.purgeExpired(now, 60_000, 10), 10);
          assert.equal(await store.sessions.purgeExpired(now, 60_000, 10), 10);
          assert.equal(await store.sessions.purgeExpired(now, 60_000, 10), 5);
          assert.equal(await store.sessions.purgeExpired(now, 60_000, 10), 0);
          assert.deepEqual(
            (await store.sessions.listByUser(u.id)).map((s) => s.idHash),
            [live.idHash],
          );
          await store.compact();
        }),
      );
    });

    describe('second factors', () => mfaStoreContract(withStore));

    describe('the database', () => {
      test(
        'ping answers while the store is open',
        withStore(async (store) => {
          await store.ping();
        }),
      );

      test(
        'a second handle (restart, another node, the CLI) sees the same data, and reopening migrates nothing twice',
        withStore(async (store, opened, extra) => {
          const u = await store.users.create({ email: email(), name: 'persisted' });
          const s = session(u.id);
          await store.sessions.create(s);
          await store.kv.set('k', 'v');
          const again = await opened.reopen();
          extra.push(again);
          const third = await opened.reopen();
          extra.push(third);
          assert.deepEqual(await third.users.get(u.id), u);
          assert.deepEqual(await third.sessions.get(s.idHash), s);
          assert.equal(await third.kv.get('k'), 'v');
          // Writes through one handle are seen by the other from its next event-loop turn, i.e. by
          // every request that arrives after them (a CLI revoke, another node's login), also where
          // the other handle read the same rows just before (a store may keep those).
          const other = session(u.id);
          await store.sessions.create(other);
          assert.ok(await store.sessions.getWithUser(s.idHash));
          assert.ok(await store.sessions.getWithUser(other.idHash));
          assert.equal(await again.sessions.delete(s.idHash), true);
          await laterRequest();
          assert.equal(await store.sessions.getWithUser(s.idHash), undefined);
          await again.users.update(u.id, { groups: ['moved'] });
          await laterRequest();
          assert.deepEqual((await store.sessions.getWithUser(other.idHash))?.user.groups, ['moved']);
          await again.users.update(u.id, { disabled: true });
          assert.equal((await store.users.get(u.id))?.disabled, true);
          await laterRequest();
          assert.equal((await store.sessions.getWithUser(other.idHash))?.user.disabled, true);
        }),
      );
    });
  });

  oauthStoreContract(name, withStore);
}
