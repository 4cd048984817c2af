import type { User } from './user-types.ts';

/**
 * Storage for Gatehouse's OAuth authorization server (src/oauth/): registered clients,
 * pending device authorizations, authorization codes, and grants. A grant is one login of
 * one client for one user (a refresh-token family): the record the user and the operator
 * see and revoke, the `sid` of every access token issued under it, and the one row that
 * holds its refresh token's hash. Secrets are never stored in clear: device codes,
 * authorization codes and refresh tokens as SHA-256, user codes as a MAC, client secrets as
 * SHA-256, a rotated refresh token's successor (kept for the retry grace) encrypted.
 * Times are epoch milliseconds.
 */

export interface StoredClient {
  id: string;
  /** SHA-256 (base64url) of the client secret; null for a public client. */
  secretHash: string | null;
  /** The registered metadata (RFC 7591 names), as given back to the client. */
  metadata: Record<string, unknown>;
  createdAt: number;
  createdIp: string | null;
}

export type DeviceStatus = 'pending' | 'approved' | 'denied' | 'redeemed';

export interface DeviceAuthorization {
  /** SHA-256 of the device code. */
  deviceHash: string;
  /** MAC of the normalized user code: a low-entropy code is never stored in a form one can test guesses against offline. */
  userCodeHash: string;
  clientId: string;
  scope: string;
  resource: string;
  createdAt: number;
  expiresAt: number;
  /** The polling interval now in force; slow_down adds to it. */
  intervalMs: number;
  lastPollAt: number | null;
  status: DeviceStatus;
  /** Who approved or denied, and how they had signed in. */
  userId: string | null;
  amr: string[];
  authTime: number | null;
  decidedAt: number | null;
  /** The browser session it was approved from: its provider tokens go with the grant (tokenRelay). */
  sessionHash: string | null;
  /** Where the request came from, shown on the approval page. */
  ip: string | null;
  userAgent: string | null;
}

export interface AuthorizationCode {
  /** SHA-256 of the code. */
  codeHash: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scope: string;
  resource: string;
  userId: string;
  amr: string[];
  authTime: number;
  /** The browser session that consented: its provider tokens go with the grant (tokenRelay). */
  sessionHash: string | null;
  createdAt: number;
  expiresAt: number;
  redeemedAt: number | null;
  /** The grant the code was exchanged for: revoked when the code is presented again. */
  grantId: string | null;
}

export type GrantKind = 'device' | 'client';

export interface Grant {
  /** Random id; the `sid` claim of the grant's access tokens. */
  id: string;
  userId: string;
  clientId: string;
  /** The client's name when the grant was made, for listings. */
  clientName: string;
  /** device: the device authorization grant (CLIs); client: an authorization code grant (MCP and other OAuth clients). */
  kind: GrantKind;
  scope: string;
  /** The app's resource URL: the `aud` of the grant's access tokens. */
  resource: string;
  /** How the user had signed in when they approved, and when. */
  amr: string[];
  authTime: number;
  createdAt: number;
  /** The last token issued under the grant (at login and at every refresh), and from where. */
  lastUsedAt: number;
  ip: string | null;
  userAgent: string | null;
  /** Absolute end of the grant (tokens.refreshTokenTtl after login); rotation never extends it. */
  expiresAt: number;
  revokedAt: number | null;
  revokedReason: string | null;
  /** SHA-256 of the live refresh token; null when the grant has none. */
  refreshHash: string | null;
  /** The token the live one replaced, when, and the live one encrypted: a retry of that rotation within the grace gets the same answer. */
  previousHash: string | null;
  rotatedAt: number | null;
  successor: string | null;
  generation: number;
}

export interface ClientStore {
  create(client: StoredClient): Promise<void>;
  get(id: string): Promise<StoredClient | undefined>;
  /** The registered clients, oldest first (at most `limit`, default 10,000). */
  list(limit?: number): Promise<StoredClient[]>;
  /**
   * Removes a registered client and, in the same transaction, revokes every login it holds
   * (reason `client_removed`). Returns whether there was one and how many logins ended.
   */
  remove(id: string, now: number): Promise<{ removed: boolean; revoked: number }>;
}

export interface DeviceStore {
  /** Throws StoreConflictError when the user code is taken (the caller draws another). */
  create(device: DeviceAuthorization): Promise<void>;
  get(deviceHash: string): Promise<DeviceAuthorization | undefined>;
  getByUserCode(userCodeHash: string): Promise<DeviceAuthorization | undefined>;
  /**
   * Records a poll, atomically: `tooFast` when it came less than intervalMs - slackMs after
   * the previous one, and then the interval grows by slowDownMs for this and later polls.
   */
  poll(
    deviceHash: string,
    now: number,
    options: { slowDownMs: number; slackMs: number },
  ): Promise<{ device: DeviceAuthorization; tooFast: boolean } | undefined>;
  /** pending → approved or denied, by a user; false when it was no longer pending or has expired. */
  decide(
    deviceHash: string,
    decision: {
      approved: boolean;
      userId: string;
      amr: string[];
      authTime: number;
      sessionHash: string | null;
      now: number;
    },
  ): Promise<boolean>;
  /** approved → redeemed and the grant created, in one step; false when it was not (or no longer) approved and live. */
  redeem(deviceHash: string, now: number, grant: Grant): Promise<boolean>;
  /** A user's live approvals that no client has collected yet, most recent first (the account page lists them). */
  listApproved(userId: string, now: number): Promise<DeviceAuthorization[]>;
  /**
   * approved → denied by the user who approved it, before the client collects it (the client
   * then gets access_denied); false when it was collected meanwhile, has expired, or is not theirs.
   */
  cancel(deviceHash: string, userId: string, now: number): Promise<boolean>;
}

export type CodeRedemption = 'redeemed' | 'reused' | 'expired' | 'unknown';

export interface CodeStore {
  create(code: AuthorizationCode): Promise<void>;
  get(codeHash: string): Promise<AuthorizationCode | undefined>;
  /**
   * Exchanges a live, unused code for the grant, in one step. A code presented again is
   * "reused", and the grant it was exchanged for is revoked (RFC 6749 §4.1.2).
   */
  redeem(codeHash: string, now: number, grant: Grant): Promise<CodeRedemption>;
}

export interface GrantStore {
  create(grant: Grant): Promise<void>;
  get(id: string): Promise<Grant | undefined>;
  /** The grant and its user in one round trip: the per-request check of a bearer token. */
  getWithUser(id: string): Promise<{ grant: Grant; user: User } | undefined>;
  /** A user's grants that are not revoked and not past their absolute expiry, most recently used first. */
  listByUser(userId: string, now: number): Promise<Grant[]>;
  /**
   * Rotates the refresh token as one compare-and-swap: only while `expectHash` is the live
   * token and the grant is not revoked. Of concurrent rotations of one token exactly one
   * returns true.
   */
  rotate(
    id: string,
    expectHash: string,
    next: { hash: string; successor: string; now: number; ip: string | null; userAgent: string | null },
  ): Promise<boolean>;
  /** Marks the grant revoked; false when it was already revoked or does not exist. */
  revoke(id: string, now: number, reason: string): Promise<boolean>;
  revokeByUser(userId: string, now: number, reason: string): Promise<number>;
  /**
   * Revokes every live grant of every user and client and, in the same transaction, voids what
   * would make new ones: approved device logins not yet collected (denied) and authorization
   * codes not yet redeemed (expired). Returns how many grants and how many of those.
   */
  revokeAll(now: number, reason: string): Promise<{ grants: number; pending: number }>;
  /** Live logins (not revoked, not expired at `now`) per client id. */
  countByClient(now: number): Promise<Map<string, number>>;
}

export interface OAuthStore {
  readonly clients: ClientStore;
  readonly devices: DeviceStore;
  readonly codes: CodeStore;
  readonly grants: GrantStore;
  /**
   * Deletes what can no longer be used: device authorizations and codes that expired before
   * `expiredBefore` (kept a while after, so a late second use of a code is still recognised),
   * grants past their absolute expiry or idle for grantIdleMs, and grants revoked before
   * `revokedBefore`. Returns how many rows went.
   */
  purge(
    now: number,
    options: { grantIdleMs: number; expiredBefore: number; revokedBefore: number },
    /** At most this many rows of each table per call (a purge batch, src/jobs/); default 1000. */
    limit?: number,
  ): Promise<number>;
}
