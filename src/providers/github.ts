import * as oauth from 'openid-client';
import { cleanDisplayName } from '../accounts/names.ts';
import type { Logger } from '../log/index.ts';
import { classify, ProviderError, type ProviderClient, type Refreshed } from './client.ts';
import { tokenSet } from './oidc.ts';
import { cleanText, type ProviderProfile, type ProviderTokenSet } from './profile.ts';
import { displayName, scopesOf, type GithubProviderConfig } from '../config/providers.ts';

/**
 * GitHub's OAuth2 (not OpenID Connect: no discovery, no ID token). openid-client still runs
 * the protocol (state, PKCE S256, an `iss` check should GitHub ever send one, the token
 * request); who the user is comes from the API: `GET /user` (the numeric id is the subject,
 * stable across renames), `GET /user/emails` (only a verified address counts) and, with read:org,
 * `GET /user/orgs` and `/user/teams` (the groups; `organizations` admits members only). `url` and
 * `apiUrl` point at GitHub Enterprise Server, or at the tests' stand-in.
 */
/** Pages of organizations or teams read at a sign-in: 1,000 of each is more than any user is in. */
const MAX_PAGES = 10;

export class GithubProvider implements ProviderClient {
  readonly id: string;
  readonly type = 'github' as const;
  readonly name: string;
  readonly config: GithubProviderConfig;
  /** The identities' issuer: GitHub's web URL without a trailing slash. */
  readonly issuer: string;
  private readonly api: string;
  private readonly oauthConfig: oauth.Configuration;
  private readonly logger: Logger;
  /** read:org is asked for: the user's organizations and teams are their groups. */
  private readonly readsOrgs: boolean;

  constructor(config: GithubProviderConfig, logger: Logger) {
    this.config = config;
    this.readsOrgs = scopesOf(config).includes('read:org');
    this.id = config.id;
    this.name = displayName(config);
    this.logger = logger;
    this.issuer = config.url.replace(/\/+$/, '');
    this.api = config.apiUrl.replace(/\/+$/, '');
    const c = new oauth.Configuration(
      {
        issuer: this.issuer,
        authorization_endpoint: `${this.issuer}/login/oauth/authorize`,
        token_endpoint: `${this.issuer}/login/oauth/access_token`,
      },
      config.clientId,
      config.clientSecret,
      oauth.ClientSecretPost(config.clientSecret),
    );
    if (new URL(this.issuer).protocol === 'http:') oauth.allowInsecureRequests(c);
    c.timeout = Math.ceil(config.timeout / 1000);
    // GitHub answers token errors with 200 and {"error": ...}; give openid-client the 400 the
    // OAuth spec means, so a bad code or refresh token is told apart from a broken response.
    c[oauth.customFetch] = async (url, options) => {
      const res = await fetch(url, options as RequestInit);
      if (res.status !== 200 || !url.endsWith('/login/oauth/access_token')) return res;
      const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
      if (body && typeof body.error === 'string') {
        const error =
          body.error === 'bad_verification_code' || body.error === 'bad_refresh_token' ? 'invalid_grant' : body.error;
        return new Response(JSON.stringify({ error, error_description: body.error_description ?? body.error }), {
          status: 400,
          headers: { 'content-type': 'application/json' },
        });
      }
      return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
    };
    this.oauthConfig = c;
  }

  async warm(): Promise<void> {}

  /** The sign-in page's host and the API's (without a token: any answer but a 5xx will do). */
  async probe(): Promise<string> {
    const answers: string[] = [];
    for (const [what, url] of [
      ['sign-in', `${this.issuer}/login/oauth/authorize?client_id=${encodeURIComponent(this.config.clientId)}`],
      ['API', `${this.api}/user`],
    ] as const) {
      let status: number;
      try {
        const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(this.config.timeout) });
        await res.body?.cancel();
        status = res.status;
      } catch (err) {
        throw classify(err, 'discovery');
      }
      if (status >= 500) throw new ProviderError('provider_unreachable', `${what} ${url}: HTTP ${status}`);
      answers.push(`${what} HTTP ${status}`);
    }
    return answers.join(', ');
  }

  authorizationOrigins(): string[] {
    return [new URL(this.issuer).origin];
  }

  endSessionOrigins(): string[] {
    return [];
  }

  async authorizationUrl(p: {
    redirectUri: string;
    state: string;
    nonce: string;
    codeChallenge: string;
  }): Promise<URL> {
    return oauth.buildAuthorizationUrl(this.oauthConfig, {
      ...this.config.authorizationParams,
      redirect_uri: p.redirectUri,
      scope: scopesOf(this.config).join(' '),
      state: p.state,
      code_challenge: p.codeChallenge,
      code_challenge_method: 'S256',
    });
  }

  async callback(p: {
    redirectUri: string;
    query: string;
    state: string;
    codeVerifier: string;
  }): Promise<{ profile: ProviderProfile; tokens: ProviderTokenSet }> {
    let tokens: ProviderTokenSet;
    try {
      tokens = tokenSet(
        await oauth.authorizationCodeGrant(this.oauthConfig, new URL(p.redirectUri + p.query), {
          pkceCodeVerifier: p.codeVerifier,
          expectedState: p.state,
        }),
        undefined,
      );
    } catch (err) {
      throw classify(err, 'callback');
    }
    return { profile: await this.profile(tokens.accessToken!), tokens };
  }

  private async get(path: string, token: string): Promise<{ status: number; body: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${this.api}${path}`, {
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/vnd.github+json',
          'x-github-api-version': '2022-11-28',
          'user-agent': 'Gatehouse',
        },
        redirect: 'error',
        signal: AbortSignal.timeout(this.config.timeout),
      });
    } catch (err) {
      throw classify(err, 'userinfo');
    }
    const body = await res.json().catch(() => null);
    return { status: res.status, body };
  }

  private async profile(token: string): Promise<ProviderProfile> {
    const user = await this.get('/user', token);
    const u = user.body as { id?: unknown; login?: unknown; name?: unknown; email?: unknown } | null;
    if (user.status !== 200 || !u || !Number.isSafeInteger(u.id) || (u.id as number) <= 0) {
      throw new ProviderError(
        'userinfo_failed',
        `GET ${this.api}/user answered ${user.status}${u && !Number.isSafeInteger(u.id) ? ' without a numeric id' : ''}`,
      );
    }
    // Without the user:email scope the list is refused: then there is no verified address.
    const emails = await this.get('/user/emails', token);
    const list =
      emails.status === 200 && Array.isArray(emails.body)
        ? (emails.body as { email?: unknown; primary?: unknown; verified?: unknown }[])
        : [];
    if (emails.status !== 200)
      this.logger.debug(
        { event: 'github_emails_unavailable', provider: this.id, status: emails.status },
        'no verified emails from GitHub',
      );
    const verified = list.filter((e) => e && e.verified === true && typeof e.email === 'string');
    const chosen = verified.find((e) => e.primary === true) ?? verified[0];
    const email = cleanText(chosen?.email, 254);
    // Without a verified address, the primary (or public) one is named, unverified, so the
    // error page can say which address to verify.
    const unverified = cleanText(list.find((e) => e?.primary === true)?.email, 254) ?? cleanText(u.email, 254);
    return {
      issuer: this.issuer,
      subject: String(u.id),
      email: email ?? unverified,
      emailVerified: Boolean(email) || (this.config.trustEmail && Boolean(unverified)),
      name: cleanDisplayName(u.name) ?? cleanDisplayName(u.login),
      groups: (this.readsOrgs && (await this.memberships(token, { refresh: false }))) || [],
    };
  }

  /**
   * With the read:org scope, the user's organizations and teams as groups: `acme` for a member of
   * the organization, `acme/admins` for a member of its team (GitHub's own `@acme/admins`, by the
   * team's slug). With `organizations`, a user in none of them is refused here, before any account
   * is found or made; an answer that cannot be read then fails the sign-in rather than admit. At a
   * refresh (`at.refresh`) leaving them is a refusal of the refresh (permanent), and lists that
   * cannot be read are undefined: nothing decided.
   */
  private async memberships(token: string, at: { refresh: boolean }): Promise<string[] | undefined> {
    const orgs = await this.list('/user/orgs', token);
    const teams = orgs && (await this.list('/user/teams', token));
    const required = this.config.organizations;
    if (!orgs || !teams) {
      // At sign-in a membership that cannot be checked fails the sign-in; at a refresh the new
      // tokens are kept (the old refresh token is spent) and the next refresh checks again.
      if (required && !at.refresh)
        throw new ProviderError('userinfo_failed', `GET ${this.api}/user/orgs or /user/teams failed`);
      return undefined;
    }
    const logins = (orgs as { login?: unknown }[]).flatMap((o) =>
      typeof o?.login === 'string' ? [o.login.toLowerCase()] : [],
    );
    if (required && !required.some((r) => logins.includes(r.toLowerCase())))
      throw new ProviderError('organization_not_allowed', `a member of none of ${required.join(', ')}`, at.refresh);
    const groups = new Set(logins);
    for (const t of teams as { slug?: unknown; organization?: { login?: unknown } }[]) {
      const org = t?.organization?.login;
      if (typeof org === 'string' && typeof t.slug === 'string') groups.add(`${org.toLowerCase()}/${t.slug}`);
    }
    return [...groups];
  }

  /** A list from the API, every page (100 a page, at most 10 pages); undefined when it cannot be had. */
  private async list(path: string, token: string): Promise<unknown[] | undefined> {
    const all: unknown[] = [];
    for (let page = 1; page <= MAX_PAGES; page++) {
      const res = await this.get(`${path}?per_page=100&page=${page}`, token);
      if (res.status !== 200 || !Array.isArray(res.body)) {
        this.logger.debug(
          { event: 'github_memberships_unavailable', provider: this.id, path, status: res.status },
          'no organizations or teams from GitHub',
        );
        return undefined;
      }
      all.push(...res.body);
      if (res.body.length < 100) break;
    }
    return all;
  }

  /**
   * A GitHub App's expiring user token refreshed. With `organizations`, membership is checked again
   * with the new token: a user who has left every one of them fails as a refusal (permanent: the
   * session ends where revalidate is set, and signing in again is refused). With syncGroups, their
   * organizations and teams now are the groups. Lists that cannot be read decide nothing this time.
   */
  async refresh(refreshToken: string): Promise<Refreshed> {
    let tokens: ProviderTokenSet;
    try {
      tokens = tokenSet(await oauth.refreshTokenGrant(this.oauthConfig, refreshToken), refreshToken);
    } catch (err) {
      throw classify(err, 'refresh');
    }
    return this.recheck(tokens);
  }

  /**
   * An OAuth app's sign-in (no refresh token; its token does not expire) confirmed with its access
   * token: `GET /user` still answers with it (a 401: the user revoked the app, or GitHub the token:
   * a refusal), then the memberships as at a refresh.
   */
  async confirm(tokens: ProviderTokenSet): Promise<Refreshed> {
    if (!tokens.accessToken) throw new ProviderError('token_exchange_failed', 'no access token to confirm with', true);
    const user = await this.get('/user', tokens.accessToken);
    if (user.status === 401)
      throw new ProviderError('token_exchange_failed', 'GitHub no longer takes the access token (HTTP 401)', true);
    if (user.status !== 200) throw new ProviderError('userinfo_failed', `GET ${this.api}/user answered ${user.status}`);
    return this.recheck({ ...tokens, obtainedAt: Date.now() });
  }

  /** After a refresh or a confirmation: with `organizations` the membership checked, with syncGroups the groups. */
  private async recheck(tokens: ProviderTokenSet): Promise<Refreshed> {
    if (!this.readsOrgs || !tokens.accessToken || (!this.config.syncGroups && !this.config.organizations))
      return { tokens };
    const groups = await this.memberships(tokens.accessToken, { refresh: true });
    return this.config.syncGroups && groups !== undefined ? { tokens, groups } : { tokens };
  }

  async endSessionUrl(): Promise<URL | undefined> {
    return undefined;
  }
}
