import { hash, randomBytes } from 'node:crypto';
import type { RequestContext } from '../http/context.ts';
import { expireCookie, readCookie, serializeCookie } from '../http/cookies.ts';
import type { MfaPending, PendingPurpose, Store } from '../store/index.ts';

/** How long a half-done sign-in (password right, factor pending) or a WebAuthn ceremony lives. */
export const PENDING_TTL_MS = 5 * 60_000;
const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/;

const hashId = (id: string): string => hash('sha256', id, 'base64url');

/**
 * The half-signed-in record (security.md #210): a random id in a short-lived cookie of its own,
 * bound to the browser and the site, kept server-side by its SHA-256. It is never a session: the
 * session cookie is not set until the second factor is proved, so no route, app, token endpoint
 * or device approval can accept it; only the second-factor step reads it.
 */
export class Pending {
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  async create(
    ctx: RequestContext,
    p: { userId: string | null; purpose: PendingPurpose; amr: string[]; returnTo: string; data?: object },
    challenge: string | null = null,
  ): Promise<{ record: MfaPending; setCookie: string }> {
    const id = randomBytes(32).toString('base64url');
    const now = Date.now();
    const record: MfaPending = {
      idHash: hashId(id),
      userId: p.userId,
      site: ctx.site.origin,
      purpose: p.purpose,
      amr: p.amr,
      returnTo: p.returnTo,
      challenge,
      data: JSON.stringify(p.data ?? {}),
      createdAt: now,
      expiresAt: now + PENDING_TTL_MS,
    };
    // The browser's previous one (another attempt) ends.
    const previous = this.cookieValue(ctx);
    if (previous) await this.store.mfa.deletePending(hashId(previous));
    await this.store.mfa.createPending(record);
    return {
      record,
      setCookie: serializeCookie(ctx.site.cookies.mfa, id, {
        secure: ctx.site.secure,
        path: ctx.site.cookiePath,
        maxAgeSeconds: PENDING_TTL_MS / 1000,
      }),
    };
  }

  private cookieValue(ctx: RequestContext): string | undefined {
    const v = readCookie(ctx.req.headers.cookie, ctx.site.cookies.mfa);
    return v && COOKIE_VALUE.test(v) ? v : undefined;
  }

  /** The browser's live record of one of `purposes` on this site, or undefined. */
  async get(ctx: RequestContext, ...purposes: PendingPurpose[]): Promise<MfaPending | undefined> {
    const v = this.cookieValue(ctx);
    if (!v) return undefined;
    const r = await this.store.mfa.pending(hashId(v));
    if (!r || r.site !== ctx.site.origin || !purposes.includes(r.purpose)) return undefined;
    if (Date.now() >= r.expiresAt) {
      await this.store.mfa.deletePending(r.idHash);
      return undefined;
    }
    if (r.userId) {
      const user = await this.store.users.get(r.userId);
      if (!user || user.disabled) return undefined;
    }
    return r;
  }

  async end(record: MfaPending): Promise<void> {
    await this.store.mfa.deletePending(record.idHash);
  }

  clear(ctx: RequestContext): string {
    return expireCookie(ctx.site.cookies.mfa, { secure: ctx.site.secure, path: ctx.site.cookiePath });
  }
}
