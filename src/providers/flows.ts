import { hash, randomBytes } from 'node:crypto';
import * as oauth from 'openid-client';
import { readCookie, serializeCookie } from '../http/cookies.ts';
import type { RequestContext } from '../http/context.ts';
import type { LoginState, Store } from '../store/index.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { FlowError } from './client.ts';

/**
 * The browser-bound, single-use state of a sign-in at a provider. When a flow starts, a
 * random `state` goes to the provider and a server-side record keyed by its hash keeps the
 * provider id, the site, the purpose (login or link, and for a link the session that asked),
 * the return path, and the PKCE verifier and nonce (encrypted). The record is bound to this
 * browser by a short-lived random cookie whose hash it stores, so a code and state planted
 * in another browser (login CSRF, security.md #30-31) lead nowhere. The callback consumes the
 * record exactly once (a replay fails) and only on the provider and site that started it
 * (mix-up, security.md #34). The return target comes from the record, never from the callback
 * (security.md #13).
 */

const LOGIN_STATE_TTL_MS = 10 * 60_000;
const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/;
const STATE_VALUE = /^[A-Za-z0-9_-]{43}$/;

const sha256 = (s: string) => hash('sha256', s, 'base64url');

/** A flow's random values, made before anything is stored (the provider may still be down). */
export interface PreparedFlow {
  state: string;
  nonce: string;
  codeVerifier: string;
  codeChallenge: string;
}

export type FinishedFlow =
  | { ok: true; record: LoginState; codeVerifier: string; nonce: string; state: string }
  | { ok: false; code: FlowError; record?: LoginState };

export class LoginFlows {
  private readonly store: Store;
  private readonly secrets: Secrets;
  readonly ttlMs: number;

  constructor(store: Store, secrets: Secrets, ttlMs = LOGIN_STATE_TTL_MS) {
    this.store = store;
    this.secrets = secrets;
    this.ttlMs = ttlMs;
  }

  private cookieOf(ctx: RequestContext): string | undefined {
    const v = readCookie(ctx.req.headers.cookie, ctx.site.cookies.login);
    return typeof v === 'string' && COOKIE_VALUE.test(v) ? v : undefined;
  }

  async prepare(): Promise<PreparedFlow> {
    const codeVerifier = oauth.randomPKCECodeVerifier();
    return {
      state: randomBytes(32).toString('base64url'),
      nonce: randomBytes(32).toString('base64url'),
      codeVerifier,
      codeChallenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    };
  }

  /** Stores the flow's record; returns the Set-Cookie of the browser binding. */
  async save(
    ctx: RequestContext,
    flow: PreparedFlow,
    p: { provider: string; purpose: 'login' | 'link' | 'reauth'; sessionHash: string | null; returnTo: string },
  ): Promise<string[]> {
    // One binding cookie serves every tab's pending sign-in; each start renews its lifetime.
    const binding = this.cookieOf(ctx) ?? randomBytes(32).toString('base64url');
    const idHash = sha256(flow.state);
    const now = Date.now();
    await this.store.loginStates.create({
      idHash,
      browserHash: sha256(binding),
      provider: p.provider,
      site: ctx.site.origin,
      purpose: p.purpose,
      sessionHash: p.sessionHash,
      returnTo: p.returnTo,
      secret: this.secrets.encrypt(JSON.stringify({ v: flow.codeVerifier, n: flow.nonce }), `login-state|${idHash}`),
      createdAt: now,
      expiresAt: now + this.ttlMs,
    });
    return [
      serializeCookie(ctx.site.cookies.login, binding, {
        secure: ctx.site.secure,
        path: ctx.site.cookiePath,
        maxAgeSeconds: this.ttlMs / 1000,
      }),
    ];
  }

  /**
   * Checks the callback's state against the record and this browser, then consumes it.
   * Every way it can be wrong has its own code, so the error page and the log say which.
   */
  async finish(ctx: RequestContext, provider: string, stateParam: string | undefined): Promise<FinishedFlow> {
    if (!stateParam) return { ok: false, code: 'state_missing' };
    if (!STATE_VALUE.test(stateParam)) return { ok: false, code: 'state_unknown' };
    const idHash = sha256(stateParam);
    const record = await this.store.loginStates.get(idHash);
    if (!record) return { ok: false, code: 'state_unknown' };
    // A response for a flow another provider started is never used here (mix-up).
    if (record.provider !== provider) return { ok: false, code: 'wrong_provider' };
    if (record.site !== ctx.site.origin) return { ok: false, code: 'wrong_site', record };
    if (record.usedAt !== null) return { ok: false, code: 'state_used', record };
    if (Date.now() >= record.expiresAt) return { ok: false, code: 'state_expired', record };
    const binding = readCookie(ctx.req.headers.cookie, ctx.site.cookies.login);
    // Most often the deployment (another scheme or host on the way back, a proxy dropping
    // cookies) or blocked cookies: routes.ts has diagnosis/ explain it.
    if (binding === undefined) return { ok: false, code: 'state_cookie_missing', record };
    if (binding === null || !COOKIE_VALUE.test(binding) || sha256(binding) !== record.browserHash)
      return { ok: false, code: 'state_cookie_mismatch', record };
    const consumed = await this.store.loginStates.consume(idHash, Date.now());
    if (!consumed) return { ok: false, code: 'state_used', record };
    const plain = this.secrets.decrypt(consumed.secret, `login-state|${idHash}`);
    if (!plain) return { ok: false, code: 'state_unknown' };
    const { v, n } = JSON.parse(plain) as { v: string; n: string };
    return { ok: true, record: consumed, codeVerifier: v, nonce: n, state: stateParam };
  }

  purgeExpired(now = Date.now()): Promise<number> {
    // Kept a while past expiry, so a late replay is still told apart from a forgery.
    return this.store.loginStates.purgeExpired(now - this.ttlMs);
  }
}
