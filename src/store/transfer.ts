import type { SqlDriver, SqlValue } from './driver.ts';

/**
 * Whole-store copies for `gatehouse export` and `gatehouse import` (cli/transfer.ts): every table
 * of the schema, row by row, values as the database holds them: hashes stay hashes, encrypted
 * keys and provider tokens stay encrypted (the master key travels in `kv` unless it is in the
 * config). Table and column names are checked against the schema before they reach SQL.
 */
export interface TransferStore {
  /** The schema's tables (migrations' bookkeeping excluded), in an order that keeps foreign keys satisfied. */
  tables(): Promise<string[]>;
  columns(table: string): Promise<string[]>;
  count(table: string): Promise<number>;
  /** Rows of a table, `limit` from `offset` in a stable order. */
  rows(table: string, offset: number, limit: number): Promise<Record<string, SqlValue>[]>;
  /** Inserts rows (in one statement) into a table; their keys must be columns of it. */
  insert(table: string, rows: readonly Record<string, SqlValue>[]): Promise<void>;
  /** Deletes every row of every table (`import --force`), dependents first. */
  clear(): Promise<void>;
  /** The highest migration applied. */
  schemaVersion(): Promise<number>;
}

/** Tables by migration, parents before the tables that reference them. Others follow, by name. */
const ORDER = [
  'kv',
  'users',
  'sessions',
  'signing_keys',
  'identities',
  'login_states',
  'provider_tokens',
  'session_providers',
  'oauth_clients',
  'oauth_device_codes',
  'oauth_codes',
  'oauth_grants',
  'email_tokens',
  'audit_events',
  'app_events',
];

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

export class SqlTransfer implements TransferStore {
  private readonly db: SqlDriver;
  private known: Map<string, string[]> | undefined;

  constructor(db: SqlDriver) {
    this.db = db;
  }

  private async schema(): Promise<Map<string, string[]>> {
    if (this.known) return this.known;
    const names =
      this.db.dialect === 'sqlite'
        ? (
            await this.db.all<{ name: string }>(
              `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`,
            )
          ).map((r) => r.name)
        : (
            await this.db.all<{ name: string }>(
              `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
            )
          ).map((r) => r.name);
    const tables = names
      .filter((n) => n !== 'schema_migrations' && IDENTIFIER.test(n))
      .sort((a, b) => {
        const ia = ORDER.indexOf(a);
        const ib = ORDER.indexOf(b);
        return (ia === -1 ? ORDER.length : ia) - (ib === -1 ? ORDER.length : ib) || a.localeCompare(b);
      });
    const known = new Map<string, string[]>();
    for (const t of tables) {
      const cols =
        this.db.dialect === 'sqlite'
          ? (await this.db.all<{ name: string; cid: number }>(`PRAGMA table_info(${t})`))
              .sort((a, b) => a.cid - b.cid)
              .map((c) => c.name)
          : (
              await this.db.all<{ name: string }>(
                `SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`,
                [t],
              )
            ).map((c) => c.name);
      known.set(
        t,
        cols.filter((c) => IDENTIFIER.test(c)),
      );
    }
    this.known = known;
    return known;
  }

  private async table(name: string): Promise<string[]> {
    const cols = (await this.schema()).get(name);
    if (!cols) throw new Error(`no table "${name.slice(0, 64)}" in this store's schema`);
    return cols;
  }

  async tables(): Promise<string[]> {
    return [...(await this.schema()).keys()];
  }

  columns(table: string): Promise<string[]> {
    return this.table(table);
  }

  async count(table: string): Promise<number> {
    await this.table(table);
    return Number((await this.db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`))?.n ?? 0);
  }

  async rows(table: string, offset: number, limit: number): Promise<Record<string, SqlValue>[]> {
    const cols = await this.table(table);
    return this.db.all<Record<string, SqlValue>>(
      `SELECT ${cols.join(', ')} FROM ${table} ORDER BY ${cols.join(', ')} LIMIT ? OFFSET ?`,
      [limit, offset],
    );
  }

  async insert(table: string, rows: readonly Record<string, SqlValue>[]): Promise<void> {
    if (rows.length === 0) return;
    const cols = await this.table(table);
    const names = Object.keys(rows[0]!);
    for (const n of names)
      if (!cols.includes(n)) throw new Error(`table ${table} has no column "${n.slice(0, 64)}" in this store's schema`);
    const params: SqlValue[] = [];
    for (const r of rows) {
      if (Object.keys(r).length !== names.length) throw new Error(`rows of ${table} differ in their columns`);
      for (const n of names) {
        const v = r[n];
        if (v !== null && typeof v !== 'string' && typeof v !== 'number')
          throw new Error(`table ${table}, column ${n}: expected text, a number or null`);
        params.push(v === undefined ? null : v);
      }
    }
    const row = `(${names.map(() => '?').join(', ')})`;
    await this.db.run(`INSERT INTO ${table} (${names.join(', ')}) VALUES ${rows.map(() => row).join(', ')}`, params);
  }

  async clear(): Promise<void> {
    const tables = await this.tables();
    await this.db.transaction(async (tx) => {
      for (const t of [...tables].reverse()) await tx.run(`DELETE FROM ${t}`);
    });
  }

  async schemaVersion(): Promise<number> {
    return Number((await this.db.get<{ v: number }>(`SELECT MAX(version) AS v FROM schema_migrations`))?.v ?? 0);
  }
}
