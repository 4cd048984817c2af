import type { AuditEvent, AuditQuery, AuditStore } from './audit-types.ts';
import type { SqlDriver, SqlValue } from './driver.ts';

interface AuditRow {
  id: string;
  at: number;
  event: string;
  user_id: string | null;
  outcome: string;
  ip: string | null;
  user_agent: string | null;
  actor: string | null;
  detail_json: string;
}

const COLUMNS = 'id, at, event, user_id, outcome, ip, user_agent, actor, detail_json';

const toEvent = (r: AuditRow): AuditEvent => ({
  id: r.id,
  at: Number(r.at),
  event: r.event,
  userId: r.user_id,
  outcome: r.outcome,
  ip: r.ip,
  userAgent: r.user_agent,
  actor: r.actor,
  detail: JSON.parse(r.detail_json) as AuditEvent['detail'],
});

/** Table audit_events (migration 9). Never written inside another transaction: always the pool. */
export class SqlAudit implements AuditStore {
  private readonly db: SqlDriver;
  /**
   * The id compared byte by byte, so version 7 ids (audit/uuid7.ts) list one process's events of a
   * millisecond in the order they happened. SQLite's TEXT compares bytes (BINARY); PostgreSQL's
   * follows the database's collation, which the operator chose: one with numeric ordering (ICU's
   * -u-kn-true) orders '019f…' after '01a0…'. "C" is byte order in every PostgreSQL database.
   */
  private readonly byId: string;
  constructor(db: SqlDriver) {
    this.db = db;
    this.byId = db.dialect === 'postgres' ? 'id COLLATE "C"' : 'id';
  }

  async append(events: readonly AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    const params: SqlValue[] = [];
    for (const e of events)
      params.push(e.id, e.at, e.event, e.userId, e.outcome, e.ip, e.userAgent, e.actor, JSON.stringify(e.detail));
    const rows = events.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ');
    // Untracked: no cached read (sessions, grants) depends on the audit trail.
    await this.db.run(`INSERT INTO audit_events (${COLUMNS}) VALUES ${rows}`, params, { untracked: true });
  }

  async list(q: AuditQuery = {}): Promise<AuditEvent[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (q.userId !== undefined) where.push('user_id = ?'), params.push(q.userId);
    if (q.since !== undefined) where.push('at >= ?'), params.push(q.since);
    if (q.event !== undefined) where.push('event = ?'), params.push(q.event);
    const limit = Math.max(1, Math.min(10_000, Math.floor(q.limit ?? 100)));
    const rows = await this.db.all<AuditRow>(
      `SELECT ${COLUMNS} FROM audit_events${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, ${this.byId} DESC LIMIT ?`,
      [...params, limit],
    );
    return rows.map(toEvent);
  }

  purgeBefore(cutoff: number, limit: number): Promise<number> {
    return this.db.run(
      `DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ? ORDER BY at LIMIT ?)`,
      [cutoff, Math.max(1, Math.floor(limit))],
      { untracked: true },
    );
  }
}
