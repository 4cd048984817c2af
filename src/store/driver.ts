/**
 * The little a SQL store needs from a database. SQL is written once, with `?` placeholders,
 * in the dialect SQLite 3.35+ and PostgreSQL 13+ share (ON CONFLICT, RETURNING, BIGINT, TEXT).
 */
export type SqlValue = string | number | null;

export interface SqlDriver {
  readonly dialect: 'sqlite' | 'postgres';
  all<T>(sql: string, params?: SqlValue[]): Promise<T[]>;
  get<T>(sql: string, params?: SqlValue[]): Promise<T | undefined>;
  /** Returns the number of rows changed. */
  run(sql: string, params?: SqlValue[]): Promise<number>;
  /** Runs fn in one transaction. fn must only await this driver's calls. */
  transaction<T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** SQLSTATE 23505 / SQLITE_CONSTRAINT_UNIQUE: both drivers map it to this check. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; errcode?: number; message?: string };
  return e?.code === '23505' || e?.errcode === 2067 || e?.errcode === 1555 || /UNIQUE constraint failed/.test(e?.message ?? '');
}
