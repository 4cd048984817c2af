// The account page's "Browser sessions" and "Recent activity" (last 30 days of the audit trail), with their
// JSON twins for single-page apps and the POSTs that end one session or all the others.
import { type AuditLog, describeUserAgent } from '../audit/index.ts';
import { field } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { HttpError } from '../http/errors.ts';
import { paths } from '../http/paths.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { Secrets } from '../keys/secrets.ts';
import { html, type AccountSectionView, type SafeHtml } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { AuditEvent, Session, Store } from '../store/index.ts';
import type { SessionGate } from './account-page.ts';

const THIRTY_DAYS = 30 * 24 * 3600_000;
const ACTIVITY_LIMIT = 50;

export interface ActivityDeps {
  store: Store;
  secrets: Pick<Secrets, 'mac'>;
  audit: AuditLog;
  /** Which sessions are not over (sessions/). */
  sessions: Pick<Sessions, 'isLive'>;
}

/** A browser session as the user sees it: never its id or id hash, only a handle bound to it. */
export interface SessionView {
  handle: string;
  device: string;
  ip: string | null;
  signedInAt: number;
  lastSeenAt: number;
  current: boolean;
  method: string;
}

export interface ActivityView {
  at: number;
  event: string;
  outcome: string;
  what: string;
  ip: string | null;
  device: string;
}

const when = (ms: number) => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

function methodOf(amr: string[]): string {
  const idp = amr.find((a) => a.startsWith('idp:'));
  return idp ? `with ${idp.slice(4)}` : 'with a password';
}

const FACTOR_NAMES: Record<string, string> = {
  totp: 'Authenticator app',
  passkey: 'Passkey',
  recovery_codes: 'Recovery codes',
};
const factorName = (type: unknown): string =>
  (typeof type === 'string' ? FACTOR_NAMES[type] : undefined) ?? 'Second factor';

/** What an audit event means to the user, in words. */
function describe(e: AuditEvent): string {
  const how =
    e.detail.method === 'provider' && typeof e.detail.provider === 'string'
      ? ` with ${e.detail.provider}`
      : e.detail.method === 'password'
        ? ' with your password'
        : e.detail.method === 'totp'
          ? ' with your authenticator app'
          : e.detail.method === 'recovery_code'
            ? ' with a recovery code'
            : e.detail.method === 'passkey'
              ? ' with a passkey'
              : e.detail.method === 'email_link'
                ? ' with a link mailed to you'
                : '';
  switch (e.event) {
    case 'login':
      if (e.outcome === 'success') return `Signed in${how}`;
      if (e.outcome === 'throttled') return 'Sign-in refused: too many failed attempts';
      if (e.outcome === 'disabled') return 'Sign-in refused: the account is disabled';
      if (e.detail.method === 'password') return 'Failed sign-in: wrong password';
      if (e.detail.method === 'totp' || e.detail.method === 'recovery_code')
        return 'Failed sign-in: wrong second-factor code';
      return `Failed sign-in${how}`;
    case 'register':
      return 'Account created';
    case 'logout':
      // A provider's back-channel logout (providers/routes.ts) ended sessions signed in through it.
      return e.detail.by === 'provider' ? `Signed out at ${String(e.detail.provider)}` : 'Signed out';
    case 'session_ended':
      return 'Ended a browser session';
    case 'sessions_ended':
      return 'Signed out everywhere else';
    case 'password_changed':
      return e.outcome === 'success' ? 'Password changed' : 'Failed password change';
    case 'password_reset':
      return 'Password reset with an emailed link';
    case 'password_reset_requested':
      return 'Password reset requested';
    case 'sign_in_link_requested':
      return 'Sign-in link requested';
    case 'email_verified':
      return 'Email address verified';
    case 'email_changed':
      return 'Email address changed';
    case 'provider_linked':
      return `Linked ${String(e.detail.provider ?? 'a provider')}`;
    case 'provider_unlinked':
      return `Unlinked ${String(e.detail.provider ?? 'a provider')}`;
    case 'device_approved':
      return e.outcome === 'success' ? 'Approved a device sign-in' : 'Denied a device sign-in';
    case 'consent_approved':
      return 'Allowed an app to use your account';
    case 'login_revoked':
      return 'Signed a program out';
    case 'refresh_reuse':
      return 'A program login was ended: its token was used twice';
    case 'factor_added':
      return `${factorName(e.detail.type)} added`;
    case 'factor_removed':
      return `${factorName(e.detail.type)} removed`;
    case 'email_change_requested':
      return 'Change of email address requested';
    case 'reauthenticated':
      return 'Confirmed it was you';
    case 'reauthentication_failed':
      return e.outcome === 'throttled' ? 'Confirmation refused: too many attempts' : 'Failed to confirm it was you';
    case 'invitation_accepted':
      return 'Invitation accepted';
    case 'account_deleted':
      return 'Account deleted';
    case 'operator':
      return `An administrator changed your account (${String(e.detail.command ?? 'command')})`;
    default:
      return e.event;
  }
}

/**
 * "Browser sessions" (every signed-in browser of the user: browser and OS, IP, signed in,
 * last seen, "this session"; end one, or all but this one) and "Recent activity" (sign-ins
 * and account changes of the last 30 days, failed ones included). Only the user's own
 * sessions are ever looked at: a handle of another user's session matches nothing.
 */
export class AccountActivity {
  private readonly d: ActivityDeps;
  private readonly tools: FormTools;
  private readonly gate: SessionGate;

  constructor(deps: ActivityDeps, tools: FormTools, gate: SessionGate) {
    this.d = deps;
    this.tools = tools;
    this.gate = gate;
  }

  /** A session's handle: a MAC of its id hash, so the page never shows what the store keys sessions by. */
  private handle(s: Session): string {
    return this.d.secrets.mac('session handle', s.idHash).slice(0, 22);
  }

  private async sessions(active: ActiveSession, now = Date.now()): Promise<{ view: SessionView; session: Session }[]> {
    const all = await this.d.store.sessions.listByUser(active.user.id);
    return all
      .filter((s) => this.d.sessions.isLive(s, now))
      .map((s) => ({
        session: s,
        view: {
          handle: this.handle(s),
          device: describeUserAgent(s.userAgent),
          ip: s.ip,
          signedInAt: s.createdAt,
          lastSeenAt: s.lastSeenAt,
          current: s.idHash === active.session.idHash,
          method: methodOf(s.amr),
        },
      }));
  }

  private async activity(userId: string, now = Date.now()): Promise<ActivityView[]> {
    const list = this.d.audit.list
      ? await this.d.audit.list({ userId, since: now - THIRTY_DAYS, limit: ACTIVITY_LIMIT })
      : await this.d.store.audit.list({ userId, since: now - THIRTY_DAYS, limit: ACTIVITY_LIMIT });
    return list.map((e) => ({
      at: e.at,
      event: e.event,
      outcome: e.outcome,
      what: describe(e),
      ip: e.ip,
      device: describeUserAgent(e.userAgent),
    }));
  }

  // ---- the account page's sections ----------------------------------------------------

  async sessionsSection(ctx: RequestContext, active: ActiveSession, csrf: string): Promise<AccountSectionView> {
    const rows = (await this.sessions(active)).map((r) => r.view);
    rows.sort((a, b) => Number(b.current) - Number(a.current) || b.lastSeenAt - a.lastSeenAt);
    const end = this.tools.url(ctx, paths.endSession);
    const others = this.tools.url(ctx, paths.endOtherSessions);
    const csrfField = html`<input type="hidden" name="csrf" value="${csrf}">`;
    const q = new URLSearchParams(ctx.query.slice(1));
    const body: SafeHtml = html`<p class="hint">Browsers signed in to your account. End any you do not recognise, and change your password.</p>
<ul class="sessions">${rows.map(
      (s) => html`<li>
<p><strong>${s.device}</strong>${s.current ? html` · <span class="tag">this session</span>` : ''}</p>
<p class="hint">Signed in ${when(s.signedInAt)} ${s.method}${s.ip ? html` from ${s.ip}` : ''} · last seen ${when(s.lastSeenAt)}</p>
${s.current ? '' : html`<form method="post" action="${end}">${csrfField}<input type="hidden" name="session" value="${s.handle}"><button type="submit" class="secondary">End this session</button></form>`}
</li>`,
    )}</ul>
${rows.length > 1 ? html`<form method="post" action="${others}">${csrfField}<button type="submit" class="secondary">Sign out everywhere else</button></form>` : ''}`;
    return {
      id: 'sessions',
      heading: 'Browser sessions',
      body,
      notice:
        q.get('session_ended') === '1'
          ? 'That session has ended.'
          : q.get('others_ended') !== null
            ? `Signed out everywhere else (${Number(q.get('others_ended')) || 0} session(s) ended).`
            : undefined,
    };
  }

  async activitySection(ctx: RequestContext, active: ActiveSession): Promise<AccountSectionView> {
    const rows = await this.activity(active.user.id);
    return {
      id: 'activity',
      heading: 'Recent activity',
      body: html`<p class="hint">Sign-ins and changes to your account in the last 30 days. Something you did not do? Change your password and end the sessions you do not recognise.</p>
${
  rows.length === 0
    ? html`<p>Nothing yet.</p>`
    : html`<table class="activity"><thead><tr><th scope="col">When</th><th scope="col">What</th><th scope="col">From</th></tr></thead><tbody>${rows.map(
        (r) =>
          html`<tr${r.outcome === 'success' ? '' : html` class="failed"`}><td>${when(r.at)}</td><td>${r.what}</td><td>${r.device}${r.ip ? html`<br><span class="ip">${r.ip}</span>` : ''}</td></tr>`,
      )}</tbody></table>`
}`,
    };
  }

  // ---- JSON for single-page apps ------------------------------------------------------

  /** GET <prefix>/account/sessions */
  async sessionsJson(ctx: RequestContext): Promise<void> {
    const active = await this.gate.requireSession(ctx);
    if (!active) return;
    sendJson(ctx.res, 200, { sessions: (await this.sessions(active)).map((r) => r.view) });
  }

  /** GET <prefix>/account/activity */
  async activityJson(ctx: RequestContext): Promise<void> {
    const active = await this.gate.requireSession(ctx);
    if (!active) return;
    sendJson(ctx.res, 200, { activity: await this.activity(active.user.id) });
  }

  // ---- ending sessions ------------------------------------------------------------------

  /** POST <prefix>/account/sessions/end: `session` is a handle from the list. */
  async end(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx);
    const active = await this.gate.requireSession(ctx);
    if (!active) return;
    const handle = field(input, 'session', 64) ?? '';
    const target = (await this.sessions(active)).find((r) => r.view.handle === handle);
    if (!target) throw new HttpError(404, 'not_found', 'No such session of yours: it may have ended already.');
    if (target.view.current)
      throw new HttpError(409, 'current_session', 'This is the session you are using: sign out instead.');
    await this.d.store.sessions.delete(target.session.idHash);
    this.d.audit.record({
      event: 'session_ended',
      userId: active.user.id,
      ctx,
      detail: { device: target.view.device, sessionIp: target.view.ip },
    });
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true });
    redirect(ctx.res, 303, `${ctx.site.origin}${this.tools.url(ctx, paths.account, { session_ended: '1' })}`);
  }

  /** POST <prefix>/account/sessions/end-others: every browser session but this one. */
  async endOthers(ctx: RequestContext): Promise<void> {
    const input = await this.tools.readPost(ctx, { bodiless: true });
    const active = await this.gate.requireSession(ctx);
    if (!active) return;
    const ended = await this.d.store.sessions.deleteByUser(active.user.id, active.session.idHash);
    this.d.audit.record({ event: 'sessions_ended', userId: active.user.id, ctx, detail: { ended } });
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true, ended });
    redirect(ctx.res, 303, `${ctx.site.origin}${this.tools.url(ctx, paths.account, { others_ended: String(ended) })}`);
  }
}
