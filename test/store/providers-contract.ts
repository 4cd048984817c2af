import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { StoreConflictError, type Session, type Store } from '../../src/store/index.ts';
import type { WithStore } from './contract.ts';

/**
 * The Store contract for sign-in through providers: identities, login states and provider
 * tokens. Called from storeContract, so it runs against SQLite and PostgreSQL alike.
 */

let n = 0;
const email = (tag = 'p') => `${tag}-${process.pid}-${n++}@example.com`;
const hash = () => randomBytes(32).toString('base64url');
const ISS = 'https://idp.example.com';

function session(userId: string): Session {
  const now = Date.now();
  return {
    idHash: hash(),
    userId,
    site: 'https://app.example.com',
    createdAt: now,
    lastSeenAt: now,
    expiresAt: now + 3_600_000,
    amr: ['idp:a'],
    ip: null,
    userAgent: null,
    authTime: now,
  };
}

export function providerStoreContract(withStore: WithStore): void {
  describe('identities', () => {
    test(
      'create, find by (issuer, subject), listByUser; another issuer with the same subject is another identity',
      withStore(async (store) => {
        const u = await store.users.create({ email: email(), emailVerified: true });
        const before = Date.now();
        const a = await store.identities.create({
          userId: u.id,
          provider: 'a',
          issuer: ISS,
          subject: 'sub-1',
          email: u.email,
          emailVerified: true,
          name: 'Ann',
          groups: ['g1', 'é,x'],
        });
        assert.match(a.id, /^[0-9a-f-]{36}$/);
        assert.ok(a.createdAt >= before && a.lastLoginAt === a.createdAt);
        assert.deepEqual(await store.identities.find(ISS, 'sub-1'), a);
        assert.equal(await store.identities.find(ISS, 'SUB-1'), undefined, 'subjects are compared exactly');
        assert.equal(
          await store.identities.find(`${ISS}/other`, 'sub-1'),
          undefined,
          'the same sub at another issuer is nobody yet (security.md #37)',
        );
        const other = await store.users.create({ email: email() });
        const b = await store.identities.create({
          userId: other.id,
          provider: 'b',
          issuer: `${ISS}/other`,
          subject: 'sub-1',
        });
        assert.equal(b.email, null);
        assert.equal(b.emailVerified, false);
        assert.deepEqual(b.groups, []);
        assert.deepEqual(await store.identities.listByUser(u.id), [a]);
        assert.deepEqual(await store.identities.listByUser(other.id), [b]);
        while (Date.now() <= a.createdAt) await new Promise((r) => setTimeout(r, 1)); // the clock moves on, so "oldest" means something
        const second = await store.identities.create({
          userId: u.id,
          provider: 'b',
          issuer: 'https://gitlab.example.com',
          subject: '42',
        });
        assert.deepEqual(
          (await store.identities.listByUser(u.id)).map((i) => i.id),
          [a.id, second.id],
          'oldest first',
        );
      }),
    );

    test(
      'an identity links to one user only: a second link of (issuer, subject) conflicts and changes nothing',
      withStore(async (store) => {
        const owner = await store.users.create({ email: email() });
        const attacker = await store.users.create({ email: email('attacker') });
        const first = await store.identities.create({ userId: owner.id, provider: 'a', issuer: ISS, subject: 'taken' });
        await assert.rejects(
          store.identities.create({ userId: attacker.id, provider: 'a', issuer: ISS, subject: 'taken' }),
          StoreConflictError,
        );
        const results = await Promise.allSettled(
          [1, 2, 3, 4].map(() =>
            store.identities.create({ userId: attacker.id, provider: 'a', issuer: ISS, subject: 'raced' }),
          ),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'concurrent links: exactly one wins');
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof StoreConflictError);
        assert.deepEqual(await store.identities.find(ISS, 'taken'), first);
      }),
    );

    test(
      'createWithUser makes both in one transaction; a taken identity or email leaves no user behind',
      withStore(async (store) => {
        const address = email('first');
        const { user, identity } = await store.identities.createWithUser(
          { email: address, emailVerified: true, name: 'First' },
          { provider: 'a', issuer: ISS, subject: 'new', email: address, emailVerified: true },
        );
        assert.equal(user.email, address);
        assert.equal(user.passwordHash, null);
        assert.equal(identity.userId, user.id);
        assert.deepEqual(await store.identities.find(ISS, 'new'), identity);
        const count = await store.users.count();
        await assert.rejects(
          store.identities.createWithUser({ email: email('second') }, { provider: 'a', issuer: ISS, subject: 'new' }),
          StoreConflictError,
        );
        assert.equal(await store.users.count(), count, 'the user of a lost race was rolled back');
        await assert.rejects(
          store.identities.createWithUser({ email: address }, { provider: 'a', issuer: ISS, subject: 'other' }),
          StoreConflictError,
        );
        assert.equal(await store.identities.find(ISS, 'other'), undefined);
        const racers = await Promise.allSettled(
          [1, 2, 3].map((i) =>
            store.identities.createWithUser(
              { email: email(`race${i}`) },
              { provider: 'a', issuer: ISS, subject: 'race' },
            ),
          ),
        );
        assert.equal(racers.filter((r) => r.status === 'fulfilled').length, 1);
        assert.equal(await store.users.count(), count + 1, 'one user for the one identity');
      }),
    );

    test(
      'update changes what the patch names; unknown ids return undefined',
      withStore(async (store) => {
        const u = await store.users.create({ email: email() });
        const i = await store.identities.create({
          userId: u.id,
          provider: 'a',
          issuer: ISS,
          subject: 's',
          email: 'old@example.com',
          groups: ['a'],
        });
        const changed = await store.identities.update(i.id, {
          email: 'new@example.com',
          emailVerified: true,
          groups: ['b'],
          lastLoginAt: i.lastLoginAt + 5000,
        });
        assert.equal(changed?.email, 'new@example.com');
        assert.equal(changed?.emailVerified, true);
        assert.deepEqual(changed?.groups, ['b']);
        assert.equal(changed?.name, null);
        assert.equal(changed?.lastLoginAt, i.lastLoginAt + 5000);
        assert.equal(changed?.createdAt, i.createdAt);
        assert.deepEqual(await store.identities.find(ISS, 's'), changed);
        assert.deepEqual(await store.identities.update(i.id, {}), changed);
        assert.equal(await store.identities.update('00000000-0000-0000-0000-000000000000', { name: 'x' }), undefined);
      }),
    );

    test(
      "deleteUnlessLast: never the last way to sign in; only the user's own identity",
      withStore(async (store) => {
        const withPassword = await store.users.create({ email: email(), passwordHash: 'h' });
        const only = await store.identities.create({
          userId: withPassword.id,
          provider: 'a',
          issuer: ISS,
          subject: 'pw-1',
        });
        const stranger = await store.users.create({ email: email('stranger') });
        assert.equal(
          await store.identities.deleteUnlessLast(only.id, stranger.id),
          'not_found',
          "someone else's identity is not theirs to unlink",
        );
        assert.equal(
          await store.identities.deleteUnlessLast(only.id, withPassword.id),
          'deleted',
          'a password remains',
        );
        assert.equal(await store.identities.find(ISS, 'pw-1'), undefined);
        assert.equal(await store.identities.deleteUnlessLast(only.id, withPassword.id), 'not_found');

        const { user, identity } = await store.identities.createWithUser(
          { email: email() },
          { provider: 'a', issuer: ISS, subject: 'np-1' },
        );
        assert.equal(await store.identities.deleteUnlessLast(identity.id, user.id), 'last');
        assert.ok(await store.identities.find(ISS, 'np-1'), 'the last identity stays');
        const second = await store.identities.create({ userId: user.id, provider: 'b', issuer: ISS, subject: 'np-2' });
        // Both at once: one may go, the other must stay.
        const results = await Promise.all([
          store.identities.deleteUnlessLast(identity.id, user.id),
          store.identities.deleteUnlessLast(second.id, user.id),
        ]);
        assert.deepEqual(results.sort(), ['deleted', 'last']);
        assert.equal((await store.identities.listByUser(user.id)).length, 1);
      }),
    );

    test(
      'deleting a user removes their identities (cascade)',
      withStore(async (store) => {
        const u = await store.users.create({ email: email() });
        await store.identities.create({ userId: u.id, provider: 'a', issuer: ISS, subject: 'gone' });
        await store.users.delete(u.id);
        assert.equal(await store.identities.find(ISS, 'gone'), undefined);
        assert.deepEqual(await store.identities.listByUser(u.id), []);
      }),
    );
  });

  describe('login states', () => {
    const state = (
      over: Partial<{
        idHash: string;
        expiresAt: number;
        purpose: 'login' | 'link' | 'reauth';
        sessionHash: string | null;
      }> = {},
    ) => {
      const now = Date.now();
      return {
        idHash: hash(),
        browserHash: hash(),
        provider: 'a',
        site: 'https://app.example.com',
        purpose: 'login' as const,
        sessionHash: null,
        returnTo: '/reports?q=1#x',
        secret: 'v1.kid.iv.ct.tag',
        createdAt: now,
        expiresAt: now + 600_000,
        ...over,
      };
    };

    test(
      'create and get round-trip every field; unknown states are undefined',
      withStore(async (store) => {
        const s = state({ purpose: 'link', sessionHash: hash() });
        await store.loginStates.create(s);
        assert.deepEqual(await store.loginStates.get(s.idHash), { ...s, usedAt: null });
        assert.equal(await store.loginStates.get(hash()), undefined);
        const r = state({ purpose: 'reauth', sessionHash: hash() });
        await store.loginStates.create(r);
        assert.deepEqual(await store.loginStates.get(r.idHash), { ...r, usedAt: null });
      }),
    );

    test(
      'consume works exactly once, also when callbacks race (a replayed state fails)',
      withStore(async (store, opened, extra) => {
        const s = state();
        await store.loginStates.create(s);
        const other = await opened.reopen();
        extra.push(other);
        const results = await Promise.all(
          [1, 2, 3, 4, 5, 6].map((i) => (i % 2 ? other : store).loginStates.consume(s.idHash, Date.now())),
        );
        const won = results.filter(Boolean);
        assert.equal(won.length, 1, 'one callback gets the state, on whichever node');
        assert.equal(won[0]!.idHash, s.idHash);
        assert.equal(await store.loginStates.consume(s.idHash, Date.now()), undefined, 'a replay gets nothing');
        const used = await store.loginStates.get(s.idHash);
        assert.ok(used?.usedAt, 'a used state is remembered as used, so a replay can be told apart from a forgery');
        assert.equal(await store.loginStates.consume(hash(), Date.now()), undefined);
      }),
    );

    test(
      'purgeExpired removes expired states only',
      withStore(async (store) => {
        const now = 50_000_000;
        const live = state({ expiresAt: now + 1 });
        const edge = state({ expiresAt: now });
        const old = state({ expiresAt: now - 1 });
        for (const s of [live, edge, old]) await store.loginStates.create(s);
        assert.equal(await store.loginStates.purgeExpired(now), 1);
        assert.ok(await store.loginStates.get(live.idHash));
        assert.ok(await store.loginStates.get(edge.idHash));
        assert.equal(await store.loginStates.get(old.idHash), undefined);
      }),
    );
  });

  describe('provider tokens', () => {
    const setup = async (store: Store) => {
      const u = await store.users.create({ email: email() });
      const s = session(u.id);
      await store.sessions.create(s);
      return { user: u, session: s, owner: `session:${s.idHash}` };
    };

    test(
      'put and get; put again replaces, bumps the version and clears a lease',
      withStore(async (store) => {
        const { user, session: s, owner } = await setup(store);
        assert.equal(await store.providerTokens.get(owner, 'a'), undefined);
        await store.providerTokens.put({
          owner,
          provider: 'a',
          userId: user.id,
          sessionHash: s.idHash,
          data: 'cipher-1',
          expiresAt: 1234,
        });
        const first = (await store.providerTokens.get(owner, 'a'))!;
        assert.deepEqual(
          { ...first, updatedAt: 0 },
          {
            owner,
            provider: 'a',
            userId: user.id,
            sessionHash: s.idHash,
            data: 'cipher-1',
            expiresAt: 1234,
            version: 1,
            leaseHolder: null,
            leaseUntil: 0,
            updatedAt: 0,
          },
        );
        assert.ok(await store.providerTokens.acquireLease(owner, 'a', 'node-1', 10, 20_000));
        await store.providerTokens.put({
          owner,
          provider: 'a',
          userId: user.id,
          sessionHash: s.idHash,
          data: 'cipher-2',
          expiresAt: null,
        });
        const second = (await store.providerTokens.get(owner, 'a'))!;
        assert.equal(second.data, 'cipher-2');
        assert.equal(second.expiresAt, null);
        assert.equal(second.version, 2);
        assert.equal(second.leaseHolder, null);
        await store.providerTokens.put({
          owner,
          provider: 'b',
          userId: user.id,
          sessionHash: s.idHash,
          data: 'cipher-b',
          expiresAt: 1,
        });
        assert.equal((await store.providerTokens.get(owner, 'a'))?.data, 'cipher-2', 'providers are kept apart');
      }),
    );

    test(
      'the refresh lease: one holder at a time, also across handles; taken again once it lapses',
      withStore(async (store, opened, extra) => {
        const { user, session: s, owner } = await setup(store);
        await store.providerTokens.put({
          owner,
          provider: 'a',
          userId: user.id,
          sessionHash: s.idHash,
          data: 'd',
          expiresAt: 1,
        });
        const other = await opened.reopen();
        extra.push(other);
        const now = 1_000_000;
        const tries = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            (i % 2 ? other : store).providerTokens.acquireLease(owner, 'a', `node-${i}`, now, now + 15_000),
          ),
        );
        const holders = tries.filter(Boolean);
        assert.equal(holders.length, 1, 'exactly one node may refresh');
        const holder = holders[0]!.leaseHolder!;
        assert.equal(holders[0]!.leaseUntil, now + 15_000);
        assert.equal(
          await store.providerTokens.acquireLease(owner, 'a', 'late', now + 14_999, now + 30_000),
          undefined,
          'a live lease is not taken',
        );
        assert.equal(
          await store.providerTokens.completeLease(owner, 'a', 'not-the-holder', { data: 'forged', expiresAt: 9 }),
          false,
          'only the holder writes',
        );
        assert.equal((await store.providerTokens.get(owner, 'a'))?.data, 'd');
        assert.equal(
          await store.providerTokens.completeLease(owner, 'a', holder, { data: 'refreshed', expiresAt: 99 }),
          true,
        );
        const after = (await store.providerTokens.get(owner, 'a'))!;
        assert.equal(after.data, 'refreshed');
        assert.equal(after.expiresAt, 99);
        assert.equal(after.version, 2);
        assert.equal(after.leaseHolder, null);
        assert.equal(after.leaseUntil, 0);
        assert.equal(
          await store.providerTokens.completeLease(owner, 'a', holder, { data: 'twice', expiresAt: 1 }),
          false,
          'a lease completes once',
        );

        // A holder that died: its lease lapses and another node takes over.
        assert.ok(await store.providerTokens.acquireLease(owner, 'a', 'dies', now, now + 100));
        assert.equal(await store.providerTokens.acquireLease(owner, 'a', 'next', now + 50, now + 200), undefined);
        assert.equal(
          (await store.providerTokens.acquireLease(owner, 'a', 'next', now + 100, now + 200))?.leaseHolder,
          'next',
        );
        await store.providerTokens.releaseLease(owner, 'a', 'dies');
        assert.equal(
          (await store.providerTokens.get(owner, 'a'))?.leaseHolder,
          'next',
          'a stale holder cannot release the new lease',
        );
        await store.providerTokens.releaseLease(owner, 'a', 'next');
        assert.equal((await store.providerTokens.get(owner, 'a'))?.leaseUntil, 0);
        assert.equal(
          await store.providerTokens.acquireLease(owner, 'nope', 'x', now, now + 1),
          undefined,
          'no row, no lease',
        );
      }),
    );

    test(
      'tokens go with their session (logout, expiry purge) and with their user',
      withStore(async (store) => {
        const a = await setup(store);
        const b = await setup(store);
        for (const t of [a, b])
          await store.providerTokens.put({
            owner: t.owner,
            provider: 'a',
            userId: t.user.id,
            sessionHash: t.session.idHash,
            data: 'd',
            expiresAt: null,
          });
        await store.sessions.delete(a.session.idHash);
        assert.equal(await store.providerTokens.get(a.owner, 'a'), undefined, 'ending a session deletes its tokens');
        assert.ok(await store.providerTokens.get(b.owner, 'a'));
        await store.sessions.purgeExpired(Date.now() + 10 * 3_600_000, 1000);
        assert.equal(
          await store.providerTokens.get(b.owner, 'a'),
          undefined,
          'purged sessions take their tokens along',
        );

        const c = await setup(store);
        await store.providerTokens.put({
          owner: 'cli:device-1',
          provider: 'a',
          userId: c.user.id,
          sessionHash: null,
          data: 'd',
          expiresAt: null,
        });
        await store.users.delete(c.user.id);
        assert.equal(
          await store.providerTokens.get('cli:device-1', 'a'),
          undefined,
          'an owner that is not a session still goes with its user',
        );
      }),
    );

    test(
      'delete by owner (one provider or all) and by user (one provider or all)',
      withStore(async (store) => {
        const { user, session: s, owner } = await setup(store);
        const put = (o: string, p: string) =>
          store.providerTokens.put({
            owner: o,
            provider: p,
            userId: user.id,
            sessionHash: o === owner ? s.idHash : null,
            data: 'd',
            expiresAt: null,
          });
        await put(owner, 'a');
        await put(owner, 'b');
        await put('cli:x', 'a');
        assert.equal(await store.providerTokens.delete(owner, 'a'), 1);
        assert.equal(await store.providerTokens.get(owner, 'a'), undefined);
        assert.ok(await store.providerTokens.get(owner, 'b'));
        assert.equal(await store.providerTokens.delete(owner), 1);
        await put(owner, 'a');
        await put(owner, 'b');
        assert.equal(
          await store.providerTokens.deleteByUser(user.id, 'a'),
          2,
          'unlinking a provider drops its tokens in every session',
        );
        assert.ok(await store.providerTokens.get(owner, 'b'));
        assert.equal(await store.providerTokens.deleteByUser(user.id), 1);
        assert.equal(await store.providerTokens.delete('nobody'), 0);
      }),
    );
  });
}
