import type { AuditLog } from '../audit/index.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { ActiveSession } from '../sessions/index.ts';
import type { Grant, Store } from '../store/index.ts';
import { sessionProvider } from './service.ts';
import { grantOwner, type ProviderTokens, sessionOwner, type TokenOwner } from './token-vault.ts';

/** How soon a provider that could not be asked is asked again (the session stands meanwhile). */
export const RETRY_MS = 30_000;
const MAX_REMEMBERED = 100_000;

/**
 * A login revalidate confirms: a browser session, or a CLI or MCP login (a grant of src/oauth/)
 * approved from one, which carries the session's `amr` and its own copy of the provider tokens.
 */
interface Login {
  /** The session's id hash, or "grant:<id>". */
  key: string;
  owner: TokenOwner;
  userId: string;
  createdAt: number;
  /** The grant's id; null for a browser session. */
  grant: string | null;
}

/**
 * providers[].revalidate: a session signed in through such a provider stands only while the
 * provider keeps confirming the sign-in, and so does a CLI or MCP login approved from such a
 * session. At most every `revalidate` the login's refresh token is spent at the provider
 * (token-vault.ts); a refusal (the user disabled, deleted or signed out everywhere there, the
 * client's access revoked) ends the session, or revokes the CLI or MCP login, at that request, on
 * every node. A GitHub OAuth app's sign-in (no refresh token) is confirmed with its access token;
 * any other that left no refresh token lasts `revalidate` from its start (a CLI or MCP login: from
 * its approval). A provider that cannot be reached ends nothing: it is asked again
 * RETRY_MS later (logged by the vault), unless `revalidateGrace` is set and the sign-in has gone
 * unconfirmed for longer than revalidate and the grace together: then the login ends as for a
 * refusal. When the provider last confirmed is kept in memory per login, so the hot path asks
 * nothing in between.
 */
export class SessionRevalidation {
  private readonly every = new Map<string, number>();
  /** providers[].revalidateGrace of the providers that set one. */
  private readonly grace = new Map<string, number>();
  /** Login key → until when this node need not ask. */
  private readonly confirmed = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly d: {
    config: Config;
    store: Store;
    tokens: ProviderTokens;
    audit: AuditLog;
    logger: Logger;
    /** gatehouse_session_revalidations_total{provider, outcome}, when metrics are on. */
    metrics?: Pick<Metrics, 'revalidations'>;
  };

  constructor(d: SessionRevalidation['d']) {
    this.d = d;
    for (const p of d.config.providers)
      if (p.revalidate > 0) {
        this.every.set(p.id, p.revalidate);
        if (p.revalidateGrace > 0) this.grace.set(p.id, p.revalidateGrace);
      }
  }

  /** Some provider revalidates: the sessions and the CLI and MCP logins must ask check() and checkGrant(). */
  get enabled(): boolean {
    return this.every.size > 0;
  }

  /**
   * A browser session. true: it stands; false: it has just been ended. A promise only when the
   * provider has to be asked (once per login at a time; concurrent requests share the answer).
   */
  check({ session }: ActiveSession): boolean | Promise<boolean> {
    const provider = this.revalidating(session);
    if (provider === undefined || this.fresh(session.idHash)) return true;
    return this.asking(provider, {
      key: session.idHash,
      owner: sessionOwner(session),
      userId: session.userId,
      createdAt: session.createdAt,
      grant: null,
    });
  }

  /** A CLI or MCP login, as check(): false when it has just been revoked. */
  checkGrant(grant: Pick<Grant, 'id' | 'userId' | 'amr' | 'createdAt'>): boolean | Promise<boolean> {
    const provider = this.revalidating(grant);
    if (provider === undefined) return true;
    const key = `grant:${grant.id}`;
    if (this.fresh(key)) return true;
    return this.asking(provider, {
      key,
      owner: grantOwner(grant),
      userId: grant.userId,
      createdAt: grant.createdAt,
      grant: grant.id,
    });
  }

  /** The sign-in's provider, when it revalidates. */
  private revalidating(signedIn: { amr: string[] }): string | undefined {
    const provider = sessionProvider(signedIn);
    return provider !== undefined && this.every.has(provider) ? provider : undefined;
  }

  /** This node knows the login confirmed for now: nothing to ask. */
  private fresh(key: string): boolean {
    const until = this.confirmed.get(key);
    return until !== undefined && Date.now() < until;
  }

  private asking(provider: string, login: Login): Promise<boolean> {
    let pending = this.inflight.get(login.key);
    if (!pending) {
      pending = this.ask(login, provider, this.every.get(provider)!).finally(() => this.inflight.delete(login.key));
      this.inflight.set(login.key, pending);
    }
    return pending;
  }

  private remember(key: string, until: number): true {
    this.confirmed.delete(key);
    if (this.confirmed.size >= MAX_REMEMBERED) this.confirmed.delete(this.confirmed.keys().next().value!);
    this.confirmed.set(key, until);
    return true;
  }

  private async ask(login: Login, provider: string, every: number): Promise<boolean> {
    const r = await this.d.tokens.revalidate(login.owner, provider, every);
    const counted = (outcome: 'confirmed' | 'ended' | 'unavailable') =>
      this.d.metrics?.revalidations.inc({ provider, outcome });
    if (r.ok) {
      if (r.asked) counted('confirmed');
      return this.remember(login.key, r.until);
    }
    if (r.reason === 'unavailable') {
      counted('unavailable');
      // With revalidateGrace, unconfirmed for so long the login ends (fail closed); until then it
      // is asked again RETRY_MS later, or at the deadline if that comes first.
      const grace = this.grace.get(provider);
      const deadline = grace === undefined ? Infinity : r.confirmedAt + every + grace;
      if (Date.now() < deadline) return this.remember(login.key, Math.min(Date.now() + RETRY_MS, deadline));
    }
    // Nothing to ask the provider with: the sign-in counts for `every` from its start.
    else if (r.reason === 'no_tokens' && Date.now() < login.createdAt + every)
      return this.remember(login.key, login.createdAt + every);
    counted('ended');
    const reason = r.reason === 'refused' ? 'refused' : r.reason === 'unavailable' ? 'unconfirmed' : 'no_refresh_token';
    await this.end(login, provider, reason);
    return false;
  }

  /** Ends the session, or revokes the CLI or MCP login: audited and logged with the reason. */
  private async end(login: Login, provider: string, reason: string): Promise<void> {
    const { userId, grant } = login;
    if (grant === null) await this.d.store.sessions.delete(login.key);
    else await this.d.store.oauth.grants.revoke(grant, Date.now(), `provider:${provider}`);
    this.confirmed.delete(login.key);
    this.d.tokens.forget(login.owner);
    const actor = `provider:${provider}`;
    if (grant === null)
      this.d.audit.record({
        event: 'logout',
        userId,
        actor,
        detail: { by: 'provider', provider, sessions: 1, revalidation: reason },
      });
    else
      this.d.audit.record({
        event: 'login_revoked',
        userId,
        actor,
        detail: { by: 'provider', provider, grant, revalidation: reason },
      });
    const what = grant === null ? 'session ended' : 'CLI or MCP login revoked';
    this.d.logger.info(
      {
        event: 'session_revalidation',
        outcome: 'ended',
        provider,
        userId,
        reason,
        ...(grant === null ? {} : { grant }),
      },
      reason === 'refused'
        ? `the provider no longer confirms this sign-in: ${what}`
        : reason === 'unconfirmed'
          ? `the provider could not confirm this sign-in for longer than revalidate and revalidateGrace: ${what}`
          : `a sign-in without a refresh token reached providers[].revalidate: ${what}`,
    );
  }
}
