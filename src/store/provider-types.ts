/**
 * Storage for sign-in through OAuth2/OIDC providers (src/providers/): linked identities,
 * pending logins (the server-side half of `state`) and the provider tokens kept for the
 * backend-for-frontend pattern. Part of the Store contract (test/store/contract.ts).
 */
import type { NewUser, User } from './user-types.ts';

/** An account at a provider, linked to one Gatehouse user. Keyed by (issuer, subject), never by email. */
export interface Identity {
  id: string;
  userId: string;
  /** The provider's `id` in the config when it was linked (display only; the key is issuer + subject). */
  provider: string;
  issuer: string;
  subject: string;
  /** What the provider said at the last sign-in. */
  email: string | null;
  emailVerified: boolean;
  name: string | null;
  groups: string[];
  createdAt: number;
  lastLoginAt: number;
}

export interface NewIdentity {
  userId: string;
  provider: string;
  issuer: string;
  subject: string;
  email?: string | null;
  emailVerified?: boolean;
  name?: string | null;
  groups?: string[];
}

export interface IdentityPatch {
  email?: string | null;
  emailVerified?: boolean;
  name?: string | null;
  groups?: string[];
  lastLoginAt?: number;
}

export type UnlinkResult = 'deleted' | 'not_found' | 'last';

export interface IdentityStore {
  /** Throws StoreConflictError when (issuer, subject) is linked already, to anyone. */
  create(identity: NewIdentity): Promise<Identity>;
  /**
   * A first sign-in: the user and their identity in one transaction, so a lost race leaves
   * no half-made account. StoreConflictError when the email or the identity is taken.
   */
  createWithUser(user: NewUser, identity: Omit<NewIdentity, 'userId'>): Promise<{ user: User; identity: Identity }>;
  find(issuer: string, subject: string): Promise<Identity | undefined>;
  listByUser(userId: string): Promise<Identity[]>;
  update(id: string, patch: IdentityPatch): Promise<Identity | undefined>;
  /**
   * Unlinks one of the user's identities unless it is their last way to sign in (no
   * password and no other identity): 'last' then, and nothing changes. Atomic against a
   * concurrent unlink of the user's other identity.
   */
  deleteUnlessLast(id: string, userId: string): Promise<UnlinkResult>;
}

/** The server-side record of a sign-in that went to a provider and has not come back yet. */
export interface LoginState {
  /** SHA-256 of the `state` parameter. */
  idHash: string;
  /** SHA-256 of the browser-binding cookie the flow started with. */
  browserHash: string;
  provider: string;
  /** The origin the flow started on; the callback must come back to it. */
  site: string;
  /** reauth: a fresh sign-in at the provider to confirm who the session's user is (accounts/reauth.ts). */
  purpose: 'login' | 'link' | 'reauth';
  /** For 'link' and 'reauth': the session that asked for it; the callback must carry that same session. */
  sessionHash: string | null;
  /** Where to land afterwards: a same-origin path, decided when the flow started. */
  returnTo: string;
  /** Encrypted PKCE verifier and nonce. */
  secret: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
}

export interface LoginStateStore {
  create(state: Omit<LoginState, 'usedAt'>): Promise<void>;
  get(idHash: string): Promise<LoginState | undefined>;
  /** Marks the state used and returns it, exactly once; a second call (a replay) gets undefined. */
  consume(idHash: string, now: number): Promise<LoginState | undefined>;
  /** Removes states that expired before `before`. Returns how many. */
  purgeExpired(before: number): Promise<number>;
}

/**
 * Provider tokens held for an owner: a browser session, or a CLI or MCP login. `data` is
 * ciphertext (src/keys/secrets.ts); the store never sees a token. A row that names a
 * session goes with it (ON DELETE CASCADE), and every row goes with its user.
 */
export interface ProviderTokenRecord {
  owner: string;
  provider: string;
  userId: string;
  sessionHash: string | null;
  data: string;
  /** When the access token expires (epoch ms), null when the provider did not say. */
  expiresAt: number | null;
  /** Goes up by one with every write: readers can tell a refresh happened. */
  version: number;
  /** Who is refreshing now, and until when: one refresh at a time across nodes. */
  leaseHolder: string | null;
  leaseUntil: number;
  updatedAt: number;
}

export interface ProviderTokenStore {
  /** Creates or replaces the owner's tokens for a provider; clears any lease. */
  put(record: {
    owner: string;
    provider: string;
    userId: string;
    sessionHash: string | null;
    data: string;
    expiresAt: number | null;
  }): Promise<void>;
  get(owner: string, provider: string): Promise<ProviderTokenRecord | undefined>;
  /**
   * Takes the refresh lease when nobody holds a live one (leaseUntil <= now): returns the row
   * as it is under the lease, or undefined when another holder has it (or there is no row).
   */
  acquireLease(
    owner: string,
    provider: string,
    holder: string,
    now: number,
    until: number,
  ): Promise<ProviderTokenRecord | undefined>;
  /** Writes refreshed tokens and releases the lease, only while `holder` still holds it. */
  completeLease(
    owner: string,
    provider: string,
    holder: string,
    update: { data: string; expiresAt: number | null },
  ): Promise<boolean>;
  releaseLease(owner: string, provider: string, holder: string): Promise<void>;
  /** Without a provider: every provider's tokens of the owner. Returns how many rows went. */
  delete(owner: string, provider?: string): Promise<number>;
  deleteByUser(userId: string, provider?: string): Promise<number>;
}
