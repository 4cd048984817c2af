/**
 * Storage for second factors (src/mfa/): passkeys, authenticator-app seeds, recovery codes and
 * the half-signed-in records. Part of the Store contract (test/store/mfa-contract.ts).
 */

export interface Passkey {
  /** The credential id, base64url. */
  id: string;
  userId: string;
  /** The COSE public key, base64url. */
  publicKey: string;
  counter: number;
  transports: string[];
  deviceType: 'singleDevice' | 'multiDevice';
  backedUp: boolean;
  name: string;
  createdAt: number;
  lastUsedAt: number | null;
}

export interface TotpFactor {
  userId: string;
  /** The seed, encrypted with the master key (Secrets.encrypt, context bound to the user). */
  secret: string;
  confirmed: boolean;
  createdAt: number;
  /** The last time step a code was accepted for: a code of this step or before is refused. */
  lastStep: number | null;
}

export type PendingPurpose = 'second_factor' | 'enrol' | 'passkey_login' | 'passkey_register' | 'step_up';

export interface MfaPending {
  /** SHA-256 of the cookie value, base64url. */
  idHash: string;
  userId: string | null;
  /** The origin it was made on; valid nowhere else. */
  site: string;
  purpose: PendingPurpose;
  /** What the user proved already (e.g. ["pwd"]). */
  amr: string[];
  returnTo: string;
  /** The WebAuthn challenge waiting for its answer (single use), base64url. */
  challenge: string | null;
  /** More, by purpose (e.g. the provider of a provider sign-in), as JSON text. */
  data: string;
  createdAt: number;
  expiresAt: number;
}

export interface MfaStore {
  addPasskey(p: Passkey): Promise<void>;
  passkeys(userId: string): Promise<Passkey[]>;
  passkey(id: string): Promise<Passkey | undefined>;
  /** After an assertion: the new counter, backup state and last use. */
  usedPasskey(id: string, counter: number, backedUp: boolean, at: number): Promise<void>;
  deletePasskey(userId: string, id: string): Promise<boolean>;

  totp(userId: string): Promise<TotpFactor | undefined>;
  /** Starts (or restarts) an unconfirmed enrolment; a confirmed factor is never replaced here. */
  startTotp(userId: string, secret: string, at: number): Promise<boolean>;
  confirmTotp(userId: string, step: number): Promise<boolean>;
  /** Takes time step `step` for the user's code, once: false when it or a later one was used. */
  useTotpStep(userId: string, step: number): Promise<boolean>;
  deleteTotp(userId: string): Promise<boolean>;

  /** Replaces every recovery code of the user. */
  replaceRecoveryCodes(userId: string, hashes: string[], at: number): Promise<void>;
  /** Marks one unused code used; false when there is none with that hash. */
  useRecoveryCode(userId: string, hash: string, at: number): Promise<boolean>;
  recoveryCodesLeft(userId: string): Promise<number>;
  deleteRecoveryCodes(userId: string): Promise<void>;

  createPending(p: MfaPending): Promise<void>;
  pending(idHash: string): Promise<MfaPending | undefined>;
  /** Sets the challenge (and user) of a record. */
  setChallenge(idHash: string, challenge: string, userId?: string | null): Promise<void>;
  /** Takes the challenge: returns it once, and clears it. */
  takeChallenge(idHash: string): Promise<string | undefined>;
  deletePending(idHash: string): Promise<void>;
  deletePendingByUser(userId: string): Promise<void>;
  /** Deletes expired pending records, at most `limit` (a purge batch, src/jobs/). Returns how many. */
  purgePending(now: number, limit?: number): Promise<number>;
}
