import type { AppEventRecord, AppEventStore } from './app-event-types.ts';
import type { SqlDriver, SqlValue } from './driver.ts';

interface AppEventRow {
  id: string;
  app: string;
  type: string;
  user_id: string;
  at: number;
  attempts: number;
  next_at: number;
  last_error: string | null;
  value: string | null;
}

const COLUMNS = 'id, app, type, user_id, at, attempts, next_at, last_error, value';

const toRecord = (r: AppEventRow): AppEventRecord => ({
  id: r.id,
  app: r.app,
  type: r.type,
  userId: r.user_id,
  at: Number(r.at),
  attempts: Number(r.attempts),
  nextAt: Number(r.next_at),
  lastError: r.last_error,
  value: r.value,
});

/**
 * Table app_events (migration 12). No foreign key: the event of a deleted account outlives it.
 * Every write is untracked: no cached read (sessions, users) depends on this table.
 */
export class SqlAppEvents implements AppEventStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async add(events: readonly AppEventRecord[]): Promise<void> {
    if (events.length === 0) return;
    const params: SqlValue[] = [];
    for (const e of events)
      params.push(e.id, e.app, e.type, e.userId, e.at, e.attempts, e.nextAt, e.lastError, e.value);
    const rows = events.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ');
    await this.db.run(`INSERT INTO app_events (${COLUMNS}) VALUES ${rows}`, params, { untracked: true });
  }

  async claim(now: number, until: number, limit: number): Promise<AppEventRecord[]> {
    // The outer next_at <= ? is checked again against a row another node updated meanwhile
    // (PostgreSQL, READ COMMITTED): what it claimed first is not claimed twice.
    const rows = await this.db.all<AppEventRow>(
      `UPDATE app_events SET next_at = ?, attempts = attempts + 1
       WHERE next_at <= ? AND id IN (SELECT id FROM app_events WHERE next_at <= ? ORDER BY next_at, id LIMIT ?)
       RETURNING ${COLUMNS}`,
      [until, now, now, Math.max(1, Math.floor(limit))],
    );
    return rows.map(toRecord).sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  }

  async done(id: string): Promise<void> {
    await this.db.run(`DELETE FROM app_events WHERE id = ?`, [id], { untracked: true });
  }

  async retry(id: string, nextAt: number, lastError: string): Promise<void> {
    await this.db.run(`UPDATE app_events SET next_at = ?, last_error = ? WHERE id = ?`, [nextAt, lastError, id], {
      untracked: true,
    });
  }

  discard(userId: string, type: string): Promise<number> {
    return this.db.run(`DELETE FROM app_events WHERE user_id = ? AND type = ?`, [userId, type], { untracked: true });
  }

  expedite(now: number): Promise<number> {
    return this.db.run(`UPDATE app_events SET next_at = ? WHERE next_at > ?`, [now, now], { untracked: true });
  }

  async list(limit = 100): Promise<AppEventRecord[]> {
    const rows = await this.db.all<AppEventRow>(`SELECT ${COLUMNS} FROM app_events ORDER BY at, id LIMIT ?`, [
      Math.max(1, Math.min(10_000, Math.floor(limit))),
    ]);
    return rows.map(toRecord);
  }
}
