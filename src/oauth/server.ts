// oauth/ (feature): the OAuth 2.1 server for CLIs and MCP clients: endpoints (this file), device flow,
// code + consent, grants and tokens, clients, resources, the bearer check the pipeline uses.
import { type AuditLog, NO_AUDIT } from '../audit/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { IncomingMessage } from 'node:http';
import { field, readBody } from '../http/body.ts';
import { paths } from '../http/paths.ts';
import { redirect, sendJson } from '../http/respond.ts';
import type { RequestContext } from '../http/context.ts';
import type { App, Site } from '../sites/index.ts';
import type { ProviderService } from '../providers/service.ts';
import type { ActiveSession } from '../sessions/index.ts';
import type { AccountSectionView } from '../pages/index.ts';
import { issuerOf, type KeyRing } from '../keys/keys.ts';
import { AuthorizationCodeFlow } from './authorize.ts';
import {
  BearerAuth,
  bearerToken,
  looksIssuedBy,
  providerSession,
  type BearerResult,
  type BearerSession,
} from './bearer.ts';
import { MetadataDocuments } from './client-metadata.ts';
import { type Client, Clients, DEVICE_GRANT } from './clients.ts';
import { requestedApp, signedIn, userAgentOf, type OAuthDeps, type PageKit } from './deps.ts';
import { DeviceFlow, SIGN_IN_FOR_DEVICE } from './device.ts';
import {
  CORS,
  OAuthError,
  type OAuthParams,
  oauthEndpoint,
  param,
  preflight,
  readOAuthForm,
  sendOAuthJson,
} from './http.ts';
import { Federation } from './federation.ts';
import { Limits } from './limits.ts';
import { isLoopbackHost } from '../http/loopback.ts';
import { grantsSection } from './pages.ts';
import { Resources } from './resources.ts';
import { Scopes } from './scopes.ts';
import { type LoginGuard, TokenService, type TokenResponse } from './grants.ts';
import type { RecentAuthGate } from '../accounts/reauth.ts';

type Handler = (ctx: RequestContext) => Promise<void>;

const DAY = 86_400_000;

export type OAuthServerOptions = Pick<
  OAuthDeps,
  'config' | 'logger' | 'store' | 'cache' | 'secrets' | 'sessions' | 'sites' | 'prefix'
> & {
  providers?: ProviderService;
  /** The signing key ring: access tokens are JWTs signed like every Gatehouse token, verifiable with the same JWKS. */
  keys: KeyRing;
  /** The clock of every OAuth decision (codes, grants, tokens); tests move it by hand. */
  now?: () => number;
  /** The page kit (pages/kit.ts) the device, consent and account pages are made with. */
  pages: PageKit;
  audit?: AuditLog;
  /** gatehouse_oauth_tokens_total, when metrics are on. */
  metrics?: Metrics;
  /** Approving a device or a client needs a recent sign-in or re-authentication (accounts/reauth.ts). */
  reauth?: RecentAuthGate;
  /** providers[].revalidate for CLI and MCP logins (providers/revalidation.ts): at each refresh and bearer request. */
  loginGuard?: LoginGuard;
};

/**
 * Gatehouse's OAuth 2.1 authorization server for CLIs and MCP clients, on node:http and the
 * store (the reasons it is not oidc-provider are in docs/oauth-server.md). Endpoints under
 * <prefix>/oauth/ (authorize, token, device_authorization, revoke, register), the device
 * page at <prefix>/device, the "devices and apps" section of <prefix>/account, the
 * well-known metadata at the root (RFC 8414, RFC 9728), and the bearer check of the proxy.
 * Their paths and methods are in server/routes.ts; the handlers are the public methods here.
 */
export class OAuthServer {
  private readonly d: OAuthDeps;
  private readonly bearer: BearerAuth;
  private readonly documents: MetadataDocuments | null;
  private readonly issuerSite: Site | undefined;
  private readonly challenges = new Map<App, string>();
  /** tokens.bearerHeader in lower case (as Node keys req.headers), or undefined. */
  private readonly tokenHeader: string | undefined;
  private readonly pages: PageKit;
  readonly device: DeviceFlow;
  readonly code: AuthorizationCodeFlow;
  private readonly metrics: Metrics | undefined;

  constructor(o: OAuthServerOptions) {
    const issuer = issuerOf(o.config);
    this.tokenHeader = o.config.tokens.bearerHeader?.toLowerCase();
    const origin = new URL(issuer).origin;
    const now = o.now ?? Date.now;
    // Gatehouse itself on loopback (development, tests): metadata documents may be there too.
    const dev = isLoopbackHost(new URL(issuer).hostname);
    const limits = new Limits(o.cache, o.config.tokens.rateLimits);
    this.documents = o.config.tokens.clientIdMetadataDocuments
      ? new MetadataDocuments({ allowLoopback: dev, now, admit: (ip) => limits.clientDocument(ip) })
      : null;
    const scopes = new Scopes(o.config.tokens.scopes);
    const resources = new Resources(o.sites, o.prefix);
    const tokens = new TokenService({
      store: o.store,
      secrets: o.secrets,
      keys: o.keys,
      config: o.config.tokens,
      scopes,
      logger: o.logger,
      audit: o.audit ?? NO_AUDIT,
      guard: o.loginGuard,
    });
    this.d = {
      config: o.config,
      logger: o.logger,
      store: o.store,
      cache: o.cache,
      secrets: o.secrets,
      sessions: o.sessions,
      sites: o.sites,
      prefix: o.prefix,
      issuer,
      base: `${origin}${o.prefix}`,
      clients: new Clients(o.config.tokens, o.store, o.secrets, new Federation(issuer, now), this.documents, dev),
      scopes,
      tokens,
      resources,
      limits,
      providers: o.providers,
      reauth: o.reauth,
      now,
      audit: o.audit ?? NO_AUDIT,
    };
    this.metrics = o.metrics;
    this.issuerSite = [...o.sites.values()].find((s) => s.origin === origin);
    this.bearer = new BearerAuth({
      keys: o.keys,
      store: o.store,
      tokens,
      resources,
      clients: this.d.clients,
      issuer,
      now,
      guard: o.loginGuard,
    });
    this.pages = o.pages;
    this.device = new DeviceFlow(this.d, o.pages);
    this.code = new AuthorizationCodeFlow(this.d, o.pages);
  }

  /** The OAuth endpoints answer on publicUrl's site only: elsewhere 404, naming where they are. */
  async onIssuerSite(ctx: RequestContext, h: Handler): Promise<void> {
    if (ctx.site !== this.issuerSite) {
      return sendOAuthJson(ctx.res, 404, {
        error: 'not_found',
        error_description: `the OAuth endpoints are at ${this.d.base}/oauth/`,
      });
    }
    return h(ctx);
  }

  /** OPTIONS on an endpoint that browser-based clients call: the CORS preflight allowing `methods`. */
  async cors(ctx: RequestContext, methods: string): Promise<void> {
    preflight(ctx.res, methods);
  }

  /**
   * What the sign-in page says when its return target `rd` (a path) is one of these pages,
   * so the user knows what waits for them there.
   */
  signInPurpose(rd: string): string | undefined {
    const path = rd.split('?', 1)[0];
    if (path === `${this.d.prefix}/device`) return SIGN_IN_FOR_DEVICE;
    if (path === `${this.d.prefix}/oauth/authorize`)
      return 'Sign in to continue: a program asks to use your account, and you will be asked whether to allow it.';
    return undefined;
  }

  // ---- token, revocation, registration --------------------------------------------

  async token(ctx: RequestContext): Promise<void> {
    let grant = 'unknown';
    let outcome = 'success';
    await oauthEndpoint(ctx.res, async () => {
      try {
        await this.issue(ctx, (g) => (grant = g));
      } catch (err) {
        // OAuth error codes are a fixed set (RFC 6749 §5.2, RFC 8628 §3.5): a bounded label.
        outcome = err instanceof OAuthError ? err.error : 'error';
        throw err;
      }
    });
    this.metrics?.oauthTokens.inc({ grant, outcome });
  }

  /** The token endpoint's work; `granted` learns the grant type (a bounded label) once read. */
  private async issue(ctx: RequestContext, granted: (grant: string) => void): Promise<void> {
    const params = await readOAuthForm(ctx.req);
    const client = await this.d.clients.authenticate(ctx.req, params);
    const grantType = param(params, 'grant_type', 128);
    granted(
      grantType === DEVICE_GRANT
        ? 'device_code'
        : grantType === 'authorization_code' || grantType === 'refresh_token' || grantType === 'client_credentials'
          ? grantType
          : 'other',
    );
    let response: TokenResponse;
    if (grantType === DEVICE_GRANT) response = await this.device.exchange(params, client, ctx);
    else if (grantType === 'authorization_code') response = await this.code.exchange(params, client, ctx);
    else if (grantType === 'refresh_token') {
      if (!client.grantTypes.has('refresh_token'))
        throw new OAuthError(400, 'unauthorized_client', 'this client may not use refresh tokens');
      const token = param(params, 'refresh_token', 256);
      if (!token) throw new OAuthError(400, 'invalid_request', 'refresh_token is required');
      response = await this.d.tokens.refresh(token, client, param(params, 'scope', 1000), {
        now: this.d.now(),
        ip: ctx.ip,
        userAgent: userAgentOf(ctx),
      });
    } else if (grantType === 'client_credentials') response = await this.clientCredentials(params, client);
    else if (!grantType) throw new OAuthError(400, 'invalid_request', 'grant_type is required');
    else
      throw new OAuthError(
        400,
        'unsupported_grant_type',
        'supported: authorization_code, refresh_token, urn:ietf:params:oauth:grant-type:device_code, client_credentials',
      );
    this.d.logger.info(
      { event: 'oauth_token', grantType, clientId: client.id, userId: ctx.userId, requestId: ctx.requestId },
      'tokens issued',
    );
    sendOAuthJson(ctx.res, 200, response);
  }

  /**
   * grant_type=client_credentials (RFC 6749 §4.4): a configured service client (its secret
   * checked by clients.authenticate) gets a token for one of its apps, to call it as itself.
   */
  private clientCredentials(params: OAuthParams, client: Client): Promise<TokenResponse> {
    const service = client.service;
    if (!service) throw new OAuthError(400, 'unauthorized_client', 'this client may not use client_credentials');
    const app = requestedApp(this.d, params.all('resource'));
    if (!service.apps.has(app.name))
      throw new OAuthError(400, 'invalid_target', `this client may not call the app "${app.name}" (its apps: list)`);
    const scope = this.d.scopes.request(param(params, 'scope', 1000), client);
    if (scope.split(' ').includes('offline_access'))
      throw new OAuthError(
        400,
        'invalid_scope',
        'client_credentials gets no refresh token: do not ask for offline_access',
      );
    return this.d.tokens.serviceResponse(client.id, service, this.d.resources.idOf(app), scope);
  }

  /** RFC 7009: always 200 for a well-formed request from a known client; only its own tokens are affected. */
  revoke(ctx: RequestContext): Promise<void> {
    return oauthEndpoint(ctx.res, async () => {
      const params = await readOAuthForm(ctx.req);
      const client = await this.d.clients.authenticate(ctx.req, params);
      const token = param(params, 'token', 8192);
      if (!token) throw new OAuthError(400, 'invalid_request', 'token is required');
      const grant = await this.d.tokens.revoke(token, client, this.d.resources.ids(), this.d.now());
      if (grant)
        this.d.audit.record({
          event: 'login_revoked',
          userId: grant.userId,
          ctx,
          detail: { by: 'client', client: client.id, grant: grant.id },
        });
      if (grant)
        this.d.logger.info(
          {
            event: 'oauth_revoke',
            by: 'client',
            clientId: client.id,
            userId: grant.userId,
            grant: grant.id,
            requestId: ctx.requestId,
          },
          'login revoked by its client',
        );
      ctx.res.writeHead(200, { 'cache-control': 'no-store', 'content-length': 0, ...CORS });
      ctx.res.end();
    });
  }

  register(ctx: RequestContext): Promise<void> {
    return oauthEndpoint(ctx.res, async () => {
      if (!this.d.config.tokens.dynamicRegistration)
        throw new OAuthError(
          404,
          'not_found',
          'dynamic client registration is turned off (tokens.dynamicRegistration)',
        );
      // Counted before anything is read, against two allowances: one kept by registrations that
      // succeed, a larger one kept by those that fail; each gives back the one it did not use.
      const verdict = await this.d.limits.registration(ctx.ip);
      if (!verdict.ok)
        throw new OAuthError(429, 'too_many_requests', 'too many registrations from this address; try again later', {
          'retry-after': String(verdict.retryAfterSeconds),
        });
      let registered: Record<string, unknown>;
      try {
        registered = await this.d.clients.register(await this.registrationBody(ctx), ctx.ip, this.d.now());
      } catch (err) {
        await this.d.limits.registrationSettled(ctx.ip, false);
        throw err;
      }
      await this.d.limits.registrationSettled(ctx.ip, true);
      this.d.logger.info(
        {
          event: 'oauth_client_registered',
          clientId: registered.client_id,
          name: registered.client_name,
          ip: ctx.ip,
          requestId: ctx.requestId,
        },
        'client registered',
      );
      sendOAuthJson(ctx.res, 201, registered);
    });
  }

  private async registrationBody(ctx: RequestContext): Promise<Record<string, unknown>> {
    const type = (ctx.req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
    if (type !== 'application/json')
      throw new OAuthError(400, 'invalid_client_metadata', 'send the client metadata as application/json');
    let body: unknown;
    try {
      body = JSON.parse((await readBody(ctx.req)).toString('utf8'));
    } catch (err) {
      if (err instanceof SyntaxError)
        throw new OAuthError(400, 'invalid_client_metadata', 'the body is not valid JSON');
      throw err;
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new OAuthError(400, 'invalid_client_metadata', 'the body must be a JSON object');
    return body as Record<string, unknown>;
  }

  // ---- the account page's devices and apps --------------------------------------

  /** The "Devices and apps" section of <prefix>/account (accounts/account-page.ts) for the signed-in user. */
  async accountSection(ctx: RequestContext, active: ActiveSession, csrf: string): Promise<AccountSectionView> {
    const pages = this.pages;
    const now = this.d.now();
    const grants = (await this.d.store.oauth.grants.listByUser(active.user.id, now)).filter(
      (g) => !this.d.tokens.ended(g, now),
    );
    const appTitle = (resource: string) => this.d.resources.resolve(resource)?.title ?? resource;
    const rows = grants.map((grant) => ({ grant, appTitle: appTitle(grant.resource) }));
    // Approved a moment ago, not yet collected by the program's next poll: listed (and cancellable) at once.
    const waiting = await Promise.all(
      (await this.d.store.oauth.devices.listApproved(active.user.id, now)).map(async (d) => ({
        id: d.deviceHash,
        clientName: (await this.d.clients.get(d.clientId, { fetch: false }))?.name ?? d.clientId,
        appTitle: appTitle(d.resource),
        approvedAt: d.decidedAt ?? d.createdAt,
        ip: d.ip,
      })),
    );
    const query = new URLSearchParams(ctx.query.slice(1));
    return {
      id: 'grants',
      heading: 'Devices and apps',
      body: grantsSection({ rows, waiting, action: pages.url(ctx, paths.revokeGrant), csrf, now }),
      notice:
        query.get('grant_signed_out') === '1'
          ? 'Signed out. That program needs to sign in again to use your account.'
          : query.get('device_cancelled') === '1'
            ? 'Cancelled. That program was not signed in.'
            : undefined,
    };
  }

  /**
   * POST <prefix>/account/grants/revoke: the user signs one of their CLI or MCP logins out
   * (`grant`), or cancels a device login they approved that its program has not collected yet
   * (`device`).
   */
  async revokeByUser(ctx: RequestContext): Promise<void> {
    const pages = this.pages;
    const input = await pages.readPost(ctx);
    const active = await signedIn(this.d, ctx);
    const account = (query?: Record<string, string>) => `${ctx.site.origin}${pages.url(ctx, paths.account, query)}`;
    if (!active)
      return input.kind === 'json'
        ? sendJson(ctx.res, 401, { error: 'unauthenticated', message: 'Sign in first.' })
        : redirect(
            ctx.res,
            303,
            `${ctx.site.origin}${pages.url(ctx, paths.login, { rd: pages.url(ctx, paths.account) })}`,
          );
    const notFound = () =>
      input.kind === 'json'
        ? sendJson(ctx.res, 404, { error: 'not_found', message: 'No such login.' })
        : redirect(ctx.res, 303, account());
    const deviceHash = field(input, 'device', 64);
    if (deviceHash !== undefined) {
      const device = await this.d.store.oauth.devices.get(deviceHash);
      if (!device || device.userId !== active.user.id) return notFound();
      if (!(await this.d.store.oauth.devices.cancel(deviceHash, active.user.id, this.d.now()))) {
        // Collected meanwhile (now a login, listed with Sign out) or expired: the page shows which.
        return input.kind === 'json'
          ? sendJson(ctx.res, 409, {
              error: 'not_waiting',
              message: 'That program has signed in meanwhile, or its code expired; see the list.',
            })
          : redirect(ctx.res, 303, account());
      }
      this.d.logger.info(
        {
          event: 'oauth_device_cancelled',
          userId: active.user.id,
          clientId: device.clientId,
          requestId: ctx.requestId,
        },
        'approved device sign-in cancelled by its user',
      );
      return input.kind === 'json'
        ? sendJson(ctx.res, 200, { ok: true })
        : redirect(ctx.res, 303, account({ device_cancelled: '1' }));
    }
    const id = field(input, 'grant', 64);
    const grant = id ? await this.d.store.oauth.grants.get(id) : undefined;
    if (!grant || grant.userId !== active.user.id) return notFound();
    await this.d.store.oauth.grants.revoke(grant.id, this.d.now(), 'user');
    this.d.audit.record({
      event: 'login_revoked',
      userId: active.user.id,
      ctx,
      detail: { by: 'user', client: grant.clientId, grant: grant.id },
    });
    this.d.logger.info(
      {
        event: 'oauth_revoke',
        by: 'user',
        userId: active.user.id,
        clientId: grant.clientId,
        grant: grant.id,
        requestId: ctx.requestId,
      },
      'login revoked by its user',
    );
    if (input.kind === 'json') return sendJson(ctx.res, 200, { ok: true });
    redirect(ctx.res, 303, account({ grant_signed_out: '1' }));
  }

  // ---- well-known metadata at the root --------------------------------------------

  /**
   * RFC 9728 protected-resource metadata for each app: /.well-known/oauth-protected-resource,
   * and below it the path-suffixed form for any path an app serves. `suffix`: the path below
   * that document's path.
   */
  protectedResource(ctx: RequestContext<Site>, suffix: string): void {
    const found = this.d.resources.forMetadata(ctx.site, suffix);
    this.metadata(ctx, found && this.resourceMetadata(found.app, found.resource));
  }

  /**
   * RFC 8414 authorization server metadata, on publicUrl's site. RFC 8414 puts it at the root with
   * the issuer's path appended; under a base path only the base is Gatehouse's, so it is at
   * <publicUrl>/.well-known/oauth-authorization-server (docs/oauth-server.md).
   */
  authorizationServer(ctx: RequestContext): void {
    this.metadata(ctx, ctx.site === this.issuerSite ? this.serverMetadata() : undefined);
  }

  private metadata(ctx: RequestContext, body: Record<string, unknown> | undefined): void {
    if (ctx.req.method === 'OPTIONS') return preflight(ctx.res, 'GET');
    if (!body) return sendJson(ctx.res, 404, { error: 'not_found', message: 'No metadata at this address.' }, CORS);
    sendJson(ctx.res, 200, body, { 'cache-control': 'public, max-age=300', ...CORS });
  }

  serverMetadata(): Record<string, unknown> {
    const t = this.d.config.tokens;
    const base = `${this.d.base}/oauth`;
    const auth = ['none', 'client_secret_basic', 'client_secret_post'];
    return {
      issuer: this.d.issuer,
      authorization_endpoint: `${base}/authorize`,
      token_endpoint: `${base}/token`,
      device_authorization_endpoint: `${base}/device_authorization`,
      revocation_endpoint: `${base}/revoke`,
      ...(t.dynamicRegistration ? { registration_endpoint: `${base}/register` } : {}),
      jwks_uri: `${this.d.issuer}/.well-known/jwks.json`,
      scopes_supported: this.d.scopes.supported,
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: [
        'authorization_code',
        'refresh_token',
        DEVICE_GRANT,
        ...(t.clients.some((c) => c.grantTypes.includes('client_credentials')) ? ['client_credentials'] : []),
      ],
      token_endpoint_auth_methods_supported: auth,
      revocation_endpoint_auth_methods_supported: auth,
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
      client_id_metadata_document_supported: t.clientIdMetadataDocuments,
    };
  }

  private resourceMetadata(app: App, resource: string): Record<string, unknown> {
    return {
      resource,
      authorization_servers: [this.d.issuer],
      scopes_supported: this.d.scopes.supported,
      bearer_methods_supported: ['header'],
      resource_name: app.title,
      // tokens.bearerHeader: where a client may send the token instead of Authorization, which
      // then stays the app's (`gatehouse token --header` reads it at login).
      ...(this.d.config.tokens.bearerHeader ? { gatehouse_token_header: this.d.config.tokens.bearerHeader } : {}),
    };
  }

  // ---- the proxy's bearer check ----------------------------------------------------

  /** The bearer token of a request, when it sends one. */
  tokenOf(req: IncomingMessage): string | undefined {
    const header = req.headers.authorization;
    return header === undefined ? undefined : bearerToken(header);
  }

  /**
   * The token in tokens.bearerHeader: bare or as "Bearer <token>" (`gatehouse token --header`
   * sends it bare). Two copies arrive joined by ", " and are no token; nor is another scheme.
   */
  headerTokenOf(req: IncomingMessage): string | undefined {
    if (this.tokenHeader === undefined) return undefined;
    const value = req.headers[this.tokenHeader];
    if (value === undefined) return undefined;
    const text = (Array.isArray(value) ? value.join(', ') : value).trim();
    return /^bearer /i.test(text) ? text.slice(7).trim() : text;
  }

  async authenticate(token: string, app: App): Promise<BearerResult> {
    const idp = this.d.providers?.bearer;
    if (idp?.enabled && !this.bearer.knows(token) && idp.claims(token)) {
      const r = await idp.authenticate(token, app.name);
      return r.ok ? providerSession(r, token, app) : r;
    }
    return this.bearer.authenticate(token, app);
  }

  /**
   * Whether what a token admitted still stands, its own expiry aside (bearer.ts recheck): for a
   * provider's token, its user, read now, still there and enabled.
   */
  async recheck(active: BearerSession, app: App): Promise<BearerResult> {
    if (active.provider === undefined) return this.bearer.recheck(active, app);
    const user = await this.d.store.users.get(active.user.id);
    return user && !user.disabled
      ? { ok: true, active: { ...active, user } }
      : { ok: false, description: 'the account is disabled or deleted' };
  }

  /**
   * Whether a bearer token is Gatehouse's to decide (bearer.ts looksIssuedBy), or a provider's whose
   * tokens are accepted (providers[].bearerTokens): either way it never reaches the app.
   */
  isOwnToken(token: string): boolean {
    if (this.bearer.knows(token) || looksIssuedBy(token, this.d.issuer)) return true;
    const idp = this.d.providers?.bearer;
    return idp !== undefined && idp.enabled && idp.claims(token);
  }

  /** WWW-Authenticate for a 401 from an app (RFC 6750 §3, RFC 9728 §5.1). */
  challenge(app: App, error?: string, code = 'invalid_token'): string {
    let base = this.challenges.get(app);
    if (!base) {
      base = `Bearer realm="${app.site.origin}", resource_metadata="${this.d.resources.metadataUrl(app)}"`;
      this.challenges.set(app, base);
    }
    return error ? `${base}, error="${code}", error_description="${error.replace(/["\\]/g, '')}"` : base;
  }

  /** One purge batch (src/jobs/): at most `limit` rows of each table; returns how many went. */
  purge(limit?: number): Promise<number> {
    const now = this.d.now();
    return this.d.store.oauth.purge(
      now,
      {
        grantIdleMs: this.d.config.tokens.refreshIdleTtl,
        expiredBefore: now - DAY,
        revokedBefore: now - 7 * DAY,
      },
      limit,
    );
  }

  async close(): Promise<void> {
    await this.documents?.close();
  }
}
