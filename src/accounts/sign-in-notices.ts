import { describeUserAgent } from '../audit/index.ts';
import type { Config } from '../config/schema.ts';
import { readCookie, serializeCookie } from '../http/cookies.ts';
import type { RequestContext } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { Logger } from '../log/index.ts';
import type { Mailer } from '../mail/mailer.ts';
import { newSignInMail } from '../mail/messages.ts';
import type { User } from '../store/index.ts';
import type { Throttle } from './throttle.ts';

/** How long a browser is remembered as one its users signed in with: about as long as browsers keep a cookie. */
const KNOWN_MAX_AGE_S = 400 * 24 * 3600;
/** Accounts remembered per browser (a shared computer): the oldest is forgotten first. */
const KNOWN_MAX = 10;
/** Characters of each account's tag (base64url of an HMAC: 96 bits). */
const TAG_LENGTH = 16;

/** What the notices use (the composition root's Services satisfies it). */
export interface SignInNoticeDeps {
  config: Pick<Config, 'accounts'>;
  logger: Logger;
  secrets: Pick<Secrets, 'mac'>;
  throttle: Pick<Throttle, 'deviceNonce' | 'takeMail'>;
  /** Own routes' prefix, publicUrl's base path included. */
  prefix: string;
  /** A provider's display name by its id (providers/service.ts), for "a sign-in at <name>". */
  providerName(id: string): string | undefined;
}

/**
 * "New sign-in to your account" (`accounts.newSignInNotice`, with email): every browser sign-in
 * leaves a cookie with a tag for the account (an HMAC of its id under the master key, so a tag
 * cannot be made up for another account), up to ten accounts per browser. A sign-in from a
 * browser without the account's tag mails its owner when, from where and how, with the way to
 * end that session and to change the password: a password or a provider account used by
 * someone else is noticed even when nothing else looks wrong. At a password sign-in without a
 * second factor, a browser that signed in with the password before this existed (its
 * brute-force device cookie for the address, read from the request) counts as known; after a
 * second factor it cannot count, as the first factor has just set it. First sign-ins (a
 * registration, an invitation, an account a provider sign-in made) only leave the tag. Only
 * verified addresses are written to.
 */
export class SignInNotices {
  private readonly d: SignInNoticeDeps;
  private readonly mailer: Mailer | undefined;

  constructor(deps: SignInNoticeDeps, mailer: Mailer | undefined) {
    this.d = deps;
    this.mailer = mailer;
  }

  private tag(userId: string): string {
    return this.d.secrets.mac('known-browser', userId).slice(0, TAG_LENGTH);
  }

  /** The tags of the accounts this browser signed in to, most recent first. */
  private tags(ctx: RequestContext): string[] {
    const value = readCookie(ctx.req.headers.cookie, ctx.site.cookies.known);
    if (!value) return [];
    return value
      .split('.')
      .filter((t) => t.length === TAG_LENGTH && /^[A-Za-z0-9_-]+$/.test(t))
      .slice(0, KNOWN_MAX);
  }

  /**
   * A sign-in of `user` succeeded in this browser: the Set-Cookie that remembers it, and, when
   * the browser was not the user's yet (and this is not their first sign-in), the notice.
   * `amr`: how they signed in (the session's amr: pwd, idp:<id>, otp, a passkey's). `deviceCookie`:
   * a password sign-in in one step, whose request's device cookie may show an earlier one.
   */
  seen(
    ctx: RequestContext,
    user: User,
    amr: readonly string[],
    o: { first?: boolean; deviceCookie?: boolean } = {},
  ): string {
    const tags = this.tags(ctx);
    const tag = this.tag(user.id);
    const known =
      tags.includes(tag) ||
      (o.deviceCookie === true &&
        this.d.throttle.deviceNonce(readCookie(ctx.req.headers.cookie, ctx.site.cookies.device), user.email) !==
          undefined);
    if (!known && !o.first)
      this.notify(
        ctx,
        user,
        signInMethod(amr, (id) => this.d.providerName(id) ?? id),
      );
    const value = [tag, ...tags.filter((t) => t !== tag)].slice(0, KNOWN_MAX).join('.');
    return serializeCookie(ctx.site.cookies.known, value, {
      secure: ctx.site.secure,
      path: ctx.site.cookiePath,
      maxAgeSeconds: KNOWN_MAX_AGE_S,
    });
  }

  private notify(ctx: RequestContext, user: User, method: string): void {
    if (!this.mailer || !this.d.config.accounts.newSignInNotice || !user.emailVerified) return;
    const site = ctx.site;
    const at = Date.now();
    const device = describeUserAgent(ctx.req.headers['user-agent']);
    const ip = ctx.ip;
    this.d.logger.info(
      { event: 'new_sign_in_notice', userId: user.id, requestId: ctx.requestId },
      'sign-in from a browser new to the account: its owner is told',
    );
    this.mailer.send({
      kind: 'new_sign_in',
      userId: user.id,
      prepare: async () => {
        if (!(await this.d.throttle.takeMail(user.email)).ok) return undefined;
        return {
          to: user.email,
          fromName: site.title,
          ...newSignInMail({
            appTitle: site.title,
            email: user.email,
            at,
            device,
            ip,
            method,
            accountUrl: `${site.origin}${this.d.prefix}${paths.account}`,
            forgotUrl: `${site.origin}${this.d.prefix}${paths.forgotPassword}`,
          }),
        };
      },
    });
  }
}

/** How a sign-in was proved, in words, from its amr (pwd, idp:<id>, otp, a passkey's, recovery, email). */
function signInMethod(amr: readonly string[], providerName: (id: string) => string): string {
  const parts: string[] = [];
  for (const a of amr) {
    if (a === 'pwd') parts.push('the password');
    else if (a.startsWith('idp:')) parts.push(`a sign-in at ${providerName(a.slice(4))}`);
    else if (a === 'otp') parts.push('an authenticator app code');
    else if (a === 'hwk' || a === 'swk' || a === 'passkey') parts.push('a passkey');
    else if (a === 'recovery') parts.push('a recovery code');
    else if (a === 'email') parts.push('a sign-in link mailed to this address');
  }
  return parts.length ? [...new Set(parts)].join(' and ') : 'a sign-in';
}
