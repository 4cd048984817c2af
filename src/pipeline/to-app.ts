import type { RequestContext } from '../http/context.ts';
import type { Forwarding } from '../http/forwarded.ts';
import { identityHeaders } from '../identity/headers.ts';
import type { BearerSession } from '../oauth/bearer.ts';
import type { Rule } from '../policy/rules.ts';
import type { ProviderService } from '../providers/service.ts';
import { type AccessToken, grantOwner } from '../providers/token-vault.ts';
import { upstreamRequestHeaders } from '../proxy/headers.ts';
import type { ActiveSession } from '../sessions/index.ts';
import type { OwnToken } from './decide.ts';
import type { App, Site } from '../sites/index.ts';

/** What the request headers for the app are made from: a request context (a WebSocket upgrade has no response). */
export type UpgradeContext = Omit<RequestContext<Site>, 'res'>;

export type RelayFailure = Extract<AccessToken, { ok: false }>['reason'];
export type Relay = { bearer: string | null | undefined } | { provider: string; reason: RelayFailure };

/** tokenRelay's answers that need no provider token (shared: read-only). */
const NO_RELAY: Relay = { bearer: undefined };
const NOBODY_TO_RELAY: Relay = { bearer: null };

/**
 * What an allowed request takes to the app, for the HTTP and WebSocket entry points alike:
 * the provider token a route relays (tokenRelay) and the rebuilt request headers, identity
 * headers included (proxy/headers.ts, identity/headers.ts).
 */
export class ToApp {
  private readonly forwarding: Forwarding;
  private readonly providers: Pick<ProviderService, 'relayToken' | 'relayTokenFor'>;

  constructor(o: { forwarding: Forwarding; providers: Pick<ProviderService, 'relayToken' | 'relayTokenFor'> }) {
    this.forwarding = o.forwarding;
    this.providers = o.providers;
  }

  /**
   * `bearer`: undefined without tokenRelay; else the token to send (null: none, and the
   * client's is dropped), put where headers.accessToken says: Authorization as a Bearer, any
   * other header bare (the client's Authorization is then the app's). `ownToken`: where the
   * client's Gatehouse token was (decide.ts): in Authorization, which is dropped, or in
   * tokens.bearerHeader (dropped like an identity header; Authorization passes).
   */
  headers(
    ctx: UpgradeContext,
    app: App,
    active: ActiveSession | undefined,
    assertion: string | undefined,
    bearer?: string | null,
    ownToken?: OwnToken,
  ): string[] {
    const { req, site } = ctx;
    const relayTo = app.headers.accessToken;
    const relayed = bearer !== undefined && relayTo === 'Authorization';
    const identity = identityHeaders(app, active, assertion);
    return upstreamRequestHeaders(
      req.rawHeaders,
      req.headers.connection,
      {
        clientIp: ctx.ip,
        // The chain is passed on only when it came through a trusted proxy; otherwise the
        // app learns the peer alone, whatever the client wrote.
        forwardedFor: this.forwarding.chainFor(req, ctx),
        proto: site.secure ? 'https' : 'http',
        host: site.host,
        requestId: ctx.requestId,
        traceparent: ctx.trace?.started,
        upstreamHost: app.preserveHost ? site.host : app.upstream.host,
        ownCookies: site.ownCookies,
        prefix: app.stripPrefix ? app.pathPrefix : undefined,
        extra: app.requestHeaders,
      },
      bearer
        ? relayed
          ? [...identity, 'authorization', `Bearer ${bearer}`]
          : [...identity, relayTo, bearer]
        : identity,
      relayed || ownToken === 'authorization' ? 'authorization' : undefined,
      app.ownIdentityHeaders,
    );
  }

  /**
   * tokenRelay of the app or rule: no relay (bearer undefined), relay but nobody signed in
   * (null: the client's Authorization is still dropped), the user's provider access token, or
   * why there is none. Synchronous without a relay (the common request awaits nothing);
   * once cached, a map lookup.
   */
  tokenRelay(rule: Rule, app: App, active: ActiveSession | undefined): Relay | Promise<Relay> {
    const provider = rule.tokenRelay === null ? app.tokenRelay : rule.tokenRelay || null;
    if (!provider) return NO_RELAY;
    if (!active) return NOBODY_TO_RELAY;
    if ('grant' in active && (active as BearerSession).grant === null) {
      // A provider's own token is relayed as it came, to a route relaying that provider; a service
      // client (client_credentials) is nobody at a provider.
      const own = (active as BearerSession).provider;
      return own?.id === provider ? { bearer: own.token } : NOBODY_TO_RELAY;
    }
    return this.relayToken(active, provider);
  }

  private async relayToken(active: ActiveSession, provider: string): Promise<Relay> {
    // A CLI or MCP login relays the provider tokens it was given when the user approved it.
    const token =
      'grant' in active
        ? await this.providers.relayTokenFor(grantOwner((active as BearerSession).grant!), provider)
        : await this.providers.relayToken(active.session, provider);
    return token.ok ? { bearer: token.token } : { provider, reason: token.reason };
  }
}
