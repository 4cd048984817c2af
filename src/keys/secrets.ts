import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hash,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import type { Config } from '../config/schema.ts';
import type { KeyValueStore } from '../store/types.ts';

/**
 * Key material, all derived from one master key with HKDF-SHA256 so each use has its own
 * key. The master comes from config (`secrets.key`, usually ${ENV}); without one, a random
 * key is generated on first start and kept in the store so the demo needs no set-up and
 * every node of a cluster agrees. Encryption at rest is AES-256-GCM; each ciphertext names
 * its key, so `secrets.previousKeys` keeps older data readable during a rotation.
 */
export interface Secrets {
  /** Where the master key came from, for `gatehouse check` and the startup log. */
  readonly source: 'config' | 'store';
  mac(purpose: string, data: string): string;
  /** Checks against the current master key and secrets.previousKeys; `length`: a truncated MAC. */
  verifyMac(purpose: string, data: string, mac: string, length?: number): boolean;
  encrypt(plaintext: string, context: string): string;
  decrypt(ciphertext: string, context: string): string | undefined;
}

export class SecretsError extends Error {}

function decodeKey(text: string, what: string): Buffer {
  const t = text.trim();
  const key =
    /^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0
      ? Buffer.from(t, 'hex')
      : Buffer.from(t, /[-_]/.test(t) ? 'base64url' : 'base64');
  if (key.length < 32)
    throw new SecretsError(
      `${what} must be at least 32 random bytes, as hex or base64 (generate one with: openssl rand -base64 32)`,
    );
  return key;
}

const keyId = (key: Buffer) => hash('sha256', key, 'base64url').slice(0, 8);

class DerivedSecrets implements Secrets {
  readonly source: 'config' | 'store';
  private readonly masters: Buffer[];
  private readonly macKeys = new Map<string, Buffer>();
  private readonly encKeys: Map<string, Buffer>;
  private readonly currentKid: string;

  constructor(masters: Buffer[], source: 'config' | 'store') {
    this.masters = masters;
    this.source = source;
    this.encKeys = new Map(masters.map((m) => [keyId(m), this.derive(m, 'encryption')]));
    this.currentKid = keyId(masters[0]!);
  }

  private derive(master: Buffer, purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `gatehouse ${purpose}`, 32));
  }

  /** The MAC key for `purpose` under master `i` (0: the current key, then secrets.previousKeys). */
  private macKey(purpose: string, i = 0): Buffer {
    const name = i === 0 ? purpose : `${i} ${purpose}`;
    let k = this.macKeys.get(name);
    if (!k) {
      k = this.derive(this.masters[i]!, `mac ${purpose}`);
      this.macKeys.set(name, k);
    }
    return k;
  }

  mac(purpose: string, data: string): string {
    return createHmac('sha256', this.macKey(purpose)).update(data).digest('base64url');
  }

  /**
   * Whether `mac` is data's MAC (its first `length` characters, when given) under the current
   * master key or one of secrets.previousKeys: what was made before a rotation still checks.
   */
  verifyMac(purpose: string, data: string, mac: string, length?: number): boolean {
    const given = Buffer.from(mac);
    for (let i = 0; i < this.masters.length; i++) {
      const full = createHmac('sha256', this.macKey(purpose, i)).update(data).digest('base64url');
      const expected = Buffer.from(length === undefined ? full : full.slice(0, length));
      if (given.length === expected.length && timingSafeEqual(given, expected)) return true;
    }
    return false;
  }

  encrypt(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.encKeys.get(this.currentKid)!, iv);
    cipher.setAAD(Buffer.from(context));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `v1.${this.currentKid}.${iv.toString('base64url')}.${ct.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`;
  }

  decrypt(ciphertext: string, context: string): string | undefined {
    const [v, kid, iv, ct, tag] = ciphertext.split('.');
    const key = kid && this.encKeys.get(kid);
    if (v !== 'v1' || !key || !iv || ct === undefined || !tag) return undefined;
    try {
      const d = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      d.setAAD(Buffer.from(context));
      d.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}

export async function loadSecrets(config: Config['secrets'], kv: KeyValueStore): Promise<Secrets> {
  if (config.key) {
    const masters = [
      decodeKey(config.key, 'secrets.key'),
      ...config.previousKeys.map((k, i) => decodeKey(k, `secrets.previousKeys[${i}]`)),
    ];
    return new DerivedSecrets(masters, 'config');
  }
  const stored = await kv.putIfAbsent('master_key', randomBytes(32).toString('base64url'));
  return new DerivedSecrets([decodeKey(stored, 'the stored master key')], 'store');
}

/** For tests and tools: secrets from a fixed key. */
export function secretsFromKey(key: string): Secrets {
  return new DerivedSecrets([decodeKey(key, 'key')], 'config');
}
