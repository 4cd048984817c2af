import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Accounts } from '../accounts/service.ts';
import type { Throttle } from '../accounts/throttle.ts';
import type { Cache } from '../cache/index.ts';
import type { Config } from '../config/schema.ts';
import type { Diagnosis } from '../diagnosis/index.ts';
import type { TrustedProxies } from './client-ip.ts';
import type { Forwarding, Scheme } from './forwarded.ts';
import type { Logger } from '../log/index.ts';
import type { ProviderService } from '../providers/service.ts';
import type { OAuthServer } from '../oauth/server.ts';
import type { Sessions } from '../sessions/index.ts';
import type { Store, User } from '../store/index.ts';
import type { KeyRing } from '../keys/keys.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { Site } from '../sites/index.ts';

/** Everything a request handler may use, built once at start-up. */
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
  /** Names misconfigurations instead of looping (edge/diagnose.ts). */
  diagnosis: Diagnosis;
  /** Own routes' prefix, publicUrl's base path included: /.auth, or /app/.auth. */
  prefix: string;
  /** Sign-in through OAuth2/OIDC providers, linked identities, provider tokens. */
  providers: ProviderService;
  /** The OAuth server for CLIs and MCP clients (src/oauth/). */
  oauth: OAuthServer;
}

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  site: Site;
  /** Normalized path (http/target.ts) and the raw query string, "?" included or "". */
  path: string;
  query: string;
  ip: string;
  /** The scheme the client used (through trusted proxies only; else the listener's). */
  scheme: Scheme;
  /** The direct peer is a trusted proxy. */
  viaProxy: boolean;
  requestId: string;
  /** Set once known, for the request log line. */
  userId?: string;
}

/** The user as Gatehouse's JSON endpoints show it. Never the password hash. */
export function publicUser(user: User): {
  id: string;
  email: string;
  emailVerified: boolean;
  name: string | null;
  groups: string[];
} {
  return { id: user.id, email: user.email, emailVerified: user.emailVerified, name: user.name, groups: user.groups };
}
