import type { AuditLog } from '../audit/index.ts';
import type { Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { RecentAuthGate } from '../accounts/reauth.ts';
import type { ProviderService } from '../providers/service.ts';
import { grantOwner, sessionOwner } from '../providers/token-vault.ts';
import type { FormTools } from '../pages/kit.ts';
import type { RequestContext } from '../http/context.ts';
import type { App, Site } from '../sites/index.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { Grant, Store } from '../store/index.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { Clients } from './clients.ts';
import { OAuthError } from './http.ts';
import type { Limits } from './limits.ts';
import type { Resources } from './resources.ts';
import type { Scopes } from './scopes.ts';
import type { TokenService } from './grants.ts';

/** What the page kit (pages/kit.ts) lends the OAuth pages: CSRF, page output, own URLs. */
export type PageKit = Pick<FormTools, 'csrf' | 'readPost' | 'html' | 'url'>;

export interface OAuthDeps {
  config: Config;
  logger: Logger;
  store: Store;
  cache: Cache;
  secrets: Secrets;
  sessions: Sessions;
  sites: Map<string, Site>;
  /** Own routes' prefix, publicUrl's base path included (/.auth, /app/.auth). */
  prefix: string;
  /** publicUrl: `iss` of every token and the authorization server's identifier. */
  issuer: string;
  /** Where the OAuth endpoints and the device page are: publicUrl's origin and the prefix. */
  base: string;
  clients: Clients;
  scopes: Scopes;
  tokens: TokenService;
  resources: Resources;
  limits: Limits;
  /** Sign-in through providers, when configured: a grant gets the approving session's provider tokens. */
  providers: ProviderService | undefined;
  /** Approvals need a recent sign-in or re-authentication (accounts/reauth.ts); none: no such check. */
  reauth: RecentAuthGate | undefined;
  now(): number;
  /** The audit trail: approvals, revocations, refresh-token reuse. */
  audit: AuditLog;
}

export async function signedIn(deps: OAuthDeps, ctx: RequestContext): Promise<ActiveSession | undefined> {
  const found = await deps.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
  if (found.state !== 'active') return undefined;
  ctx.userId = found.active.user.id;
  return found.active;
}

/** The app a request's resource indicators name (RFC 8707): exactly one app; none given means the only app there is. */
export function requestedApp(deps: OAuthDeps, resources: string[]): App {
  if (resources.length === 0) {
    const sole = deps.resources.sole();
    if (sole) return sole;
    throw new OAuthError(400, 'invalid_target', 'resource is required: name the URL of the app the token is for');
  }
  const apps = new Set(resources.map((r) => deps.resources.resolve(r)));
  if (apps.has(undefined))
    throw new OAuthError(400, 'invalid_target', 'resource does not name an app behind this Gatehouse');
  if (apps.size > 1) throw new OAuthError(400, 'invalid_target', 'a token is for one app: give one resource');
  return [...apps][0]!;
}

/** The user agent header, trimmed, for the records the user and operator see. */
export function userAgentOf(ctx: RequestContext): string | null {
  const ua = ctx.req.headers['user-agent'];
  return typeof ua === 'string' ? ua.slice(0, 256) : null;
}

/**
 * A grant approved from a browser session that signed in through a provider takes a copy of
 * that session's provider tokens (those an app relays, and those of a provider with revalidate),
 * so tokenRelay works for the CLI or MCP client's requests without the user present, and the
 * provider can go on confirming the login after the browser signed out (providers/revalidation.ts).
 * Best effort: a failure is logged, the login itself stands (tokenRelay then asks for a provider
 * sign-in, as for a browser; revalidate, finding no tokens, lets it last its interval).
 */
export async function handOverProviderTokens(deps: OAuthDeps, sessionHash: string | null, grant: Grant): Promise<void> {
  if (!deps.providers || !sessionHash) return;
  try {
    const copied = await deps.providers.copyTokens(
      sessionOwner({ idHash: sessionHash, userId: grant.userId }),
      grantOwner(grant),
    );
    if (copied.length)
      deps.logger.info(
        { event: 'oauth_provider_tokens', grant: grant.id, providers: copied },
        'provider tokens handed to the new login',
      );
  } catch (err) {
    deps.logger.warn(
      { event: 'oauth_provider_tokens_failed', grant: grant.id, err: { message: (err as Error).message } },
      'provider tokens could not be handed to the new login',
    );
  }
}
