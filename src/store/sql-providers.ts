import { randomUUID } from 'node:crypto';
import { isUniqueViolation, type SqlDriver } from './driver.ts';
import type {
  Identity,
  IdentityPatch,
  IdentityStore,
  LoginState,
  LoginStateStore,
  NewIdentity,
  ProviderTokenRecord,
  ProviderTokenStore,
  UnlinkResult,
} from './provider-types.ts';
import { StoreConflictError, type NewUser, type User } from './types.ts';

/** Inserts a user through a given driver (a transaction's): SqlUsers.create, passed in by SqlStore. */
export type CreateUser = (db: SqlDriver, user: NewUser) => Promise<User>;

interface IdentityRow {
  id: string;
  user_id: string;
  provider: string;
  issuer: string;
  subject: string;
  email: string | null;
  email_verified: number;
  name: string | null;
  groups_json: string;
  created_at: number;
  last_login_at: number;
}

const toIdentity = (r: IdentityRow): Identity => ({
  id: r.id,
  userId: r.user_id,
  provider: r.provider,
  issuer: r.issuer,
  subject: r.subject,
  email: r.email,
  emailVerified: Number(r.email_verified) === 1,
  name: r.name,
  groups: JSON.parse(r.groups_json) as string[],
  createdAt: Number(r.created_at),
  lastLoginAt: Number(r.last_login_at),
});

async function insertIdentity(db: SqlDriver, i: NewIdentity): Promise<Identity> {
  const now = Date.now();
  const row: IdentityRow = {
    id: randomUUID(),
    user_id: i.userId,
    provider: i.provider,
    issuer: i.issuer,
    subject: i.subject,
    email: i.email ?? null,
    email_verified: i.emailVerified ? 1 : 0,
    name: i.name ?? null,
    groups_json: JSON.stringify(i.groups ?? []),
    created_at: now,
    last_login_at: now,
  };
  try {
    await db.run(
      `INSERT INTO identities (id, user_id, provider, issuer, subject, email, email_verified, name, groups_json, created_at, last_login_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        row.id,
        row.user_id,
        row.provider,
        row.issuer,
        row.subject,
        row.email,
        row.email_verified,
        row.name,
        row.groups_json,
        row.created_at,
        row.last_login_at,
      ],
    );
  } catch (err) {
    if (isUniqueViolation(err)) throw new StoreConflictError('identity already linked');
    throw err;
  }
  return toIdentity(row);
}

export class SqlIdentities implements IdentityStore {
  private readonly db: SqlDriver;
  private readonly createUser: CreateUser;
  constructor(db: SqlDriver, createUser: CreateUser) {
    this.db = db;
    this.createUser = createUser;
  }

  create(identity: NewIdentity): Promise<Identity> {
    return insertIdentity(this.db, identity);
  }

  createWithUser(user: NewUser, identity: Omit<NewIdentity, 'userId'>): Promise<{ user: User; identity: Identity }> {
    return this.db.transaction(async (tx) => {
      const created = await this.createUser(tx, user);
      return { user: created, identity: await insertIdentity(tx, { ...identity, userId: created.id }) };
    });
  }

  async find(issuer: string, subject: string): Promise<Identity | undefined> {
    const r = await this.db.get<IdentityRow>(`SELECT * FROM identities WHERE issuer = ? AND subject = ?`, [
      issuer,
      subject,
    ]);
    return r && toIdentity(r);
  }

  async listByUser(userId: string): Promise<Identity[]> {
    const rows = await this.db.all<IdentityRow>(`SELECT * FROM identities WHERE user_id = ? ORDER BY created_at, id`, [
      userId,
    ]);
    return rows.map(toIdentity);
  }

  async update(id: string, patch: IdentityPatch): Promise<Identity | undefined> {
    const sets: string[] = [];
    const params: (string | number | null)[] = [];
    const set = (column: string, value: string | number | null) => {
      sets.push(`${column} = ?`);
      params.push(value);
    };
    if (patch.email !== undefined) set('email', patch.email);
    if (patch.emailVerified !== undefined) set('email_verified', patch.emailVerified ? 1 : 0);
    if (patch.name !== undefined) set('name', patch.name);
    if (patch.groups !== undefined) set('groups_json', JSON.stringify(patch.groups));
    if (patch.lastLoginAt !== undefined) set('last_login_at', patch.lastLoginAt);
    if (!sets.length) {
      const r = await this.db.get<IdentityRow>(`SELECT * FROM identities WHERE id = ?`, [id]);
      return r && toIdentity(r);
    }
    const r = await this.db.get<IdentityRow>(`UPDATE identities SET ${sets.join(', ')} WHERE id = ? RETURNING *`, [
      ...params,
      id,
    ]);
    return r && toIdentity(r);
  }

  deleteUnlessLast(id: string, userId: string): Promise<UnlinkResult> {
    return this.db.transaction(async (tx) => {
      // A no-op write takes the user's row lock in PostgreSQL, so two unlinks of the same
      // user's last two identities run one after the other (SQLite transactions are serial).
      const user = await tx.get<{ password_hash: string | null }>(
        `UPDATE users SET updated_at = updated_at WHERE id = ? RETURNING password_hash`,
        [userId],
      );
      if (!user) return 'not_found';
      const mine = await tx.get<{ id: string }>(`SELECT id FROM identities WHERE id = ? AND user_id = ?`, [id, userId]);
      if (!mine) return 'not_found';
      if (user.password_hash === null) {
        const others = await tx.get<{ n: number }>(
          `SELECT COUNT(*) AS n FROM identities WHERE user_id = ? AND id <> ?`,
          [userId, id],
        );
        if (Number(others?.n ?? 0) === 0) return 'last';
      }
      await tx.run(`DELETE FROM identities WHERE id = ?`, [id]);
      return 'deleted';
    });
  }
}

interface LoginStateRow {
  id_hash: string;
  browser_hash: string;
  provider: string;
  site: string;
  purpose: string;
  session_hash: string | null;
  return_to: string;
  secret: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

const toLoginState = (r: LoginStateRow): LoginState => ({
  idHash: r.id_hash,
  browserHash: r.browser_hash,
  provider: r.provider,
  site: r.site,
  purpose: r.purpose === 'link' || r.purpose === 'reauth' ? r.purpose : 'login',
  sessionHash: r.session_hash,
  returnTo: r.return_to,
  secret: r.secret,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  usedAt: r.used_at === null ? null : Number(r.used_at),
});

export class SqlLoginStates implements LoginStateStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async create(s: Omit<LoginState, 'usedAt'>): Promise<void> {
    await this.db.run(
      `INSERT INTO login_states (id_hash, browser_hash, provider, site, purpose, session_hash, return_to, secret, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        s.idHash,
        s.browserHash,
        s.provider,
        s.site,
        s.purpose,
        s.sessionHash,
        s.returnTo,
        s.secret,
        s.createdAt,
        s.expiresAt,
      ],
    );
  }

  async get(idHash: string): Promise<LoginState | undefined> {
    const r = await this.db.get<LoginStateRow>(`SELECT * FROM login_states WHERE id_hash = ?`, [idHash]);
    return r && toLoginState(r);
  }

  async consume(idHash: string, now: number): Promise<LoginState | undefined> {
    const r = await this.db.get<LoginStateRow>(
      `UPDATE login_states SET used_at = ? WHERE id_hash = ? AND used_at IS NULL RETURNING *`,
      [now, idHash],
    );
    return r && toLoginState(r);
  }

  purgeExpired(before: number): Promise<number> {
    return this.db.run(`DELETE FROM login_states WHERE expires_at < ?`, [before]);
  }
}

interface TokenRow {
  owner: string;
  provider: string;
  user_id: string;
  session_hash: string | null;
  data: string;
  expires_at: number | null;
  version: number;
  lease_holder: string | null;
  lease_until: number;
  updated_at: number;
}

const toToken = (r: TokenRow): ProviderTokenRecord => ({
  owner: r.owner,
  provider: r.provider,
  userId: r.user_id,
  sessionHash: r.session_hash,
  data: r.data,
  expiresAt: r.expires_at === null ? null : Number(r.expires_at),
  version: Number(r.version),
  leaseHolder: r.lease_holder,
  leaseUntil: Number(r.lease_until),
  updatedAt: Number(r.updated_at),
});

export class SqlProviderTokens implements ProviderTokenStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async put(t: {
    owner: string;
    provider: string;
    userId: string;
    sessionHash: string | null;
    data: string;
    expiresAt: number | null;
  }): Promise<void> {
    await this.db.run(
      `INSERT INTO provider_tokens (owner, provider, user_id, session_hash, data, expires_at, version, lease_holder, lease_until, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, 1, NULL, 0, ?)
       ON CONFLICT (owner, provider) DO UPDATE SET user_id = excluded.user_id, session_hash = excluded.session_hash, data = excluded.data,
         expires_at = excluded.expires_at, version = provider_tokens.version + 1, lease_holder = NULL, lease_until = 0, updated_at = excluded.updated_at`,
      [t.owner, t.provider, t.userId, t.sessionHash, t.data, t.expiresAt, Date.now()],
    );
  }

  async get(owner: string, provider: string): Promise<ProviderTokenRecord | undefined> {
    const r = await this.db.get<TokenRow>(`SELECT * FROM provider_tokens WHERE owner = ? AND provider = ?`, [
      owner,
      provider,
    ]);
    return r && toToken(r);
  }

  async acquireLease(
    owner: string,
    provider: string,
    holder: string,
    now: number,
    until: number,
  ): Promise<ProviderTokenRecord | undefined> {
    const r = await this.db.get<TokenRow>(
      `UPDATE provider_tokens SET lease_holder = ?, lease_until = ? WHERE owner = ? AND provider = ? AND lease_until <= ? RETURNING *`,
      [holder, until, owner, provider, now],
    );
    return r && toToken(r);
  }

  async completeLease(
    owner: string,
    provider: string,
    holder: string,
    update: { data: string; expiresAt: number | null },
  ): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE provider_tokens SET data = ?, expires_at = ?, version = version + 1, lease_holder = NULL, lease_until = 0, updated_at = ?
        WHERE owner = ? AND provider = ? AND lease_holder = ?`,
      [update.data, update.expiresAt, Date.now(), owner, provider, holder],
    );
    return n > 0;
  }

  async releaseLease(owner: string, provider: string, holder: string): Promise<void> {
    await this.db.run(
      `UPDATE provider_tokens SET lease_holder = NULL, lease_until = 0 WHERE owner = ? AND provider = ? AND lease_holder = ?`,
      [owner, provider, holder],
    );
  }

  delete(owner: string, provider?: string): Promise<number> {
    return provider === undefined
      ? this.db.run(`DELETE FROM provider_tokens WHERE owner = ?`, [owner])
      : this.db.run(`DELETE FROM provider_tokens WHERE owner = ? AND provider = ?`, [owner, provider]);
  }

  deleteByUser(userId: string, provider?: string): Promise<number> {
    return provider === undefined
      ? this.db.run(`DELETE FROM provider_tokens WHERE user_id = ?`, [userId])
      : this.db.run(`DELETE FROM provider_tokens WHERE user_id = ? AND provider = ?`, [userId, provider]);
  }
}
