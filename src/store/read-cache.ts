import type { SqlDriver } from './driver.ts';
import type { User } from './types.ts';

/**
 * Rows read on every request (a session or an OAuth grant, joined with its user), kept in
 * memory where the driver can tell cheaply that nothing was written since (SQLite's
 * writeMark: own writes and other connections' commits). The whole cache is dropped at the
 * first change by anyone, so a revocation, a disabled user or new groups apply to the next
 * request. Drivers without writeMark (PostgreSQL: other nodes write without telling) get no
 * cache: `ReadCache.for` returns null and every read goes to the database.
 */
export class ReadCache<V> {
  private readonly db: SqlDriver;
  private readonly max: number;
  private readonly map = new Map<string, V>();
  private mark = -1;

  private constructor(db: SqlDriver, max: number) {
    this.db = db;
    this.max = max;
  }

  static for<V>(db: SqlDriver, max = 10_000): ReadCache<V> | null {
    return db.writeMark ? new ReadCache<V>(db, max) : null;
  }

  /** The database's mark now; everything cached under an older one is dropped. Pass it to set(). */
  check(): number {
    const mark = this.db.writeMark!();
    if (mark !== this.mark) {
      this.map.clear();
      this.mark = mark;
    }
    return mark;
  }

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  /** Keeps what was read under `mark`, unless something was written while it was read. */
  set(key: string, value: V, mark: number): void {
    if (this.db.writeMark!() !== mark) return;
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, value);
  }
}

/** The user's columns in a query that joins `users u`, named `u_*` (see joinedUser). */
export const JOINED_USER_COLUMNS = `u.email AS u_email, u.email_verified AS u_email_verified, u.name AS u_name, u.groups_json AS u_groups_json,
       u.password_hash AS u_password_hash, u.disabled AS u_disabled, u.created_at AS u_created_at, u.updated_at AS u_updated_at`;

export interface JoinedUserRow {
  user_id: string;
  u_email: string;
  u_email_verified: number;
  u_name: string | null;
  u_groups_json: string;
  u_password_hash: string | null;
  u_disabled: number;
  u_created_at: number;
  u_updated_at: number;
}

export function joinedUser(r: JoinedUserRow): User {
  return {
    id: r.user_id,
    email: r.u_email,
    emailVerified: r.u_email_verified === 1,
    name: r.u_name,
    groups: JSON.parse(r.u_groups_json) as string[],
    passwordHash: r.u_password_hash,
    disabled: r.u_disabled === 1,
    createdAt: Number(r.u_created_at),
    updatedAt: Number(r.u_updated_at),
  };
}
