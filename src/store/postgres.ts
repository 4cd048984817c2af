import pg from 'pg';
import type { SqlDriver, SqlValue } from './driver.ts';
import { StoreUnavailableError } from './types.ts';

const INT8 = 20;
const types = {
  getTypeParser: ((oid: number, format?: string) => (oid === INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser,
};

/** Rewrites the portable `?` placeholders as $1, $2... (no SQL here holds a literal "?"). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

const UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', '57P01', '57P03', '53300', '08000', '08003', '08006']);

function wrap(err: unknown): unknown {
  const code = (err as { code?: string })?.code;
  if ((code && UNAVAILABLE.has(code)) || /Connection terminated|timeout exceeded when trying to connect/i.test((err as Error)?.message ?? '')) {
    return new StoreUnavailableError('PostgreSQL is unavailable', { cause: err });
  }
  return err;
}

type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

function driverOn(q: Queryable, transaction: SqlDriver['transaction'], close: () => Promise<void>): SqlDriver {
  const query = async <T>(sql: string, params: SqlValue[]) => {
    try {
      return await q.query<T & pg.QueryResultRow>({ text: numbered(sql), values: params, types });
    } catch (err) {
      throw wrap(err);
    }
  };
  return {
    dialect: 'postgres',
    all: async <T>(sql: string, params: SqlValue[] = []) => (await query<T>(sql, params)).rows as T[],
    get: async <T>(sql: string, params: SqlValue[] = []) => (await query<T>(sql, params)).rows[0] as T | undefined,
    run: async (sql: string, params: SqlValue[] = []) => (await query(sql, params)).rowCount ?? 0,
    transaction,
    close,
  };
}

export interface PostgresOptions {
  url: string;
  poolSize?: number;
  /** Schema to use (created if missing); tests give each run its own. */
  schema?: string;
}

export function createPostgresDriver(options: PostgresOptions): SqlDriver & { pool: pg.Pool; withLock<T>(fn: () => Promise<T>): Promise<T> } {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
  });
  // An idle client that loses its server must not crash the process; the next query reports it.
  pool.on('error', () => {});

  const transaction = async <T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T> => {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw wrap(err);
    }
    const tx = driverOn(client, (inner) => inner(tx), async () => {});
    try {
      await client.query('BEGIN');
      const result = await fn(tx);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw wrap(err);
    } finally {
      client.release();
    }
  };

  const driver = driverOn(pool, transaction, () => pool.end());
  return {
    ...driver,
    pool,
    /** Serialises schema set-up across nodes starting at once. */
    async withLock<T>(fn: () => Promise<T>): Promise<T> {
      const client = await pool.connect().catch((err) => Promise.reject(wrap(err)));
      try {
        if (options.schema) await client.query(`CREATE SCHEMA IF NOT EXISTS "${options.schema.replace(/"/g, '')}"`);
        await client.query('SELECT pg_advisory_lock(727274)');
        try {
          return await fn();
        } finally {
          await client.query('SELECT pg_advisory_unlock(727274)');
        }
      } finally {
        client.release();
      }
    },
  };
}
