import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { MfaPending, Passkey } from '../../src/store/index.ts';
import type { WithStore } from './contract.ts';

/**
 * The Store contract for second factors (src/mfa/): passkeys, authenticator-app seeds, recovery
 * codes and the half-signed-in records. Called from storeContract, so it runs against SQLite and
 * PostgreSQL alike.
 */

let n = 0;
const email = () => `mfa-${process.pid}-${n++}@example.com`;
const id = () => randomBytes(16).toString('base64url');

export function mfaStoreContract(withStore: WithStore): void {
  test(
    'passkeys: added, listed per user, found by credential id, use recorded, removed only by their user',
    withStore(async (store) => {
      const a = await store.users.create({ email: email() });
      const b = await store.users.create({ email: email() });
      const p: Passkey = {
        id: id(),
        userId: a.id,
        publicKey: 'pk',
        counter: 3,
        transports: ['internal', 'hybrid'],
        deviceType: 'multiDevice',
        backedUp: true,
        name: 'Laptop "é"',
        createdAt: 1000,
        lastUsedAt: null,
      };
      await store.mfa.addPasskey(p);
      assert.deepEqual(await store.mfa.passkeys(a.id), [p]);
      assert.deepEqual(await store.mfa.passkeys(b.id), []);
      assert.deepEqual(await store.mfa.passkey(p.id), p);
      await store.mfa.usedPasskey(p.id, 7, false, 2000);
      assert.deepEqual(await store.mfa.passkey(p.id), { ...p, counter: 7, backedUp: false, lastUsedAt: 2000 });
      assert.equal(await store.mfa.deletePasskey(b.id, p.id), false, "another user's id removes nothing");
      assert.equal(await store.mfa.deletePasskey(a.id, p.id), true);
      assert.equal(await store.mfa.passkey(p.id), undefined);
    }),
  );

  test(
    'TOTP: an unconfirmed seed may be replaced, a confirmed one not; a step is taken once, never an older one',
    withStore(async (store) => {
      const u = await store.users.create({ email: email() });
      assert.equal(await store.mfa.startTotp(u.id, 'enc-1', 1), true);
      assert.equal(await store.mfa.startTotp(u.id, 'enc-2', 2), true);
      assert.equal((await store.mfa.totp(u.id))?.secret, 'enc-2');
      assert.equal(await store.mfa.useTotpStep(u.id, 10), false, 'not before it is confirmed');
      assert.equal(await store.mfa.confirmTotp(u.id, 10), true);
      assert.equal(await store.mfa.confirmTotp(u.id, 11), false);
      assert.equal(await store.mfa.startTotp(u.id, 'enc-3', 3), false, 'a confirmed seed stays');
      assert.deepEqual(await store.mfa.totp(u.id), {
        userId: u.id,
        secret: 'enc-2',
        confirmed: true,
        createdAt: 2,
        lastStep: 10,
      });
      assert.equal(await store.mfa.useTotpStep(u.id, 10), false, 'the step of the confirming code');
      assert.equal(await store.mfa.useTotpStep(u.id, 9), false);
      const racing = await Promise.all([store.mfa.useTotpStep(u.id, 11), store.mfa.useTotpStep(u.id, 11)]);
      assert.deepEqual(racing.sort(), [false, true], 'two uses of one code: one wins');
      assert.equal(await store.mfa.deleteTotp(u.id), true);
      assert.equal(await store.mfa.totp(u.id), undefined);
    }),
  );

  test(
    'recovery codes: replaced as a set, each used once, counted',
    withStore(async (store) => {
      const u = await store.users.create({ email: email() });
      await store.mfa.replaceRecoveryCodes(u.id, ['h1', 'h2', 'h3'], 1);
      assert.equal(await store.mfa.recoveryCodesLeft(u.id), 3);
      assert.equal(await store.mfa.useRecoveryCode(u.id, 'h2', 5), true);
      assert.equal(await store.mfa.useRecoveryCode(u.id, 'h2', 6), false);
      assert.equal(await store.mfa.recoveryCodesLeft(u.id), 2);
      await store.mfa.replaceRecoveryCodes(u.id, ['h4'], 7);
      assert.equal(await store.mfa.useRecoveryCode(u.id, 'h1', 8), false, 'the old set is gone');
      assert.equal(await store.mfa.recoveryCodesLeft(u.id), 1);
      await store.mfa.deleteRecoveryCodes(u.id);
      assert.equal(await store.mfa.recoveryCodesLeft(u.id), 0);
    }),
  );

  test(
    'pending records: kept as made, the challenge taken once, purged when expired, gone with their user',
    withStore(async (store) => {
      const u = await store.users.create({ email: email() });
      const p: MfaPending = {
        idHash: id(),
        userId: u.id,
        site: 'https://a.example',
        purpose: 'second_factor',
        amr: ['pwd'],
        returnTo: '/x?y=1',
        challenge: 'c1',
        data: '{"session":"s"}',
        createdAt: 1,
        expiresAt: Date.now() + 60_000,
      };
      await store.mfa.createPending(p);
      assert.deepEqual(await store.mfa.pending(p.idHash), p);
      const taken = await Promise.all([store.mfa.takeChallenge(p.idHash), store.mfa.takeChallenge(p.idHash)]);
      assert.deepEqual(taken.filter(Boolean), ['c1'], 'one of two racing answers gets the challenge');
      assert.equal(await store.mfa.takeChallenge(p.idHash), undefined);
      await store.mfa.setChallenge(p.idHash, 'c2');
      assert.equal(await store.mfa.takeChallenge(p.idHash), 'c2');
      const anon: MfaPending = { ...p, idHash: id(), userId: null, purpose: 'passkey_login', expiresAt: 5 };
      await store.mfa.createPending(anon);
      assert.equal(await store.mfa.purgePending(10), 1);
      assert.equal(await store.mfa.pending(anon.idHash), undefined);
      await store.users.delete(u.id);
      assert.equal(await store.mfa.pending(p.idHash), undefined);
    }),
  );
}
