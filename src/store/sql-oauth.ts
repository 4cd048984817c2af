import { isUniqueViolation, type SqlDriver, type SqlValue } from './driver.ts';
import { joinedUser, JOINED_USER_COLUMNS, ReadCache, type JoinedUserRow } from './read-cache.ts';
import type {
  AuthorizationCode,
  ClientStore,
  CodeRedemption,
  CodeStore,
  DeviceAuthorization,
  DeviceStatus,
  DeviceStore,
  Grant,
  GrantKind,
  GrantStore,
  OAuthStore,
  StoredClient,
} from './oauth-types.ts';
import { StoreConflictError, type User } from './types.ts';

/** The OAuth tables (migration 4) over the same portable SQL as the rest of the store. */

interface ClientRow {
  id: string;
  secret_hash: string | null;
  metadata_json: string;
  created_at: number;
  created_ip: string | null;
}

interface DeviceRow {
  device_hash: string;
  user_code_hash: string;
  client_id: string;
  scope: string;
  resource: string;
  created_at: number;
  expires_at: number;
  interval_ms: number;
  last_poll_at: number | null;
  too_fast: number;
  status: string;
  user_id: string | null;
  amr_json: string;
  auth_time: number | null;
  decided_at: number | null;
  session_hash: string | null;
  ip: string | null;
  user_agent: string | null;
}

interface CodeRow {
  code_hash: string;
  client_id: string;
  redirect_uri: string;
  code_challenge: string;
  scope: string;
  resource: string;
  user_id: string;
  amr_json: string;
  auth_time: number;
  session_hash: string | null;
  created_at: number;
  expires_at: number;
  redeemed_at: number | null;
  grant_id: string | null;
}

interface GrantRow {
  id: string;
  user_id: string;
  client_id: string;
  client_name: string;
  kind: string;
  scope: string;
  resource: string;
  amr_json: string;
  auth_time: number;
  created_at: number;
  last_used_at: number;
  ip: string | null;
  user_agent: string | null;
  expires_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
  refresh_hash: string | null;
  previous_hash: string | null;
  rotated_at: number | null;
  successor: string | null;
  generation: number;
}

const num = (v: number | null): number | null => (v === null ? null : Number(v));

const toClient = (r: ClientRow): StoredClient => ({
  id: r.id,
  secretHash: r.secret_hash,
  metadata: JSON.parse(r.metadata_json) as Record<string, unknown>,
  createdAt: Number(r.created_at),
  createdIp: r.created_ip,
});

const toDevice = (r: DeviceRow): DeviceAuthorization => ({
  deviceHash: r.device_hash,
  userCodeHash: r.user_code_hash,
  clientId: r.client_id,
  scope: r.scope,
  resource: r.resource,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  intervalMs: Number(r.interval_ms),
  lastPollAt: num(r.last_poll_at),
  status: r.status as DeviceStatus,
  userId: r.user_id,
  amr: JSON.parse(r.amr_json) as string[],
  authTime: num(r.auth_time),
  decidedAt: num(r.decided_at),
  sessionHash: r.session_hash,
  ip: r.ip,
  userAgent: r.user_agent,
});

const toCode = (r: CodeRow): AuthorizationCode => ({
  codeHash: r.code_hash,
  clientId: r.client_id,
  redirectUri: r.redirect_uri,
  codeChallenge: r.code_challenge,
  scope: r.scope,
  resource: r.resource,
  userId: r.user_id,
  amr: JSON.parse(r.amr_json) as string[],
  authTime: Number(r.auth_time),
  sessionHash: r.session_hash,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  redeemedAt: num(r.redeemed_at),
  grantId: r.grant_id,
});

const toGrant = (r: GrantRow): Grant => ({
  id: r.id,
  userId: r.user_id,
  clientId: r.client_id,
  clientName: r.client_name,
  kind: r.kind as GrantKind,
  scope: r.scope,
  resource: r.resource,
  amr: JSON.parse(r.amr_json) as string[],
  authTime: Number(r.auth_time),
  createdAt: Number(r.created_at),
  lastUsedAt: Number(r.last_used_at),
  ip: r.ip,
  userAgent: r.user_agent,
  expiresAt: Number(r.expires_at),
  revokedAt: num(r.revoked_at),
  revokedReason: r.revoked_reason,
  refreshHash: r.refresh_hash,
  previousHash: r.previous_hash,
  rotatedAt: num(r.rotated_at),
  successor: r.successor,
  generation: Number(r.generation),
});

const GRANT_COLUMNS =
  'id, user_id, client_id, client_name, kind, scope, resource, amr_json, auth_time, created_at, last_used_at, ip, user_agent, expires_at, revoked_at, revoked_reason, refresh_hash, previous_hash, rotated_at, successor, generation';

function insertGrant(db: SqlDriver, g: Grant): Promise<number> {
  const values: SqlValue[] = [
    g.id,
    g.userId,
    g.clientId,
    g.clientName,
    g.kind,
    g.scope,
    g.resource,
    JSON.stringify(g.amr),
    g.authTime,
    g.createdAt,
    g.lastUsedAt,
    g.ip,
    g.userAgent,
    g.expiresAt,
    g.revokedAt,
    g.revokedReason,
    g.refreshHash,
    g.previousHash,
    g.rotatedAt,
    g.successor,
    g.generation,
  ];
  return db.run(`INSERT INTO oauth_grants (${GRANT_COLUMNS}) VALUES (${values.map(() => '?').join(', ')})`, values);
}

class SqlClients implements ClientStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async create(c: StoredClient): Promise<void> {
    try {
      await this.db.run(
        `INSERT INTO oauth_clients (id, secret_hash, metadata_json, created_at, created_ip) VALUES (?, ?, ?, ?, ?)`,
        [c.id, c.secretHash, JSON.stringify(c.metadata), c.createdAt, c.createdIp],
      );
    } catch (err) {
      if (isUniqueViolation(err)) throw new StoreConflictError('client id taken');
      throw err;
    }
  }

  async get(id: string): Promise<StoredClient | undefined> {
    const r = await this.db.get<ClientRow>(`SELECT * FROM oauth_clients WHERE id = ?`, [id]);
    return r && toClient(r);
  }

  async list(limit = 10_000): Promise<StoredClient[]> {
    const rows = await this.db.all<ClientRow>(`SELECT * FROM oauth_clients ORDER BY created_at, id LIMIT ?`, [limit]);
    return rows.map(toClient);
  }

  remove(id: string, now: number): Promise<{ removed: boolean; revoked: number }> {
    return this.db.transaction(async (tx) => {
      const revoked = await tx.run(
        `UPDATE oauth_grants SET revoked_at = ?, revoked_reason = 'client_removed' WHERE client_id = ? AND revoked_at IS NULL`,
        [now, id],
      );
      const removed = (await tx.run(`DELETE FROM oauth_clients WHERE id = ?`, [id])) === 1;
      return { removed, revoked };
    });
  }
}

class SqlDevices implements DeviceStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async create(d: DeviceAuthorization): Promise<void> {
    const values: SqlValue[] = [
      d.deviceHash,
      d.userCodeHash,
      d.clientId,
      d.scope,
      d.resource,
      d.createdAt,
      d.expiresAt,
      d.intervalMs,
      d.lastPollAt,
      d.status,
      d.userId,
      JSON.stringify(d.amr),
      d.authTime,
      d.decidedAt,
      d.sessionHash,
      d.ip,
      d.userAgent,
    ];
    try {
      await this.db.run(
        `INSERT INTO oauth_device_codes (device_hash, user_code_hash, client_id, scope, resource, created_at, expires_at, interval_ms, last_poll_at, status, user_id, amr_json, auth_time, decided_at, session_hash, ip, user_agent)
         VALUES (${values.map(() => '?').join(', ')})`,
        values,
      );
    } catch (err) {
      if (isUniqueViolation(err)) throw new StoreConflictError('user code taken');
      throw err;
    }
  }

  async get(deviceHash: string): Promise<DeviceAuthorization | undefined> {
    const r = await this.db.get<DeviceRow>(`SELECT * FROM oauth_device_codes WHERE device_hash = ?`, [deviceHash]);
    return r && toDevice(r);
  }

  async getByUserCode(userCodeHash: string): Promise<DeviceAuthorization | undefined> {
    const r = await this.db.get<DeviceRow>(`SELECT * FROM oauth_device_codes WHERE user_code_hash = ?`, [userCodeHash]);
    return r && toDevice(r);
  }

  async poll(
    deviceHash: string,
    now: number,
    o: { slowDownMs: number; slackMs: number },
  ): Promise<{ device: DeviceAuthorization; tooFast: boolean } | undefined> {
    // One statement, so concurrent polls are serialised by the row lock: SET expressions all
    // read the row as it was, so too_fast and the grown interval come from the previous poll.
    const tooFast = `(last_poll_at IS NOT NULL AND ? - last_poll_at < interval_ms - ?)`;
    const r = await this.db.get<DeviceRow>(
      `UPDATE oauth_device_codes
          SET interval_ms = CASE WHEN ${tooFast} THEN interval_ms + ? ELSE interval_ms END,
              too_fast = CASE WHEN ${tooFast} THEN 1 ELSE 0 END,
              last_poll_at = ?
        WHERE device_hash = ? RETURNING *`,
      [now, o.slackMs, o.slowDownMs, now, o.slackMs, now, deviceHash],
    );
    return r && { device: toDevice(r), tooFast: r.too_fast === 1 };
  }

  async decide(
    deviceHash: string,
    d: { approved: boolean; userId: string; amr: string[]; authTime: number; sessionHash: string | null; now: number },
  ): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE oauth_device_codes SET status = ?, user_id = ?, amr_json = ?, auth_time = ?, session_hash = ?, decided_at = ? WHERE device_hash = ? AND status = 'pending' AND expires_at > ?`,
      [
        d.approved ? 'approved' : 'denied',
        d.userId,
        JSON.stringify(d.amr),
        d.authTime,
        d.sessionHash,
        d.now,
        deviceHash,
        d.now,
      ],
    );
    return n === 1;
  }

  redeem(deviceHash: string, now: number, grant: Grant): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const n = await tx.run(
        `UPDATE oauth_device_codes SET status = 'redeemed' WHERE device_hash = ? AND status = 'approved' AND expires_at > ?`,
        [deviceHash, now],
      );
      if (n !== 1) return false;
      await insertGrant(tx, grant);
      return true;
    });
  }

  async listApproved(userId: string, now: number): Promise<DeviceAuthorization[]> {
    // expires_at first: the index on it leaves only the few codes of the last minutes to look at.
    const rows = await this.db.all<DeviceRow>(
      `SELECT * FROM oauth_device_codes WHERE expires_at > ? AND user_id = ? AND status = 'approved' ORDER BY decided_at DESC, device_hash`,
      [now, userId],
    );
    return rows.map(toDevice);
  }

  async cancel(deviceHash: string, userId: string, now: number): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE oauth_device_codes SET status = 'denied', decided_at = ? WHERE device_hash = ? AND user_id = ? AND status = 'approved' AND expires_at > ?`,
      [now, deviceHash, userId, now],
    );
    return n === 1;
  }
}

class SqlCodes implements CodeStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async create(c: AuthorizationCode): Promise<void> {
    const values: SqlValue[] = [
      c.codeHash,
      c.clientId,
      c.redirectUri,
      c.codeChallenge,
      c.scope,
      c.resource,
      c.userId,
      JSON.stringify(c.amr),
      c.authTime,
      c.sessionHash,
      c.createdAt,
      c.expiresAt,
      c.redeemedAt,
      c.grantId,
    ];
    await this.db.run(
      `INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, code_challenge, scope, resource, user_id, amr_json, auth_time, session_hash, created_at, expires_at, redeemed_at, grant_id) VALUES (${values.map(() => '?').join(', ')})`,
      values,
    );
  }

  async get(codeHash: string): Promise<AuthorizationCode | undefined> {
    const r = await this.db.get<CodeRow>(`SELECT * FROM oauth_codes WHERE code_hash = ?`, [codeHash]);
    return r && toCode(r);
  }

  redeem(codeHash: string, now: number, grant: Grant): Promise<CodeRedemption> {
    return this.db.transaction(async (tx) => {
      const n = await tx.run(
        `UPDATE oauth_codes SET redeemed_at = ?, grant_id = ? WHERE code_hash = ? AND redeemed_at IS NULL AND expires_at > ?`,
        [now, grant.id, codeHash, now],
      );
      if (n === 1) {
        await insertGrant(tx, grant);
        return 'redeemed';
      }
      const r = await tx.get<CodeRow>(`SELECT * FROM oauth_codes WHERE code_hash = ?`, [codeHash]);
      if (!r) return 'unknown';
      if (r.redeemed_at !== null) {
        if (r.grant_id)
          await tx.run(
            `UPDATE oauth_grants SET revoked_at = ?, revoked_reason = 'code_reused' WHERE id = ? AND revoked_at IS NULL`,
            [now, r.grant_id],
          );
        return 'reused';
      }
      return 'expired';
    });
  }
}

type GrantWithUser = { grant: Grant; user: User };

/** Grants with their users: the read behind every bearer request, cached like sessions (read-cache.ts). */
class SqlGrants implements GrantStore {
  private readonly db: SqlDriver;
  private readonly cache: ReadCache<GrantWithUser> | null;
  constructor(db: SqlDriver) {
    this.db = db;
    this.cache = ReadCache.for(db);
  }

  async create(g: Grant): Promise<void> {
    await insertGrant(this.db, g);
  }

  async get(id: string): Promise<Grant | undefined> {
    const r = await this.db.get<GrantRow>(`SELECT ${GRANT_COLUMNS} FROM oauth_grants WHERE id = ?`, [id]);
    return r && toGrant(r);
  }

  async getWithUser(id: string): Promise<GrantWithUser | undefined> {
    const mark = this.cache?.check() ?? 0;
    const hit = this.cache?.get(id);
    if (hit) return hit;
    const r = await this.db.get<GrantRow & JoinedUserRow>(
      `SELECT g.*, ${JOINED_USER_COLUMNS} FROM oauth_grants g JOIN users u ON u.id = g.user_id WHERE g.id = ?`,
      [id],
    );
    if (!r) return undefined;
    const found: GrantWithUser = { grant: toGrant(r), user: joinedUser(r) };
    this.cache?.set(id, found, mark);
    return found;
  }

  async listByUser(userId: string, now: number): Promise<Grant[]> {
    const rows = await this.db.all<GrantRow>(
      `SELECT ${GRANT_COLUMNS} FROM oauth_grants WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY last_used_at DESC, id`,
      [userId, now],
    );
    return rows.map(toGrant);
  }

  async rotate(
    id: string,
    expectHash: string,
    next: { hash: string; successor: string; now: number; ip: string | null; userAgent: string | null },
  ): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE oauth_grants
          SET previous_hash = refresh_hash, refresh_hash = ?, successor = ?, rotated_at = ?, generation = generation + 1, last_used_at = ?, ip = ?, user_agent = ?
        WHERE id = ? AND refresh_hash = ? AND revoked_at IS NULL`,
      [next.hash, next.successor, next.now, next.now, next.ip, next.userAgent, id, expectHash],
    );
    return n === 1;
  }

  async revoke(id: string, now: number, reason: string): Promise<boolean> {
    return (
      (await this.db.run(
        `UPDATE oauth_grants SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL`,
        [now, reason, id],
      )) === 1
    );
  }

  async revokeByUser(userId: string, now: number, reason: string): Promise<number> {
    return this.db.run(
      `UPDATE oauth_grants SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL`,
      [now, reason, userId],
    );
  }

  revokeAll(now: number, reason: string): Promise<{ grants: number; pending: number }> {
    return this.db.transaction(async (tx) => {
      const grants = await tx.run(
        `UPDATE oauth_grants SET revoked_at = ?, revoked_reason = ? WHERE revoked_at IS NULL`,
        [now, reason],
      );
      const devices = await tx.run(
        `UPDATE oauth_device_codes SET status = 'denied', decided_at = ? WHERE status = 'approved' AND expires_at > ?`,
        [now, now],
      );
      const codes = await tx.run(`UPDATE oauth_codes SET expires_at = ? WHERE redeemed_at IS NULL AND expires_at > ?`, [
        now,
        now,
      ]);
      return { grants, pending: devices + codes };
    });
  }

  async countByClient(now: number): Promise<Map<string, number>> {
    const rows = await this.db.all<{ client_id: string; n: number }>(
      `SELECT client_id, COUNT(*) AS n FROM oauth_grants WHERE revoked_at IS NULL AND expires_at > ? GROUP BY client_id`,
      [now],
    );
    return new Map(rows.map((r) => [r.client_id, Number(r.n)]));
  }
}

export class SqlOAuth implements OAuthStore {
  readonly clients: ClientStore;
  readonly devices: DeviceStore;
  readonly codes: CodeStore;
  readonly grants: GrantStore;
  private readonly db: SqlDriver;

  constructor(db: SqlDriver) {
    this.db = db;
    this.clients = new SqlClients(db);
    this.devices = new SqlDevices(db);
    this.codes = new SqlCodes(db);
    this.grants = new SqlGrants(db);
  }

  async purge(
    now: number,
    o: { grantIdleMs: number; expiredBefore: number; revokedBefore: number },
    limit = 1000,
  ): Promise<number> {
    // Each table in bounded batches by primary key (a purge batch, src/jobs/).
    const devices = await this.db.run(
      `DELETE FROM oauth_device_codes WHERE device_hash IN (SELECT device_hash FROM oauth_device_codes WHERE expires_at <= ? LIMIT ?)`,
      [o.expiredBefore, limit],
    );
    const codes = await this.db.run(
      `DELETE FROM oauth_codes WHERE code_hash IN (SELECT code_hash FROM oauth_codes WHERE expires_at <= ? LIMIT ?)`,
      [o.expiredBefore, limit],
    );
    // Grants past their absolute expiry, idle, or revoked long enough ago: one index range each.
    let grants = 0;
    for (const [column, before] of [
      ['expires_at', now],
      ['last_used_at', now - o.grantIdleMs],
      ['revoked_at', o.revokedBefore],
    ] as const) {
      if (grants >= limit) break;
      grants += await this.db.run(
        `DELETE FROM oauth_grants WHERE id IN (SELECT id FROM oauth_grants WHERE ${column} <= ? LIMIT ?)`,
        [before, limit - grants],
      );
    }
    // Provider tokens a grant was given (owner "grant:<id>", src/providers/token-vault.ts) go when it
    // ends. The grant is looked up by its key (SUBSTR after "grant:"), not by a concatenation
    // no index can serve, which made this a scan of every grant for every such row. On SQLite the
    // owners are also read as a range of the primary key ("grant;" follows "grant:" in its binary
    // order), so the batch does not scan every provider token on the event loop; PostgreSQL's
    // text order depends on the database's collation, so there LIKE alone decides (off the loop).
    const range = this.db.dialect === 'sqlite' ? `owner >= 'grant:' AND owner < 'grant;' AND ` : '';
    const relayed = await this.db.run(
      `DELETE FROM provider_tokens WHERE owner IN (SELECT owner FROM provider_tokens WHERE ${range}owner LIKE 'grant:%' AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.id = SUBSTR(provider_tokens.owner, 7) AND g.revoked_at IS NULL AND g.expires_at > ?) LIMIT ?)`,
      [now, limit],
    );
    return devices + codes + grants + relayed;
  }
}
