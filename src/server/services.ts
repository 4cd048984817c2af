import type { Accounts } from '../accounts/service.ts';
import type { Audit } from '../audit/index.ts';
import type { SignInNotices } from '../accounts/sign-in-notices.ts';
import type { AppEvents } from '../events/index.ts';
import type { Throttle } from '../accounts/throttle.ts';
import type { Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { TrustedProxies } from '../http/client-ip.ts';
import type { Forwarding } from '../http/forwarded.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { ProviderService } from '../providers/service.ts';
import type { OAuthServer } from '../oauth/server.ts';
import type { Sessions } from '../sessions/index.ts';
import type { Store } from '../store/index.ts';
import type { KeyRing } from '../keys/keys.ts';
import type { Secrets } from '../keys/secrets.ts';

/**
 * The composition root's bag of everything built once at start-up. Only server/ sees it: each
 * feature declares the narrow set of dependencies it takes (e.g. oauth/deps.ts), which this bag
 * satisfies.
 */
export interface Services {
  config: Config;
  logger: Logger;
  store: Store;
  cache: Cache;
  secrets: Secrets;
  /** Signs and verifies Gatehouse's JWTs (assertions; access tokens), publishes the JWKS. */
  keys: KeyRing;
  sessions: Sessions;
  accounts: Accounts;
  throttle: Throttle;
  trusted: TrustedProxies;
  /** Reads forwarding headers from trusted proxies (http/forwarded.ts). */
  forwarding: Forwarding;
  /** Names misconfigurations instead of looping (diagnosis/). */
  diagnosis: Diagnosis;
  /** Own routes' prefix, publicUrl's base path included: /.auth, or /app/.auth. */
  prefix: string;
  /** Sign-in through OAuth2/OIDC providers, linked identities, provider tokens. */
  providers: ProviderService;
  /** The OAuth server for CLIs and MCP clients (src/oauth/). */
  oauth: OAuthServer;
  /** The audit trail of security events (audit/). */
  audit: Audit;
  /** Prometheus metrics, when configured (metrics/). */
  metrics: Metrics | undefined;
  /** "New sign-in to your account" mails, and the cookie that knows the browser (accounts/). */
  notices: SignInNotices;
  /** Tells the apps that take events of deleted, disabled and enabled accounts (events/). */
  events: AppEvents;
}
