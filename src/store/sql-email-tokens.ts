import type { SqlDriver } from './driver.ts';
import type { EmailToken, EmailTokenPurpose, EmailTokenStore, NewEmailToken } from './email-token-types.ts';

interface EmailTokenRow {
  id_hash: string;
  user_id: string;
  purpose: string;
  email: string;
  binding: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  superseded_at: number | null;
}

const toToken = (r: EmailTokenRow): EmailToken => ({
  idHash: r.id_hash,
  userId: r.user_id,
  purpose: r.purpose as EmailTokenPurpose,
  email: r.email,
  binding: r.binding,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  usedAt: r.used_at === null ? null : Number(r.used_at),
  supersededAt: r.superseded_at === null ? null : Number(r.superseded_at),
});

/** Table email_tokens (migration 6). */
export class SqlEmailTokens implements EmailTokenStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  issue(t: NewEmailToken): Promise<void> {
    return this.db.transaction(async (tx) => {
      // Locks the user's row first (PostgreSQL), so two issues for one user cannot both miss
      // each other's token; SQLite transactions are serialised anyway.
      await tx.run(`UPDATE users SET updated_at = updated_at WHERE id = ?`, [t.userId]);
      await tx.run(
        `UPDATE email_tokens SET superseded_at = ? WHERE user_id = ? AND purpose = ? AND used_at IS NULL AND superseded_at IS NULL`,
        [t.createdAt, t.userId, t.purpose],
      );
      await tx.run(
        `INSERT INTO email_tokens (id_hash, user_id, purpose, email, binding, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
        [t.idHash, t.userId, t.purpose, t.email, t.binding, t.createdAt, t.expiresAt],
      );
    });
  }

  async get(idHash: string): Promise<EmailToken | undefined> {
    const r = await this.db.get<EmailTokenRow>(`SELECT * FROM email_tokens WHERE id_hash = ?`, [idHash]);
    return r && toToken(r);
  }

  async holders(purpose: EmailTokenPurpose, now: number): Promise<Set<string>> {
    const rows = await this.db.all<{ user_id: string }>(
      `SELECT DISTINCT user_id FROM email_tokens WHERE purpose = ? AND used_at IS NULL AND superseded_at IS NULL AND expires_at > ?`,
      [purpose, now],
    );
    return new Set(rows.map((r) => r.user_id));
  }

  async consume(idHash: string, purpose: EmailTokenPurpose, now: number): Promise<EmailToken | undefined> {
    const r = await this.db.get<EmailTokenRow>(
      `UPDATE email_tokens SET used_at = ? WHERE id_hash = ? AND purpose = ? AND used_at IS NULL AND superseded_at IS NULL AND expires_at > ? RETURNING *`,
      [now, idHash, purpose, now],
    );
    return r && toToken(r);
  }

  purgeExpired(before: number, limit = 1000): Promise<number> {
    return this.db.run(
      `DELETE FROM email_tokens WHERE id_hash IN (SELECT id_hash FROM email_tokens WHERE expires_at < ? LIMIT ?)`,
      [before, limit],
    );
  }
}
