/**
 * The audit trail (src/audit/): security events, appended in batches, read by user and time,
 * purged after audit.retention. Part of the Store contract (test/store/audit-contract.ts).
 */

export interface AuditEvent {
  /**
   * A UUID, unique: version 7 (audit/uuid7.ts), time-ordered, so one process's events of the same
   * millisecond are listed in the order they happened; older rows have random (version 4) ones.
   */
  id: string;
  /** Epoch ms (the time in a version 7 id). */
  at: number;
  /** What happened: login, logout, register, password_changed, ... (src/audit/index.ts). */
  event: string;
  /** The account it happened to (null: none known, e.g. a failed login for an unknown address). */
  userId: string | null;
  /** success, failure, throttled, ... */
  outcome: string;
  ip: string | null;
  userAgent: string | null;
  /** Who did it when not the user: "operator:<os user>" for CLI commands, "system". */
  actor: string | null;
  /** Further facts (method, provider, client, email, ...): small, flat, never secrets. */
  detail: Record<string, string | number | boolean | null>;
}

export interface AuditQuery {
  userId?: string;
  /** Epoch ms: events at or after. */
  since?: number;
  /** Only this event name. */
  event?: string;
  /** Newest first (by at, then id), at most this many (default 100, at most 10 000). */
  limit?: number;
}

export interface AuditStore {
  /** Appends events (one statement per batch). */
  append(events: readonly AuditEvent[]): Promise<void>;
  /** Newest first: by at, then by id (byte order), both descending. */
  list(query?: AuditQuery): Promise<AuditEvent[]>;
  /**
   * Deletes events older than `cutoff`, at most `limit` of them (the oldest), so one call
   * never holds the table long. Returns how many; call again while it returns `limit`.
   */
  purgeBefore(cutoff: number, limit: number): Promise<number>;
}
