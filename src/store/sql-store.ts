import { randomUUID } from 'node:crypto';
import { isUniqueViolation, type SqlDriver } from './driver.ts';
import { joinedUser, JOINED_USER_COLUMNS, ReadCache, type JoinedUserRow } from './read-cache.ts';
import type { OAuthStore } from './oauth-types.ts';
import type { EmailTokenStore } from './email-token-types.ts';
import type { AuditStore } from './audit-types.ts';
import { SqlAudit } from './sql-audit.ts';
import type { AppEventStore, OutboxWrite } from './app-event-types.ts';
import { SqlAppEvents } from './sql-app-events.ts';
import { SqlTransfer, type TransferStore } from './transfer.ts';
import { SqlEmailTokens } from './sql-email-tokens.ts';
import { SqlMfa } from './sql-mfa.ts';
import type { MfaStore } from './mfa-types.ts';
import type { IdentityStore, LoginStateStore, ProviderTokenStore } from './provider-types.ts';
import { SqlSigningKeys } from './sql-keys.ts';
import { SqlIdentities, SqlLoginStates, SqlProviderTokens } from './sql-providers.ts';
import { SqlOAuth } from './sql-oauth.ts';
import {
  StoreConflictError,
  type JobLeaseStore,
  type KeyValueStore,
  type NewUser,
  type ProviderSessionLink,
  type SigningKeyStore,
  type Session,
  type SessionStore,
  type Store,
  type User,
  type UserPatch,
  type UserStore,
} from './types.ts';

interface UserRow {
  id: string;
  email: string;
  email_verified: number;
  name: string | null;
  groups_json: string;
  password_hash: string | null;
  disabled: number;
  created_at: number;
  updated_at: number;
}

interface SessionRow {
  id_hash: string;
  user_id: string;
  site: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  amr_json: string;
  ip: string | null;
  user_agent: string | null;
  /** Null in rows from before migration 10: the session's creation is its auth time. */
  auth_time: number | null;
  parent_hash: string | null;
}

const toUser = (r: UserRow): User => ({
  id: r.id,
  email: r.email,
  emailVerified: r.email_verified === 1,
  name: r.name,
  groups: JSON.parse(r.groups_json) as string[],
  passwordHash: r.password_hash,
  disabled: r.disabled === 1,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

const toSession = (r: SessionRow): Session => ({
  idHash: r.id_hash,
  userId: r.user_id,
  site: r.site,
  createdAt: Number(r.created_at),
  lastSeenAt: Number(r.last_seen_at),
  expiresAt: Number(r.expires_at),
  amr: JSON.parse(r.amr_json) as string[],
  ip: r.ip,
  userAgent: r.user_agent,
  authTime: Number(r.auth_time ?? r.created_at),
  ...(r.parent_hash ? { parentHash: r.parent_hash } : {}),
});

export class SqlUsers implements UserStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async create(user: NewUser): Promise<User> {
    const now = Date.now();
    const row: UserRow = {
      id: user.id ?? randomUUID(),
      email: user.email,
      email_verified: user.emailVerified ? 1 : 0,
      name: user.name ?? null,
      groups_json: JSON.stringify(user.groups ?? []),
      password_hash: user.passwordHash ?? null,
      disabled: 0,
      created_at: now,
      updated_at: now,
    };
    try {
      await this.db.run(
        `INSERT INTO users (id, email, email_verified, name, groups_json, password_hash, disabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [
          row.id,
          row.email,
          row.email_verified,
          row.name,
          row.groups_json,
          row.password_hash,
          row.disabled,
          row.created_at,
          row.updated_at,
        ],
      );
    } catch (err) {
      if (isUniqueViolation(err)) throw new StoreConflictError('email already registered');
      throw err;
    }
    return toUser(row);
  }

  async get(id: string): Promise<User | undefined> {
    const r = await this.db.get<UserRow>(`SELECT * FROM users WHERE id = ?`, [id]);
    return r && toUser(r);
  }

  async getByEmail(email: string): Promise<User | undefined> {
    const r = await this.db.get<UserRow>(`SELECT * FROM users WHERE email = ?`, [email]);
    return r && toUser(r);
  }

  async list({ limit = 100, offset = 0 } = {}): Promise<User[]> {
    const rows = await this.db.all<UserRow>(`SELECT * FROM users ORDER BY created_at, id LIMIT ? OFFSET ?`, [
      limit,
      offset,
    ]);
    return rows.map(toUser);
  }

  async update(id: string, patch: UserPatch, outbox?: OutboxWrite): Promise<User | undefined> {
    const sets: string[] = [];
    const params: (string | number | null)[] = [];
    const set = (column: string, value: string | number | null) => {
      sets.push(`${column} = ?`);
      params.push(value);
    };
    if (patch.email !== undefined) set('email', patch.email);
    if (patch.name !== undefined) set('name', patch.name);
    if (patch.groups !== undefined) set('groups_json', JSON.stringify(patch.groups));
    if (patch.emailVerified !== undefined) set('email_verified', patch.emailVerified ? 1 : 0);
    if (patch.passwordHash !== undefined) set('password_hash', patch.passwordHash);
    if (patch.disabled !== undefined) set('disabled', patch.disabled ? 1 : 0);
    set('updated_at', Date.now());
    const r = await this.withOutbox(id, outbox, async (db) => {
      try {
        return await db.get<UserRow>(`UPDATE users SET ${sets.join(', ')} WHERE id = ? RETURNING *`, [...params, id]);
      } catch (err) {
        if (isUniqueViolation(err)) throw new StoreConflictError('email already registered');
        throw err;
      }
    });
    return r && toUser(r);
  }

  async delete(id: string, outbox?: OutboxWrite): Promise<boolean> {
    // Sessions go with the user (ON DELETE CASCADE; SQLite enforces it with foreign_keys on).
    return this.withOutbox(id, outbox, async (db) => (await db.run(`DELETE FROM users WHERE id = ?`, [id])) > 0);
  }

  /**
   * Makes a change to the user on `db` and, when it changed something (a truthy result), writes
   * its outbox in the same transaction. The user's row is written as outside one (tracked: cached
   * reads of it are dropped), the outbox's untracked.
   */
  private async withOutbox<T>(
    userId: string,
    outbox: OutboxWrite | undefined,
    change: (db: SqlDriver) => Promise<T>,
  ): Promise<T> {
    if (!outbox || (outbox.events.length === 0 && !outbox.discard?.length)) return change(this.db);
    return this.db.transaction(async (tx) => {
      const result = await change(tx);
      if (!result) return result;
      const appEvents = new SqlAppEvents(tx);
      for (const type of outbox.discard ?? []) await appEvents.discard(userId, type);
      await appEvents.add(outbox.events);
      return result;
    });
  }

  async count(): Promise<number> {
    const r = await this.db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM users`);
    return Number(r?.n ?? 0);
  }
}

type SessionWithUser = { session: Session; user: User };

/**
 * Sessions with their users: the read behind every signed-in request, from memory on SQLite
 * while nothing was written (read-cache.ts; another process's write is seen from the next
 * event-loop turn, see SqliteDriver.writeMark). PostgreSQL reads every time.
 */
class SqlSessions implements SessionStore {
  private readonly db: SqlDriver;
  private readonly cache: ReadCache<SessionWithUser> | null;
  constructor(db: SqlDriver) {
    this.db = db;
    this.cache = ReadCache.for(db);
  }

  async create(s: Session): Promise<void> {
    await this.db.run(
      `INSERT INTO sessions (id_hash, user_id, site, created_at, last_seen_at, expires_at, amr_json, ip, user_agent, auth_time, parent_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        s.idHash,
        s.userId,
        s.site,
        s.createdAt,
        s.lastSeenAt,
        s.expiresAt,
        JSON.stringify(s.amr),
        s.ip,
        s.userAgent,
        s.authTime,
        s.parentHash ?? null,
      ],
    );
  }

  async setAuth(idHash: string, auth: { authTime: number; amr: string[] }): Promise<boolean> {
    const n = await this.db.run(`UPDATE sessions SET auth_time = ?, amr_json = ? WHERE id_hash = ?`, [
      auth.authTime,
      JSON.stringify(auth.amr),
      idHash,
    ]);
    return n > 0;
  }

  async get(idHash: string): Promise<Session | undefined> {
    const r = await this.db.get<SessionRow>(`SELECT * FROM sessions WHERE id_hash = ?`, [idHash]);
    return r && toSession(r);
  }

  cachedWithUser(idHash: string): SessionWithUser | undefined {
    if (!this.cache) return undefined;
    this.cache.check();
    return this.cache.get(idHash);
  }

  async getWithUser(idHash: string): Promise<SessionWithUser | undefined> {
    const mark = this.cache?.check() ?? 0;
    const hit = this.cache?.get(idHash);
    if (hit) return hit;
    const r = await this.db.get<SessionRow & JoinedUserRow>(
      `SELECT s.*, ${JOINED_USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?`,
      [idHash],
    );
    if (!r) return undefined;
    const found = { session: toSession(r), user: joinedUser(r) };
    this.cache?.set(idHash, found, mark);
    return found;
  }

  /** Untracked: the cached copy, if any, is moved forward here instead of being dropped. */
  async touch(idHash: string, lastSeenAt: number): Promise<void> {
    const cached = this.cache?.get(idHash)?.session;
    if (cached && cached.lastSeenAt < lastSeenAt) cached.lastSeenAt = lastSeenAt;
    await this.db.run(
      `UPDATE sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?`,
      [lastSeenAt, idHash, lastSeenAt],
      { untracked: true },
    );
  }

  async delete(idHash: string): Promise<boolean> {
    // The sessions single sign-on made from it end with it (accounts/sso.ts).
    await this.db.run(`DELETE FROM sessions WHERE parent_hash = ?`, [idHash]);
    return (await this.db.run(`DELETE FROM sessions WHERE id_hash = ?`, [idHash])) > 0;
  }

  async deleteByUser(userId: string, exceptIdHash?: string): Promise<number> {
    return this.db.run(`DELETE FROM sessions WHERE user_id = ? AND id_hash <> ?`, [userId, exceptIdHash ?? '']);
  }

  deleteAll(): Promise<number> {
    return this.db.run(`DELETE FROM sessions`);
  }

  async setProviderSession(idHash: string, link: ProviderSessionLink): Promise<void> {
    await this.db.run(
      `INSERT INTO session_providers (session_hash, provider, subject, sid, created_at)
       SELECT id_hash, ?, ?, ?, ? FROM sessions WHERE id_hash = ?
       ON CONFLICT (session_hash) DO UPDATE SET provider = excluded.provider, subject = excluded.subject, sid = excluded.sid`,
      [link.provider, link.subject, link.sid, Date.now(), idHash],
    );
  }

  async deleteByProviderSession(
    provider: string,
    match: { sid?: string; subject?: string },
  ): Promise<{ idHash: string; userId: string }[]> {
    if (match.sid === undefined && match.subject === undefined) return [];
    const where = ['provider = ?'];
    const params: string[] = [provider];
    if (match.sid !== undefined) {
      where.push('sid = ?');
      params.push(match.sid);
    }
    if (match.subject !== undefined) {
      where.push('subject = ?');
      params.push(match.subject);
    }
    const linked = `SELECT session_hash FROM session_providers WHERE ${where.join(' AND ')}`;
    // The sessions single sign-on made from them first (their link rows go with their sessions).
    const rows = [
      ...(await this.db.all<{ id_hash: string; user_id: string }>(
        `DELETE FROM sessions WHERE parent_hash IN (${linked}) RETURNING id_hash, user_id`,
        params,
      )),
      ...(await this.db.all<{ id_hash: string; user_id: string }>(
        `DELETE FROM sessions WHERE id_hash IN (${linked}) RETURNING id_hash, user_id`,
        params,
      )),
    ];
    return rows.map((r) => ({ idHash: r.id_hash, userId: r.user_id }));
  }

  async listByUser(userId: string): Promise<Session[]> {
    const rows = await this.db.all<SessionRow>(`SELECT * FROM sessions WHERE user_id = ? ORDER BY last_seen_at DESC`, [
      userId,
    ]);
    return rows.map(toSession);
  }

  /**
   * Where the last batch stopped, per condition: every row below it is gone (rows are deleted in
   * that order, and no session is created or touched into the past), so the next batch's index
   * range starts there instead of at the deleted rows' entries a PostgreSQL index keeps until vacuum.
   */
  private readonly purgedTo = { expires_at: 0, last_seen_at: 0 };

  async purgeExpired(now: number, idleTimeoutMs: number, limit = 1000): Promise<number> {
    // Bounded batches by primary key (portable: no DELETE ... LIMIT in PostgreSQL), one per
    // condition so that each is an index range whatever the planner makes of an OR.
    let deleted = 0;
    for (const [column, before] of [
      ['expires_at', now],
      ['last_seen_at', now - idleTimeoutMs],
    ] as const) {
      if (deleted >= limit) break;
      const rows = await this.db.all<{ at: number }>(
        `DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions WHERE ${column} >= ? AND ${column} <= ? ORDER BY ${column} LIMIT ?) RETURNING ${column} AS at`,
        [Math.min(this.purgedTo[column], before), before, limit - deleted],
      );
      for (const r of rows) if (Number(r.at) > this.purgedTo[column]) this.purgedTo[column] = Number(r.at);
      deleted += rows.length;
    }
    return deleted;
  }

  async countActive(now: number, idleTimeoutMs: number): Promise<number> {
    const r = await this.db.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM sessions WHERE expires_at > ? AND last_seen_at > ?`,
      [now, now - idleTimeoutMs],
    );
    return Number(r?.n ?? 0);
  }
}

class SqlKeyValue implements KeyValueStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async get(name: string): Promise<string | undefined> {
    return (await this.db.get<{ value: string }>(`SELECT value FROM kv WHERE name = ?`, [name]))?.value;
  }

  async putIfAbsent(name: string, value: string): Promise<string> {
    await this.db.run(`INSERT INTO kv (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`, [
      name,
      value,
      Date.now(),
    ]);
    return (await this.get(name))!;
  }

  async set(name: string, value: string): Promise<void> {
    await this.db.run(
      `INSERT INTO kv (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
      [name, value, Date.now()],
    );
  }
}

class SqlJobLeases implements JobLeaseStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async acquire(name: string, holder: string, now: number, until: number): Promise<boolean> {
    // One statement: of two nodes racing, the second sees the first's row (unexpired) and changes nothing.
    const changed = await this.db.run(
      `INSERT INTO job_leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE job_leases.expires_at <= ?`,
      [name, holder, until, now],
    );
    return changed > 0;
  }

  async renew(name: string, holder: string, until: number): Promise<boolean> {
    return (
      (await this.db.run(`UPDATE job_leases SET expires_at = ? WHERE name = ? AND holder = ?`, [until, name, holder])) >
      0
    );
  }
}

export class SqlStore implements Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly users: UserStore;
  readonly sessions: SessionStore;
  readonly kv: KeyValueStore;
  readonly keys: SigningKeyStore;
  readonly identities: IdentityStore;
  readonly loginStates: LoginStateStore;
  readonly providerTokens: ProviderTokenStore;
  readonly oauth: OAuthStore;
  readonly emailTokens: EmailTokenStore;
  readonly audit: AuditStore;
  readonly appEvents: AppEventStore;
  readonly transfer: TransferStore;
  readonly jobs: JobLeaseStore;
  readonly mfa: MfaStore;

  private readonly db: SqlDriver;

  constructor(db: SqlDriver) {
    this.db = db;
    this.kind = db.dialect;
    this.users = new SqlUsers(db);
    this.sessions = new SqlSessions(db);
    this.kv = new SqlKeyValue(db);
    this.keys = new SqlSigningKeys(db);
    this.identities = new SqlIdentities(db, (tx, user) => new SqlUsers(tx).create(user));
    this.loginStates = new SqlLoginStates(db);
    this.providerTokens = new SqlProviderTokens(db);
    this.oauth = new SqlOAuth(db);
    this.emailTokens = new SqlEmailTokens(db);
    this.audit = new SqlAudit(db);
    this.appEvents = new SqlAppEvents(db);
    this.transfer = new SqlTransfer(db);
    this.jobs = new SqlJobLeases(db);
    this.mfa = new SqlMfa(db);
  }

  async ping(): Promise<void> {
    await this.db.get(`SELECT 1 AS ok`);
  }

  async compact(): Promise<void> {
    await this.db.compact?.();
  }

  async settle(): Promise<void> {
    await this.db.settle?.();
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
