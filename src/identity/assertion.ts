import { decodeJwt } from 'jose';
import type { IdentityOptIn } from '../sites/index.ts';
import { presentedEmail, presentedName } from './headers.ts';
import type { ActiveSession } from '../sessions/index.ts';
import { ASSERTION_TYP } from '../verify/index.ts';
import type { KeyRing } from '../keys/keys.ts';
import type { Secrets } from '../keys/secrets.ts';

/**
 * X-Gatehouse-Assertion: a short-lived JWT that tells an app who the user is, signed with
 * the key ring, verifiable with /.well-known/jwks.json (or `gatehouse/verify`).
 *
 *   header  { alg: EdDSA | ES256, kid, typ: "gatehouse-assertion+jwt" }
 *   claims  iss (publicUrl), aud (the app's name), sub (user id), iat, exp, sid, amr,
 *           and email_verified (+ email, when presented) / name / groups when the app opts in
 *           with headers:, chosen and cleaned by the same functions as the X-User-* headers
 *           (identity/headers.ts), so header and claim never disagree
 *
 * Signing costs tens of microseconds, so each (session, app) pair's assertion is kept in
 * memory and sent again until shortly before it expires (see reuseMargin: 45 s of 60 s).
 * A cached assertion is used only for the same session, app, user version and signing key:
 * a new login (new session), a change to the user (updatedAt) or a key rotation signs anew.
 */

export { ASSERTION_TYP };

/** An assertion is sent again until this much of its lifetime is left: a quarter, at most a minute. */
const reuseMargin = (ttlMs: number) => Math.min(ttlMs / 4, 60_000);

export interface AssertionAudience {
  /** The app's name: the `aud`. */
  name: string;
  /** Which optional claims the app gets: those whose X-User-* header it gets (non-null). */
  headers: IdentityOptIn;
}

interface Entry {
  userId: string;
  userVersion: number;
  kid: string;
  reuseUntil: number;
  token: string | null;
  pending: Promise<string> | null;
}

/** The session's `sid` claim: a keyed hash of the stored session hash, never either of them. */
function sessionSid(secrets: Secrets, sessionIdHash: string): string {
  return secrets.mac('assertion sid', sessionIdHash).slice(0, 22);
}

export class Assertions {
  private readonly ring: KeyRing;
  private readonly secrets: Secrets;
  private readonly ttlMs: number;
  private readonly reuseMs: number;
  /** The least lifetime a reused assertion has left. */
  private readonly margin: number;
  /** Per app. */
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** app name → session id hash → entry. Both keys are strings the session cache keeps, so no key is built per request. */
  private readonly byApp = new Map<string, Map<string, Entry>>();

  constructor(
    ring: KeyRing,
    secrets: Secrets,
    options: {
      ttlMs: number;
      maxEntries?: number;
      now?: () => number;
      /**
       * How long a proxy may keep an answer that carries an assertion (forwardAuth.cacheFor):
       * one is sent again only while at least twice this much of its lifetime is left, so the
       * copy a proxy sends at the end of that time is still valid (config: assertionTtl > 2×).
       */
      cachedForMs?: number;
    },
  ) {
    this.ring = ring;
    this.secrets = secrets;
    this.ttlMs = options.ttlMs;
    this.margin = Math.max(reuseMargin(options.ttlMs), 2 * (options.cachedForMs ?? 0));
    this.reuseMs = options.ttlMs - this.margin;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** Entries held now (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const m of this.byApp.values()) n += m.size;
    return n;
  }

  /**
   * The assertion for this session at this app: the cached one (synchronously) while it is
   * fresh and still describes the same user, else a new signature. Parallel requests of one
   * session share one signature.
   */
  get(app: AssertionAudience, active: ActiveSession): string | Promise<string> {
    const { session, user } = active;
    const key = session.idHash;
    let cache = this.byApp.get(app.name);
    if (!cache) this.byApp.set(app.name, (cache = new Map()));
    const kid = this.ring.currentKid;
    const now = this.now();
    const hit = cache.get(key);
    if (hit && hit.userId === user.id && hit.userVersion === user.updatedAt && hit.kid === kid) {
      if (hit.token !== null && now < hit.reuseUntil) return hit.token;
      if (hit.pending) return hit.pending;
    }
    const entry: Entry = {
      userId: user.id,
      userVersion: user.updatedAt,
      kid,
      reuseUntil: 0,
      token: null,
      pending: null,
    };
    entry.pending = this.sign(app, active).then(
      (token) => {
        entry.token = token;
        // Never past its exp (whole seconds) minus the margin, whatever the clock said at signing.
        const expMs = (decodeJwt(token).exp ?? 0) * 1000;
        entry.reuseUntil = Math.min(now + this.reuseMs, expMs - this.margin);
        entry.pending = null;
        return token;
      },
      (err: unknown) => {
        if (cache.get(key) === entry) cache.delete(key);
        throw err;
      },
    );
    cache.delete(key);
    if (cache.size >= this.maxEntries) evict(cache, this.maxEntries, now);
    cache.set(key, entry);
    return entry.pending;
  }

  private sign(app: AssertionAudience, { session, user }: ActiveSession): Promise<string> {
    const claims: Record<string, unknown> = { sid: sessionSid(this.secrets, session.idHash), amr: session.amr };
    if (app.headers.email !== null) {
      // Always said, so an app that asked for addresses can tell "not verified yet" from "none sent".
      claims.email_verified = user.emailVerified;
      const email = presentedEmail(app.headers, user);
      if (email !== null) claims.email = email;
    }
    const name = presentedName(app.headers, user);
    if (name !== null) claims.name = name;
    if (app.headers.groups !== null) claims.groups = user.groups;
    return this.ring.sign(claims, { typ: ASSERTION_TYP, ttlMs: this.ttlMs, audience: app.name, subject: user.id });
  }
}

/** Drops stale entries, and the oldest ones if that is not enough (insertion order). */
function evict(cache: Map<string, Entry>, maxEntries: number, now: number): void {
  for (const [k, e] of cache) if (e.token !== null && now >= e.reuseUntil) cache.delete(k);
  let excess = cache.size - maxEntries + 1;
  if (excess <= 0) return;
  for (const k of cache.keys()) {
    cache.delete(k);
    if (--excess <= 0) break;
  }
}
