/**
 * The outbox of events for apps (src/events/): one row per event and app, written when the event
 * happens and deleted once the app has taken it. Part of the Store contract
 * (test/store/app-events-contract.ts).
 */

export interface AppEventRecord {
  /** A UUID: the SET's `jti`, the same on every attempt, so an app can drop a second copy. */
  id: string;
  /** The app's name (its `aud`). */
  app: string;
  /** What happened: account_deleted, account_disabled, account_enabled, email_changed (events/index.ts). */
  type: string;
  userId: string;
  /** Epoch ms: when it happened. */
  at: number;
  /** Attempts started so far (a claim counts one). */
  attempts: number;
  /** Epoch ms: not before then is it tried (again); a claim moves it to the claim's lease. */
  nextAt: number;
  /** Why the last attempt failed, for the operator (a status or an error code); null before. */
  lastError: string | null;
  /** What the event carries besides the user: the new address of email_changed; else null. */
  value: string | null;
}

/**
 * What an account change writes to the outbox in its own transaction (UserStore.update and
 * delete): the change and its events are both made or neither is.
 */
export interface OutboxWrite {
  /** The events the change causes (none when no app takes them). */
  events: readonly AppEventRecord[];
  /** Types of the user's waiting events that the change makes moot: deleted (an account deleted: its address changes). */
  discard?: readonly string[];
}

export interface AppEventStore {
  /** Adds events (one statement). */
  add(events: readonly AppEventRecord[]): Promise<void>;
  /**
   * Takes up to `limit` events due at `now` (nextAt ≤ now), oldest first, and holds them until
   * `until` (their nextAt), counting an attempt: of several nodes claiming at once, each event
   * goes to one. A holder that dies leaves them to be claimed again at `until`.
   */
  claim(now: number, until: number, limit: number): Promise<AppEventRecord[]>;
  /** The app took it: deleted. */
  done(id: string): Promise<void>;
  /** Tried and failed: due again at `nextAt`. */
  retry(id: string, nextAt: number, lastError: string): Promise<void>;
  /** Deletes the user's waiting events of this type (an account deleted: its address changes); returns how many. */
  discard(userId: string, type: string): Promise<number>;
  /** Makes every event not due at `now` due then (`gatehouse events send`); returns how many. */
  expedite(now: number): Promise<number>;
  /** Waiting events, oldest first (the CLI, tests). */
  list(limit?: number): Promise<AppEventRecord[]>;
}
