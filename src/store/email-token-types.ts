/**
 * Storage for the links Gatehouse mails (src/accounts/email-tokens.ts): email verification,
 * password reset, change of email address and invitations. Only the SHA-256 of a token is stored; the token itself exists in the mail
 * alone. Part of the Store contract (test/store/email-tokens-contract.ts).
 */

export type EmailTokenPurpose = 'verify_email' | 'reset_password' | 'change_email' | 'invite' | 'sign_in';

export interface EmailToken {
  /** SHA-256 of the token, base64url. */
  idHash: string;
  userId: string;
  purpose: EmailTokenPurpose;
  /**
   * The address the link was sent to; the link does nothing once the user's address is another.
   * For a change of address: the new address, which the link makes the user's.
   */
  email: string;
  /**
   * What else the token is bound to, compared when it is used: for a reset, a fingerprint of
   * the password hash it was issued against, so it dies when the password changes any other way
   * (an invitation too: it dies once a password is set); for a change of address, a fingerprint
   * of the address it replaces, so it dies when the address changes any other way.
   */
  binding: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  /** Set when a newer token of the same purpose was issued to the user. */
  supersededAt: number | null;
}

export type NewEmailToken = Omit<EmailToken, 'usedAt' | 'supersededAt'>;

export interface EmailTokenStore {
  /**
   * Adds a token and, in the same transaction, supersedes the user's earlier live tokens of the
   * same purpose: only the newest link works. Concurrent issues for one user are serialised.
   */
  issue(token: NewEmailToken): Promise<void>;
  get(idHash: string): Promise<EmailToken | undefined>;
  /**
   * Marks the token used and returns it, exactly once, while it is live: of this purpose, not
   * used, not superseded, not expired at `now`. Otherwise (a replay, a race lost) undefined.
   */
  consume(idHash: string, purpose: EmailTokenPurpose, now: number): Promise<EmailToken | undefined>;
  /** The users who hold a live token of this purpose at `now` (invited and not yet accepted, for 'invite'). */
  holders(purpose: EmailTokenPurpose, now: number): Promise<Set<string>>;
  /** Removes tokens that expired before `before`, at most `limit` (default 1000). Returns how many. */
  purgeExpired(before: number, limit?: number): Promise<number>;
}
