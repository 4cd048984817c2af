import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { Store } from '../../src/store/index.ts';
import type { NewEmailToken } from '../../src/store/email-token-types.ts';
import type { WithStore } from './contract.ts';

/**
 * The Store contract for mailed links (email verification, password reset). Called from
 * storeContract, so it runs against SQLite and PostgreSQL alike.
 */

let n = 0;
const email = () => `t-${process.pid}-${n++}@example.com`;
const hash = () => randomBytes(32).toString('base64url');

function token(userId: string, address: string, over: Partial<NewEmailToken> = {}): NewEmailToken {
  const now = Date.now();
  return {
    idHash: hash(),
    userId,
    purpose: 'reset_password',
    email: address,
    binding: 'fp-1',
    createdAt: now,
    expiresAt: now + 30 * 60_000,
    ...over,
  };
}

export function emailTokenStoreContract(withStore: WithStore): void {
  describe('email tokens', () => {
    test(
      'issue then get returns the token as stored; unknown hashes find nothing',
      withStore(async (store) => {
        const u = await store.users.create({ email: email() });
        const t = token(u.id, u.email, { binding: 'é,"x"' });
        await store.emailTokens.issue(t);
        const got = await store.emailTokens.get(t.idHash);
        assert.deepEqual(got, { ...t, usedAt: null, supersededAt: null });
        assert.equal(typeof got!.expiresAt, 'number');
        assert.equal(await store.emailTokens.get(hash()), undefined);
      }),
    );

    test(
      'holders: the users with a live token of a purpose, not once it is used, superseded by a used one, or expired',
      withStore(async (store) => {
        const now = Date.now();
        const [live, used, expired, other] = await Promise.all(
          [1, 2, 3, 4].map(() => store.users.create({ email: email() })),
        );
        const invite = (u: { id: string; email: string }, over: Partial<NewEmailToken> = {}) =>
          token(u.id, u.email, { purpose: 'invite', ...over });
        await store.emailTokens.issue(invite(live!));
        await store.emailTokens.issue(invite(live!)); // sent again: the newer one is live
        const spent = invite(used!);
        await store.emailTokens.issue(spent);
        await store.emailTokens.consume(spent.idHash, 'invite', now);
        await store.emailTokens.issue(invite(expired!, { createdAt: now - 2000, expiresAt: now - 1000 }));
        await store.emailTokens.issue(token(other!.id, other!.email));
        const holders = await store.emailTokens.holders('invite', now);
        assert.ok(holders.has(live!.id));
        for (const u of [used!, expired!, other!]) assert.ok(!holders.has(u.id), u.email);
        assert.ok((await store.emailTokens.holders('reset_password', now)).has(other!.id));
      }),
    );

    test(
      'consume works once, and only for its purpose, before it expires; concurrent consumes have one winner',
      withStore(async (store, opened, extra) => {
        const u = await store.users.create({ email: email() });
        const t = token(u.id, u.email);
        await store.emailTokens.issue(t);
        const now = Date.now();
        assert.equal(
          await store.emailTokens.consume(t.idHash, 'verify_email', now),
          undefined,
          'a reset token is no verification token',
        );
        const used = await store.emailTokens.consume(t.idHash, 'reset_password', now);
        assert.equal(used?.usedAt, now);
        assert.equal(used?.userId, u.id);
        assert.equal(
          await store.emailTokens.consume(t.idHash, 'reset_password', now + 1),
          undefined,
          'a replay gets nothing',
        );
        assert.equal((await store.emailTokens.get(t.idHash))?.usedAt, now);

        const expiring = token(u.id, u.email, { purpose: 'verify_email', expiresAt: now + 1000 });
        await store.emailTokens.issue(expiring);
        assert.equal(
          await store.emailTokens.consume(expiring.idHash, 'verify_email', now + 1000),
          undefined,
          'expired at expiresAt',
        );
        assert.equal(
          (await store.emailTokens.get(expiring.idHash))?.usedAt,
          null,
          'an expired token is not marked used',
        );

        const raced = token(u.id, u.email, { purpose: 'verify_email' });
        await store.emailTokens.issue(raced);
        const other = await opened.reopen();
        extra.push(other);
        const results = await Promise.all(
          [1, 2, 3, 4, 5, 6].map((i) =>
            (i % 2 ? store : other).emailTokens.consume(raced.idHash, 'verify_email', Date.now()),
          ),
        );
        assert.equal(results.filter(Boolean).length, 1, 'exactly one of the concurrent uses wins, across handles');
      }),
    );

    test(
      'a newer token of the same purpose supersedes the older live ones; other purposes and users are untouched',
      withStore(async (store) => {
        const u = await store.users.create({ email: email() });
        const v = await store.users.create({ email: email() });
        const first = token(u.id, u.email);
        const verify = token(u.id, u.email, { purpose: 'verify_email' });
        const others = token(v.id, v.email);
        for (const t of [first, verify, others]) await store.emailTokens.issue(t);
        const second = token(u.id, u.email, { createdAt: first.createdAt + 5 });
        await store.emailTokens.issue(second);
        assert.equal((await store.emailTokens.get(first.idHash))?.supersededAt, second.createdAt);
        assert.equal(
          await store.emailTokens.consume(first.idHash, 'reset_password', Date.now()),
          undefined,
          'the older link no longer works',
        );
        assert.equal((await store.emailTokens.get(verify.idHash))?.supersededAt, null, 'another purpose is untouched');
        assert.equal((await store.emailTokens.get(others.idHash))?.supersededAt, null, 'another user is untouched');
        assert.ok(await store.emailTokens.consume(second.idHash, 'reset_password', Date.now()));
        // A used token stays "used", not "superseded", when a newer one comes.
        const third = token(u.id, u.email);
        await store.emailTokens.issue(third);
        const after = await store.emailTokens.get(second.idHash);
        assert.ok(after?.usedAt && after.supersededAt === null);
      }),
    );

    test(
      'concurrent issues for one user leave exactly one live token',
      withStore(async (store) => {
        const u = await store.users.create({ email: email() });
        // One handle: PostgreSQL's pool runs these on several connections at once.
        const tokens = Array.from({ length: 6 }, () => token(u.id, u.email));
        await Promise.all(tokens.map((t) => store.emailTokens.issue(t)));
        const rows = await Promise.all(tokens.map((t) => store.emailTokens.get(t.idHash)));
        assert.equal(
          rows.filter((r) => r && r.supersededAt === null).length,
          1,
          `live: ${rows.map((r) => (r?.supersededAt === null ? 'live' : 'old')).join(',')}`,
        );
      }),
    );

    test(
      'tokens go with their user; purgeExpired removes only the expired ones',
      withStore(async (store) => {
        const u = await store.users.create({ email: email() });
        const now = Date.now();
        const old = token(u.id, u.email, { purpose: 'verify_email', createdAt: now - 10_000, expiresAt: now - 5000 });
        const live = token(u.id, u.email);
        await store.emailTokens.issue(old);
        await store.emailTokens.issue(live);
        assert.ok((await store.emailTokens.purgeExpired(now)) >= 1);
        assert.equal(await store.emailTokens.get(old.idHash), undefined);
        assert.ok(await store.emailTokens.get(live.idHash));
        await store.users.delete(u.id);
        assert.equal(await store.emailTokens.get(live.idHash), undefined, 'deleted with the user');
      }),
    );
  });
}
