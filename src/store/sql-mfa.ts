import type { SqlDriver } from './driver.ts';
import type { MfaPending, MfaStore, Passkey, PendingPurpose, TotpFactor } from './mfa-types.ts';

interface PasskeyRow {
  id: string;
  user_id: string;
  public_key: string;
  counter: number;
  transports_json: string;
  device_type: string;
  backed_up: number;
  name: string;
  created_at: number;
  last_used_at: number | null;
}

interface TotpRow {
  user_id: string;
  secret: string;
  confirmed: number;
  created_at: number;
  last_step: number | null;
}

interface PendingRow {
  id_hash: string;
  user_id: string | null;
  site: string;
  purpose: string;
  amr_json: string;
  return_to: string;
  challenge: string | null;
  data: string;
  created_at: number;
  expires_at: number;
}

const toPasskey = (r: PasskeyRow): Passkey => ({
  id: r.id,
  userId: r.user_id,
  publicKey: r.public_key,
  counter: Number(r.counter),
  transports: JSON.parse(r.transports_json) as string[],
  deviceType: r.device_type === 'multiDevice' ? 'multiDevice' : 'singleDevice',
  backedUp: Boolean(Number(r.backed_up)),
  name: r.name,
  createdAt: Number(r.created_at),
  lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at),
});

const toPending = (r: PendingRow): MfaPending => ({
  idHash: r.id_hash,
  userId: r.user_id,
  site: r.site,
  purpose: r.purpose as PendingPurpose,
  amr: JSON.parse(r.amr_json) as string[],
  returnTo: r.return_to,
  challenge: r.challenge,
  data: r.data,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
});

/** Tables passkeys, totp_factors, recovery_codes, mfa_pending (migration 8). */
export class SqlMfa implements MfaStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async addPasskey(p: Passkey): Promise<void> {
    await this.db.run(
      `INSERT INTO passkeys (id, user_id, public_key, counter, transports_json, device_type, backed_up, name, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        p.id,
        p.userId,
        p.publicKey,
        p.counter,
        JSON.stringify(p.transports),
        p.deviceType,
        p.backedUp ? 1 : 0,
        p.name,
        p.createdAt,
        p.lastUsedAt,
      ],
    );
  }

  async passkeys(userId: string): Promise<Passkey[]> {
    const rows = await this.db.all<PasskeyRow>(`SELECT * FROM passkeys WHERE user_id = ? ORDER BY created_at, id`, [
      userId,
    ]);
    return rows.map(toPasskey);
  }

  async passkey(id: string): Promise<Passkey | undefined> {
    const r = await this.db.get<PasskeyRow>(`SELECT * FROM passkeys WHERE id = ?`, [id]);
    return r && toPasskey(r);
  }

  async usedPasskey(id: string, counter: number, backedUp: boolean, at: number): Promise<void> {
    await this.db.run(`UPDATE passkeys SET counter = ?, backed_up = ?, last_used_at = ? WHERE id = ?`, [
      counter,
      backedUp ? 1 : 0,
      at,
      id,
    ]);
  }

  async deletePasskey(userId: string, id: string): Promise<boolean> {
    return (await this.db.run(`DELETE FROM passkeys WHERE user_id = ? AND id = ?`, [userId, id])) > 0;
  }

  async totp(userId: string): Promise<TotpFactor | undefined> {
    const r = await this.db.get<TotpRow>(`SELECT * FROM totp_factors WHERE user_id = ?`, [userId]);
    return (
      r && {
        userId: r.user_id,
        secret: r.secret,
        confirmed: Boolean(Number(r.confirmed)),
        createdAt: Number(r.created_at),
        lastStep: r.last_step === null ? null : Number(r.last_step),
      }
    );
  }

  async startTotp(userId: string, secret: string, at: number): Promise<boolean> {
    const n = await this.db.run(
      `INSERT INTO totp_factors (user_id, secret, confirmed, created_at) VALUES (?, ?, 0, ?)
       ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, last_step = NULL
       WHERE totp_factors.confirmed = 0`,
      [userId, secret, at],
    );
    return n > 0;
  }

  async confirmTotp(userId: string, step: number): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE totp_factors SET confirmed = 1, last_step = ? WHERE user_id = ? AND confirmed = 0`,
      [step, userId],
    );
    return n > 0;
  }

  async useTotpStep(userId: string, step: number): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE totp_factors SET last_step = ? WHERE user_id = ? AND confirmed = 1 AND (last_step IS NULL OR last_step < ?)`,
      [step, userId, step],
    );
    return n > 0;
  }

  async deleteTotp(userId: string): Promise<boolean> {
    return (await this.db.run(`DELETE FROM totp_factors WHERE user_id = ?`, [userId])) > 0;
  }

  async replaceRecoveryCodes(userId: string, hashes: string[], at: number): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.run(`DELETE FROM recovery_codes WHERE user_id = ?`, [userId]);
      for (const h of hashes)
        await tx.run(`INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)`, [userId, h, at]);
    });
  }

  async useRecoveryCode(userId: string, hash: string, at: number): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL`,
      [at, userId, hash],
    );
    return n > 0;
  }

  async recoveryCodesLeft(userId: string): Promise<number> {
    const r = await this.db.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = ? AND used_at IS NULL`,
      [userId],
    );
    return Number(r?.n ?? 0);
  }

  async deleteRecoveryCodes(userId: string): Promise<void> {
    await this.db.run(`DELETE FROM recovery_codes WHERE user_id = ?`, [userId]);
  }

  async createPending(p: MfaPending): Promise<void> {
    await this.db.run(
      `INSERT INTO mfa_pending (id_hash, user_id, site, purpose, amr_json, return_to, challenge, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        p.idHash,
        p.userId,
        p.site,
        p.purpose,
        JSON.stringify(p.amr),
        p.returnTo,
        p.challenge,
        p.data,
        p.createdAt,
        p.expiresAt,
      ],
    );
  }

  async pending(idHash: string): Promise<MfaPending | undefined> {
    const r = await this.db.get<PendingRow>(`SELECT * FROM mfa_pending WHERE id_hash = ?`, [idHash]);
    return r && toPending(r);
  }

  async setChallenge(idHash: string, challenge: string, userId?: string | null): Promise<void> {
    if (userId === undefined)
      await this.db.run(`UPDATE mfa_pending SET challenge = ? WHERE id_hash = ?`, [challenge, idHash]);
    else
      await this.db.run(`UPDATE mfa_pending SET challenge = ?, user_id = ? WHERE id_hash = ?`, [
        challenge,
        userId,
        idHash,
      ]);
  }

  async takeChallenge(idHash: string): Promise<string | undefined> {
    const r = await this.db.get<{ challenge: string | null }>(`SELECT challenge FROM mfa_pending WHERE id_hash = ?`, [
      idHash,
    ]);
    if (!r?.challenge) return undefined;
    // Only one of two answers racing for the same challenge clears it.
    const n = await this.db.run(`UPDATE mfa_pending SET challenge = NULL WHERE id_hash = ? AND challenge = ?`, [
      idHash,
      r.challenge,
    ]);
    return n > 0 ? r.challenge : undefined;
  }

  async deletePending(idHash: string): Promise<void> {
    await this.db.run(`DELETE FROM mfa_pending WHERE id_hash = ?`, [idHash]);
  }

  async deletePendingByUser(userId: string): Promise<void> {
    await this.db.run(`DELETE FROM mfa_pending WHERE user_id = ?`, [userId]);
  }

  purgePending(now: number, limit = 1000): Promise<number> {
    return this.db.run(
      `DELETE FROM mfa_pending WHERE id_hash IN (SELECT id_hash FROM mfa_pending WHERE expires_at < ? LIMIT ?)`,
      [now, limit],
    );
  }
}
