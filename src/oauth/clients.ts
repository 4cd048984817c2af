import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { checkDisplayName, cleanDisplayName, MAX_NAME_CHARS } from '../accounts/names.ts';
import { BUILTIN_CLI_CLIENT, type TokensConfig } from '../config/oauth.ts';
import type { Secrets } from '../keys/secrets.ts';
import type { Store, User } from '../store/index.ts';
import { MetadataDocumentError, metadataUrlProblem, type MetadataDocuments } from './client-metadata.ts';
import { type FederatedConfig, type Federation, JWT_BEARER_ASSERTION } from './federation.ts';
import { OAuthError, param, type OAuthParams } from './http.ts';
import { redirectUriProblem } from '../http/redirect-uri.ts';

/**
 * OAuth clients, from four places:
 *   - builtin: `gatehouse-cli`, the public client `gatehouse login` uses (device flow, refresh);
 *   - config: `tokens.clients`, public or confidential (a secret);
 *   - dynamic: registered by the client itself (RFC 7591), kept in the store;
 *   - metadata: a client_id that is an https URL, read from the document there.
 * Built-in and configured clients are "verified" (the operator vouches for the name); the
 * others name themselves, and the consent page says so.
 */

export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
export type GrantType = 'authorization_code' | 'refresh_token' | typeof DEVICE_GRANT | 'client_credentials';

/** The user id a service client's requests carry (RFC 9068 §2.2: the client as the subject); never a user's (UUIDs). */
export const SERVICE_PREFIX = 'client:';

/** What a configured client with the client_credentials grant is to the apps it calls as itself. */
export interface ServiceClient {
  /** The names of the apps it may get tokens for. */
  apps: ReadonlySet<string>;
  /** Who it is to them: "client:<id>", its name and groups, no address. */
  user: User;
  /** A keyed hash of its secret, carried by its tokens: a new secret ends the old one's tokens. */
  secretMark: string;
}

export interface Client {
  id: string;
  name: string;
  kind: 'builtin' | 'config' | 'dynamic' | 'metadata';
  verified: boolean;
  /** SHA-256 of the secret; null for a public client. */
  secretHash: string | null;
  redirectUris: string[];
  grantTypes: ReadonlySet<GrantType>;
  /** Scopes the client may ask for; null: any supported scope. */
  scopes: ReadonlySet<string> | null;
  /** The client's home page, shown (never fetched) on the consent page. */
  uri: string | undefined;
  /** Set for a configured client with the client_credentials grant. */
  service?: ServiceClient;
  /** Set for a client that authenticates with a workload token (a client assertion) instead of a secret. */
  federated?: FederatedConfig;
}

const secretHashOf = (secret: string) => hash('sha256', secret, 'base64url');
const DYNAMIC_PREFIX = 'dcr_';
/** client_name: the display-name rules (accounts/names.ts), so at most 100 characters. */
const NAME_LIMIT = MAX_NAME_CHARS;
/** client_uri: shown (never fetched) on the consent page. */
const URI_LIMIT = 500;

function grantTypesOf(list: readonly string[]): Set<GrantType> {
  return new Set(
    list
      .map((g) => (g === 'device_code' ? DEVICE_GRANT : g))
      .filter((g): g is GrantType => g === 'authorization_code' || g === 'refresh_token' || g === DEVICE_GRANT),
  );
}

/**
 * A client's name as shown on the consent and device pages: cleaned like a display name (no
 * controls, bidi or invisible characters), cut to NAME_LIMIT (a metadata document's, or one
 * registered before the limit).
 */
function cleanName(v: unknown): string | undefined {
  const name = cleanDisplayName(typeof v === 'string' ? v.slice(0, 10 * NAME_LIMIT) : v, Infinity);
  return name ? [...name].slice(0, NAME_LIMIT).join('').trim() : undefined;
}

export class Clients {
  private readonly fixed = new Map<string, Client>();
  private readonly store: Store;
  private readonly documents: MetadataDocuments | null;
  private readonly config: TokensConfig;
  private readonly allowLoopbackDocuments: boolean;
  private readonly federation: Federation;

  constructor(
    config: TokensConfig,
    store: Store,
    secrets: Secrets,
    federation: Federation,
    documents: MetadataDocuments | null,
    allowLoopbackDocuments: boolean,
  ) {
    this.federation = federation;
    this.config = config;
    this.store = store;
    this.documents = documents;
    this.allowLoopbackDocuments = allowLoopbackDocuments;
    this.fixed.set(BUILTIN_CLI_CLIENT, {
      id: BUILTIN_CLI_CLIENT,
      name: 'Gatehouse CLI',
      kind: 'builtin',
      verified: true,
      secretHash: null,
      redirectUris: [],
      grantTypes: new Set([DEVICE_GRANT, 'refresh_token']),
      scopes: null,
      uri: undefined,
    });
    for (const c of config.clients) {
      const secretHash = c.secret ? secretHashOf(c.secret) : null;
      this.fixed.set(c.id, {
        id: c.id,
        name: c.name,
        kind: 'config',
        verified: true,
        secretHash,
        redirectUris: c.redirectUris,
        grantTypes: new Set(c.grantTypes.map((g) => (g === 'device_code' ? DEVICE_GRANT : g))),
        scopes: c.scopes ? new Set(c.scopes) : null,
        uri: undefined,
        federated: c.federated,
        // The config requires a secret or federated, and apps, with client_credentials (config/oauth.ts).
        service:
          c.grantTypes.includes('client_credentials') && (secretHash || c.federated) && c.apps
            ? {
                apps: new Set(c.apps),
                user: {
                  id: SERVICE_PREFIX + c.id,
                  email: '',
                  emailVerified: false,
                  name: c.name,
                  groups: c.groups,
                  passwordHash: null,
                  disabled: false,
                  createdAt: 0,
                  updatedAt: 0,
                },
                // A federated client's tokens end with the issuer or subject it was given.
                secretMark: secrets
                  .mac('oauth client secret mark', secretHash ?? `${c.federated!.issuer}\n${c.federated!.subject}`)
                  .slice(0, 22),
              }
            : undefined,
      });
    }
  }

  /** The configured service client (client_credentials) with this id: its tokens' check needs no await. */
  service(id: string): ServiceClient | undefined {
    return this.fixed.get(id)?.service;
  }

  /**
   * The client with this id. `fetch`: a metadata-document client is read from its URL (the
   * authorization endpoint, for the client IP `requester`); elsewhere (token, revocation) it
   * is known well enough without: it is public, and what it may do was settled when its
   * grant was made.
   */
  async get(id: string, options: { fetch: false } | { fetch: true; requester: string }): Promise<Client | undefined> {
    const fixed = this.fixed.get(id);
    if (fixed) return fixed;
    if (id.startsWith(DYNAMIC_PREFIX)) {
      if (!this.config.dynamicRegistration) return undefined;
      const stored = await this.store.oauth.clients.get(id);
      if (!stored) return undefined;
      const m = stored.metadata;
      return {
        id,
        name: cleanName(m.client_name) ?? 'Unnamed client',
        kind: 'dynamic',
        verified: false,
        secretHash: stored.secretHash,
        redirectUris: (m.redirect_uris as string[]) ?? [],
        grantTypes: grantTypesOf((m.grant_types as string[]) ?? ['authorization_code']),
        scopes: typeof m.scope === 'string' ? new Set(m.scope.split(' ').filter(Boolean)) : null,
        uri: typeof m.client_uri === 'string' ? m.client_uri : undefined,
      };
    }
    if (!this.documents || metadataUrlProblem(id, this.allowLoopbackDocuments)) return undefined;
    if (!options.fetch) {
      return {
        id,
        name: new URL(id).host,
        kind: 'metadata',
        verified: false,
        secretHash: null,
        redirectUris: [],
        grantTypes: new Set(['authorization_code', 'refresh_token']),
        scopes: null,
        uri: undefined,
      };
    }
    let doc;
    try {
      doc = await this.documents.get(id, options.requester);
    } catch (err) {
      if (err instanceof MetadataDocumentError) {
        const retry = err.retryAfterSeconds === undefined ? {} : { 'retry-after': String(err.retryAfterSeconds) };
        throw new OAuthError(
          err.status,
          err.status === 429 ? 'too_many_requests' : 'invalid_client',
          err.message,
          retry,
        );
      }
      throw err;
    }
    const bad = doc.redirectUris.map((u) => redirectUriProblem(u, this.config.privateUseSchemes)).find(Boolean);
    if (!doc.redirectUris.length || bad)
      throw new OAuthError(
        400,
        'invalid_client',
        `the client metadata document's redirect_uris ${bad ?? 'are missing'}`,
      );
    return {
      id,
      name: cleanName(doc.name) ?? new URL(id).host,
      kind: 'metadata',
      verified: false,
      secretHash: null,
      redirectUris: doc.redirectUris,
      grantTypes: grantTypesOf(doc.grantTypes),
      scopes: doc.scope ? new Set(doc.scope.split(' ').filter(Boolean)) : null,
      uri: doc.clientUri,
    };
  }

  /**
   * Client authentication at the token and revocation endpoints (RFC 6749 §2.3):
   * client_secret_basic, client_secret_post, or none for a public client (client_id only).
   * A confidential client must use its secret; a public one may not send one.
   */
  async authenticate(req: IncomingMessage, params: OAuthParams): Promise<Client> {
    let id = param(params, 'client_id', 512);
    let secret = param(params, 'client_secret', 512);
    let basic = false;
    const header = req.headers.authorization;
    const assertionType = param(params, 'client_assertion_type', 128);
    const assertion = param(params, 'client_assertion', 16_384);
    if (assertionType !== undefined || assertion !== undefined) {
      // A workload's token as the client's proof (RFC 7523 §2.2), for a federated client only.
      if (header !== undefined || secret !== undefined)
        throw new OAuthError(401, 'invalid_client', 'use one way of client authentication');
      if (assertionType !== JWT_BEARER_ASSERTION)
        throw new OAuthError(401, 'invalid_client', `client_assertion_type must be ${JWT_BEARER_ASSERTION}`);
      const client = id === undefined ? undefined : this.fixed.get(id);
      if (!client?.federated)
        throw new OAuthError(401, 'invalid_client', 'name a client that authenticates with an assertion (client_id)');
      await this.federation.verify(client.federated, assertion);
      return client;
    }
    if (header !== undefined) {
      const m = /^Basic ([A-Za-z0-9+/=]{1,2048})$/i.exec(header);
      if (!m)
        throw new OAuthError(401, 'invalid_client', 'only Basic client authentication is accepted here', {
          'www-authenticate': 'Basic realm="gatehouse"',
        });
      const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      let bid: string;
      let bsecret: string;
      try {
        bid = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
        bsecret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
      } catch {
        bid = '';
        bsecret = '';
      }
      if (colon < 1 || (id !== undefined && id !== bid) || secret !== undefined) {
        throw new OAuthError(401, 'invalid_client', 'malformed client credentials', {
          'www-authenticate': 'Basic realm="gatehouse"',
        });
      }
      id = bid;
      secret = bsecret;
      basic = true;
    }
    const fail = (why: string) =>
      new OAuthError(401, 'invalid_client', why, basic ? { 'www-authenticate': 'Basic realm="gatehouse"' } : {});
    if (!id) throw new OAuthError(401, 'invalid_client', 'client_id is required');
    const client = await this.get(id, { fetch: false });
    if (!client) throw fail('unknown client');
    if (client.federated && client.secretHash === null)
      throw fail('this client authenticates with a client assertion (client_assertion_type jwt-bearer)');
    if (client.secretHash === null) {
      if (secret !== undefined) throw fail('this client is public: send no client secret');
      return client;
    }
    if (secret === undefined) throw fail('this client must authenticate with its secret');
    const given = Buffer.from(secretHashOf(secret));
    const expected = Buffer.from(client.secretHash);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw fail('wrong client secret');
    return client;
  }

  /**
   * Dynamic registration (RFC 7591). Registers public clients (token_endpoint_auth_method
   * "none", what MCP clients ask for) and confidential ones (a generated secret, returned
   * once, stored as a hash), for the authorization code grant and refresh.
   */
  async register(body: Record<string, unknown>, ip: string, now: number): Promise<Record<string, unknown>> {
    const invalid = (message: string) => new OAuthError(400, 'invalid_client_metadata', message);
    const redirectUris = body.redirect_uris;
    if (!Array.isArray(redirectUris) || redirectUris.length === 0 || redirectUris.length > 10)
      throw new OAuthError(400, 'invalid_redirect_uri', 'redirect_uris must list 1 to 10 URIs');
    for (const uri of redirectUris) {
      const problem =
        typeof uri === 'string' ? redirectUriProblem(uri, this.config.privateUseSchemes) : 'must be a string';
      if (problem)
        throw new OAuthError(
          400,
          'invalid_redirect_uri',
          `redirect URI ${typeof uri === 'string' ? uri.slice(0, 100) : ''} ${problem}`,
        );
    }
    const grantTypes = body.grant_types ?? ['authorization_code'];
    if (
      !Array.isArray(grantTypes) ||
      grantTypes.length === 0 ||
      !grantTypes.every((g) => g === 'authorization_code' || g === 'refresh_token') ||
      !grantTypes.includes('authorization_code')
    ) {
      throw invalid('grant_types may be authorization_code and refresh_token');
    }
    const responseTypes = body.response_types ?? ['code'];
    if (!Array.isArray(responseTypes) || responseTypes.length !== 1 || responseTypes[0] !== 'code')
      throw invalid('response_types must be ["code"]');
    const method = body.token_endpoint_auth_method ?? 'client_secret_basic';
    if (method !== 'none' && method !== 'client_secret_basic' && method !== 'client_secret_post')
      throw invalid('token_endpoint_auth_method must be none, client_secret_basic or client_secret_post');
    let name: string | undefined;
    if (body.client_name !== undefined) {
      // Shown to users on the consent page: refused like a typed display name, not cleaned.
      if (typeof body.client_name !== 'string') throw invalid('client_name must be a string');
      const named = checkDisplayName(body.client_name);
      if (!named.ok) throw invalid(`client_name: ${named.error}`);
      if (!named.name) throw invalid('client_name must not be blank');
      name = named.name;
    }
    let clientUri: string | undefined;
    if (body.client_uri !== undefined) {
      if (
        typeof body.client_uri !== 'string' ||
        body.client_uri.length > URI_LIMIT ||
        !/^https:\/\/[\x21-\x7e]+$/.test(body.client_uri)
      )
        throw invalid(`client_uri must be an https URL of at most ${URI_LIMIT} characters`);
      clientUri = body.client_uri;
    }
    let scope: string | undefined;
    if (body.scope !== undefined) {
      if (typeof body.scope !== 'string' || body.scope.length > 1000)
        throw invalid('scope must be a space-separated string');
      scope = body.scope.split(' ').filter(Boolean).join(' ');
    }
    const id = `${DYNAMIC_PREFIX}${randomBytes(16).toString('base64url')}`;
    const secret = method === 'none' ? undefined : randomBytes(32).toString('base64url');
    const metadata: Record<string, unknown> = {
      client_name: name,
      client_uri: clientUri,
      redirect_uris: redirectUris,
      grant_types: grantTypes,
      response_types: ['code'],
      token_endpoint_auth_method: method,
      scope,
    };
    for (const k of Object.keys(metadata)) if (metadata[k] === undefined) delete metadata[k];
    await this.store.oauth.clients.create({
      id,
      secretHash: secret ? secretHashOf(secret) : null,
      metadata,
      createdAt: now,
      createdIp: ip,
    });
    return {
      client_id: id,
      client_id_issued_at: Math.floor(now / 1000),
      ...(secret ? { client_secret: secret, client_secret_expires_at: 0 } : {}),
      ...metadata,
    };
  }
}
