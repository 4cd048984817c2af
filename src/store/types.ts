import type { AppEventStore, OutboxWrite } from './app-event-types.ts';
import type { AuditStore } from './audit-types.ts';
import type { TransferStore } from './transfer.ts';
import type { EmailTokenStore } from './email-token-types.ts';
import type { MfaStore } from './mfa-types.ts';
import type { IdentityStore, LoginStateStore, ProviderTokenStore } from './provider-types.ts';
import type { OAuthStore } from './oauth-types.ts';
import type { NewUser, User } from './user-types.ts';

export type { NewUser, User } from './user-types.ts';

/**
 * The storage contract. Every method is async and free of any one database's features,
 * so the SQLite (embedded, default) and PostgreSQL (several nodes) implementations pass
 * the same test suite (test/store/contract.ts). Times are epoch milliseconds.
 */

export interface UserPatch {
  /** A new address (normalized by the caller); StoreConflictError when another user has it. */
  email?: string;
  name?: string | null;
  groups?: string[];
  emailVerified?: boolean;
  passwordHash?: string | null;
  disabled?: boolean;
}

export interface Session {
  /** SHA-256 of the cookie value, base64url. The cookie value itself is never stored. */
  idHash: string;
  userId: string;
  /** The origin the session was created on; it is valid nowhere else. */
  site: string;
  createdAt: number;
  lastSeenAt: number;
  /** Absolute expiry. Idle expiry is lastSeenAt + the configured idle timeout. */
  expiresAt: number;
  /** How the user authenticated, e.g. ["pwd"]. */
  amr: string[];
  ip: string | null;
  userAgent: string | null;
  /**
   * When the user last proved who they are in this session: the sign-in, or a later
   * re-authentication (accounts/reauth.ts). Sensitive actions need it to be recent.
   */
  authTime: number;
  /**
   * The session on publicUrl's site that single sign-on made this one from (accounts/sso.ts):
   * deleting that one deletes this one too. Absent for every other session.
   */
  parentHash?: string;
}

export interface UserStore {
  /** Throws StoreConflictError when the email is taken. */
  create(user: NewUser): Promise<User>;
  get(id: string): Promise<User | undefined>;
  getByEmail(email: string): Promise<User | undefined>;
  list(options?: { limit?: number; offset?: number }): Promise<User[]>;
  /**
   * Throws StoreConflictError when `patch.email` is another user's. `outbox`: the events the change
   * causes, written in its transaction when there was such a user.
   */
  update(id: string, patch: UserPatch, outbox?: OutboxWrite): Promise<User | undefined>;
  /**
   * Removes the user and, with them, every session of theirs. Returns whether one existed.
   * `outbox`: as in update.
   */
  delete(id: string, outbox?: OutboxWrite): Promise<boolean>;
  count(): Promise<number>;
}

/** The OpenID provider session a session came from: the ID token's sub and sid (null without one). */
export interface ProviderSessionLink {
  provider: string;
  subject: string;
  sid: string | null;
}

export interface SessionStore {
  create(session: Session): Promise<void>;
  get(idHash: string): Promise<Session | undefined>;
  /** The session and its user in one round trip: the per-request lookup. */
  getWithUser(idHash: string): Promise<{ session: Session; user: User } | undefined>;
  /**
   * What getWithUser would answer, synchronously, when the store holds it in memory and knows
   * it is current (SQLite's read cache); undefined when it must be read. Optional.
   */
  cachedWithUser?(idHash: string): { session: Session; user: User } | undefined;
  touch(idHash: string, lastSeenAt: number): Promise<void>;
  delete(idHash: string): Promise<boolean>;
  /**
   * Records a fresh proof of identity in a session (a re-authentication or a further factor):
   * its auth time and how the user authenticated. Returns whether the session exists.
   */
  setAuth(idHash: string, auth: { authTime: number; amr: string[] }): Promise<boolean>;
  /** Ends every session of a user, except one (the caller's own) when given. Returns how many. */
  deleteByUser(userId: string, exceptIdHash?: string): Promise<number>;
  /** Ends every session of every user (`gatehouse sessions revoke --all`). Returns how many. */
  deleteAll(): Promise<number>;
  /**
   * Records the OpenID provider session a session was signed in through (replacing what was
   * recorded: a re-authentication there starts a new one). Nothing when the session is gone.
   */
  setProviderSession(idHash: string, link: ProviderSessionLink): Promise<void>;
  /**
   * Ends the sessions signed in through `provider` that match a back-channel logout: its session
   * id, its subject, or both (each given one must match). Returns the sessions ended.
   */
  deleteByProviderSession(
    provider: string,
    match: { sid?: string; subject?: string },
  ): Promise<{ idHash: string; userId: string }[]>;
  listByUser(userId: string): Promise<Session[]>;
  /**
   * Removes sessions whose absolute or idle expiry has passed, at most `limit` (default 1000) in
   * one call: a purge batch (src/jobs/). Returns how many.
   */
  purgeExpired(now: number, idleTimeoutMs: number, limit?: number): Promise<number>;
  /** How many sessions have neither expiry passed (gatehouse_sessions_active). */
  countActive(now: number, idleTimeoutMs: number): Promise<number>;
}

/**
 * Small named values: generated secrets and keys. Values are opaque text, stored exactly;
 * text, not bytes (PostgreSQL's TEXT holds no NUL character): encode binary as base64.
 */
export interface KeyValueStore {
  get(name: string): Promise<string | undefined>;
  /** Sets the value only when the name is unset; returns the value that is stored afterwards. */
  putIfAbsent(name: string, value: string): Promise<string>;
  set(name: string, value: string): Promise<void>;
}

/**
 * A JWS signing key (src/keys/keys.ts). Published from createdAt, signs from activatesAt,
 * published until retiresAt (null while no newer key has been added), then dropped.
 */
export interface SigningKey {
  kid: string;
  alg: string;
  /** The public JWK, as JSON text. */
  publicJwk: string;
  /** The private JWK, encrypted at rest (Secrets.encrypt, context bound to the kid). */
  privateJwk: string;
  createdAt: number;
  activatesAt: number;
  retiresAt: number | null;
}

export interface SigningKeyStore {
  /** Every key, oldest first. */
  list(): Promise<SigningKey[]>;
  /**
   * Adds a key and, in the same transaction, gives every other key that has no retiresAt
   * yet the time `retireOthersAt` (a rotation). Throws StoreConflictError when the kid is taken.
   */
  add(key: SigningKey, retireOthersAt?: number): Promise<void>;
  /**
   * Adds the key a new store starts with. Of several nodes calling this at once on an empty
   * store, exactly one succeeds (true); the others get false and read the winner's key.
   * False too while the store's first key is still there.
   */
  addFirst(key: SigningKey): Promise<boolean>;
  /** Drops keys whose retiresAt is at or before `now`. Returns how many. */
  deleteRetired(now: number): Promise<number>;
}

/**
 * Who runs a background job now (src/jobs/): one row per job name, taken by one node at a time.
 * A lease is taken over only once it has expired, so of several nodes asking at once one wins.
 */
export interface JobLeaseStore {
  /** Takes the lease until `until` when it is free or expired at `now`; returns whether it was taken. */
  acquire(name: string, holder: string, now: number, until: number): Promise<boolean>;
  /** Moves the expiry of a lease this holder still has; false when it has been lost. */
  renew(name: string, holder: string, until: number): Promise<boolean>;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly users: UserStore;
  readonly sessions: SessionStore;
  readonly kv: KeyValueStore;
  readonly keys: SigningKeyStore;
  /** Sign-in through providers (store/provider-types.ts). */
  readonly identities: IdentityStore;
  readonly loginStates: LoginStateStore;
  readonly providerTokens: ProviderTokenStore;
  /** The OAuth authorization server's clients, device authorizations, codes and grants (oauth-types.ts). */
  readonly oauth: OAuthStore;
  /** Links mailed for email verification and password reset (store/email-token-types.ts). */
  readonly emailTokens: EmailTokenStore;
  /** The audit trail (store/audit-types.ts). */
  readonly audit: AuditStore;
  /** The outbox of events for apps (store/app-event-types.ts, src/events/). */
  readonly appEvents: AppEventStore;
  /** Whole-store export and import (store/transfer.ts): the CLI only. */
  readonly transfer: TransferStore;
  /** Background job leases (src/jobs/). */
  readonly jobs: JobLeaseStore;
  /** Second factors: passkeys, authenticator apps, recovery codes, half-signed-in records (store/mfa-types.ts). */
  readonly mfa: MfaStore;
  /** Cheap round trip for readiness checks. */
  ping(): Promise<void>;
  /**
   * After a large purge: gives the space of deleted rows' log back (SQLite: the WAL is
   * checkpointed and truncated, without waiting for other connections). PostgreSQL: nothing.
   */
  compact(): Promise<void>;
  /**
   * Resolves when the store has caught up with a burst of writes: a background job waits for
   * it between batches (SQLite: a checkpoint of what was written, in its own thread, so that
   * the WAL starts over instead of growing while the job writes). PostgreSQL: at once.
   */
  settle(): Promise<void>;
  close(): Promise<void>;
}

export class StoreConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreConflictError';
  }
}

export class StoreUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
