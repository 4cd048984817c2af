// accounts/ (feature): local accounts: registration and password login, throttling, display names, the
// sign-in, account, verification and password-reset pages, mailed links, re-authentication before
// sensitive actions (reauth.ts), change of address (email-change.ts) and invitations (invitations.ts).
import type { Config } from '../config/schema.ts';
import { StoreConflictError, type OutboxWrite, type Store, type User } from '../store/index.ts';
import { normalizeEmail } from '../config/email.ts';
import { checkDisplayName } from './names.ts';
import {
  dummyHash,
  hashPassword,
  MAX_PASSWORD_CHARS,
  needsRehash,
  passwordProblem,
  verifyPassword,
} from './passwords.ts';
import type { Throttle } from './throttle.ts';
import { type AppEventSink, NO_EVENTS } from '../events/index.ts';

export type FieldErrors = Partial<Record<'email' | 'password' | 'name' | 'form', string>>;

export type RegisterResult =
  | { ok: true; user: User; deviceCookie: string }
  | { ok: false; status: 400 | 403 | 409 | 429; errors: FieldErrors; retryAfterSeconds?: number };

/** A failed login names the account it was for, when there is one (the audit trail; never shown to the client). */
export type LoginResult =
  | { ok: true; user: User; deviceCookie: string }
  | {
      ok: false;
      status: 400 | 401 | 403 | 429;
      errors: FieldErrors;
      retryAfterSeconds?: number;
      userId?: string;
      email?: string;
    };

/** One message for a wrong password and an unknown email: nothing tells them apart (security.md #41). */
export const BAD_CREDENTIALS = 'The email or password is not correct.';

/** The answer to a sign-up whose address has an account: the same whether it is a password or a passkey one. */
const addressTaken = () => ({
  ok: false as const,
  status: 409 as const,
  errors: { email: 'This address cannot be used to register. If it is yours, sign in instead.' },
});

/**
 * Local accounts: registration, password login and the operator's changes. Transport-free:
 * the HTTP routes and the CLI both call in here.
 */
export class Accounts {
  private readonly store: Store;
  private readonly throttle: Throttle;
  private readonly config: Config['accounts'];
  private readonly events: AppEventSink;

  constructor(store: Store, throttle: Throttle, config: Config['accounts'], events: AppEventSink = NO_EVENTS) {
    this.store = store;
    this.throttle = throttle;
    this.config = config;
    this.events = events;
  }

  /**
   * Why no one may register here now (closed, or by invitation only), or undefined. Both ways of
   * registering (a password, register(); a passkey, checkSignUp()) ask this, so neither gets past
   * accounts.registration.
   */
  private registrationClosed(): { ok: false; status: 403; errors: FieldErrors } | undefined {
    if (this.config.registration === 'open') return undefined;
    return {
      ok: false,
      status: 403,
      errors: {
        form:
          this.config.registration === 'invite'
            ? 'Accounts here are by invitation only. Ask an administrator to invite you.'
            : 'Registration is closed. Ask an administrator for an account.',
      },
    };
  }

  /** The per-IP limit on sign-ups, shared by both ways of registering. */
  private async registrationThrottled(
    ip: string,
  ): Promise<{ ok: false; status: 429; errors: FieldErrors; retryAfterSeconds?: number } | undefined> {
    const verdict = await this.throttle.checkRegistration(ip);
    if (verdict.ok) return undefined;
    return {
      ok: false,
      status: 429,
      errors: { form: 'Too many sign-ups from your network. Try again later.' },
      retryAfterSeconds: verdict.retryAfterSeconds,
    };
  }

  /**
   * register()'s checks for an account without a password (a passkey sign-up, mfa/): registration
   * open, the address and the name, the per-IP limit. Returns what to create, or why not.
   */
  async checkSignUp(
    input: { email?: string; name?: string },
    ip: string,
  ): Promise<
    | { ok: true; email: string; name: string | null }
    | { ok: false; status: 400 | 403 | 429; errors: FieldErrors; retryAfterSeconds?: number }
  > {
    const refused = this.registrationClosed();
    if (refused) return refused;
    const errors: FieldErrors = {};
    const email = normalizeEmail(input.email);
    const emailProblem = this.signUpAddressProblem(email);
    if (emailProblem) errors.email = emailProblem;
    const named = checkDisplayName(input.name);
    if (!named.ok) errors.name = named.error;
    if (Object.keys(errors).length || !email || !named.ok) return { ok: false, status: 400, errors };
    const throttled = await this.registrationThrottled(ip);
    if (throttled) return throttled;
    return { ok: true, email, name: named.name };
  }

  /** Creates a user without a password, under `id` (checked by checkSignUp first); 409 when the address is taken. */
  async createWithoutPassword(
    id: string,
    email: string,
    name: string | null,
  ): Promise<{ ok: true; user: User } | { ok: false; status: 409; errors: FieldErrors }> {
    try {
      return { ok: true, user: await this.store.users.create({ id, email, name, passwordHash: null }) };
    } catch (err) {
      if (err instanceof StoreConflictError) return addressTaken();
      throw err;
    }
  }

  /** Why an address cannot sign up (none given, or outside accounts.allowedDomains), or undefined. */
  private signUpAddressProblem(email: string | undefined): string | undefined {
    if (!email) return 'Enter an email address like name@example.com.';
    const domains = this.config.allowedDomains;
    if (domains && !domains.some((d) => email.endsWith(`@${d.toLowerCase()}`)))
      return `Use an address at ${domains.join(' or ')}.`;
    return undefined;
  }

  async register(input: { email?: string; password?: string; name?: string }, ip: string): Promise<RegisterResult> {
    const refused = this.registrationClosed();
    if (refused) return refused;
    const errors: FieldErrors = {};
    const email = normalizeEmail(input.email);
    const emailProblem = this.signUpAddressProblem(email);
    if (emailProblem) errors.email = emailProblem;
    const password = input.password ?? '';
    const problem = passwordProblem(password, { minLength: this.config.minPasswordLength, email });
    if (problem) errors.password = problem;
    const named = checkDisplayName(input.name);
    if (!named.ok) errors.name = named.error;
    const name = named.ok ? named.name : null;
    if (Object.keys(errors).length) return { ok: false, status: 400, errors };

    const throttled = await this.registrationThrottled(ip);
    if (throttled) return throttled;

    // Hash first, whether or not the address is taken, so both answers take as long.
    const passwordHash = await hashPassword(password);
    try {
      const user = await this.store.users.create({ email: email!, passwordHash, name });
      // The browser that registered is its owner's: it may sign in past an attacker's lock-out.
      return { ok: true, user, deviceCookie: this.throttle.newDeviceCookie(user.email) };
    } catch (err) {
      if (err instanceof StoreConflictError) return addressTaken();
      throw err;
    }
  }

  async login(
    input: { email?: string; password?: string },
    ip: string,
    deviceCookie: string | null | undefined,
  ): Promise<LoginResult> {
    const email = normalizeEmail(input.email);
    const password = input.password ?? '';
    if (!email || !password) {
      const errors: FieldErrors = {};
      if (!email) errors.email = 'Enter your email address.';
      if (!password) errors.password = 'Enter your password.';
      return { ok: false, status: 400, errors };
    }
    const nonce = this.throttle.deviceNonce(deviceCookie, email);
    const verdict = await this.throttle.attemptLogin(ip, email, nonce);
    if (!verdict.ok)
      return {
        ok: false,
        status: 429,
        errors: { form: 'Too many failed attempts. Wait a few minutes and try again.' },
        retryAfterSeconds: verdict.retryAfterSeconds,
        // For the audit trail: the owner sees throttled guesses at their account.
        userId: (await this.store.users.getByEmail(email))?.id,
        email,
      };

    const user = await this.store.users.getByEmail(email);
    // Over-long input is wrong for every account alike: refused before any hashing.
    const valid =
      password.length <= MAX_PASSWORD_CHARS * 4 &&
      (await verifyPassword(password, user?.passwordHash ?? (await dummyHash())));
    if (!user || !user.passwordHash || !valid) {
      return { ok: false, status: 401, errors: { form: BAD_CREDENTIALS }, userId: user?.id, email };
    }
    if (user.disabled)
      return {
        ok: false,
        status: 403,
        errors: { form: 'This account is disabled. Contact an administrator.' },
        userId: user.id,
        email,
      };
    await this.throttle.loginSucceeded(ip, email, nonce);
    if (needsRehash(user.passwordHash))
      await this.store.users.update(user.id, { passwordHash: await hashPassword(password) });
    return { ok: true, user, deviceCookie: this.throttle.newDeviceCookie(email) };
  }

  /** Operator or reset flow: sets a new password and ends every session of the user, CLI and MCP logins included. */
  async setPassword(
    userId: string,
    password: string,
    keepSessionHash?: string,
  ): Promise<{ ok: true } | { ok: false; error: string }> {
    const user = await this.store.users.get(userId);
    if (!user) return { ok: false, error: 'no such user' };
    const problem = passwordProblem(password, { minLength: this.config.minPasswordLength, email: user.email });
    if (problem) return { ok: false, error: problem };
    await this.replacePassword(userId, await hashPassword(password), keepSessionHash);
    return { ok: true };
  }

  /**
   * Stores a password that was checked and hashed already, and ends every session of the user
   * but `keepSessionHash` (security.md #27). `patch`: more to change at once (a reset link proves
   * the address, so it also verifies it).
   */
  async replacePassword(
    userId: string,
    passwordHash: string,
    keepSessionHash?: string,
    patch: { emailVerified?: boolean } = {},
  ): Promise<void> {
    await this.store.users.update(userId, { ...patch, passwordHash });
    await this.store.sessions.deleteByUser(userId, keepSessionHash);
    await this.store.oauth.grants.revokeByUser(userId, Date.now(), 'password_changed');
  }

  /**
   * A signed-in user changes their password: the current one is checked (counted like a
   * login attempt, so a stolen session cannot guess it at leisure), the new one follows the
   * registration rules; every other session ends, `keepSessionHash` (theirs) stays.
   */
  async changePassword(
    user: User,
    input: { currentPassword?: string; password?: string },
    ip: string,
    deviceCookie: string | null | undefined,
    keepSessionHash: string,
  ): Promise<
    | { ok: true }
    | {
        ok: false;
        status: 400 | 401 | 409 | 429;
        errors: Partial<Record<'currentPassword' | 'password' | 'form', string>>;
        retryAfterSeconds?: number;
      }
  > {
    if (!user.passwordHash)
      return {
        ok: false,
        status: 409,
        errors: {
          form: 'This account has no password yet. To set one, use "Forgot your password?" on the sign-in page.',
        },
      };
    const current = input.currentPassword ?? '';
    const password = input.password ?? '';
    const errors: Partial<Record<'currentPassword' | 'password', string>> = {};
    if (!current) errors.currentPassword = 'Enter your current password.';
    const problem = passwordProblem(password, { minLength: this.config.minPasswordLength, email: user.email });
    if (problem) errors.password = problem;
    else if (password.normalize('NFKC') === current.normalize('NFKC'))
      errors.password = 'Choose a password other than your current one.';
    if (Object.keys(errors).length) return { ok: false, status: 400, errors };
    const checked = await this.checkPassword(user, current, ip, deviceCookie);
    if (!checked.ok)
      return checked.status === 429
        ? { ok: false, status: 429, errors: { form: checked.error }, retryAfterSeconds: checked.retryAfterSeconds }
        : { ok: false, status: 401, errors: { currentPassword: 'The current password is not correct.' } };
    await this.replacePassword(user.id, await hashPassword(password), keepSessionHash);
    return { ok: true };
  }

  /**
   * Checks the password of a signed-in user (re-authentication, the password change form),
   * counted and throttled exactly like a sign-in attempt for the account: a stolen session
   * cannot guess it at leisure.
   */
  async checkPassword(
    user: User,
    password: string,
    ip: string,
    deviceCookie: string | null | undefined,
  ): Promise<{ ok: true } | { ok: false; status: 401 | 429; error: string; retryAfterSeconds?: number }> {
    const nonce = this.throttle.deviceNonce(deviceCookie, user.email);
    const verdict = await this.throttle.attemptLogin(ip, user.email, nonce);
    if (!verdict.ok)
      return {
        ok: false,
        status: 429,
        error: 'Too many failed attempts. Wait a few minutes and try again.',
        retryAfterSeconds: verdict.retryAfterSeconds,
      };
    const valid =
      user.passwordHash !== null &&
      password.length <= MAX_PASSWORD_CHARS * 4 &&
      (await verifyPassword(password, user.passwordHash));
    if (!valid) return { ok: false, status: 401, error: 'The password is not correct.' };
    await this.throttle.loginSucceeded(ip, user.email, nonce);
    return { ok: true };
  }

  /** Disables or enables the account; the apps that take events are told when that changed it. */
  async setDisabled(userId: string, disabled: boolean): Promise<User | undefined> {
    const before = await this.store.users.get(userId);
    if (!before) return undefined;
    const update = (outbox?: OutboxWrite) => this.store.users.update(userId, { disabled }, outbox);
    const user =
      before.disabled === disabled
        ? await update()
        : await this.events.record({ type: disabled ? 'account_disabled' : 'account_enabled', userId }, update);
    if (user && disabled) {
      await this.store.sessions.deleteByUser(userId);
      await this.store.oauth.grants.revokeByUser(userId, Date.now(), 'account_disabled');
    }
    return user;
  }
}
