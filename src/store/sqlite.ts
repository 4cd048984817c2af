import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { backup, DatabaseSync, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import type { SqlDriver, SqlValue } from './driver.ts';
import { StoreUnavailableError } from './types.ts';

/** How long a statement waits for another connection's lock (SQLite's busy_timeout); compact() sets it back to this. */
const BUSY_TIMEOUT_MS = 5000;

/**
 * node:sqlite driver. Calls are synchronous underneath and take microseconds on indexed
 * lookups, so they run inline; WAL lets the CLI and the server use the file at once.
 * A transaction holds other callers back until it ends, so nothing interleaves into it.
 */
export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  private readonly db: DatabaseSync;
  private readonly path: string;
  private readonly statements = new Map<string, StatementSync>();
  private txDone: Promise<void> | null = null;
  /** Rows changed by writes that asked not to count (see writeMark). */
  private untracked = 0;
  private markStatement: StatementSync | undefined;
  /** This event-loop turn's writeMark, until a write of our own or the turn ends. */
  private mark: number | undefined;
  private forgetScheduled = false;
  /** Checkpoints the WAL off the event loop (file stores only). */
  private readonly checkpointer: Checkpointer | undefined;

  constructor(path: string) {
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === 'EEXIST' || code === 'ENOTDIR'
          ? 'a file is in the way of its directory'
          : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
            ? 'its directory cannot be created here'
            : (err as Error).message;
      throw openError(path, `${why} (${code ?? 'error'})`, err);
    }
    this.path = path;
    try {
      this.db = new DatabaseSync(path);
    } catch (err) {
      throw openError(path, (err as Error).message, err);
    }
    try {
      this.db.exec(
        // journal_size_limit: once checkpointed, a WAL that a burst of writes grew is cut back to 64 MiB.
        `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}; PRAGMA journal_size_limit = 67108864;`,
      );
      if (path !== ':memory:') {
        // No checkpoint on this connection: one copies pages into the database and fsyncs it,
        // which on a busy disk held the event loop for 430 ms. The Checkpointer does it in a
        // worker thread instead.
        this.db.exec('PRAGMA wal_autocheckpoint = 0');
        this.checkpointer = new Checkpointer(path);
      }
    } catch (err) {
      this.db.close();
      throw openError(path, (err as Error).message, err);
    }
  }

  private wrote(): void {
    this.mark = undefined;
    this.checkpointer?.wrote();
  }

  private statement(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  // Every wait for the running transaction is written inline as `while (txDone) await txDone`,
  // so the check and what follows it run in one synchronous step. Awaiting a helper instead
  // adds a microtask hop after the check, in which a queued transaction can BEGIN: the query
  // then lands inside someone else's transaction (and is lost with its rollback), or a second
  // BEGIN fails with "cannot start a transaction within a transaction".

  async all<T>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    while (this.txDone) await this.txDone;
    return this.rows(sql, params);
  }

  async get<T>(sql: string, params: SqlValue[] = []): Promise<T | undefined> {
    while (this.txDone) await this.txDone;
    return this.row(sql, params);
  }

  // A get or all that is not a SELECT (UPDATE ... RETURNING) writes: the mark is read anew.
  private rows<T>(sql: string, params: SqlValue[]): T[] {
    let result: T[];
    try {
      result = this.statement(sql).all(...params) as T[];
    } catch (err) {
      throw busy(err);
    }
    if (!isRead(sql)) this.wrote();
    return result;
  }

  private row<T>(sql: string, params: SqlValue[]): T | undefined {
    let result: T | undefined;
    try {
      result = this.statement(sql).get(...params) as T | undefined;
    } catch (err) {
      throw busy(err);
    }
    if (!isRead(sql)) this.wrote();
    return result;
  }

  async run(sql: string, params: SqlValue[] = [], options?: { untracked?: boolean }): Promise<number> {
    while (this.txDone) await this.txDone;
    return this.change(sql, params, options);
  }

  private change(sql: string, params: SqlValue[], options?: { untracked?: boolean }): number {
    let changes: number;
    try {
      changes = Number(this.statement(sql).run(...params).changes);
    } catch (err) {
      throw busy(err);
    }
    if (options?.untracked) this.untracked += changes;
    else this.mark = undefined;
    this.checkpointer?.wrote();
    return changes;
  }

  /**
   * Rows this connection changed (total_changes(), RETURNING statements included), less the
   * untracked ones, plus other connections' commits (data_version). Both parts only grow, so
   * the sum moves whenever either does. Reading it costs ~3 µs (two fcntl calls), so it is
   * read once per event-loop turn and again after every write of our own: a commit by another
   * process (the CLI, another node on the file) is seen by every request read from the network
   * after it, and our own writes at once.
   */
  writeMark(): number {
    if (this.mark === undefined) {
      this.markStatement ??= this.db.prepare('SELECT total_changes() + data_version AS mark FROM pragma_data_version');
      this.mark = Number((this.markStatement.get() as { mark: number }).mark) - this.untracked;
      if (!this.forgetScheduled) {
        this.forgetScheduled = true;
        setImmediate(this.forgetMark);
      }
    }
    return this.mark;
  }

  private readonly forgetMark = () => {
    this.forgetScheduled = false;
    this.mark = undefined;
  };

  async transaction<T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T> {
    while (this.txDone) await this.txDone;
    let release!: () => void;
    this.txDone = new Promise((resolve) => (release = resolve));
    const tx: SqlDriver = {
      dialect: 'sqlite',
      all: async <R>(sql: string, params: SqlValue[] = []) => this.rows<R>(sql, params),
      get: async <R>(sql: string, params: SqlValue[] = []) => this.row<R>(sql, params),
      run: async (sql: string, params: SqlValue[] = [], options?: { untracked?: boolean }) =>
        this.change(sql, params, options),
      transaction: (inner) => inner(tx),
      close: async () => {},
    };
    try {
      // Inside the try: a BEGIN that fails (SQLITE_BUSY past busy_timeout, another process
      // writing) must release the queue too, or every later call would wait forever.
      try {
        this.db.exec('BEGIN IMMEDIATE');
      } catch (err) {
        throw busy(err);
      }
      const result = await fn(tx);
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw err;
    } finally {
      this.txDone = null;
      release();
    }
  }

  /**
   * Checkpoints the WAL into the database and truncates it (after a large purge). The copying
   * (and its fsync) is a PASSIVE checkpoint in the Checkpointer's thread, which never blocks this
   * connection's writers; cutting the file is done here, without waiting for other connections
   * (busy_timeout 0 for the moment): done by the other thread it held the write lock while this
   * thread's writers slept in SQLite's busy handler, a 70 ms stall. A reader in another process
   * (the CLI, a backup) makes it a partial checkpoint, and the next one finishes the job.
   */
  async compact(): Promise<void> {
    // checkpoint() waits for one under way (it may have begun before the purge's last write).
    await this.checkpointer?.checkpoint();
    while (this.txDone) await this.txDone;
    this.db.exec('PRAGMA busy_timeout = 0');
    try {
      this.db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get();
    } finally {
      this.db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  async settle(): Promise<void> {
    await this.checkpointer?.settled();
  }

  async close(): Promise<void> {
    while (this.txDone) await this.txDone;
    await this.checkpointer?.close();
    if (this.db.isOpen) this.db.close();
  }
}

/**
 * Copies the SQLite store at `source` to `target` with SQLite's online backup, while
 * Gatehouse runs and writes: the copy is one consistent snapshot (all pages in one step, so
 * other connections' commits never restart it). It is written to a new file beside `target`,
 * created with mode 0600 (the store holds the generated master key), and renamed onto
 * `target` only when complete. Returns the number of pages copied.
 */
export async function backupSqlite(source: string, target: string): Promise<number> {
  const store = statSync(source, { throwIfNoEntry: false });
  if (!store?.isFile()) throw new Error(`${source}: no SQLite store here`);
  const existing = statSync(target, { throwIfNoEntry: false });
  if (existing?.ino === store.ino && existing.dev === store.dev)
    throw new Error(`${target} is the store itself; write the copy somewhere else`);
  const db = new DatabaseSync(source);
  const partial = `${target}.${randomBytes(4).toString('hex')}.partial`;
  try {
    closeSync(openSync(partial, 'wx', 0o600));
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const pages = await backup(db, partial, { rate: 2 ** 31 - 1 });
    renameSync(partial, target);
    return pages;
  } catch (err) {
    try {
      unlinkSync(partial);
    } catch {
      // never created, or gone
    }
    throw err;
  } finally {
    db.close();
  }
}

const CHECKPOINT_WORKER = `
const { DatabaseSync } = require('node:sqlite');
const { parentPort, workerData } = require('node:worker_threads');
const db = new DatabaseSync(workerData);
db.exec('PRAGMA busy_timeout = 0');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
parentPort.on('message', () => {
  try { checkpoint.get(); } catch {}
  parentPort.postMessage(null);
});
`;

/** How soon after a write the WAL is checkpointed. */
const CHECKPOINT_AFTER_MS = 500;

/**
 * Checkpoints a store's WAL in a worker thread of its own, with a connection of its own, so that
 * copying pages and the fsync never run on the event loop (SQLite's automatic checkpoint does
 * it inline at a commit: on a busy disk that held the loop for 430 ms). Half a second after a
 * write it runs a PASSIVE checkpoint, which never waits for or blocks readers and writers; the
 * next write after a complete one starts the WAL over (journal_size_limit cuts a grown file),
 * and a job writing in bulk has one run after each batch and waits for it (settled). A
 * checkpoint that fails (SQLITE_BUSY: another connection's checkpoint) is left to the next one.
 * The thread starts at the first checkpoint and does not keep the process alive.
 */
class Checkpointer {
  private readonly path: string;
  private worker: Worker | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Written since the last checkpoint began. */
  private dirty = false;
  private closed = false;

  constructor(path: string) {
    this.path = path;
  }

  wrote(): void {
    this.dirty = true;
    if (this.timer || this.closed) return;
    this.timer = setTimeout(this.due, CHECKPOINT_AFTER_MS);
    this.timer.unref();
  }

  private readonly due = () => {
    this.timer = undefined;
    void this.checkpoint();
  };

  /**
   * For a bulk writer between batches: a checkpoint of what it wrote, so the WAL starts over at
   * its next batch instead of growing for half a second of writes (a 64 MiB WAL after 50,000
   * deleted sessions, whose truncation then held the event loop 46 ms).
   */
  settled(): Promise<void> {
    if (this.dirty) return this.checkpoint();
    return this.running ?? Promise.resolve();
  }

  /** Runs a PASSIVE checkpoint after the one under way, if any. */
  async checkpoint(): Promise<void> {
    while (this.running) await this.running;
    if (this.closed) return;
    this.dirty = false;
    this.running = this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private run(): Promise<void> {
    if (!this.worker) {
      this.worker = new Worker(CHECKPOINT_WORKER, { eval: true, workerData: this.path });
      this.worker.unref();
      this.worker.on('error', () => (this.worker = undefined));
    }
    const worker = this.worker;
    return new Promise<void>((resolve) => {
      const done = () => {
        worker.off('message', done);
        worker.off('exit', done);
        resolve();
      };
      worker.on('message', done);
      worker.on('exit', done);
      worker.postMessage(null);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    while (this.running) await this.running;
    await this.worker?.terminate();
    this.worker = undefined;
  }
}

/** Statements that only read: SELECT and PRAGMA queries (anything else may write). */
const READ = /^\s*(SELECT|PRAGMA)\b/i;
const reads = new Map<string, boolean>();
function isRead(sql: string): boolean {
  let r = reads.get(sql);
  if (r === undefined) {
    r = READ.test(sql) && !/\bRETURNING\b/i.test(sql);
    if (reads.size < 1000) reads.set(sql, r);
  }
  return r;
}

/**
 * SQLITE_BUSY / SQLITE_LOCKED past busy_timeout (another process, e.g. another worker or the CLI,
 * held the write lock for over 5 s): the store is unavailable for now, so the request fails
 * closed with 503 and Retry-After like any store outage, not 500. Other errors pass unchanged.
 */
function busy(err: unknown): unknown {
  const code = (err as { errcode?: number }).errcode;
  if (code === undefined || ((code & 0xff) !== 5 && (code & 0xff) !== 6)) return err;
  return new StoreUnavailableError(`the SQLite store is busy: ${(err as Error).message}`, { cause: err });
}

/** Opening failed: says which file, and carries node:sqlite's code so callers can tell it apart. */
function openError(path: string, reason: string, cause: unknown): Error {
  return Object.assign(new Error(`${path}: ${reason}`, { cause }), { code: 'ERR_SQLITE_ERROR' });
}
