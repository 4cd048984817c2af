import { randomUUID } from 'node:crypto';
import type { Logger } from '../log/index.ts';
import type { ProviderTokenRecord, Session, Store } from '../store/index.ts';
import type { Secrets } from '../keys/secrets.ts';
import { ProviderError, type ProviderClient } from './client.ts';
import type { ProviderTokenSet } from './profile.ts';

/**
 * Provider tokens kept for the backend-for-frontend pattern: server-side only, encrypted at
 * rest with AES-256-GCM (keys/secrets.ts) under a context naming the owner and provider
 * (a row copied to another session or provider does not decrypt), never in a cookie or a
 * log line. Keyed by an owner id: a browser session ("session:<id hash>", deleted with the
 * session) or a CLI or MCP login ("grant:<id>", src/oauth/, purged when the grant ends).
 *
 * accessToken() is on the proxy's hot path: a decrypted access token is cached in memory
 * per owner until it nears expiry (at most a minute, so an unlink or revocation elsewhere is
 * seen soon). A token that nears expiry is refreshed once: concurrent requests in this
 * process share one refresh (single flight), and nodes sharing the store take a lease on the
 * row first, so two nodes never both spend a rotating refresh token; the others wait for the
 * lease holder's result.
 */

export interface TokenOwner {
  id: string;
  userId: string;
  /** Set when the owner is a browser session: the tokens go with it. */
  sessionHash: string | null;
}

export const sessionOwner = (s: Pick<Session, 'idHash' | 'userId'>): TokenOwner => ({
  id: `session:${s.idHash}`,
  userId: s.userId,
  sessionHash: s.idHash,
});

/** The tokens' owner for a CLI or MCP login (a grant of src/oauth/): "grant:<id>", tied to no browser session. */
export const grantOwner = (grant: { id: string; userId: string }): TokenOwner => ({
  id: `grant:${grant.id}`,
  userId: grant.userId,
  sessionHash: null,
});

/** stale: the provider could not be asked for a new one; this one is good until it expires. */
export type AccessToken =
  | { ok: true; token: string; stale?: true }
  | { ok: false; reason: 'none' | 'expired' | 'refresh_failed' | 'unavailable' };

/**
 * What revalidate() found: the provider confirmed the sign-in (until: when to ask again; asked:
 * just now, not earlier), or it refused it, or could not be asked, or there is nothing to ask it
 * with (no refresh token).
 */
export type Revalidated =
  | { ok: true; until: number; asked: boolean }
  | { ok: false; reason: 'refused' | 'no_tokens' }
  /** `confirmedAt`: when the provider last confirmed the sign-in (its tokens were obtained). */
  | { ok: false; reason: 'unavailable'; confirmedAt: number };

interface Cached {
  token: string;
  useUntil: number;
  userId: string;
}

export interface TokenVaultOptions {
  /** Longest a refresh may hold the row (a crashed node's lease lapses after this). */
  leaseMs?: number;
  maxCached?: number;
}

/** Refresh when less than a quarter of the token's life (at most a minute) is left. */
export function refreshAt(t: Pick<ProviderTokenSet, 'expiresAt' | 'obtainedAt'>): number {
  if (t.expiresAt === null) return Infinity;
  return t.expiresAt - Math.min(60_000, Math.max(0, Math.floor((t.expiresAt - t.obtainedAt) / 4)));
}

/**
 * Whether the provider can be asked about these tokens again: with the refresh token, or without
 * one with the access token where the provider confirms that way (GitHub's OAuth apps).
 */
function askable(t: ProviderTokenSet, client: ProviderClient | undefined): boolean {
  return Boolean(t.refreshToken) || (client?.confirm !== undefined && t.accessToken !== null);
}

const CACHE_MAX_MS = 60_000;
const WAIT_STEP_MS = 50;

export class ProviderTokens {
  private readonly store: Store;
  private readonly secrets: Secrets;
  private readonly clients: (id: string) => ProviderClient | undefined;
  private readonly logger: Logger;
  private readonly leaseMs: number;
  private readonly maxCached: number;
  private readonly cache = new Map<string, Cached>();
  private readonly inflight = new Map<string, Promise<AccessToken>>();

  constructor(
    store: Store,
    secrets: Secrets,
    clients: (id: string) => ProviderClient | undefined,
    logger: Logger,
    options: TokenVaultOptions = {},
  ) {
    this.store = store;
    this.secrets = secrets;
    this.clients = clients;
    this.logger = logger;
    this.leaseMs = options.leaseMs ?? 20_000;
    this.maxCached = options.maxCached ?? 10_000;
  }

  private context(owner: string, provider: string): string {
    return `provider-tokens|${owner}|${provider}`;
  }

  private encrypt(owner: string, provider: string, t: ProviderTokenSet): string {
    return this.secrets.encrypt(JSON.stringify(t), this.context(owner, provider));
  }

  private decrypt(r: ProviderTokenRecord): ProviderTokenSet | undefined {
    const plain = this.secrets.decrypt(r.data, this.context(r.owner, r.provider));
    return plain ? (JSON.parse(plain) as ProviderTokenSet) : undefined;
  }

  async save(owner: TokenOwner, provider: string, tokens: ProviderTokenSet): Promise<void> {
    await this.store.providerTokens.put({
      owner: owner.id,
      provider,
      userId: owner.userId,
      sessionHash: owner.sessionHash,
      data: this.encrypt(owner.id, provider, tokens),
      expiresAt: tokens.expiresAt,
    });
    this.cache.delete(`${owner.id}\n${provider}`);
  }

  /** The stored tokens, decrypted (the ID token for RP-initiated logout). */
  async read(owner: TokenOwner, provider: string): Promise<ProviderTokenSet | undefined> {
    const r = await this.store.providerTokens.get(owner.id, provider);
    return r && this.decrypt(r);
  }

  /** A usable access token for the owner at the provider, refreshed when it nears expiry. */
  accessToken(owner: TokenOwner, provider: string): Promise<AccessToken> {
    const key = `${owner.id}\n${provider}`;
    const hit = this.cache.get(key);
    if (hit && Date.now() < hit.useUntil) return Promise.resolve({ ok: true, token: hit.token });
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.load(owner, provider, key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /**
   * providers[].revalidate: has the provider confirmed the owner's sign-in within the last
   * `everyMs`? If not, asks it now by spending the refresh token (under the same lease as
   * accessToken()'s refreshes); a refusal marks the tokens dead, as there.
   */
  async revalidate(owner: TokenOwner, provider: string, everyMs: number): Promise<Revalidated> {
    const rec = await this.store.providerTokens.get(owner.id, provider);
    const t = rec && this.decrypt(rec);
    if (!rec || !t) return { ok: false, reason: 'no_tokens' };
    if (t.refused) return { ok: false, reason: 'refused' };
    const confirmed = (x: ProviderTokenSet) => Date.now() < x.obtainedAt + everyMs;
    if (confirmed(t)) return { ok: true, until: t.obtainedAt + everyMs, asked: false };
    if (!askable(t, this.clients(provider))) return { ok: false, reason: 'no_tokens' };
    // Not joined with an accessToken() under way, which may end without asking the provider; the
    // caller asks once per session at a time, and the lease keeps two refreshes from both spending.
    const usable = (x: ProviderTokenSet) => confirmed(x) && Date.now() < refreshAt(x);
    const r = await this.refresh(owner, provider, `${owner.id}\n${provider}`, rec, t, usable);
    if (r.ok)
      return r.stale
        ? { ok: false, reason: 'unavailable', confirmedAt: t.obtainedAt }
        : { ok: true, until: Date.now() + everyMs, asked: true };
    if (r.reason === 'unavailable') return { ok: false, reason: 'unavailable', confirmedAt: t.obtainedAt };
    return { ok: false, reason: r.reason === 'refresh_failed' ? 'refused' : 'no_tokens' };
  }

  /** Drops what this node caches for an owner (its session ended here). */
  forget(owner: TokenOwner): void {
    for (const key of this.cache.keys()) if (key.startsWith(`${owner.id}\n`)) this.cache.delete(key);
  }

  /** An unlinked provider: its tokens go from every session of the user, and from the other workers' memory. */
  async forgetUser(userId: string, provider: string): Promise<void> {
    this.forgetCached(userId, provider);
    await this.store.providerTokens.deleteByUser(userId, provider);
    this.onForgetUser?.(userId, provider);
  }

  /** Drops this process's copies of a user's tokens at a provider (another worker has unlinked it). */
  forgetCached(userId: string, provider: string): void {
    for (const [key, c] of this.cache) if (c.userId === userId && key.endsWith(`\n${provider}`)) this.cache.delete(key);
  }

  /** providers[].syncGroups: the groups a refresh stated become the user's (a failure is logged, the tokens stand). */
  private async syncGroups(userId: string, provider: string, groups: string[]): Promise<void> {
    try {
      await this.onGroups?.(userId, provider, groups);
    } catch (err) {
      this.logger.warn(
        { event: 'groups_sync_failed', provider, userId, detail: (err as Error).message },
        "the groups a provider stated at a refresh could not be stored: the user's groups are left as they were",
      );
    }
  }

  /** Given the groups a refresh stated (the composition root passes them to ProviderAccounts). */
  onGroups: ((userId: string, provider: string, groups: string[]) => Promise<unknown>) | undefined;

  /** Told after forgetUser (listen.workers: the composition root passes it on to the other workers). */
  onForgetUser: ((userId: string, provider: string) => void) | undefined;

  private remember(key: string, owner: TokenOwner, t: ProviderTokenSet): AccessToken {
    const token = t.accessToken!;
    const useUntil = Math.min(refreshAt(t), Date.now() + CACHE_MAX_MS);
    if (useUntil > Date.now()) {
      if (this.cache.size >= this.maxCached) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(key, { token, useUntil, userId: owner.userId });
    }
    return { ok: true, token };
  }

  private async load(owner: TokenOwner, provider: string, key: string): Promise<AccessToken> {
    const rec = await this.store.providerTokens.get(owner.id, provider);
    const t = rec && this.decrypt(rec);
    if (t?.refused) return { ok: false, reason: 'refresh_failed' };
    if (!rec || !t?.accessToken) return { ok: false, reason: 'none' };
    const now = Date.now();
    if (now < refreshAt(t)) return this.remember(key, owner, t);
    if (!t.refreshToken)
      return t.expiresAt !== null && now < t.expiresAt
        ? { ok: true, token: t.accessToken }
        : { ok: false, reason: 'expired' };
    return this.refresh(owner, provider, key, rec, t);
  }

  private async refresh(
    owner: TokenOwner,
    provider: string,
    key: string,
    seen: ProviderTokenRecord,
    seenTokens: ProviderTokenSet,
    /** Whether tokens another node wrote meanwhile will do (default: not near expiry). */
    usable: (t: ProviderTokenSet) => boolean = (t) => Date.now() < refreshAt(t),
  ): Promise<AccessToken> {
    const client = this.clients(provider);
    if (!client) return { ok: false, reason: 'none' };
    let rec = seen;
    let current = seenTokens;
    for (let attempt = 0; attempt < 3; attempt++) {
      const holder = randomUUID();
      const now = Date.now();
      const leased = await this.store.providerTokens.acquireLease(owner.id, provider, holder, now, now + this.leaseMs);
      if (!leased) {
        // Another node is refreshing this very token: wait for its result.
        const after = await this.waitForOther(owner.id, provider, rec.version);
        if (!after) return { ok: false, reason: 'refresh_failed' };
        const t = this.decrypt(after);
        if (after.version !== rec.version && t?.accessToken && usable(t)) return this.remember(key, owner, t);
        if (!t) return { ok: false, reason: 'none' };
        rec = after;
        current = t;
        continue;
      }
      if (leased.version !== rec.version) {
        // Refreshed between our read and the lease: use that, unless it too is stale.
        const t = this.decrypt(leased);
        if (t?.accessToken && usable(t)) {
          await this.store.providerTokens.releaseLease(owner.id, provider, holder);
          return this.remember(key, owner, t);
        }
        if (t) current = t;
      }
      if (!askable(current, client)) {
        await this.store.providerTokens.releaseLease(owner.id, provider, holder);
        return { ok: false, reason: 'expired' };
      }
      try {
        const { tokens: fresh, groups } = current.refreshToken
          ? await client.refresh(current.refreshToken, current.idToken)
          : await client.confirm!(current);
        const merged: ProviderTokenSet = {
          ...fresh,
          idToken: fresh.idToken ?? current.idToken,
          refreshToken: fresh.refreshToken ?? current.refreshToken,
        };
        if (!merged.accessToken)
          throw new ProviderError('token_exchange_failed', 'the refresh answer has no access token');
        const written = await this.store.providerTokens.completeLease(owner.id, provider, holder, {
          data: this.encrypt(owner.id, provider, merged),
          expiresAt: merged.expiresAt,
        });
        if (!written)
          this.logger.warn(
            { event: 'provider_token_lease_lost', provider, userId: owner.userId },
            'a refresh outlasted its lease; its tokens were not stored',
          );
        if (current.refreshToken)
          this.logger.info(
            {
              event: 'provider_token_refreshed',
              provider,
              userId: owner.userId,
              rotated: merged.refreshToken !== current.refreshToken,
            },
            'provider access token refreshed',
          );
        else
          this.logger.info(
            { event: 'provider_token_confirmed', provider, userId: owner.userId },
            'the provider still takes the access token of this sign-in',
          );
        if (groups !== undefined && written) await this.syncGroups(owner.userId, provider, groups);
        return this.remember(key, owner, merged);
      } catch (err) {
        const e =
          err instanceof ProviderError ? err : new ProviderError('token_exchange_failed', (err as Error).message);
        if (e.permanent) {
          // The provider refused the refresh token itself: these tokens are dead. What is
          // kept says so, so later requests know a sign-in (not a retry) is what helps.
          const dead: ProviderTokenSet = {
            accessToken: null,
            refreshToken: null,
            idToken: current.idToken,
            expiresAt: null,
            obtainedAt: Date.now(),
            scope: null,
            refused: true,
          };
          await this.store.providerTokens.completeLease(owner.id, provider, holder, {
            data: this.encrypt(owner.id, provider, dead),
            expiresAt: null,
          });
          this.cache.delete(key);
          this.logger.warn(
            {
              event: 'provider_token_refresh_failed',
              provider,
              userId: owner.userId,
              reason: e.code,
              detail: e.detail,
              permanent: true,
            },
            'provider refused the refresh token; the user must sign in again',
          );
          return { ok: false, reason: 'refresh_failed' };
        }
        await this.store.providerTokens.releaseLease(owner.id, provider, holder);
        this.logger.warn(
          {
            event: 'provider_token_refresh_failed',
            provider,
            userId: owner.userId,
            reason: e.code,
            detail: e.detail,
            permanent: false,
          },
          'provider token refresh failed; will retry',
        );
        if (current.accessToken && current.expiresAt !== null && Date.now() < current.expiresAt)
          return { ok: true, token: current.accessToken, stale: true };
        return { ok: false, reason: 'unavailable' };
      }
    }
    return { ok: false, reason: 'unavailable' };
  }

  /** Polls the row until the lease holder wrote (version moved), gave up, or its lease lapsed. */
  private async waitForOther(
    owner: string,
    provider: string,
    version: number,
  ): Promise<ProviderTokenRecord | undefined> {
    const deadline = Date.now() + this.leaseMs + 1000;
    for (;;) {
      const r = await this.store.providerTokens.get(owner, provider);
      if (!r) return undefined;
      if (r.version !== version || r.leaseHolder === null || r.leaseUntil <= Date.now() || Date.now() > deadline)
        return r;
      await new Promise((resolve) => setTimeout(resolve, WAIT_STEP_MS));
    }
  }
}
