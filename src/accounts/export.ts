import type { RequestContext } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import { sendJson } from '../http/respond.ts';
import { html, type AccountSectionView } from '../pages/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { Store } from '../store/index.ts';
import type { SessionGate } from './account-page.ts';
import type { RecentAuthGate } from './reauth.ts';

/** The most audit events an export holds (the store's own bound for one query). */
const MAX_EVENTS = 10_000;

/**
 * GET /account/export: what Gatehouse keeps about the signed-in user, as one JSON file to keep
 * (the right of access and to data portability): the account, linked provider identities,
 * browser sessions, CLI and MCP logins, second factors, and the audit trail's events about
 * them. Never a secret: no password hash, session id, token or its hash, TOTP seed, or passkey
 * key; a passkey is its name and dates. Needs a sign-in or "Confirm it's you" within
 * `accounts.reauthenticateAfter` (the file holds every address the account was used from), and
 * is never cached.
 */
export class AccountExport {
  private readonly store: Store;
  private readonly tools: FormTools;
  private readonly account: SessionGate;
  private readonly reauth: RecentAuthGate;

  constructor(deps: { store: Store }, tools: FormTools, account: SessionGate, reauth: RecentAuthGate) {
    this.store = deps.store;
    this.tools = tools;
    this.account = account;
    this.reauth = reauth;
  }

  /** The account page's "Your data" section: the link to the file. */
  async accountSection(ctx: RequestContext): Promise<AccountSectionView> {
    return {
      id: 'your-data',
      heading: 'Your data',
      body: html`<p class="hint">Everything kept about your account (sign-ins, sessions, logins, linked providers, second factors, recent activity), as one JSON file.</p>
<p><a class="button secondary" href="${this.tools.url(ctx, paths.accountExport)}">Download your data</a></p>`,
    };
  }

  async download(ctx: RequestContext): Promise<void> {
    const active = await this.account.requireSession(ctx);
    if (!active) return;
    // Back to the export itself after "Confirm it's you": the browser then downloads it.
    if (!this.reauth.requireRecentAuth(ctx, active, this.tools.url(ctx, paths.accountExport))) return;
    const { user } = active;
    const now = Date.now();
    const [identities, sessions, grants, passkeys, totp, recoveryCodesLeft, events] = await Promise.all([
      this.store.identities.listByUser(user.id),
      this.store.sessions.listByUser(user.id),
      this.store.oauth.grants.listByUser(user.id, now),
      this.store.mfa.passkeys(user.id),
      this.store.mfa.totp(user.id),
      this.store.mfa.recoveryCodesLeft(user.id),
      this.store.audit.list({ userId: user.id, limit: MAX_EVENTS }),
    ]);
    const at = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    const body = {
      exportedAt: at(now),
      account: {
        id: user.id,
        email: user.email,
        emailVerified: user.emailVerified,
        name: user.name,
        groups: user.groups,
        password: user.passwordHash !== null,
        createdAt: at(user.createdAt),
        updatedAt: at(user.updatedAt),
      },
      identities: identities.map((i) => ({
        provider: i.provider,
        issuer: i.issuer,
        subject: i.subject,
        email: i.email,
        emailVerified: i.emailVerified,
        name: i.name,
        groups: i.groups,
        linkedAt: at(i.createdAt),
        lastSignInAt: at(i.lastLoginAt),
      })),
      browserSessions: sessions.map((s) => ({
        site: s.site,
        current: s.idHash === active.session.idHash,
        signedInAt: at(s.createdAt),
        lastSeenAt: at(s.lastSeenAt),
        expiresAt: at(s.expiresAt),
        ip: s.ip,
        userAgent: s.userAgent,
        methods: s.amr,
      })),
      programLogins: grants.map((g) => ({
        client: g.clientName,
        clientId: g.clientId,
        kind: g.kind,
        resource: g.resource,
        scope: g.scope,
        approvedAt: at(g.createdAt),
        lastUsedAt: at(g.lastUsedAt),
        ip: g.ip,
        userAgent: g.userAgent,
        expiresAt: at(g.expiresAt),
      })),
      secondFactors: {
        passkeys: passkeys.map((p) => ({ name: p.name, addedAt: at(p.createdAt), lastUsedAt: at(p.lastUsedAt) })),
        authenticatorApp: totp?.confirmed ? { addedAt: at(totp.createdAt) } : null,
        recoveryCodesLeft,
      },
      activity: events.map((e) => ({
        at: at(e.at),
        event: e.event,
        outcome: e.outcome,
        ip: e.ip,
        userAgent: e.userAgent,
        by: e.actor,
        detail: e.detail,
      })),
    };
    const day = new Date(now).toISOString().slice(0, 10);
    sendJson(ctx.res, 200, body, {
      'content-disposition': `attachment; filename="account-${day}.json"`,
    });
  }
}
