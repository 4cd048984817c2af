import { isUniqueViolation, type SqlDriver } from './driver.ts';
import { StoreConflictError, type SigningKey, type SigningKeyStore } from './types.ts';

interface KeyRow {
  kid: string;
  alg: string;
  public_jwk: string;
  private_jwk: string;
  created_at: number;
  activates_at: number;
  retires_at: number | null;
}

const toKey = (r: KeyRow): SigningKey => ({
  kid: r.kid,
  alg: r.alg,
  publicJwk: r.public_jwk,
  privateJwk: r.private_jwk,
  createdAt: Number(r.created_at),
  activatesAt: Number(r.activates_at),
  retiresAt: r.retires_at === null ? null : Number(r.retires_at),
});

export class SqlSigningKeys implements SigningKeyStore {
  private readonly db: SqlDriver;
  constructor(db: SqlDriver) {
    this.db = db;
  }

  async list(): Promise<SigningKey[]> {
    const rows = await this.db.all<KeyRow>(`SELECT * FROM signing_keys ORDER BY created_at, kid`);
    return rows.map(toKey);
  }

  private insert(tx: SqlDriver, k: SigningKey, first = false): Promise<number> {
    const onConflict = first ? ' ON CONFLICT DO NOTHING' : '';
    return tx.run(
      `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk, created_at, activates_at, retires_at, first_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)${onConflict}`,
      [k.kid, k.alg, k.publicJwk, k.privateJwk, k.createdAt, k.activatesAt, k.retiresAt, first ? 1 : null],
    );
  }

  async add(key: SigningKey, retireOthersAt?: number): Promise<void> {
    try {
      await this.db.transaction(async (tx) => {
        if (retireOthersAt !== undefined)
          await tx.run(`UPDATE signing_keys SET retires_at = ? WHERE retires_at IS NULL AND kid <> ?`, [
            retireOthersAt,
            key.kid,
          ]);
        await this.insert(tx, key);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new StoreConflictError(`signing key ${key.kid} exists`);
      throw err;
    }
  }

  async addFirst(key: SigningKey): Promise<boolean> {
    // One statement against the unique first_key index: atomic on both databases.
    return (await this.insert(this.db, key, true)) === 1;
  }

  deleteRetired(now: number): Promise<number> {
    return this.db.run(`DELETE FROM signing_keys WHERE retires_at IS NOT NULL AND retires_at <= ?`, [now]);
  }
}
