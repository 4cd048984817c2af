import pg from 'pg';
import type { SqlDriver, SqlValue } from './driver.ts';
import { StoreUnavailableError } from './types.ts';

const INT8 = 20;
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** Rewrites the portable `?` placeholders as $1, $2... (no SQL here holds a literal "?"). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/**
 * Errors that mean "the database cannot serve us now", as opposed to a bad query: the server
 * is down or unreachable, restarting, out of connections, or refuses our credentials or
 * database name. They become StoreUnavailableError, so protected routes answer 503 (fail
 * closed) and `gatehouse serve` names store.url at start.
 */
const UNAVAILABLE = new Set([
  // Node socket and DNS errors
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  // SQLSTATE: admin shutdown, crash shutdown, cannot connect now, too many connections, connection exceptions
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  // SQLSTATE: invalid authorization / password, unknown database
  '28000',
  '28P01',
  '3D000',
]);
const UNAVAILABLE_MESSAGE =
  /Query read timeout|Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection is not queryable|connection is closed/i;

/** host:port/database, never the user or password. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || 'localhost'}:${u.port || 5432}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}

function wrap(err: unknown, where: string): unknown {
  if (err instanceof StoreUnavailableError) return err;
  const e = err as { code?: string; message?: string; errors?: { code?: string }[] };
  const code = e?.code ?? e?.errors?.[0]?.code;
  if ((code && UNAVAILABLE.has(code)) || UNAVAILABLE_MESSAGE.test(e?.message ?? '')) {
    const detail = (e?.message || code || 'unknown error').replace(/\s+/g, ' ');
    return new StoreUnavailableError(`PostgreSQL at ${where} is unavailable: ${detail}`, { cause: err });
  }
  return err;
}

type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

function driverOn(
  q: Queryable,
  where: string,
  transaction: SqlDriver['transaction'],
  close: () => Promise<void>,
): SqlDriver {
  const query = async <T>(sql: string, params: SqlValue[]) => {
    try {
      return await q.query<T & pg.QueryResultRow>({ text: numbered(sql), values: params, types });
    } catch (err) {
      throw wrap(err, where);
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

/** A driver on one checked-out client; its transactions run on that client. */
function clientDriver(client: pg.PoolClient, where: string): SqlDriver {
  return driverOn(
    client,
    where,
    (fn) => inTransaction(client, where, fn),
    async () => {},
  );
}

async function inTransaction<T>(client: pg.PoolClient, where: string, fn: (tx: SqlDriver) => Promise<T>): Promise<T> {
  const tx = driverOn(
    client,
    where,
    (inner) => inner(tx),
    async () => {},
  );
  try {
    await client.query('BEGIN');
    const result = await fn(tx);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw wrap(err, where);
  }
}

export interface PostgresOptions {
  url: string;
  poolSize?: number;
  /** Schema to use (created if missing); tests give each run its own. */
  schema?: string;
  /**
   * Longest wait for one query's answer. A server that hangs (or a network that drops
   * packets) then fails requests closed instead of holding them open forever.
   */
  queryTimeoutMs?: number;
}

const QUERY_TIMEOUT_MS = 10_000;

export function createPostgresDriver(
  options: PostgresOptions,
): SqlDriver & { pool: pg.Pool; withLock<T>(fn: (db: SqlDriver) => Promise<T>): Promise<T> } {
  const where = describeUrl(options.url);
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    query_timeout: options.queryTimeoutMs ?? QUERY_TIMEOUT_MS,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
  });
  // An idle client that loses its server must not crash the process; the next query reports it.
  pool.on('error', () => {});

  const connect = () => pool.connect().catch((err: unknown) => Promise.reject(wrap(err, where)));

  const transaction = async <T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T> => {
    const client = await connect();
    let broken: unknown;
    try {
      return await inTransaction(client, where, fn);
    } catch (err) {
      broken = err instanceof StoreUnavailableError ? err : undefined;
      throw err;
    } finally {
      // A client whose connection failed is discarded, not handed to the next caller.
      client.release(broken as Error | undefined);
    }
  };

  const driver = driverOn(pool, where, transaction, () => pool.end());
  return {
    ...driver,
    pool,
    /**
     * Serialises schema set-up across nodes starting at once. fn gets a driver on the very
     * connection that holds the lock, so set-up needs one connection whatever poolSize is.
     */
    async withLock<T>(fn: (db: SqlDriver) => Promise<T>): Promise<T> {
      const client = await connect();
      let broken: unknown;
      try {
        await client.query('SELECT pg_advisory_lock(727274)');
        try {
          // Inside the lock: concurrent CREATE SCHEMA IF NOT EXISTS can still collide.
          if (options.schema) await client.query(`CREATE SCHEMA IF NOT EXISTS "${options.schema.replace(/"/g, '')}"`);
          return await fn(clientDriver(client, where));
        } finally {
          await client.query('SELECT pg_advisory_unlock(727274)').catch(() => {});
        }
      } catch (err) {
        const wrapped = wrap(err, where);
        broken = wrapped instanceof StoreUnavailableError ? wrapped : undefined;
        throw wrapped;
      } finally {
        client.release(broken as Error | undefined);
      }
    },
  };
}
