/**
 * The little a SQL store needs from a database. SQL is written once, with `?` placeholders,
 * in the dialect SQLite 3.35+ and PostgreSQL 13+ share (ON CONFLICT, RETURNING, BIGINT, TEXT).
 */
export type SqlValue = string | number | null;

export interface SqlDriver {
  readonly dialect: 'sqlite' | 'postgres';
  all<T>(sql: string, params?: SqlValue[]): Promise<T[]>;
  get<T>(sql: string, params?: SqlValue[]): Promise<T | undefined>;
  /**
   * Returns the number of rows changed. `untracked`: the write changes nothing a cached read
   * returns (see writeMark), e.g. a session's last_seen_at, which the cached copy updates itself.
   */
  run(sql: string, params?: SqlValue[], options?: { untracked?: boolean }): Promise<number>;
  /** Runs fn in one transaction. fn must only await this driver's calls. */
  transaction<T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /**
   * A number that changes whenever the database may have changed: a write through this driver
   * or a commit by any other connection (another process, the CLI). Only drivers that can
   * tell cheaply and exactly have it (SQLite: PRAGMA data_version); without it, reads are
   * never cached.
   */
  writeMark?(): number;
  /** Gives back the log space of deleted rows (SQLite: checkpoint and truncate the WAL). */
  compact?(): Promise<void>;
  /** Waits for the log to catch up with what was written (SQLite: a WAL checkpoint); see Store.settle. */
  settle?(): Promise<void>;
}

/** SQLSTATE 23505 / SQLITE_CONSTRAINT_UNIQUE: both drivers map it to this check. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; errcode?: number; message?: string };
  return (
    e?.code === '23505' ||
    e?.errcode === 2067 ||
    e?.errcode === 1555 ||
    /UNIQUE constraint failed/.test(e?.message ?? '')
  );
}
