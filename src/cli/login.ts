import { spawn } from 'node:child_process';
import * as oauth from 'openid-client';
import { BUILTIN_CLI_CLIENT as CLI_CLIENT_ID } from '../config/oauth.ts';
import { isLoopbackHost } from '../http/loopback.ts';
import { covers, Credentials, type StoredLogin } from './credentials.ts';
import { err, out, UsageError } from './io.ts';

/**
 * The client side for CLI users: `gatehouse login <url>` (the device flow, RFC 8628),
 * `gatehouse token <url>` (a valid access token on stdout, refreshed when needed) and
 * `gatehouse logout <url>` (revoke and forget). The protocol is openid-client's.
 *
 * Discovery, as an MCP client does it: the URL's 401 names its protected-resource metadata
 * (RFC 9728); failing that, the well-known address is tried. That document names the app's
 * resource identifier and its authorization server, whose own metadata (RFC 8414) has the
 * endpoints.
 */

const REFRESH_MARGIN_MS = 60_000;
const TOKEN_HEADER = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$/;
const TIMEOUT_MS = 15_000;

function parseUrl(raw: string | undefined, command: string): URL {
  if (!raw) throw new UsageError(`gatehouse ${command} <url>: name the app, e.g. https://app.example.com`);
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`);
  } catch {
    throw new UsageError(`"${raw}" is not a URL`);
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackHost(u.hostname)))
    throw new UsageError(`${u.origin}: use https (plain http only for localhost)`);
  return u;
}

/** openid-client refuses plain http unless told; only loopback addresses get that. */
function insecureFor(u: URL): ((c: oauth.Configuration) => void)[] {
  return u.protocol === 'http:' && isLoopbackHost(u.hostname) ? [oauth.allowInsecureRequests] : [];
}

async function getJson(url: string): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(url, {
    headers: { accept: 'application/json' },
    redirect: 'manual',
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (res.status !== 200) {
    await res.body?.cancel();
    return undefined;
  }
  const body = (await res.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body : undefined;
}

/** The app's protected-resource metadata: from the URL's 401 challenge, else at the well-known address. */
async function discoverResource(url: URL): Promise<{ resource: string; issuer: string; tokenHeader: string | null }> {
  const candidates: string[] = [];
  try {
    const res = await fetch(url, {
      headers: { accept: 'application/json' },
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    await res.body?.cancel();
    const challenge = /resource_metadata="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')?.[1];
    if (challenge && new URL(challenge).origin === url.origin) candidates.push(challenge);
  } catch (e) {
    throw new Error(
      `cannot reach ${url.origin}: ${(e as Error).cause ? String(((e as Error).cause as Error).message) : (e as Error).message}`,
    );
  }
  const path = url.pathname.replace(/\/+$/, '');
  if (path) candidates.push(`${url.origin}/.well-known/oauth-protected-resource${path}`);
  candidates.push(`${url.origin}/.well-known/oauth-protected-resource`);
  let foreign: string | undefined;
  for (const candidate of candidates) {
    const doc = await getJson(candidate);
    const servers = doc?.authorization_servers;
    if (!doc || typeof doc.resource !== 'string' || !Array.isArray(servers) || typeof servers[0] !== 'string') continue;
    // RFC 9728 §3.3: a document about another resource is not used (its tokens would be
    // stored, and later handed out, for a URL that did not vouch for them).
    if (!covers(doc.resource, url)) {
      foreign = doc.resource;
      continue;
    }
    // Printed into a header line: a header name only, whatever the document says.
    const header = doc.gatehouse_token_header;
    const tokenHeader = typeof header === 'string' && TOKEN_HEADER.test(header) ? header : null;
    return { resource: doc.resource, issuer: servers[0], tokenHeader };
  }
  if (foreign !== undefined)
    throw new Error(
      `${url.origin} names ${foreign.slice(0, 200)} as the resource to sign in to, which is not ${url.href}: refused`,
    );
  throw new Error(
    `${url.origin} does not say where to sign in (no OAuth protected-resource metadata): is it behind Gatehouse?`,
  );
}

function openBrowser(url: string): void {
  const [cmd, args] =
    process.platform === 'darwin'
      ? ['open', [url]]
      : process.platform === 'win32'
        ? ['cmd', ['/c', 'start', '""', url]]
        : ['xdg-open', [url]];
  try {
    const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
    child.on('error', () => {});
    child.unref();
  } catch {
    // no browser: the printed URL is enough
  }
}

function canOpenBrowser(flags: { browser?: boolean }): boolean {
  if (flags.browser === false || process.env.GATEHOUSE_NO_BROWSER) return false;
  if (process.platform === 'darwin' || process.platform === 'win32') return true;
  return Boolean(process.env.DISPLAY || process.env.WAYLAND_DISPLAY);
}

function describeError(e: unknown): string {
  if (e instanceof oauth.ResponseBodyError) return `${e.error}${e.error_description ? `: ${e.error_description}` : ''}`;
  const cause = (e as Error).cause as Error | undefined;
  return cause?.message ? `${(e as Error).message} (${cause.message})` : (e as Error).message;
}

function toStored(
  resource: string,
  issuer: string,
  config: oauth.Configuration,
  tokens: oauth.TokenEndpointResponse,
  previous?: StoredLogin,
  tokenHeader?: string | null,
): StoredLogin {
  const m = config.serverMetadata();
  return {
    tokenHeader: tokenHeader === undefined ? previous?.tokenHeader : tokenHeader,
    resource,
    issuer,
    clientId: CLI_CLIENT_ID,
    server: {
      issuer: m.issuer,
      token_endpoint: m.token_endpoint,
      revocation_endpoint: m.revocation_endpoint,
      device_authorization_endpoint: m.device_authorization_endpoint,
    },
    accessToken: tokens.access_token,
    expiresAt: Date.now() + (tokens.expires_in ?? 60) * 1000,
    refreshToken: tokens.refresh_token ?? previous?.refreshToken,
    scope: tokens.scope ?? previous?.scope ?? '',
    createdAt: previous?.createdAt ?? Date.now(),
  };
}

function configFor(login: StoredLogin): oauth.Configuration {
  const config = new oauth.Configuration(
    login.server as unknown as oauth.ServerMetadata,
    login.clientId,
    undefined,
    oauth.None(),
  );
  for (const f of insecureFor(new URL(login.issuer))) f(config);
  return config;
}

/**
 * RFC 8414 discovery. An issuer with a path (Gatehouse under a base path) whose root is not
 * Gatehouse's also publishes its metadata below that path; that document is taken only when
 * it names the same issuer.
 */
async function discoverServer(issuer: URL): Promise<oauth.Configuration> {
  const options = { algorithm: 'oauth2' as const, execute: insecureFor(issuer), timeout: TIMEOUT_MS / 1000 };
  try {
    return await oauth.discovery(issuer, CLI_CLIENT_ID, undefined, oauth.None(), options);
  } catch (e) {
    if (issuer.pathname !== '/') {
      const below = await oauth
        .discovery(
          new URL(`${issuer.href.replace(/\/+$/, '')}/.well-known/oauth-authorization-server`),
          CLI_CLIENT_ID,
          undefined,
          oauth.None(),
          options,
        )
        .catch(() => undefined);
      if (below && below.serverMetadata().issuer === issuer.href.replace(/\/+$/, '')) return below;
    }
    throw new Error(`cannot read the sign-in server's metadata at ${issuer.origin}: ${describeError(e)}`);
  }
}

/** gatehouse login <url> */
export async function login(
  rawUrl: string | undefined,
  flags: { browser?: boolean },
  credentials = new Credentials(),
): Promise<number> {
  const url = parseUrl(rawUrl, 'login');
  const { resource, issuer, tokenHeader } = await discoverResource(url);
  const issuerUrl = parseUrl(issuer, 'login');
  const config = await discoverServer(issuerUrl);
  const device = await oauth
    .initiateDeviceAuthorization(config, { scope: 'offline_access', resource })
    .catch((e: unknown) => {
      throw new Error(`the sign-in server refused to start a device sign-in: ${describeError(e)}`);
    });
  const complete = device.verification_uri_complete ?? device.verification_uri;
  err(`To sign in to ${resource}, open\n\n    ${device.verification_uri}\n\nand enter the code  ${device.user_code}\n`);
  if (canOpenBrowser(flags)) {
    err(`Opening your browser at ${complete} ...`);
    openBrowser(complete);
  }
  err('Waiting for you to approve (Ctrl-C to cancel)...');
  let tokens: oauth.TokenEndpointResponse;
  try {
    tokens = await oauth.pollDeviceAuthorizationGrant(config, device);
  } catch (e) {
    if (e instanceof oauth.ResponseBodyError && e.error === 'access_denied') {
      err('The sign-in was denied.');
      return 1;
    }
    if (e instanceof oauth.ResponseBodyError && e.error === 'expired_token') {
      err('The code expired before it was approved. Run gatehouse login again.');
      return 1;
    }
    throw new Error(`the sign-in did not complete: ${describeError(e)}`);
  }
  await credentials.save(toStored(resource, issuer, config, tokens, undefined, tokenHeader));
  err(
    tokenHeader
      ? `Signed in to ${resource}. Use: curl -H "$(gatehouse token ${url.href} --header)" ${url.href} (the token goes in ${tokenHeader}, Authorization stays yours)`
      : `Signed in to ${resource}. Use: curl -H "Authorization: Bearer $(gatehouse token ${url.href})" ${url.href}`,
  );
  return 0;
}

/**
 * gatehouse token <url>: prints a valid access token, refreshing it (once, across processes)
 * when it is about to expire. `--header`: as a header line, in the app's own token header
 * (tokens.bearerHeader, learnt at login) when it has one, else as Authorization: Bearer.
 */
export async function token(
  rawUrl: string | undefined,
  credentials = new Credentials(),
  flags: { header?: boolean } = {},
): Promise<number> {
  const url = parseUrl(rawUrl, 'token');
  const fresh = (l: StoredLogin | undefined) => l !== undefined && l.expiresAt - Date.now() > REFRESH_MARGIN_MS;
  let login = credentials.find(url);
  if (!login) {
    err(`Not signed in to ${url.origin}. Run: gatehouse login ${url.href}`);
    return 1;
  }
  if (!fresh(login)) {
    const result = await credentials.locked(async () => {
      // Another process may have refreshed while this one waited for the lock.
      const current = credentials.find(url);
      if (!current || fresh(current)) return current;
      if (!current.refreshToken) {
        credentials.removeLocked(current.resource);
        return undefined;
      }
      try {
        const config = configFor(current);
        const next = toStored(
          current.resource,
          current.issuer,
          config,
          await oauth.refreshTokenGrant(config, current.refreshToken),
          current,
        );
        credentials.saveLocked(next);
        return next;
      } catch (e) {
        if (e instanceof oauth.ResponseBodyError && e.error === 'invalid_grant') {
          credentials.removeLocked(current.resource);
          return undefined;
        }
        throw new Error(`cannot refresh the login to ${current.resource}: ${describeError(e)}`);
      }
    });
    if (!result) {
      err(
        `Your login to ${login.resource} has ended (signed out, revoked or expired). Run: gatehouse login ${url.href}`,
      );
      return 1;
    }
    login = result;
  }
  if (!flags.header) out(login.accessToken);
  else if (login.tokenHeader) out(`${login.tokenHeader}: ${login.accessToken}`);
  else {
    if (login.tokenHeader === undefined)
      err(`(this login predates token headers: run gatehouse login ${url.href} again if the app has one)`);
    out(`Authorization: Bearer ${login.accessToken}`);
  }
  return 0;
}

/** gatehouse logout <url>: revokes the login at the server (RFC 7009) and forgets it here. */
export async function logout(rawUrl: string | undefined, credentials = new Credentials()): Promise<number> {
  const url = parseUrl(rawUrl, 'logout');
  const login = credentials.find(url);
  if (!login) {
    err(`Not signed in to ${url.origin}.`);
    return 0;
  }
  let revoked = true;
  if (login.refreshToken && login.server.revocation_endpoint) {
    await oauth.tokenRevocation(configFor(login), login.refreshToken).catch((e: unknown) => {
      revoked = false;
      err(
        `warning: the server could not be told (${describeError(e)}); the login is forgotten here, and ends by itself when unused.`,
      );
    });
  }
  await credentials.remove(login.resource);
  err(`Signed out of ${login.resource}${revoked ? '' : ' on this computer'}.`);
  return 0;
}
