import { hash, randomBytes } from 'node:crypto';
import type { AuditLog } from '../audit/index.ts';
import type { Cache } from '../cache/index.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import { expireCookie, readCookie, serializeCookie } from '../http/cookies.ts';
import { HttpError } from '../http/errors.ts';
import { paths } from '../http/paths.ts';
import { redirect } from '../http/respond.ts';
import { returnTargetOn } from '../http/target.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { Logger } from '../log/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { Sessions } from '../sessions/index.ts';

export interface SingleSignOnDeps {
  logger: Logger;
  sessions: Sessions;
  secrets: Secrets;
  /** Marks each code used, on every node that shares it (the memory cache: every worker of a node). */
  cache: Cache;
  audit: AuditLog;
  diagnosis: Diagnosis;
  /** Own routes' prefix, publicUrl's base path included: /.auth, or /app/.auth. */
  prefix: string;
}

/** How long the code from publicUrl's site may take to come back: one redirect. */
const CODE_TTL_MS = 60_000;
/** How long a browser may take to sign in on publicUrl's site before it comes back. */
const STATE_TTL_SECONDS = 600;
const STATE = /^[A-Za-z0-9_-]{43}$/;
const CONTEXT = 'sso';

/** What a code says, encrypted and authenticated with the master key (never readable or made by others). */
interface Claim {
  /** The user, and the session on publicUrl's site the new one is made from. */
  u: string;
  s: string;
  /** The site it is for, and the hash of the state cookie set on the browser there. */
  t: string;
  h: string;
  /** Where to go on that site, checked again there. */
  r: string;
  e: number;
  /** Used once. */
  j: string;
}

const stateHash = (state: string) => hash('sha256', state, 'base64url');

/** Why a login page is shown (accounts/sign-in.ts), carried from an sso host's to publicUrl's. */
const NOTICES = ['signed_out', 'reset'] as const;

/**
 * Single sign-on across hosts (apps[].sso). Users sign in on publicUrl's site only; an app on a
 * host of its own with `sso` sends a browser that must sign in there (start), with a state
 * cookie set on its own host. publicUrl's site, once the browser is signed in there (its login
 * page first, if need be), answers with a code (issue): encrypted, for that site alone, bound to
 * the state cookie's hash, for a minute, once. Back on the app's host the code makes a session
 * of its own (redeem), with the same user, sign-in methods and sign-in time, ended whenever the
 * session it came from ends (a sign-out on either host ends both). Cookies never span hosts.
 */
export class SingleSignOn {
  private readonly s: SingleSignOnDeps;
  private readonly forms: FormTools;
  private readonly home: SiteInfo | undefined;
  private readonly targets: Map<string, SiteInfo>;

  constructor(deps: SingleSignOnDeps, forms: FormTools, sites: Map<string, SiteInfo>, publicUrl: string) {
    this.s = deps;
    this.forms = forms;
    const origin = new URL(publicUrl).origin;
    const all = [...sites.values()];
    this.home = all.find((s) => s.origin === origin);
    this.targets = new Map(all.filter((s) => s.sso).map((s) => [s.origin, s]));
  }

  /**
   * On an sso site, the login page sends the browser to publicUrl's site instead; the notice it was
   * to show (`signed_out`, `reset`) goes along, and publicUrl's login page shows it.
   */
  start(ctx: RequestContext, rd: string): void {
    const state = randomBytes(32).toString('base64url');
    const url = new URL(`${this.home!.origin}${this.s.prefix}${paths.sso}`);
    url.searchParams.set('site', ctx.site.origin);
    url.searchParams.set('rd', rd);
    url.searchParams.set('state', stateHash(state));
    const notice = this.noticeOf(ctx);
    if (notice) url.searchParams.set(notice, '1');
    redirect(ctx.res, 302, url.href, [
      serializeCookie(ctx.site.cookies.sso, state, {
        secure: ctx.site.secure,
        path: ctx.site.cookiePath,
        maxAgeSeconds: STATE_TTL_SECONDS,
      }),
    ]);
  }

  /** The login page's notice named in the query (`signed_out=1`, `reset=1`), if any. */
  private noticeOf(ctx: RequestContext): (typeof NOTICES)[number] | undefined {
    return NOTICES.find((n) => this.forms.queryParam(ctx, n));
  }

  /** publicUrl's site: the code for a signed-in browser, or its login page first. */
  async issue(ctx: RequestContext): Promise<void> {
    if (ctx.site !== this.home) throw new HttpError(404, 'not_found', 'Not found.');
    const target = this.targets.get(this.forms.queryParam(ctx, 'site') ?? '');
    const state = this.forms.queryParam(ctx, 'state') ?? '';
    if (!target || !STATE.test(state))
      throw new HttpError(400, 'invalid_request', 'This sign-in link is not valid: go back to the app and try again.');
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (found.state !== 'active') {
      const notice = this.noticeOf(ctx);
      const login = this.forms.url(ctx, paths.login, { rd: ctx.path + ctx.query, ...(notice && { [notice]: '1' }) });
      return redirect(ctx.res, 302, ctx.site.origin + login);
    }
    const rd = returnTargetOn(target, this.forms.queryParam(ctx, 'rd')) ?? target.home;
    const claim: Claim = {
      u: found.active.user.id,
      s: found.active.session.idHash,
      t: target.origin,
      h: state,
      r: rd,
      e: Date.now() + CODE_TTL_MS,
      j: randomBytes(16).toString('base64url'),
    };
    const url = new URL(`${target.origin}${this.s.prefix}${paths.ssoCallback}`);
    url.searchParams.set('code', this.s.secrets.encrypt(JSON.stringify(claim), CONTEXT));
    redirect(ctx.res, 302, url.href);
  }

  /** The app's host: the code from publicUrl's site becomes this browser's session here. */
  async redeem(ctx: RequestContext): Promise<void> {
    if (!ctx.site.sso) throw new HttpError(404, 'not_found', 'Not found.');
    const refused = () =>
      new HttpError(
        400,
        'sso_refused',
        'This sign-in did not start in this browser, was used already, or took too long. Go back to the app and try again.',
      );
    const claim = this.claimOf(this.forms.queryParam(ctx, 'code'));
    const state = readCookie(ctx.req.headers.cookie, ctx.site.cookies.sso);
    if (
      !claim ||
      claim.t !== ctx.site.origin ||
      Date.now() > claim.e ||
      typeof state !== 'string' ||
      stateHash(state) !== claim.h
    )
      throw refused();
    if ((await this.s.cache.hit(`sso:${claim.j}`, 2 * CODE_TTL_MS)) !== 1) throw refused();
    const clear = expireCookie(ctx.site.cookies.sso, { secure: ctx.site.secure, path: ctx.site.cookiePath });
    // The session it came from, as a request there would find it now: ended meanwhile, start again.
    const from = await this.s.sessions.recheck(claim.s, this.home!.origin);
    if (from.state !== 'active' || from.active.user.id !== claim.u)
      return redirect(ctx.res, 302, ctx.site.origin + this.forms.url(ctx, paths.login, { rd: claim.r }), [clear]);
    const { user, session } = from.active;
    ctx.userId = user.id;
    const { setCookie } = await this.s.sessions.create(user, ctx.site.origin, ctx.site.session, {
      amr: session.amr,
      authTime: session.authTime,
      ip: ctx.ip,
      userAgent: ctx.req.headers['user-agent'] ?? null,
      previous: this.s.sessions.cookieValue(ctx.req, ctx.site.session),
      parent: session,
    });
    this.s.audit.record({ event: 'login', userId: user.id, ctx, detail: { method: 'sso', from: this.home!.origin } });
    this.s.logger.info(
      { event: 'login', userId: user.id, method: 'sso', site: ctx.site.origin, requestId: ctx.requestId },
      'user signed in (single sign-on)',
    );
    redirect(ctx.res, 303, ctx.site.origin + this.forms.returnPath(ctx, claim.r), [
      clear,
      setCookie,
      this.s.diagnosis.signedIn(ctx.site, ctx.req),
    ]);
  }

  private claimOf(code: string | undefined): Claim | undefined {
    if (!code || code.length > 2048) return undefined;
    const text = this.s.secrets.decrypt(code, CONTEXT);
    if (text === undefined) return undefined;
    const c = JSON.parse(text) as Claim;
    return typeof c.u === 'string' &&
      typeof c.s === 'string' &&
      typeof c.t === 'string' &&
      typeof c.h === 'string' &&
      typeof c.r === 'string' &&
      typeof c.e === 'number' &&
      typeof c.j === 'string'
      ? c
      : undefined;
  }
}
