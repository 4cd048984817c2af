// audit/ (feature): the audit trail of security events. Features record() an event; it is logged at once
// and written to the store (store/sql-audit.ts) in batches, off the request's path, and flushed by close()
// on a clean shutdown. The account page's "Recent activity" and `gatehouse audit` read it back.
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { AuditEvent, AuditQuery, AuditStore } from '../store/index.ts';
import { type TimedId, uuid7, uuid7Source } from './uuid7.ts';

export { describeUserAgent } from './user-agent.ts';

/**
 * The events (a bounded set: they are metric labels and the CLI's --event values):
 *   register, login (detail.method: password | provider | device | mcp | email_link; outcome
 *   success, failure, throttled, disabled), logout (detail.by provider: its back-channel logout),
 *   session_ended (one browser session ended from the account page), sessions_ended (everywhere
 *   else), password_changed, password_reset, password_reset_requested, sign_in_link_requested,
 *   email_verified, email_changed, factor_added, factor_removed, provider_linked, provider_unlinked, device_approved, consent_approved, login_revoked (a
 *   CLI/MCP login ended), refresh_reuse, operator (a CLI command: detail.command),
 *   email_change_requested, reauthenticated, reauthentication_failed, invitation_accepted,
 *   account_deleted (by the user on the account page, or actor operator:<name>: gatehouse users delete).
 * login's detail.method is also totp | recovery_code | passkey (a second factor's outcome, and a
 * passkey-only sign-in); factor_added/factor_removed name detail.type: totp | passkey |
 * recovery_codes (never a secret).
 */
export const AUDIT_EVENTS = [
  'register',
  'login',
  'logout',
  'session_ended',
  'sessions_ended',
  'password_changed',
  'password_reset',
  'password_reset_requested',
  'sign_in_link_requested',
  'email_verified',
  'email_changed',
  'factor_added',
  'factor_removed',
  'provider_linked',
  'provider_unlinked',
  'device_approved',
  'consent_approved',
  'login_revoked',
  'refresh_reuse',
  'operator',
  'email_change_requested',
  'reauthenticated',
  'reauthentication_failed',
  'invitation_accepted',
  'account_deleted',
] as const;
export type AuditName = (typeof AUDIT_EVENTS)[number];

type DetailValue = string | number | boolean | null | undefined;

export interface AuditInput {
  event: AuditName;
  /** success (default), failure, throttled, disabled, ... */
  outcome?: string;
  userId?: string | null;
  /** The request it came with: its client IP and User-Agent are recorded. */
  ctx?: { ip: string; req: IncomingMessage };
  ip?: string | null;
  userAgent?: string | null;
  /** "operator:<os user>" for CLI commands; null: the user themselves. */
  actor?: string | null;
  detail?: Record<string, DetailValue>;
}

/** What features take: record(), and list() for the pages that show it. */
export interface AuditLog {
  record(e: AuditInput): void;
  list?(q: AuditQuery): Promise<AuditEvent[]>;
}

/** For parts made without an audit trail (unit tests of one part). */
export const NO_AUDIT: AuditLog = { record() {} };

const MAX_TEXT = 256;
const BATCH = 200;
const MAX_QUEUE = 50_000;

const clip = (v: string | null | undefined): string | null =>
  v === undefined || v === null ? null : v.length > MAX_TEXT ? v.slice(0, MAX_TEXT) : v;

/**
 * The audit trail: record() never waits and never throws. Events are written in batches (at
 * most flushMs after they happen, or at once when BATCH are waiting) through the store's pool,
 * never inside a transaction of the caller. A batch the store refuses is kept and tried again;
 * close() writes what is left.
 */
export class Audit implements AuditLog {
  private readonly store: AuditStore;
  private readonly logger: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly flushMs: number;
  private readonly ids: () => TimedId;
  private queue: AuditEvent[] = [];
  /** The batch being written. */
  private writing: AuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | null = null;
  private closed = false;

  /** `clock`: for tests, the time events are recorded at (default: Date.now, through the process's ids). */
  constructor(o: { store: AuditStore; logger: Logger; metrics?: Metrics; flushMs?: number; clock?: () => number }) {
    this.store = o.store;
    this.logger = o.logger;
    this.metrics = o.metrics;
    this.flushMs = o.flushMs ?? 1000;
    this.ids = o.clock ? uuid7Source(o.clock) : uuid7;
  }

  record(e: AuditInput): void {
    const outcome = e.outcome ?? 'success';
    const detail: AuditEvent['detail'] = {};
    if (e.detail)
      for (const k in e.detail) {
        const v = e.detail[k];
        if (v !== undefined) detail[k] = typeof v === 'string' ? clip(v) : v;
      }
    // One reading of the clock for both: `at` is the time in the id (audit/uuid7.ts).
    const { id, at } = this.ids();
    const event: AuditEvent = {
      id,
      at,
      event: e.event,
      userId: e.userId ?? null,
      outcome,
      ip: e.ip ?? e.ctx?.ip ?? null,
      userAgent: clip(e.userAgent ?? e.ctx?.req.headers['user-agent']),
      actor: e.actor ?? null,
      detail,
    };
    this.count(event);
    this.logger.info(
      {
        event: 'audit',
        audit: event.event,
        outcome,
        userId: event.userId ?? undefined,
        actor: event.actor ?? undefined,
        ip: event.ip ?? undefined,
        detail,
      },
      `audit: ${event.event} ${outcome}`,
    );
    if (this.queue.length >= MAX_QUEUE) {
      // The store has been failing for a long while: the oldest go (they are in the log).
      this.queue.shift();
      this.metrics?.auditDropped.inc();
    }
    this.queue.push(event);
    if (this.closed) return void this.flush();
    if (this.queue.length >= BATCH) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  private count(e: AuditEvent): void {
    const m = this.metrics;
    if (!m) return;
    if (e.event === 'login') m.login(String(e.detail.method ?? 'password'), e.outcome);
    else if (e.event === 'register' && e.outcome === 'success') m.registrations.inc();
    else if (e.event === 'refresh_reuse') m.refreshReuse.inc();
  }

  /** Writes what is queued; resolves once it is written (or has failed and been kept). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.flushing) return this.flushing;
    if (this.queue.length === 0) return Promise.resolve();
    const run = async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, BATCH);
        this.writing = batch;
        try {
          await this.store.append(batch);
          this.writing = [];
        } catch (err) {
          this.writing = [];
          this.queue = batch.concat(this.queue);
          this.logger.warn(
            { event: 'audit_write_failed', pending: this.queue.length, err: { message: (err as Error).message } },
            'audit events not written yet; kept for the next try',
          );
          if (!this.closed && !this.timer) {
            this.timer = setTimeout(() => void this.flush(), Math.max(this.flushMs, 5000));
            this.timer.unref();
          }
          return;
        }
      }
    };
    // Reset in a later microtask, after the assignment, whatever run() does.
    this.flushing = run().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** Events from the store and those not written yet, newest first (the account page, the CLI). */
  async list(q: AuditQuery = {}): Promise<AuditEvent[]> {
    const pending = this.writing
      .concat(this.queue)
      .filter(
        (e) =>
          (q.userId === undefined || e.userId === q.userId) &&
          (q.since === undefined || e.at >= q.since) &&
          (q.event === undefined || e.event === q.event),
      );
    const stored = await this.store.list(q);
    const seen = new Set(stored.map((e) => e.id));
    const all = pending.filter((e) => !seen.has(e.id)).concat(stored);
    // As the store orders them: newest first, and by id (time-ordered) within one millisecond.
    all.sort((a, b) => b.at - a.at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    return all.slice(0, q.limit ?? 100);
  }

  /** Pending events (tests, shutdown). */
  get pending(): number {
    return this.queue.length;
  }

  /** Writes what is left; later records are written at once. Before the store closes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
    await this.flush();
    if (this.queue.length > 0) {
      this.metrics?.auditDropped.inc(this.queue.length);
      this.logger.error(
        { event: 'audit_write_failed', lost: this.queue.length },
        'audit events could not be written before shutdown (they are in the log)',
      );
    }
  }

  /**
   * Deletes events older than `retentionMs`, `batch` at a time with a pause for other work
   * between batches; at most `maxBatches` per call (the next purge continues). Returns how many.
   */
  async purge(retentionMs: number, now = Date.now(), batch = 1000, maxBatches = 100): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxBatches; i++) {
      const n = await this.store.purgeBefore(now - retentionMs, batch);
      total += n;
      if (n < batch) break;
      await new Promise((r) => setImmediate(r));
    }
    return total;
  }
}
