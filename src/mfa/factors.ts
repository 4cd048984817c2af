// mfa/ (feature): second factors for local accounts: passkeys (WebAuthn), authenticator apps (TOTP),
// recovery codes, the second-factor step after a first factor, step-up, and the accounts.mfa policy.
import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import { renderSVG } from 'uqr';
import type { Config } from '../config/schema.ts';
import type { Store, User } from '../store/index.ts';

/** What a second factor adds to a session's amr (RFC 8176); "mfa" marks two factors. */
export const MFA = 'mfa';
export const hasSecondFactor = (amr: readonly string[]): boolean => amr.includes(MFA);

/** amr after a first factor `amr` and a second one `method`, without duplicates. */
export function withFactor(amr: readonly string[], method: string): string[] {
  return [...new Set([...amr, method, MFA])];
}

export interface FactorSummary {
  passkeys: number;
  totp: boolean;
  recoveryCodes: number;
}

export const RECOVERY_CODE_COUNT = 10;
const TOTP_PERIOD = 30;
/** Ten groups of characters nobody confuses (no 0/O, 1/I/L): 50 bits each, two groups of five. */
const CODE_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

export interface MfaSecrets {
  mac(purpose: string, data: string): string;
  encrypt(plaintext: string, context: string): string;
  decrypt(ciphertext: string, context: string): string | undefined;
}

/**
 * The factors of a user, transport-free (the pages in routes.ts and the CLI call in here): which
 * ones are enrolled, TOTP enrolment and checks (replay refused by the last accepted time step),
 * recovery codes (stored by keyed hash, single use), and what the policy asks after a first factor.
 */
export class Factors {
  private readonly store: Store;
  private readonly secrets: MfaSecrets;
  private readonly config: Config;
  private readonly issuer: string;

  constructor(store: Store, secrets: MfaSecrets, config: Config) {
    this.store = store;
    this.secrets = secrets;
    this.config = config;
    this.issuer = config.title ?? new URL(config.publicUrl).hostname;
  }

  get policy(): 'off' | 'optional' | 'required' {
    return this.config.accounts.mfa;
  }

  async summary(userId: string): Promise<FactorSummary> {
    const [passkeys, totp, recoveryCodes] = await Promise.all([
      this.store.mfa.passkeys(userId),
      this.store.mfa.totp(userId),
      this.store.mfa.recoveryCodesLeft(userId),
    ]);
    return { passkeys: passkeys.length, totp: Boolean(totp?.confirmed), recoveryCodes };
  }

  /** The enrolled factor types, as /.auth/me and `users list` show them. */
  static types(s: FactorSummary): string[] {
    const t: string[] = [];
    if (s.passkeys) t.push('passkey');
    if (s.totp) t.push('totp');
    if (s.recoveryCodes) t.push('recovery_codes');
    return t;
  }

  static enrolled(s: FactorSummary): boolean {
    return s.passkeys > 0 || s.totp;
  }

  /**
   * What a user who has just proved `amr` needs before a session: nothing, the second-factor
   * step (they have a factor), or enrolment (accounts.mfa: required and they have none).
   * `require`: a provider sign-in whose provider says mfa: require.
   */
  async needs(user: User, amr: readonly string[], require = false): Promise<'none' | 'verify' | 'enrol'> {
    if (this.policy === 'off' || hasSecondFactor(amr)) return 'none';
    const s = await this.summary(user.id);
    if (Factors.enrolled(s)) return 'verify';
    if (this.policy === 'required' || require) return 'enrol';
    return 'none';
  }

  // ---- TOTP ---------------------------------------------------------------------------

  private totpOf(secret: string, label: string): TOTP {
    return new TOTP({
      issuer: this.issuer,
      label,
      algorithm: 'SHA1',
      digits: 6,
      period: TOTP_PERIOD,
      secret: Secret.fromBase32(secret),
    });
  }

  private context(userId: string): string {
    return `totp:${userId}`;
  }

  /**
   * Starts (or restarts) enrolling an authenticator app: a new seed, encrypted at rest. Returns
   * what the user scans or types; undefined when one is confirmed already.
   */
  async startTotp(user: User): Promise<{ secret: string; uri: string; qrSvg: string } | undefined> {
    const existing = await this.store.mfa.totp(user.id);
    if (existing?.confirmed) return undefined;
    const secret = new Secret({ size: 20 }).base32;
    if (!(await this.store.mfa.startTotp(user.id, this.secrets.encrypt(secret, this.context(user.id)), Date.now())))
      return undefined;
    return this.totpView(user, secret);
  }

  /** The enrolment view of an unconfirmed seed (the page shown again after a wrong code). */
  async pendingTotp(user: User): Promise<{ secret: string; uri: string; qrSvg: string } | undefined> {
    const existing = await this.store.mfa.totp(user.id);
    if (!existing || existing.confirmed) return undefined;
    const secret = this.secrets.decrypt(existing.secret, this.context(user.id));
    return secret ? this.totpView(user, secret) : undefined;
  }

  private totpView(user: User, secret: string): { secret: string; uri: string; qrSvg: string } {
    const uri = this.totpOf(secret, user.email).toString();
    return { secret: secret.replace(/(.{4})/g, '$1 ').trim(), uri, qrSvg: renderSVG(uri, { border: 2 }) };
  }

  /** The step a code is valid for (±1 step), or undefined. */
  private stepOf(secret: string, code: string, now: number): number | undefined {
    if (!/^\d{6}$/.test(code)) return undefined;
    const totp = this.totpOf(secret, '');
    const delta = totp.validate({ token: code, timestamp: now, window: 1 });
    return delta === null ? undefined : totp.counter({ timestamp: now }) + delta;
  }

  /** Confirms enrolment with a first code. */
  async confirmTotp(userId: string, code: string, now = Date.now()): Promise<boolean> {
    const f = await this.store.mfa.totp(userId);
    if (!f || f.confirmed) return false;
    const secret = this.secrets.decrypt(f.secret, this.context(userId));
    const step = secret ? this.stepOf(secret, code, now) : undefined;
    if (step === undefined) return false;
    return this.store.mfa.confirmTotp(userId, step);
  }

  /** A code from the user's app: right, and for a time step after the last one accepted (no replay). */
  async checkTotp(userId: string, code: string, now = Date.now()): Promise<boolean> {
    const f = await this.store.mfa.totp(userId);
    if (!f?.confirmed) return false;
    const secret = this.secrets.decrypt(f.secret, this.context(userId));
    const step = secret ? this.stepOf(secret, code, now) : undefined;
    if (step === undefined) return false;
    return this.store.mfa.useTotpStep(userId, step);
  }

  async removeTotp(userId: string): Promise<boolean> {
    return this.store.mfa.deleteTotp(userId);
  }

  // ---- recovery codes -------------------------------------------------------------------

  private hashCode(userId: string, code: string): string {
    // High-entropy codes: a keyed hash is enough (no password hashing needed), bound to the user.
    return createHmac('sha256', this.secrets.mac('recovery-code', userId)).update(code).digest('base64url');
  }

  /** New codes (replacing any), to show once. */
  async newRecoveryCodes(userId: string): Promise<string[]> {
    const codes: string[] = [];
    for (let i = 0; i < RECOVERY_CODE_COUNT; i++) {
      let c = '';
      for (let j = 0; j < 10; j++) c += CODE_ALPHABET[randomInt(CODE_ALPHABET.length)];
      codes.push(`${c.slice(0, 5)}-${c.slice(5)}`);
    }
    await this.store.mfa.replaceRecoveryCodes(
      userId,
      codes.map((c) => this.hashCode(userId, c)),
      Date.now(),
    );
    return codes;
  }

  /** Uses a recovery code once; returns how many are left, or undefined when it is not one. */
  async useRecoveryCode(userId: string, input: string): Promise<number | undefined> {
    const c = input.toLowerCase().replace(/[\s-]/g, '');
    if (!/^[a-z0-9]{10}$/.test(c)) return undefined;
    const code = `${c.slice(0, 5)}-${c.slice(5)}`;
    if (!(await this.store.mfa.useRecoveryCode(userId, this.hashCode(userId, code), Date.now()))) return undefined;
    return this.store.mfa.recoveryCodesLeft(userId);
  }
}

/** The enrolled factor types of a user, by the store alone (the CLI has no secrets to open seeds with). */
export async function factorTypes(store: Store, userId: string): Promise<string[]> {
  const [passkeys, totp, recoveryCodes] = await Promise.all([
    store.mfa.passkeys(userId),
    store.mfa.totp(userId),
    store.mfa.recoveryCodesLeft(userId),
  ]);
  return Factors.types({ passkeys: passkeys.length, totp: Boolean(totp?.confirmed), recoveryCodes });
}

/**
 * The operator's `users reset-mfa`: every factor of the user goes (passkeys, authenticator app,
 * recovery codes, half-done sign-ins), and with them every session and CLI/MCP login, which may
 * have been made with a factor the user lost to someone else.
 */
export async function resetFactors(store: Store, userId: string): Promise<void> {
  for (const p of await store.mfa.passkeys(userId)) await store.mfa.deletePasskey(userId, p.id);
  await store.mfa.deleteTotp(userId);
  await store.mfa.deleteRecoveryCodes(userId);
  await store.mfa.deletePendingByUser(userId);
  await store.sessions.deleteByUser(userId);
  await store.oauth.grants.revokeByUser(userId, Date.now(), 'mfa_reset');
}

/** Compares two short strings in constant time. */
export function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export const randomId = (): string => randomBytes(32).toString('base64url');
