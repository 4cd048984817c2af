// sessions/ (feature): server-side browser sessions: create, look up (cookie → session and user),
// expire, destroy.
import { hash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { expireCookie, readCookie, serializeCookie, type SessionCookie } from '../http/cookies.ts';
import type { Session, Store, User } from '../store/index.ts';

/**
 * Server-side sessions. The cookie holds 256 random bits; the store keeps only their
 * SHA-256, so a copy of the database does not hand out logins. Every login gets a new id
 * (no fixation), a session is valid only on the origin it was created on, and idle and
 * absolute timeouts are checked here, on the server, on every request.
 */

export interface ActiveSession {
  session: Session;
  user: User;
}

/** Why a cookie that was sent is of no use (for the loop-breaker's explanation). */
export type InvalidReason = 'ambiguous' | 'malformed' | 'unknown' | 'other_site' | 'disabled' | 'expired';

export type Lookup =
  | { state: 'none' }
  | { state: 'active'; active: ActiveSession }
  | { state: 'invalid'; reason: InvalidReason };

const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/;

const NONE: Lookup = { state: 'none' };
const ENDED: Lookup = { state: 'invalid', reason: 'expired' };

export const hashSessionId = (id: string): string => hash('sha256', id, 'base64url');

export interface SessionOptions {
  idleMs: number;
  absoluteMs: number;
  /** The clock of auth times (Session.authTime), as accounts/reauth.ts reads them; tests move it. */
  now?: () => number;
  /** sessions.maxPerUser: a sign-in past it ends the user's oldest sessions on that site. */
  maxPerUser?: number;
}

export class Sessions {
  private readonly store: Store;
  readonly idleMs: number;
  readonly absoluteMs: number;
  /** lastSeenAt is written at most this often per session: no disk write per request. */
  private readonly touchEveryMs: number;
  private readonly now: () => number;
  /**
   * Asked of every active session found, after its own checks: false (or a promise of false) ends
   * it for this request as expired. Set by the composition root for providers[].revalidate.
   */
  guard: ((active: ActiveSession) => boolean | Promise<boolean>) | undefined;
  /** Told of the sessions a sign-in past sessions.maxPerUser ended (the composition root logs them). */
  onLimit: ((userId: string, site: string, ended: number) => void) | undefined;
  private readonly maxPerUser: number | undefined;

  constructor(store: Store, options: SessionOptions) {
    this.store = store;
    this.now = options.now ?? Date.now;
    this.idleMs = options.idleMs;
    this.absoluteMs = options.absoluteMs;
    this.touchEveryMs = Math.min(60_000, Math.floor(options.idleMs / 10));
    this.maxPerUser = options.maxPerUser;
  }

  /** The cookie value of the request, if there is exactly one well-formed copy. */
  cookieValue(req: IncomingMessage, cookie: SessionCookie): string | undefined | null {
    const value = readCookie(req.headers.cookie, cookie.name);
    if (value === null) return null;
    return value !== undefined && COOKIE_VALUE.test(value) ? value : value === undefined ? undefined : null;
  }

  /**
   * Resolves the request's session for `site`. "invalid" means a cookie was sent but is of
   * no use (unknown, expired, another site's, ambiguous): the caller may clear it.
   * Throws when the store is unreachable, so protected routes fail closed.
   */
  async lookup(req: IncomingMessage, cookie: SessionCookie, site: string, now = Date.now()): Promise<Lookup> {
    const raw = readCookie(req.headers.cookie, cookie.name);
    if (raw === undefined) return NONE;
    if (raw === null) return { state: 'invalid', reason: 'ambiguous' };
    if (!COOKIE_VALUE.test(raw)) return { state: 'invalid', reason: 'malformed' };
    return this.guarded(this.judge(await this.store.sessions.getWithUser(hashSessionId(raw)), site, now));
  }

  /**
   * lookup() without a promise when the store has the session in memory and knows it is
   * current (the common request on SQLite: no microtask, no promise per request); otherwise
   * lookup() itself. Same answers, same errors (a failing store rejects the promise).
   */
  lookupNow(req: IncomingMessage, cookie: SessionCookie, site: string): Lookup | Promise<Lookup> {
    const sessions = this.store.sessions;
    if (!sessions.cachedWithUser) return this.lookup(req, cookie, site);
    const raw = readCookie(req.headers.cookie, cookie.name);
    if (raw === undefined) return NONE;
    if (raw === null || !COOKIE_VALUE.test(raw)) return this.lookup(req, cookie, site);
    let found: ActiveSession | undefined;
    try {
      found = sessions.cachedWithUser(hashSessionId(raw));
    } catch {
      return this.lookup(req, cookie, site);
    }
    return found ? this.guarded(this.judge(found, site, Date.now())) : this.lookup(req, cookie, site);
  }

  /**
   * The session with this id hash as a request would find it now (site, user, expiry, the
   * provider's guard), read from the store, without touching it: what an open WebSocket of it is
   * checked by (pipeline/tunnels.ts). Its traffic is not a request, so it never keeps the session
   * from going idle.
   */
  async recheck(idHash: string, site: string): Promise<Lookup> {
    return this.guarded(this.judge(await this.store.sessions.getWithUser(idHash), site, Date.now(), false));
  }

  private guarded(found: Lookup): Lookup | Promise<Lookup> {
    if (found.state !== 'active' || this.guard === undefined) return found;
    const stands = this.guard(found.active);
    if (stands === true) return found;
    if (stands === false) return ENDED;
    return stands.then((ok) => (ok ? found : ENDED));
  }

  /** Whether neither the absolute nor the idle expiry of a session has passed at `now`. */
  isLive(session: Session, now: number): boolean {
    return now < session.expiresAt && now < session.lastSeenAt + this.idleMs;
  }

  /** The session the store gave for the cookie, checked: site, user, expiry; touched now and then. */
  private judge(found: ActiveSession | undefined, site: string, now: number, touch = true): Lookup {
    if (!found) return { state: 'invalid', reason: 'unknown' };
    const { session, user } = found;
    if (session.site !== site) return { state: 'invalid', reason: 'other_site' };
    if (user.disabled) return { state: 'invalid', reason: 'disabled' };
    if (!this.isLive(session, now)) {
      this.store.sessions.delete(session.idHash).catch(() => {});
      return { state: 'invalid', reason: 'expired' };
    }
    if (touch && now - session.lastSeenAt >= this.touchEveryMs) {
      session.lastSeenAt = now;
      this.store.sessions.touch(session.idHash, now).catch(() => {});
    }
    return { state: 'active', active: found };
  }

  /**
   * Starts a new session for a user who just proved who they are, ending the one the
   * browser came with (if any). Returns the Set-Cookie value.
   */
  async create(
    user: User,
    site: string,
    cookie: SessionCookie,
    meta: {
      amr: string[];
      ip: string | null;
      userAgent: string | null;
      previous?: string | null;
      /** When the user proved who they are, if not now. */
      authTime?: number;
      /**
       * Single sign-on: the session on publicUrl's site this one is made from. It ends with that
       * one (the store deletes both), and never outlives its absolute expiry.
       */
      parent?: Session;
    },
  ): Promise<{ setCookie: string; idHash: string }> {
    if (meta.previous) await this.store.sessions.delete(hashSessionId(meta.previous));
    const id = randomBytes(32).toString('base64url');
    const now = Date.now();
    const idHash = hashSessionId(id);
    const expiresAt = Math.min(now + this.absoluteMs, meta.parent?.expiresAt ?? Infinity);
    await this.store.sessions.create({
      idHash,
      userId: user.id,
      site,
      createdAt: now,
      lastSeenAt: now,
      expiresAt,
      amr: meta.amr,
      ip: meta.ip,
      userAgent: meta.userAgent?.slice(0, 256) ?? null,
      authTime: meta.authTime ?? this.now(),
      ...(meta.parent ? { parentHash: meta.parent.idHash } : {}),
    });
    if (this.maxPerUser !== undefined) await this.limit(user.id, site, idHash, now);
    return {
      setCookie: serializeCookie(cookie.name, id, {
        secure: cookie.secure,
        path: cookie.path,
        maxAgeSeconds: Math.ceil((expiresAt - now) / 1000),
      }),
      idHash,
    };
  }

  /**
   * sessions.maxPerUser: the user's live sessions on the site beyond the limit end, oldest first;
   * the new one, `kept`, never does. (Two sign-ins at the same moment may each end one more than
   * needed: then fewer than the limit are left, never more.)
   */
  private async limit(userId: string, site: string, kept: string, now: number): Promise<void> {
    const live = (await this.store.sessions.listByUser(userId))
      .filter((s) => s.site === site && s.idHash !== kept && this.isLive(s, now))
      .sort((a, b) => b.createdAt - a.createdAt);
    const extra = live.slice(this.maxPerUser! - 1);
    if (extra.length === 0) return;
    for (const s of extra) await this.store.sessions.delete(s.idHash);
    this.onLimit?.(userId, site, extra.length);
  }

  async destroy(req: IncomingMessage, cookie: SessionCookie): Promise<string> {
    const value = this.cookieValue(req, cookie);
    if (value) await this.store.sessions.delete(hashSessionId(value));
    return expireCookie(cookie.name, { secure: cookie.secure, path: cookie.path });
  }

  /** Ends a session by its id hash (and the sessions single sign-on made from it). */
  async end(idHash: string): Promise<void> {
    await this.store.sessions.delete(idHash);
  }

  clear(cookie: SessionCookie): string {
    return expireCookie(cookie.name, { secure: cookie.secure, path: cookie.path });
  }
}
