import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for exactly the GitHub endpoints Gatehouse calls, on loopback: the OAuth
 * authorize and access_token endpoints (with GitHub's habits: errors as 200 + {"error"},
 * PKCE S256 checked) and the REST API's GET /user, /user/emails, /user/orgs and /user/teams
 * (paged as GitHub pages them; under /api, as on
 * GitHub Enterprise Server's /api/v3). GitHub is not OpenID Connect and cannot run here, so
 * this is the one fake the provider tests use.
 */

export interface GithubUser {
  id: number;
  login: string;
  name: string | null;
  /** The public profile email (GitHub does not say whether it is verified). */
  email: string | null;
  emails: { email: string; primary: boolean; verified: boolean }[];
  /** Organizations (logins) the user is a member of, and teams as `org/slug`: read with read:org. */
  orgs?: string[];
  teams?: string[];
}

export interface GithubStandIn {
  url: string;
  apiUrl: string;
  clientId: string;
  clientSecret: string;
  users: Map<number, GithubUser>;
  /** Who authorizes next (GitHub's own login is not part of the stand-in). */
  next: number | undefined;
  /** The next code exchange answers with this GitHub error. */
  failNextToken: string | undefined;
  /** /user answers with this status while set. */
  failUser: number | undefined;
  /** /user/orgs and /user/teams answer with this status while set. */
  failMemberships: number | undefined;
  /**
   * A GitHub App with expiring user tokens (its default): tokens come with a refresh token, which
   * the refresh grant spends (rotated, as GitHub does). Off: an OAuth app's tokens, no refresh token.
   */
  expiring: boolean;
  /** How many refresh grants were answered with new tokens. */
  refreshes: number;
  /** What the token endpoint received, to check PKCE and client authentication. */
  tokenRequests: URLSearchParams[];
  apiRequests: { path: string; authorization: string | undefined; userAgent: string | undefined }[];
  issued: string[];
  /** The user revokes the app at GitHub: every token GitHub issued them answers 401 from now on. */
  revoke(user: number): void;
  close(): Promise<void>;
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

const MEMBERSHIPS = new Set(['/api/user/orgs', '/api/user/teams']);

/** A providers[] entry of type github that signs in at the stand-in; `over`: more keys. */
export function githubProvider(gh: GithubStandIn, id: string, over: Record<string, unknown> = {}) {
  return {
    id,
    type: 'github' as const,
    clientId: gh.clientId,
    clientSecret: gh.clientSecret,
    url: gh.url,
    apiUrl: gh.apiUrl,
    ...over,
  };
}

export async function startGithub(redirectUris: string[]): Promise<GithubStandIn> {
  const codes = new Map<string, { user: number; redirectUri: string; challenge: string; scope: string }>();
  const tokens = new Map<string, { user: number; scope: string }>();
  const gh: GithubStandIn = {
    url: '',
    apiUrl: '',
    clientId: 'Iv1.standin',
    clientSecret: `gh-secret-${randomBytes(10).toString('hex')}`,
    users: new Map(),
    next: undefined,
    failNextToken: undefined,
    failUser: undefined,
    failMemberships: undefined,
    expiring: false,
    refreshes: 0,
    tokenRequests: [],
    apiRequests: [],
    issued: [],
    revoke: (user) => {
      for (const [token, t] of tokens) if (t.user === user) tokens.delete(token);
      for (const [token, t] of refreshTokens) if (t.user === user) refreshTokens.delete(token);
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const json = (res: http.ServerResponse, status: number, value: unknown) => {
    const text = JSON.stringify(value);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  };
  const refreshTokens = new Map<string, { user: number; scope: string }>();
  /** A token response as GitHub sends it: an OAuth app's, or a GitHub App's with expiring tokens. */
  const issue = (user: number, scope: string) => {
    const token = `${gh.expiring ? 'ghu' : 'gho'}_${randomBytes(18).toString('hex')}`;
    tokens.set(token, { user, scope });
    gh.issued.push(token);
    const answer: Record<string, unknown> = {
      access_token: token,
      token_type: 'bearer',
      scope: scope.split(' ').join(','),
    };
    if (!gh.expiring) return answer;
    const refresh = `ghr_${randomBytes(30).toString('hex')}`;
    refreshTokens.set(refresh, { user, scope });
    return { ...answer, expires_in: 28_800, refresh_token: refresh, refresh_token_expires_in: 15_897_600 };
  };
  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url!, gh.url);
    if (req.method === 'GET' && u.pathname === '/login/oauth/authorize') {
      const p = u.searchParams;
      const redirectUri = p.get('redirect_uri') ?? '';
      if (p.get('client_id') !== gh.clientId || !redirectUris.includes(redirectUri))
        return json(res, 400, { error: 'redirect_uri_mismatch' });
      if (p.get('code_challenge_method') !== 'S256' || !p.get('code_challenge'))
        return json(res, 400, { error: 'pkce required by the stand-in' });
      const code = randomBytes(10).toString('hex');
      codes.set(code, {
        user: gh.next!,
        redirectUri,
        challenge: p.get('code_challenge')!,
        scope: p.get('scope') ?? '',
      });
      const back = new URL(redirectUri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', p.get('state') ?? '');
      res.writeHead(302, { location: back.href });
      return res.end();
    }
    if (req.method === 'POST' && u.pathname === '/login/oauth/access_token') {
      const p = new URLSearchParams(await body(req));
      gh.tokenRequests.push(p);
      if (!/application\/json/.test(req.headers.accept ?? ''))
        return json(res, 406, { error: 'send Accept: application/json' });
      if (p.get('client_id') !== gh.clientId || p.get('client_secret') !== gh.clientSecret)
        return json(res, 200, { error: 'incorrect_client_credentials' });
      if (p.get('grant_type') === 'refresh_token') {
        const held = refreshTokens.get(p.get('refresh_token') ?? '');
        refreshTokens.delete(p.get('refresh_token') ?? '');
        if (!held)
          return json(res, 200, {
            error: 'bad_refresh_token',
            error_description: 'The refresh token passed is incorrect or expired.',
          });
        gh.refreshes++;
        return json(res, 200, issue(held.user, held.scope));
      }
      const grant = codes.get(p.get('code') ?? '');
      codes.delete(p.get('code') ?? '');
      if (gh.failNextToken) {
        const error = gh.failNextToken;
        gh.failNextToken = undefined;
        return json(res, 200, { error, error_description: 'The code passed is incorrect or expired.' });
      }
      const verifier = p.get('code_verifier') ?? '';
      if (
        !grant ||
        grant.redirectUri !== p.get('redirect_uri') ||
        createHash('sha256').update(verifier).digest('base64url') !== grant.challenge
      ) {
        return json(res, 200, {
          error: 'bad_verification_code',
          error_description: 'The code passed is incorrect or expired.',
        });
      }
      return json(res, 200, issue(grant.user, grant.scope));
    }
    if (req.method === 'GET' && MEMBERSHIPS.has(u.pathname)) {
      gh.apiRequests.push({
        path: u.pathname + u.search,
        authorization: req.headers.authorization,
        userAgent: req.headers['user-agent'],
      });
      const token = tokens.get((req.headers.authorization ?? '').replace(/^(Bearer|token) /, ''));
      if (!token) return json(res, 401, { message: 'Bad credentials' });
      // Without read:org GitHub lists public memberships only; the stand-in lists none, and no teams.
      if (!token.scope.split(' ').includes('read:org'))
        return u.pathname === '/api/user/teams'
          ? json(res, 403, { message: 'Resource not accessible' })
          : json(res, 200, []);
      if (gh.failMemberships) return json(res, gh.failMemberships, { message: 'Server Error' });
      const user = gh.users.get(token.user)!;
      const all =
        u.pathname === '/api/user/orgs'
          ? (user.orgs ?? []).map((login, i) => ({ login, id: 1000 + i }))
          : (user.teams ?? []).map((t) => {
              const [org, slug] = t.split('/');
              return { slug, name: slug, organization: { login: org } };
            });
      const perPage = Math.min(100, Number(u.searchParams.get('per_page') ?? 30));
      const page = Number(u.searchParams.get('page') ?? 1);
      return json(res, 200, all.slice((page - 1) * perPage, page * perPage));
    }
    if (req.method === 'GET' && (u.pathname === '/api/user' || u.pathname === '/api/user/emails')) {
      gh.apiRequests.push({
        path: u.pathname,
        authorization: req.headers.authorization,
        userAgent: req.headers['user-agent'],
      });
      const token = tokens.get((req.headers.authorization ?? '').replace(/^(Bearer|token) /, ''));
      if (!token) return json(res, 401, { message: 'Bad credentials' });
      const user = gh.users.get(token.user)!;
      if (u.pathname === '/api/user') {
        if (gh.failUser) return json(res, gh.failUser, { message: 'Server Error' });
        return json(res, 200, { login: user.login, id: user.id, name: user.name, email: user.email });
      }
      if (!token.scope.split(' ').includes('user:email')) return json(res, 404, { message: 'Not Found' });
      return json(
        res,
        200,
        user.emails.map((e) => ({ ...e, visibility: e.primary ? 'public' : null })),
      );
    }
    json(res, 404, { message: 'Not Found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  gh.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  gh.apiUrl = `${gh.url}/api`;
  return gh;
}
