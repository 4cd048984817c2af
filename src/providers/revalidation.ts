import type { AuditLog } from '../audit/index.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { ActiveSession } from '../sessions/index.ts';
import type { Store } from '../store/index.ts';
import { sessionProvider } from './service.ts';
import { type ProviderTokens, sessionOwner } from './token-vault.ts';

/** How soon a provider that could not be asked is asked again (the session stands meanwhile). */
export const RETRY_MS = 30_000;
const MAX_REMEMBERED = 100_000;

/**
 * providers[].revalidate: a session signed in through such a provider stands only while the
 * provider keeps confirming the sign-in. At most every `revalidate` the session's refresh token is
 * spent at the provider (token-vault.ts); a refusal (the user disabled, deleted or signed out
 * everywhere there, the client's access revoked) ends the session at that request, on every node.
 * A sign-in that left no refresh token lasts `revalidate` from its start. A provider that cannot be
 * reached ends nothing: it is asked again RETRY_MS later (logged by the vault), unless
 * `revalidateGrace` is set and the sign-in has gone unconfirmed for longer than revalidate and the
 * grace together: then the session ends as for a refusal. When the provider
 * last confirmed is kept in memory per session, so the hot path asks nothing in between.
 */
export class SessionRevalidation {
  private readonly every = new Map<string, number>();
  /** providers[].revalidateGrace of the providers that set one. */
  private readonly grace = new Map<string, number>();
  /** Session id hash → until when this node need not ask. */
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

  /** Some provider revalidates: the sessions must ask check(). */
  get enabled(): boolean {
    return this.every.size > 0;
  }

  /**
   * true: the session stands; false: it has just been ended. A promise only when the provider has
   * to be asked (once per session at a time; concurrent requests share the answer).
   */
  check(active: ActiveSession): boolean | Promise<boolean> {
    const provider = sessionProvider(active.session);
    const every = provider === undefined ? undefined : this.every.get(provider);
    if (every === undefined) return true;
    const idHash = active.session.idHash;
    const until = this.confirmed.get(idHash);
    if (until !== undefined && Date.now() < until) return true;
    let pending = this.inflight.get(idHash);
    if (!pending) {
      pending = this.ask(active, provider!, every).finally(() => this.inflight.delete(idHash));
      this.inflight.set(idHash, pending);
    }
    return pending;
  }

  private remember(idHash: string, until: number): true {
    this.confirmed.delete(idHash);
    if (this.confirmed.size >= MAX_REMEMBERED) this.confirmed.delete(this.confirmed.keys().next().value!);
    this.confirmed.set(idHash, until);
    return true;
  }

  private async ask({ session }: ActiveSession, provider: string, every: number): Promise<boolean> {
    const owner = sessionOwner(session);
    const r = await this.d.tokens.revalidate(owner, provider, every);
    const counted = (outcome: 'confirmed' | 'ended' | 'unavailable') =>
      this.d.metrics?.revalidations.inc({ provider, outcome });
    if (r.ok) {
      if (r.asked) counted('confirmed');
      return this.remember(session.idHash, r.until);
    }
    if (r.reason === 'unavailable') {
      counted('unavailable');
      // With revalidateGrace, unconfirmed for so long the session ends (fail closed); until then it
      // is asked again RETRY_MS later, or at the deadline if that comes first.
      const grace = this.grace.get(provider);
      const deadline = grace === undefined ? Infinity : r.confirmedAt + every + grace;
      if (Date.now() < deadline) return this.remember(session.idHash, Math.min(Date.now() + RETRY_MS, deadline));
    }
    // Nothing to ask the provider with: the sign-in counts for `every` from its start.
    else if (r.reason === 'no_tokens' && Date.now() < session.createdAt + every)
      return this.remember(session.idHash, session.createdAt + every);
    counted('ended');
    await this.d.store.sessions.delete(session.idHash);
    this.confirmed.delete(session.idHash);
    this.d.tokens.forget(owner);
    const reason = r.reason === 'refused' ? 'refused' : r.reason === 'unavailable' ? 'unconfirmed' : 'no_refresh_token';
    this.d.audit.record({
      event: 'logout',
      userId: session.userId,
      actor: `provider:${provider}`,
      detail: { by: 'provider', provider, sessions: 1, revalidation: reason },
    });
    this.d.logger.info(
      { event: 'session_revalidation', outcome: 'ended', provider, userId: session.userId, reason },
      reason === 'refused'
        ? 'the provider no longer confirms this sign-in: session ended'
        : reason === 'unconfirmed'
          ? 'the provider could not confirm this sign-in for longer than revalidate and revalidateGrace: session ended'
          : 'a sign-in without a refresh token reached providers[].revalidate: session ended',
    );
    return false;
  }
}
