import { hash, randomBytes } from 'node:crypto';
import type { EmailToken, EmailTokenPurpose, Store, User } from '../store/index.ts';

/**
 * The tokens in the links Gatehouse mails: email verification, password reset, change of
 * address (email-change.ts) and invitations (invitations.ts).
 *   - 256 random bits, base64url (43 characters); the store keeps only their SHA-256.
 *   - Bound to the user and to the address the link was sent to; a reset token also to the
 *     password hash it was issued against, so it dies when the password changes any other way.
 *   - Single-use (an atomic UPDATE ... RETURNING), expiring, and superseded by a newer token
 *     of the same purpose (only the newest link works).
 * `check` reads without using (pages shown by GET never change anything); `consume` uses.
 */

export type LinkProblem = 'invalid' | 'used' | 'superseded' | 'expired' | 'changed';

export type LinkCheck = { ok: true; token: EmailToken; user: User } | { ok: false; problem: LinkProblem };

const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export const hashToken = (token: string): string => hash('sha256', token, 'base64url');

/** What a reset token is bound to besides the user: the password hash of the moment, hashed. */
function passwordFingerprint(passwordHash: string | null): string {
  return hash('sha256', `pw:${passwordHash ?? ''}`, 'base64url');
}

/**
 * What a change-of-address token is bound to: the address it replaces and the password hash of
 * the moment, hashed. A password change or reset (what the notice to the old address advises)
 * cancels the change.
 */
function addressFingerprint(user: User): string {
  return hash('sha256', `email:${user.email}\npw:${user.passwordHash ?? ''}`, 'base64url');
}

/** Purposes whose token dies when the password changes (a reset; an invitation, once a password is set). */
const PASSWORD_BOUND: readonly EmailTokenPurpose[] = ['reset_password', 'invite'];

export class EmailTokens {
  private readonly store: Store;
  private readonly now: () => number;

  constructor(store: Store, options: { now?: () => number } = {}) {
    this.store = store;
    this.now = options.now ?? Date.now;
  }

  /**
   * A new token for `user` (superseding their earlier ones of this purpose). Returns the token
   * to mail. `to`: the new address, for a change of address (change_email).
   */
  async issue(user: User, purpose: EmailTokenPurpose, ttlMs: number, to?: string): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    const now = this.now();
    if ((purpose === 'change_email') !== (to !== undefined)) throw new Error('a new address is for change_email only');
    await this.store.emailTokens.issue({
      idHash: hashToken(token),
      userId: user.id,
      purpose,
      email: to ?? user.email,
      binding: PASSWORD_BOUND.includes(purpose)
        ? passwordFingerprint(user.passwordHash)
        : purpose === 'change_email'
          ? addressFingerprint(user)
          : '',
      createdAt: now,
      expiresAt: now + ttlMs,
    });
    return token;
  }

  /** Whether the token would work now, without using it. */
  async check(token: string | null | undefined, purpose: EmailTokenPurpose): Promise<LinkCheck> {
    if (typeof token !== 'string' || !TOKEN.test(token)) return { ok: false, problem: 'invalid' };
    const found = await this.store.emailTokens.get(hashToken(token));
    if (!found || found.purpose !== purpose) return { ok: false, problem: 'invalid' };
    if (found.usedAt !== null) return { ok: false, problem: 'used' };
    if (found.supersededAt !== null) return { ok: false, problem: 'superseded' };
    if (this.now() >= found.expiresAt) return { ok: false, problem: 'expired' };
    return this.bound(found);
  }

  /** Uses the token: once, atomically (of two concurrent uses one wins), then checks its bindings. */
  async consume(token: string | null | undefined, purpose: EmailTokenPurpose): Promise<LinkCheck> {
    if (typeof token !== 'string' || !TOKEN.test(token)) return { ok: false, problem: 'invalid' };
    const used = await this.store.emailTokens.consume(hashToken(token), purpose, this.now());
    if (!used) {
      const why = await this.check(token, purpose);
      return why.ok ? { ok: false, problem: 'used' } : why;
    }
    return this.bound(used);
  }

  /** The user the token is for, if they still are who it was sent to. */
  private async bound(token: EmailToken): Promise<LinkCheck> {
    const user = await this.store.users.get(token.userId);
    if (!user || user.disabled) return { ok: false, problem: 'invalid' };
    if (token.purpose === 'change_email') {
      if (addressFingerprint(user) !== token.binding) return { ok: false, problem: 'changed' };
    } else if (user.email !== token.email) return { ok: false, problem: 'changed' };
    if (PASSWORD_BOUND.includes(token.purpose) && passwordFingerprint(user.passwordHash) !== token.binding)
      return { ok: false, problem: 'changed' };
    return { ok: true, token, user };
  }

  /** Drops tokens that expired more than a day ago (kept that long to say "expired", not "invalid"). */
  purgeExpired(): Promise<number> {
    return this.store.emailTokens.purgeExpired(this.now() - 86_400_000);
  }
}
