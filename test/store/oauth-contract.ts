import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  StoreConflictError,
  type AuthorizationCode,
  type DeviceAuthorization,
  type Grant,
  type Store,
} from '../../src/store/index.ts';
import type { WithStore } from './contract.ts';
import { laterRequest } from './later-request.ts';

/**
 * The OAuth part of the Store contract (src/store/oauth-types.ts), run by contract.ts for
 * SQLite and PostgreSQL: above all that every single-use step (a device code, a code, a
 * refresh token) is taken exactly once under concurrency.
 */

const rnd = () => randomBytes(32).toString('base64url');
let n = 0;
const email = () => `oauth-${process.pid}-${n++}@example.com`;
const NOW = 1_700_000_000_000;

function device(over: Partial<DeviceAuthorization> = {}): DeviceAuthorization {
  return {
    deviceHash: rnd(),
    userCodeHash: rnd(),
    clientId: 'gatehouse-cli',
    scope: 'offline_access',
    resource: 'https://app.example.com',
    createdAt: NOW,
    expiresAt: NOW + 600_000,
    intervalMs: 5000,
    lastPollAt: null,
    status: 'pending',
    userId: null,
    amr: [],
    authTime: null,
    decidedAt: null,
    sessionHash: null,
    ip: '203.0.113.7',
    userAgent: 'cli/1',
    ...over,
  };
}

function grant(userId: string, over: Partial<Grant> = {}): Grant {
  return {
    id: rnd(),
    userId,
    clientId: 'gatehouse-cli',
    clientName: 'Gatehouse CLI',
    kind: 'device',
    scope: 'offline_access',
    resource: 'https://app.example.com',
    amr: ['pwd'],
    authTime: NOW - 1000,
    createdAt: NOW,
    lastUsedAt: NOW,
    ip: '203.0.113.7',
    userAgent: 'cli/1',
    expiresAt: NOW + 90 * 86_400_000,
    revokedAt: null,
    revokedReason: null,
    refreshHash: rnd(),
    previousHash: null,
    rotatedAt: null,
    successor: null,
    generation: 0,
    ...over,
  };
}

function code(userId: string, over: Partial<AuthorizationCode> = {}): AuthorizationCode {
  return {
    codeHash: rnd(),
    clientId: 'dcr_x',
    redirectUri: 'http://127.0.0.1:9/cb',
    codeChallenge: rnd(),
    scope: '',
    resource: 'https://app.example.com',
    userId,
    amr: ['pwd'],
    authTime: NOW,
    sessionHash: null,
    createdAt: NOW,
    expiresAt: NOW + 60_000,
    redeemedAt: null,
    grantId: null,
    ...over,
  };
}

const next = (now = NOW + 1000) => ({ hash: rnd(), successor: 'v1.enc', now, ip: '198.51.100.1', userAgent: 'cli/2' });

export function oauthStoreContract(name: string, withStore: WithStore): void {
  const user = async (store: Store) => store.users.create({ email: email(), name: 'Olga', groups: ['ops'] });

  describe(`OAuth store contract: ${name}`, () => {
    test(
      'clients: create and get round-trip; an id is taken once',
      withStore(async (store) => {
        const c = {
          id: `dcr_${rnd()}`,
          secretHash: rnd(),
          metadata: { client_name: 'Zoë’s "tool"', redirect_uris: ['http://127.0.0.1/cb'] },
          createdAt: NOW,
          createdIp: null,
        };
        await store.oauth.clients.create(c);
        assert.deepEqual(await store.oauth.clients.get(c.id), c);
        await assert.rejects(store.oauth.clients.create({ ...c, metadata: {} }), StoreConflictError);
        assert.deepEqual((await store.oauth.clients.get(c.id))?.metadata, c.metadata, 'the first registration stays');
        assert.equal(await store.oauth.clients.get('dcr_unknown'), undefined);
      }),
    );

    test(
      "clients: listed oldest first; removing one revokes its live logins in the same step, and no one else's",
      withStore(async (store) => {
        const client = (createdAt: number) => ({
          id: `dcr_${rnd()}`,
          secretHash: null,
          metadata: { client_name: 'x' },
          createdAt,
          createdIp: '198.51.100.7',
        });
        const [older, newer] = [client(NOW - 5000), client(NOW - 1000)];
        await store.oauth.clients.create(newer);
        await store.oauth.clients.create(older);
        const ids = (await store.oauth.clients.list()).map((c) => c.id);
        assert.ok(ids.indexOf(older.id) < ids.indexOf(newer.id) && ids.indexOf(older.id) !== -1);
        const u = await user(store);
        const live = grant(u.id, { clientId: older.id });
        const ended = grant(u.id, { clientId: older.id, revokedAt: NOW - 10, revokedReason: 'user' });
        const expired = grant(u.id, { clientId: older.id, expiresAt: NOW - 1 });
        const others = grant(u.id, { clientId: newer.id });
        for (const g of [live, ended, expired, others]) await store.oauth.grants.create(g);
        const counts = await store.oauth.grants.countByClient(NOW);
        assert.equal(counts.get(older.id), 1, 'only the live login counts');
        assert.equal(counts.get(newer.id), 1);

        assert.deepEqual(await store.oauth.clients.remove(older.id, NOW + 5), { removed: true, revoked: 2 });
        assert.equal(await store.oauth.clients.get(older.id), undefined);
        const after = await store.oauth.grants.get(live.id);
        assert.deepEqual([after?.revokedAt, after?.revokedReason], [NOW + 5, 'client_removed']);
        assert.equal(
          (await store.oauth.grants.get(ended.id))?.revokedReason,
          'user',
          'an ended login keeps its reason',
        );
        assert.equal((await store.oauth.grants.get(others.id))?.revokedAt, null, "another client's login stays");
        assert.deepEqual(await store.oauth.clients.remove(older.id, NOW + 6), { removed: false, revoked: 0 });
      }),
    );

    test(
      'revokeAll ends every live login of every user and voids approvals not yet collected; an ended one keeps its reason',
      withStore(async (store) => {
        const [u, v] = [await user(store), await user(store)];
        const live = [grant(u.id), grant(v.id, { clientId: 'dcr_x' })];
        const ended = grant(u.id, { revokedAt: NOW - 10, revokedReason: 'user' });
        for (const g of [...live, ended]) await store.oauth.grants.create(g);
        const approved = { ...device(), status: 'approved' as const, userId: u.id, decidedAt: NOW - 5 };
        await store.oauth.devices.create(approved);
        assert.deepEqual(await store.oauth.grants.revokeAll(NOW, 'operator'), { grants: 2, pending: 1 });
        assert.equal((await store.oauth.devices.get(approved.deviceHash))?.status, 'denied', 'not collected: voided');
        for (const g of live) assert.equal((await store.oauth.grants.get(g.id))?.revokedReason, 'operator');
        assert.equal((await store.oauth.grants.get(ended.id))?.revokedReason, 'user');
      }),
    );

    test(
      'device authorizations: round-trip, lookup by user code, a user code is live once',
      withStore(async (store) => {
        const d = device();
        await store.oauth.devices.create(d);
        assert.deepEqual(await store.oauth.devices.get(d.deviceHash), d);
        assert.deepEqual(await store.oauth.devices.getByUserCode(d.userCodeHash), d);
        await assert.rejects(store.oauth.devices.create(device({ userCodeHash: d.userCodeHash })), StoreConflictError);
        assert.equal(await store.oauth.devices.get(rnd()), undefined);
        assert.equal(await store.oauth.devices.getByUserCode(rnd()), undefined);
      }),
    );

    test(
      'device poll: too fast grows the interval for this and later polls; concurrent polls, one on time',
      withStore(async (store) => {
        const d = device();
        await store.oauth.devices.create(d);
        const o = { slowDownMs: 5000, slackMs: 500 };
        const first = await store.oauth.devices.poll(d.deviceHash, NOW, o);
        assert.equal(first?.tooFast, false);
        assert.equal(first?.device.lastPollAt, NOW);
        const fast = await store.oauth.devices.poll(d.deviceHash, NOW + 1000, o);
        assert.equal(fast?.tooFast, true);
        assert.equal(fast?.device.intervalMs, 10_000);
        assert.equal(
          (await store.oauth.devices.poll(d.deviceHash, NOW + 1000 + 6000, o))?.tooFast,
          true,
          'the old interval is no longer enough',
        );
        assert.equal((await store.oauth.devices.get(d.deviceHash))?.intervalMs, 15_000);
        const onTime = await store.oauth.devices.poll(d.deviceHash, NOW + 7000 + 14_600, o);
        assert.equal(onTime?.tooFast, false, 'within the slack of the interval');
        assert.equal(onTime?.device.intervalMs, 15_000);
        assert.equal(await store.oauth.devices.poll(rnd(), NOW, o), undefined);

        const e = device();
        await store.oauth.devices.create(e);
        const results = await Promise.all(
          Array.from({ length: 6 }, () => store.oauth.devices.poll(e.deviceHash, NOW, o)),
        );
        assert.equal(results.filter((r) => !r!.tooFast).length, 1, 'of simultaneous polls only one is on time');
      }),
    );

    test(
      'device decide: pending → approved or denied once, never after expiry',
      withStore(async (store) => {
        const u = await user(store);
        const d = device();
        await store.oauth.devices.create(d);
        assert.equal(
          await store.oauth.devices.decide(d.deviceHash, {
            approved: true,
            userId: u.id,
            amr: ['pwd'],
            authTime: NOW,
            sessionHash: 'browser-session-hash',
            now: NOW + 10,
          }),
          true,
        );
        const got = (await store.oauth.devices.get(d.deviceHash))!;
        assert.equal(got.status, 'approved');
        assert.equal(got.userId, u.id);
        assert.deepEqual(got.amr, ['pwd']);
        assert.equal(got.decidedAt, NOW + 10);
        assert.equal(got.sessionHash, 'browser-session-hash');
        assert.equal(
          await store.oauth.devices.decide(d.deviceHash, {
            approved: false,
            userId: u.id,
            amr: [],
            authTime: NOW,
            sessionHash: null,
            now: NOW + 20,
          }),
          false,
          'a decision is final',
        );
        assert.equal((await store.oauth.devices.get(d.deviceHash))?.status, 'approved');

        const late = device({ expiresAt: NOW + 100 });
        await store.oauth.devices.create(late);
        assert.equal(
          await store.oauth.devices.decide(late.deviceHash, {
            approved: true,
            userId: u.id,
            amr: [],
            authTime: NOW,
            sessionHash: null,
            now: NOW + 100,
          }),
          false,
        );
        const denied = device();
        await store.oauth.devices.create(denied);
        assert.equal(
          await store.oauth.devices.decide(denied.deviceHash, {
            approved: false,
            userId: u.id,
            amr: [],
            authTime: NOW,
            sessionHash: null,
            now: NOW,
          }),
          true,
        );
        assert.equal((await store.oauth.devices.get(denied.deviceHash))?.status, 'denied');
      }),
    );

    test(
      'device redeem: an approved code is exchanged once, even by concurrent polls; pending, denied and expired never',
      withStore(async (store) => {
        const u = await user(store);
        const d = device();
        await store.oauth.devices.create(d);
        assert.equal(await store.oauth.devices.redeem(d.deviceHash, NOW, grant(u.id)), false, 'pending');
        await store.oauth.devices.decide(d.deviceHash, {
          approved: true,
          userId: u.id,
          amr: ['pwd'],
          authTime: NOW,
          sessionHash: null,
          now: NOW,
        });
        const grants = Array.from({ length: 6 }, () => grant(u.id));
        const results = await Promise.all(grants.map((g) => store.oauth.devices.redeem(d.deviceHash, NOW + 5, g)));
        assert.equal(results.filter(Boolean).length, 1);
        const winner = grants[results.indexOf(true)]!;
        assert.deepEqual(await store.oauth.grants.get(winner.id), winner);
        assert.deepEqual(
          (await store.oauth.grants.listByUser(u.id, NOW)).map((g) => g.id),
          [winner.id],
          'the losers created no grant',
        );
        assert.equal((await store.oauth.devices.get(d.deviceHash))?.status, 'redeemed');

        const denied = device();
        await store.oauth.devices.create(denied);
        await store.oauth.devices.decide(denied.deviceHash, {
          approved: false,
          userId: u.id,
          amr: [],
          authTime: NOW,
          sessionHash: null,
          now: NOW,
        });
        assert.equal(await store.oauth.devices.redeem(denied.deviceHash, NOW, grant(u.id)), false);
        const expired = device({ expiresAt: NOW + 50 });
        await store.oauth.devices.create(expired);
        await store.oauth.devices.decide(expired.deviceHash, {
          approved: true,
          userId: u.id,
          amr: [],
          authTime: NOW,
          sessionHash: null,
          now: NOW,
        });
        assert.equal(await store.oauth.devices.redeem(expired.deviceHash, NOW + 50, grant(u.id)), false);
        assert.equal((await store.oauth.grants.listByUser(u.id, NOW)).length, 1);
      }),
    );

    test(
      'approved, not collected: listed for the user who approved until the client collects it; that user alone can cancel it, once',
      withStore(async (store) => {
        const u = await user(store);
        const other = await user(store);
        const approve = async (d: DeviceAuthorization, by: string, at: number) => {
          await store.oauth.devices.create(d);
          await store.oauth.devices.decide(d.deviceHash, {
            approved: true,
            userId: by,
            amr: ['pwd'],
            authTime: NOW,
            sessionHash: null,
            now: at,
          });
        };
        const [first, second, collected, short, theirs] = [
          device(),
          device(),
          device(),
          device({ expiresAt: NOW + 100 }),
          device(),
        ];
        await approve(first, u.id, NOW + 1);
        await approve(second, u.id, NOW + 2);
        await approve(collected, u.id, NOW + 3);
        await approve(short, u.id, NOW + 4);
        await approve(theirs, other.id, NOW + 5);
        await store.oauth.devices.create(device());
        assert.equal(await store.oauth.devices.redeem(collected.deviceHash, NOW + 6, grant(u.id)), true);
        const listed = async (userId: string, now = NOW + 10) =>
          (await store.oauth.devices.listApproved(userId, now)).map((d) => d.deviceHash);
        assert.deepEqual(await listed(u.id), [short.deviceHash, second.deviceHash, first.deviceHash]);
        assert.deepEqual(await listed(u.id, NOW + 100), [second.deviceHash, first.deviceHash], 'expired: gone');
        assert.deepEqual(await listed(other.id), [theirs.deviceHash]);

        assert.equal(await store.oauth.devices.cancel(first.deviceHash, other.id, NOW + 20), false, 'not theirs');
        assert.equal(await store.oauth.devices.cancel(collected.deviceHash, u.id, NOW + 20), false, 'collected');
        assert.equal(await store.oauth.devices.cancel(short.deviceHash, u.id, NOW + 100), false, 'expired');
        assert.equal(await store.oauth.devices.cancel(first.deviceHash, u.id, NOW + 20), true);
        assert.equal(await store.oauth.devices.cancel(first.deviceHash, u.id, NOW + 21), false, 'once');
        const cancelled = (await store.oauth.devices.get(first.deviceHash))!;
        assert.deepEqual([cancelled.status, cancelled.decidedAt], ['denied', NOW + 20]);
        assert.equal(await store.oauth.devices.redeem(first.deviceHash, NOW + 22, grant(u.id)), false);
        assert.deepEqual(await listed(u.id, NOW + 100), [second.deviceHash]);
      }),
    );

    test(
      'codes: redeemed once (also concurrently); a second use revokes the grant it made; expired and unknown codes',
      withStore(async (store) => {
        const u = await user(store);
        const c = code(u.id);
        await store.oauth.codes.create(c);
        assert.deepEqual(await store.oauth.codes.get(c.codeHash), c);
        const grants = Array.from({ length: 5 }, () => grant(u.id, { kind: 'client', clientId: 'dcr_x' }));
        const results = await Promise.all(grants.map((g) => store.oauth.codes.redeem(c.codeHash, NOW + 1, g)));
        assert.deepEqual(results.filter((r) => r === 'redeemed').length, 1);
        assert.ok(results.every((r) => r === 'redeemed' || r === 'reused'));
        const issued = grants[results.indexOf('redeemed')]!;
        const redeemed = (await store.oauth.codes.get(c.codeHash))!;
        assert.equal(redeemed.grantId, issued.id);
        assert.equal(redeemed.redeemedAt, NOW + 1);
        // The concurrent losers already counted as reuse: the grant is revoked.
        assert.equal((await store.oauth.grants.get(issued.id))?.revokedReason, 'code_reused');

        const again = code(u.id);
        await store.oauth.codes.create(again);
        const g = grant(u.id);
        assert.equal(await store.oauth.codes.redeem(again.codeHash, NOW + 1, g), 'redeemed');
        assert.equal((await store.oauth.grants.get(g.id))?.revokedAt, null);
        assert.equal(await store.oauth.codes.redeem(again.codeHash, NOW + 2, grant(u.id)), 'reused');
        const revoked = (await store.oauth.grants.get(g.id))!;
        assert.equal(revoked.revokedAt, NOW + 2);
        assert.equal(revoked.revokedReason, 'code_reused');

        const old = code(u.id, { expiresAt: NOW + 10 });
        await store.oauth.codes.create(old);
        assert.equal(await store.oauth.codes.redeem(old.codeHash, NOW + 10, grant(u.id)), 'expired');
        assert.equal(await store.oauth.codes.redeem(rnd(), NOW, grant(u.id)), 'unknown');
        assert.equal(
          (await store.oauth.grants.listByUser(u.id, NOW)).length,
          0,
          'no grant from an expired, unknown or reused code',
        );
      }),
    );

    test(
      'grants: round-trip; getWithUser joins the current user; listByUser shows live grants only, latest use first',
      withStore(async (store) => {
        const u = await user(store);
        const other = await user(store);
        const a = grant(u.id, { lastUsedAt: NOW + 1, amr: ['pwd', 'otp'], ip: null, userAgent: null });
        const b = grant(u.id, { lastUsedAt: NOW + 3, kind: 'client', refreshHash: null });
        const revoked = grant(u.id, { lastUsedAt: NOW + 5 });
        const expired = grant(u.id, { expiresAt: NOW });
        for (const g of [a, b, revoked, expired, grant(other.id)]) await store.oauth.grants.create(g);
        await store.oauth.grants.revoke(revoked.id, NOW, 'user');
        assert.deepEqual(await store.oauth.grants.get(a.id), a);
        assert.deepEqual(await store.oauth.grants.getWithUser(a.id), { grant: a, user: u });
        assert.deepEqual(
          (await store.oauth.grants.listByUser(u.id, NOW)).map((g) => g.id),
          [b.id, a.id],
        );
        assert.equal(await store.oauth.grants.getWithUser(rnd()), undefined);
        await assert.rejects(store.oauth.grants.create(grant(randomUUID())), 'a grant needs a user');
      }),
    );

    test(
      'rotate is a compare-and-swap: one winner among concurrent rotations, none with a stale token or after revocation',
      withStore(async (store) => {
        const u = await user(store);
        const g = grant(u.id);
        await store.oauth.grants.create(g);
        const step = next();
        assert.equal(await store.oauth.grants.rotate(g.id, g.refreshHash!, step), true);
        const rotated = (await store.oauth.grants.get(g.id))!;
        assert.equal(rotated.refreshHash, step.hash);
        assert.equal(rotated.previousHash, g.refreshHash);
        assert.equal(rotated.successor, step.successor);
        assert.equal(rotated.rotatedAt, step.now);
        assert.equal(rotated.lastUsedAt, step.now);
        assert.equal(rotated.ip, step.ip);
        assert.equal(rotated.generation, 1);
        assert.equal(rotated.expiresAt, g.expiresAt, 'rotation never extends the grant');
        assert.equal(
          await store.oauth.grants.rotate(g.id, g.refreshHash!, next()),
          false,
          'the old token can no longer rotate',
        );

        const racers = Array.from({ length: 8 }, () => next(NOW + 2000));
        const results = await Promise.all(racers.map((r) => store.oauth.grants.rotate(g.id, step.hash, r)));
        assert.equal(results.filter(Boolean).length, 1, 'concurrent refreshes never fork the family');
        const after = (await store.oauth.grants.get(g.id))!;
        assert.equal(after.refreshHash, racers[results.indexOf(true)]!.hash);
        assert.equal(after.generation, 2);

        assert.equal(await store.oauth.grants.revoke(g.id, NOW + 3000, 'reuse'), true);
        assert.equal(await store.oauth.grants.revoke(g.id, NOW + 4000, 'user'), false, 'revoked once');
        assert.equal((await store.oauth.grants.get(g.id))?.revokedReason, 'reuse');
        assert.equal(
          await store.oauth.grants.rotate(g.id, after.refreshHash!, next()),
          false,
          'a revoked grant never rotates',
        );
        assert.equal(await store.oauth.grants.rotate(rnd(), rnd(), next()), false);
      }),
    );

    test(
      'revocation is seen by getWithUser at once through this handle, and through another handle (another node, the CLI) by every later request, read before or not',
      withStore(async (store, opened, extra) => {
        const u = await user(store);
        const g = grant(u.id);
        const h = grant(u.id);
        await store.oauth.grants.create(g);
        await store.oauth.grants.create(h);
        const other = await opened.reopen();
        extra.push(other);
        assert.equal((await store.oauth.grants.getWithUser(g.id))?.grant.revokedAt, null);
        assert.equal((await store.oauth.grants.getWithUser(h.id))?.grant.revokedAt, null);
        assert.equal(await other.oauth.grants.revoke(g.id, NOW, 'operator'), true);
        await laterRequest();
        assert.equal((await store.oauth.grants.getWithUser(g.id))?.grant.revokedAt, NOW);
        await other.users.update(u.id, { disabled: true });
        await laterRequest();
        assert.equal((await store.oauth.grants.getWithUser(h.id))?.user.disabled, true);
        assert.equal(await other.oauth.grants.revokeByUser(u.id, NOW + 1, 'password'), 1, 'only the live one');
        await laterRequest();
        assert.equal((await store.oauth.grants.getWithUser(h.id))?.grant.revokedReason, 'password');
        assert.deepEqual(await store.oauth.grants.listByUser(u.id, NOW), []);
      }),
    );

    test(
      'deleting a user removes their grants, codes and device approvals',
      withStore(async (store) => {
        const u = await user(store);
        const g = grant(u.id);
        await store.oauth.grants.create(g);
        const c = code(u.id);
        await store.oauth.codes.create(c);
        const d = device();
        await store.oauth.devices.create(d);
        await store.oauth.devices.decide(d.deviceHash, {
          approved: true,
          userId: u.id,
          amr: [],
          authTime: NOW,
          sessionHash: null,
          now: NOW,
        });
        await store.users.delete(u.id);
        assert.equal(await store.oauth.grants.get(g.id), undefined);
        assert.equal(await store.oauth.codes.get(c.codeHash), undefined);
        assert.equal(await store.oauth.devices.get(d.deviceHash), undefined);
      }),
    );

    test(
      'purge removes expired device codes and codes, expired, idle and long-revoked grants; keeps the rest',
      withStore(async (store) => {
        const u = await user(store);
        const now = NOW + 1_000_000;
        const keepDevice = device({ expiresAt: now + 1 });
        const oldDevice = device({ expiresAt: now - 100_000 });
        const keepCode = code(u.id, { expiresAt: now - 10 }); // expired, but recently: a second use is still recognised
        const oldCode = code(u.id, { expiresAt: now - 100_000 });
        for (const d of [keepDevice, oldDevice]) await store.oauth.devices.create(d);
        for (const c of [keepCode, oldCode]) await store.oauth.codes.create(c);
        const live = grant(u.id, { lastUsedAt: now - 10 });
        const expired = grant(u.id, { expiresAt: now });
        const idle = grant(u.id, { lastUsedAt: now - 50_000 });
        const recentlyRevoked = grant(u.id, { lastUsedAt: now, revokedAt: now - 10, revokedReason: 'user' });
        const longRevoked = grant(u.id, { lastUsedAt: now, revokedAt: now - 100_000, revokedReason: 'user' });
        for (const g of [live, expired, idle, recentlyRevoked, longRevoked]) await store.oauth.grants.create(g);
        // Provider tokens handed to grants (tokenRelay): they go with a grant that ended or was revoked.
        const relayed = async (owner: string) =>
          store.providerTokens.put({
            owner,
            provider: 'p',
            userId: u.id,
            sessionHash: null,
            data: 'cipher',
            expiresAt: null,
          });
        for (const g of [live, expired, recentlyRevoked]) await relayed(`grant:${g.id}`);
        const removed = await store.oauth.purge(now, {
          grantIdleMs: 50_000,
          expiredBefore: now - 50_000,
          revokedBefore: now - 50_000,
        });
        assert.equal(removed, 7);
        assert.ok(await store.providerTokens.get(`grant:${live.id}`, 'p'), 'a live grant keeps its provider tokens');
        for (const g of [expired, recentlyRevoked])
          assert.equal(await store.providerTokens.get(`grant:${g.id}`, 'p'), undefined);
        assert.ok(await store.oauth.devices.get(keepDevice.deviceHash));
        assert.equal(await store.oauth.devices.get(oldDevice.deviceHash), undefined);
        assert.ok(await store.oauth.codes.get(keepCode.codeHash));
        assert.equal(await store.oauth.codes.get(oldCode.codeHash), undefined);
        for (const g of [live, recentlyRevoked]) assert.ok(await store.oauth.grants.get(g.id));
        for (const g of [expired, idle, longRevoked]) assert.equal(await store.oauth.grants.get(g.id), undefined);
      }),
    );
  });
}
