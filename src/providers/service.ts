// providers/ (feature): sign-in with OAuth2/OIDC providers and GitHub: the clients, the flows, linking,
// the provider token vault and relay, their handlers and pages; this file is what the rest uses.
import { decodeJwt } from 'jose';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { SafeHtml } from '../pages/index.ts';
import type { RequestContext } from '../http/context.ts';
import type { Sessions } from '../sessions/index.ts';
import type { Session, Store } from '../store/index.ts';
import type { Secrets } from '../keys/secrets.ts';
import { appsOf } from '../sites/index.ts';
import { ProviderAccounts } from './accounts.ts';
import type { ProviderClient } from './client.ts';
import { LoginFlows } from './flows.ts';
import { GithubProvider } from './github.ts';
import { OidcProvider } from './oidc.ts';
import { loginButtons } from './pages.ts';
import type { ProviderTokenSet } from './profile.ts';
import { ProviderBearer } from './bearer-tokens.ts';
import { ProviderTokens, sessionOwner, type AccessToken, type TokenOwner } from './token-vault.ts';

export interface ProviderDeps {
  config: Config;
  store: Store;
  secrets: Secrets;
  logger: Logger;
  sessions: Sessions;
  prefix: string;
  /** gatehouse_provider_bearer_tokens_total, when metrics are on. */
  metrics?: Pick<Metrics, 'providerBearer'>;
}

/** The exact redirect URI of a provider on a site: register this one at the provider. */
export const redirectUri = (origin: string, prefix: string, provider: string): string =>
  `${origin}${prefix}/callback/${provider}`;
/** Where a provider sends the browser after RP-initiated logout. */
export const postLogoutUri = (origin: string, prefix: string): string => `${origin}${prefix}/signed-out`;

/** Where the provider posts its logout tokens (OpenID Connect Back-Channel Logout 1.0): register it there. */
export const backchannelLogoutUri = (origin: string, prefix: string, provider: string): string =>
  `${origin}${prefix}/backchannel-logout/${provider}`;
/** The session's provider, from its amr ("idp:<id>"), when it was made by one. */
export const sessionProvider = (s: Pick<Session, 'amr'>): string | undefined =>
  s.amr.find((a) => a.startsWith('idp:'))?.slice(4);

/** Every app's or route's tokenRelay: the providers whose access and refresh tokens are kept. */
export function relayedProviders(config: Config): Set<string> {
  const ids = new Set<string>();
  for (const app of appsOf(config)) {
    if (app.tokenRelay) ids.add(app.tokenRelay);
    for (const r of app.routes) if (r.tokenRelay) ids.add(r.tokenRelay);
  }
  return ids;
}

export interface PublicIdentity {
  provider: string;
  name: string;
  email: string | null;
  emailVerified: boolean;
  groups: string[];
  linkedAt: string;
  lastLoginAt: string;
}

/**
 * Sign-in through OAuth2/OIDC providers, as the rest of Gatehouse sees it: the configured
 * providers, the login flows, who a profile is, the token vault, and the hooks the login
 * page, /.auth/me, logout and the proxy call. The HTTP routes are in routes.ts.
 */
export class ProviderService {
  readonly clients: readonly ProviderClient[];
  readonly flows: LoginFlows;
  readonly accounts: ProviderAccounts;
  readonly tokens: ProviderTokens;
  /** providers[].bearerTokens: the providers' own access tokens on the apps' routes (bearer-tokens.ts). */
  readonly bearer: ProviderBearer;
  /** Providers some app or route relays: their tokens are kept for the session. */
  readonly relayed: ReadonlySet<string>;
  /** Providers with revalidate: a sign-in's tokens are kept so the provider can be asked again (revalidation.ts). */
  readonly revalidated: ReadonlySet<string>;
  private readonly byId: Map<string, ProviderClient>;
  private readonly d: ProviderDeps;

  constructor(d: ProviderDeps) {
    this.d = d;
    this.clients = d.config.providers.map((p) =>
      p.type === 'github' ? new GithubProvider(p, d.logger) : new OidcProvider(p, d.logger),
    );
    this.byId = new Map(this.clients.map((c) => [c.id, c]));
    this.flows = new LoginFlows(d.store, d.secrets);
    this.accounts = new ProviderAccounts(d.store, d.config.accounts, d.logger);
    this.tokens = new ProviderTokens(d.store, d.secrets, (id) => this.byId.get(id), d.logger);
    this.tokens.onGroups = (userId, provider, groups) =>
      this.accounts.syncGroupsAtRefresh(this.byId.get(provider)!, userId, groups);
    this.relayed = relayedProviders(d.config);
    this.bearer = new ProviderBearer(this.clients, d.store, d.metrics);
    this.revalidated = new Set(d.config.providers.filter((p) => p.revalidate > 0).map((p) => p.id));
  }

  get(id: string): ProviderClient | undefined {
    return this.byId.get(id);
  }

  /** Discovery in the background at start: a provider that is down stops nothing. */
  warm(): void {
    for (const c of this.clients) void c.warm();
  }

  /** For the logout page's CSP: its form is redirected on to these providers' logout. */
  logoutFormActions(): string[] {
    return [...new Set(this.clients.flatMap((c) => c.endSessionOrigins()))];
  }

  /** The sign-in page's buttons; `only`: these providers' alone (allow.providers sent the user here). */
  loginButtons(rd: string, only?: readonly string[]): SafeHtml | undefined {
    return loginButtons(only ? this.clients.filter((c) => only.includes(c.id)) : this.clients, this.d.prefix, rd);
  }

  async identitiesOf(userId: string): Promise<PublicIdentity[]> {
    if (!this.clients.length) return [];
    return (await this.d.store.identities.listByUser(userId)).map((i) => ({
      provider: i.provider,
      name: this.byId.get(i.provider)?.name ?? i.provider,
      email: i.email,
      emailVerified: i.emailVerified,
      groups: i.groups,
      linkedAt: new Date(i.createdAt).toISOString(),
      lastLoginAt: new Date(i.lastLoginAt).toISOString(),
    }));
  }

  /**
   * Keeps what a later request will need, and nothing else: access and refresh tokens when
   * an app relays this provider or a sign-in through it is revalidated, the ID token when logout
   * also ends the provider's session.
   */
  async keepTokens(
    owner: TokenOwner,
    client: ProviderClient,
    tokens: ProviderTokenSet,
    purpose: 'login' | 'link',
  ): Promise<void> {
    if (this.relayed.has(client.id) || (purpose === 'login' && this.revalidated.has(client.id)))
      return this.tokens.save(owner, client.id, tokens);
    if (purpose === 'login' && client.config.type === 'oidc' && client.config.endSession && tokens.idToken) {
      return this.tokens.save(owner, client.id, {
        accessToken: null,
        refreshToken: null,
        idToken: tokens.idToken,
        expiresAt: null,
        obtainedAt: tokens.obtainedAt,
        scope: null,
      });
    }
  }

  /**
   * A session signed in (or re-authenticated) through this provider: remember the provider
   * session it came from, the ID token's sub and sid, so that the provider's back-channel logout
   * can end it (routes.ts). The caller says only sessions signed in with this very provider.
   */
  async rememberProviderSession(idHash: string, client: ProviderClient, tokens: ProviderTokenSet): Promise<void> {
    if (client.config.type !== 'oidc' || !client.config.backchannelLogout || !tokens.idToken) return;
    // Verified at the callback; read again here only for these two claims.
    const { sub, sid } = decodeJwt(tokens.idToken);
    if (typeof sub !== 'string') return;
    await this.d.store.sessions.setProviderSession(idHash, {
      provider: client.id,
      subject: sub,
      sid: typeof sid === 'string' ? sid : null,
    });
  }

  /**
   * A verified back-channel logout: ends the sessions signed in through that provider session
   * (or, with only a sub, every session of that subject there) and forgets their cached tokens.
   */
  async endProviderSessions(client: ProviderClient, match: { sid?: string; subject?: string }) {
    const ended = await this.d.store.sessions.deleteByProviderSession(client.id, match);
    for (const e of ended) this.tokens.forget(sessionOwner({ idHash: e.idHash, userId: e.userId }));
    return ended;
  }

  relayToken(session: Session, provider: string): Promise<AccessToken> {
    return this.tokens.accessToken(sessionOwner(session), provider);
  }

  /** tokenRelay for an owner that is not a browser session (a CLI or MCP login: src/oauth/). */
  relayTokenFor(owner: TokenOwner, provider: string): Promise<AccessToken> {
    return this.tokens.accessToken(owner, provider);
  }

  /**
   * Copies the tokens of the relayed and the revalidated providers of one owner to another (a CLI
   * or MCP login approved from a browser session gets its own copy, re-encrypted for its owner).
   * Returns the providers copied. A provider that rotates refresh tokens strictly lets only one
   * copy refresh; the other then asks for a provider sign-in, as an expired one does (and, with
   * revalidate, ends as refused).
   */
  async copyTokens(from: TokenOwner, to: TokenOwner): Promise<string[]> {
    const copied: string[] = [];
    for (const provider of new Set([...this.relayed, ...this.revalidated])) {
      const t = await this.tokens.read(from, provider);
      if (!t || (!t.accessToken && !t.refreshToken) || t.refused) continue;
      await this.tokens.save(to, provider, t);
      copied.push(provider);
    }
    return copied;
  }

  /**
   * Logout: forgets this node's cached tokens of the session and, when the session was made
   * by a provider with endSession on (and discovery lists an end_session_endpoint), returns
   * the provider's logout URL with id_token_hint and a way back here.
   */
  async beforeLogout(ctx: RequestContext): Promise<{ provider: string; url: string } | undefined> {
    if (!this.clients.length) return undefined;
    const found = await this.d.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin).catch(() => undefined);
    if (found?.state !== 'active') return undefined;
    const owner = sessionOwner(found.active.session);
    this.tokens.forget(owner);
    const client = this.byId.get(sessionProvider(found.active.session) ?? '');
    if (!client || client.config.type !== 'oidc' || !client.config.endSession) return undefined;
    const tokens = await this.tokens.read(owner, client.id).catch(() => undefined);
    const url = await client.endSessionUrl({
      idToken: tokens?.idToken ?? null,
      postLogoutRedirectUri: postLogoutUri(ctx.site.origin, this.d.prefix),
    });
    if (!url) {
      this.d.logger.warn(
        { event: 'end_session_unavailable', provider: client.id },
        'endSession is on but the provider offers no end_session_endpoint (or cannot be reached): signed out of Gatehouse only',
      );
      return undefined;
    }
    return { provider: client.id, url: url.href };
  }
}
