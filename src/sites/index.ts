// sites/ (model): the sites (origins) Gatehouse serves and their apps, as plain data built from the
// config: which app serves a path, its rules, its identity headers, where it is.
import { isIP } from 'node:net';
import { headerNames } from '../config/headers.ts';
import {
  APP_KEYS,
  type AppConfig,
  type AppEventType,
  type Config,
  type UpstreamTlsConfig,
  upstreamList,
} from '../config/schema.ts';
import type { SiteInfo } from '../http/context.ts';
import { compileCors, type CorsPolicy } from '../http/cors.ts';
import { isSpoofable } from '../http/header-names.ts';
import { hostKey } from '../http/protocol.ts';
import { PLAIN_LOOK } from '../pages/brand.ts';
import { type Allow, compileAllow, compileRules, type Rule } from '../policy/rules.ts';

/**
 * A site is one origin (scheme, host, port) that Gatehouse answers for. It owns the login
 * pages, the cookies and the sessions made on it: a browser session is bound to its site,
 * so apps on different hosts never share a login (the browser's own security boundary).
 * Apps sharing a host under path prefixes share the origin, and so the session.
 * What pages and cookies need of it is SiteInfo (http/context.ts); a Site adds its apps.
 */
export interface Site extends SiteInfo {
  /** Longest pathPrefix first. */
  apps: App[];
  /** Cookie names removed before a request reaches an app. */
  ownCookies: string[];
  /** accounts.requireVerifiedEmail: protected routes need a verified address. */
  requireVerifiedEmail: boolean;
  /**
   * The branding of the app that names the site (as for title), with `at` its config key; the
   * composition root makes `look` from it (pages/brand.ts reads the logo). null: the plain look.
   */
  branding: { logo?: string; color?: string; links?: { text: string; url: string }[]; at: string } | null;
  /** The Strict-Transport-Security value every response of the site carries (hsts); null: none. */
  hsts: string | null;
}

/**
 * Where an app is, as plain data: the undici pool that reaches it (proxy/forward.ts Upstream)
 * is made from it by the Gatehouse that serves it, never by `gatehouse check` or lint.
 */
export interface UpstreamTarget {
  /** The first of `urls`: its host is the Host header the app is sent (unless preserveHost). */
  url: URL;
  /** Every replica of the app (one or more), same scheme and path: requests are balanced over them. */
  urls: URL[];
  host: string;
  /** Path of the upstream URL without its trailing slash, prepended to every request. */
  basePath: string;
  timeouts: { connect: number; response: number; idle: number };
  /** upstreamTls, with `at` the config key that holds it (apps[1].upstreamTls): files read by proxy/. */
  tls: (UpstreamTlsConfig & { at: string }) | null;
  /** healthCheck: the replicas' active health checks (proxy/health.ts), durations in ms. */
  health: HealthCheck | null;
}

export type HealthCheck = NonNullable<AppConfig['healthCheck']>;

/**
 * What an app opted into learning about its users (apps[].headers): the header names, null =
 * not sent. `unverifiedEmail`: send addresses nobody verified too (by default only verified
 * ones are presented, since apps map an address to an account).
 */
export interface IdentityOptIn {
  email: string | null;
  unverifiedEmail: boolean;
  name: string | null;
  groups: string | null;
}

export interface App {
  name: string;
  title: string;
  site: Site;
  pathPrefix: string;
  /** pathPrefix in lower case, what case-insensitive paths are matched against. */
  pathPrefixLower: string;
  /** stripPrefix: the app is sent its paths without pathPrefix (appPath()), and X-Forwarded-Prefix. */
  stripPrefix: boolean;
  /**
   * What takes the place of the upstream's URL in a Location the app sends (proxy/forward.ts
   * Upstream.publicLocation): the site's origin, and pathPrefix when it is stripped.
   */
  publicBase: string;
  /** maxRequestBody in bytes: a larger request body is refused with 413 (proxy/forward.ts); null: no limit. */
  maxRequestBody: number | null;
  /** affinity: what picks the replica (proxy/forward.ts Upstream.preferred); 'none' when there is one replica. */
  affinity: 'none' | 'user' | 'address';
  /** responseHeaders, lower-case names: set on the app's responses that lack them; null: none. */
  responseHeaders: [string, string][] | null;
  /** requestHeaders as name, value, name, value...: sent with every request (client copies dropped); null: none. */
  requestHeaders: string[] | null;
  /**
   * maintenance: the app is closed, every request answered 503 (pipeline/request.ts) except from
   * users `allow` admits; null: open.
   */
  maintenance: { message: string | null; retryAfterSeconds: number; allow: Allow | null } | null;
  upstream: UpstreamTarget;
  preserveHost: boolean;
  rules: Rule[];
  fallback: Rule;
  /** A rule matches by client address (`from`): the decision depends on more than the request's headers. */
  byAddress: boolean;
  caseSensitivePaths: boolean;
  /**
   * Identity headers the app opted into, by name; null = not sent (config/headers.ts): `id` the
   * user id's, `assertion` the bare JWT's, `assertionBearer` the JWT's as "Bearer <jwt>",
   * `accessToken` where tokenRelay puts the provider token ("Authorization" as a Bearer,
   * any other name bare).
   */
  headers: IdentityOptIn & {
    id: string;
    assertion: string | null;
    assertionBearer: string | null;
    accessToken: string;
  };
  /** The app takes the signed assertion under one name or the other (headers.assertion, headers.assertionBearer). */
  signed: boolean;
  /**
   * The app's own names for identity headers (lower-case, "_" as "-") that are not already
   * covered by the X-User-* / X-Gatehouse-* rule, and tokens.bearerHeader: client copies of
   * these are dropped too ("authorization" when the assertion goes there: the client's never
   * reaches the app).
   */
  ownIdentityHeaders: ReadonlySet<string> | null;
  /** Provider whose access token is relayed as Authorization: Bearer (a rule may override). */
  tokenRelay: string | null;
  /** Cross-origin browser clients (http/cors.ts); null: Gatehouse adds no CORS headers and forwards every OPTIONS like any request. */
  cors: CorsPolicy | null;
  /** Where the app is told of account events (src/events/); null: it is not. */
  events: { url: URL; types: ReadonlySet<AppEventType> } | null;
}

export function appsOf(config: Config): AppConfig[] {
  if (config.apps) return config.apps;
  // One app: its keys are at the top level, every one of APP_KEYS (none left behind as keys are added).
  const app: Record<string, unknown> = { upstream: config.upstream!, stripPrefix: false };
  for (const key of APP_KEYS) app[key] = config[key];
  return [app as AppConfig];
}

export function upstreamTarget(
  upstream: string | string[],
  timeouts: UpstreamTarget['timeouts'],
  tls: UpstreamTarget['tls'] = null,
  health: HealthCheck | null = null,
): UpstreamTarget {
  const urls = upstreamList(upstream).map((u) => new URL(u));
  const u = urls[0]!;
  return { url: u, urls, host: u.host, basePath: u.pathname.replace(/\/+$/, ''), timeouts, tls, health };
}

/** publicUrl's path without the trailing slash: "" or "/app". */
export function basePath(publicUrl: string): string {
  return new URL(publicUrl).pathname.replace(/\/+$/, '');
}

export function buildSites(config: Config): Map<string, Site> {
  const publicUrl = new URL(config.publicUrl);
  const secure = publicUrl.protocol === 'https:';
  const base = basePath(config.publicUrl);
  const cookiePath = base || '/';
  const prefix = secure ? (base ? '__Secure-' : '__Host-') : '';
  const name = config.sessions.cookieName;
  const sites = new Map<string, Site>();
  const brandingOf = (a: AppConfig, i: number) =>
    a.branding ? { ...a.branding, at: config.apps ? `apps[${i}].branding` : 'branding' } : null;
  const newSite = (host: string, title: string): Site => {
    const cookies = {
      session: `${prefix}${name}`,
      csrf: `${prefix}${name}-csrf`,
      device: `${prefix}${name}-device`,
      signin: `${name}-signin`,
      login: `${prefix}${name}-login`,
      mfa: `${prefix}${name}-mfa`,
      known: `${prefix}${name}-known`,
      sso: `${prefix}${name}-sso`,
    };
    const site: Site = {
      origin: `${publicUrl.protocol}//${host}`,
      host,
      secure,
      base,
      home: `${base}/`,
      cookiePath,
      cookiePrefix: prefix,
      title,
      look: PLAIN_LOOK,
      branding: null,
      apps: [],
      cookies,
      session: { name: cookies.session, secure, path: cookiePath },
      ownCookies: Object.values(cookies),
      requireVerifiedEmail: config.accounts.requireVerifiedEmail,
      hsts: secure ? strictTransportSecurity(config.hsts, host) : null,
      sso: false,
    };
    sites.set(host, site);
    return site;
  };
  for (const [i, a] of appsOf(config).entries()) {
    const host = hostKey(a.host ?? publicUrl.host, secure);
    let site = sites.get(host);
    if (!site) {
      site = newSite(host, a.title ?? a.name);
      site.branding = brandingOf(a, i);
      site.sso = 'sso' in a && a.sso === true;
    } else if (!a.pathPrefix) {
      // The app at the root of a shared host names the site.
      site.title = a.title ?? a.name;
      site.branding = brandingOf(a, i);
    }
    const { rules, fallback } = compileRules(a.routes, a.defaultAccess, a.caseSensitivePaths);
    const names = headerNames(a.headers);
    const headers = { ...names, unverifiedEmail: a.headers.unverifiedEmail };
    const own = new Set(
      [
        names.id,
        names.email,
        names.name,
        names.groups,
        names.assertion,
        names.assertionBearer,
        names.accessToken === 'Authorization' ? null : names.accessToken,
        config.tokens.bearerHeader,
        ...a.requestHeaders.map((h) => h.name),
      ]
        .filter((v): v is string => typeof v === 'string')
        .map((v) => v.toLowerCase())
        .filter((v) => !isSpoofable(v)),
    );
    site.apps.push({
      name: a.name,
      title: a.title ?? a.name,
      site,
      pathPrefix: a.pathPrefix ?? '',
      pathPrefixLower: (a.pathPrefix ?? '').toLowerCase(),
      stripPrefix: a.stripPrefix,
      publicBase: site.origin + (a.stripPrefix ? (a.pathPrefix ?? '') : ''),
      maxRequestBody: a.maxRequestBody ?? null,
      affinity: upstreamList(a.upstream).length > 1 ? a.affinity : 'none',
      maintenance: a.maintenance
        ? {
            message: a.maintenance.message ?? null,
            retryAfterSeconds: Math.ceil(a.maintenance.retryAfter / 1000),
            allow: compileAllow(a.maintenance.allow),
          }
        : null,
      requestHeaders: a.requestHeaders.length ? a.requestHeaders.flatMap((h) => [h.name, h.value]) : null,
      responseHeaders: a.responseHeaders.length ? a.responseHeaders.map((h) => [h.name.toLowerCase(), h.value]) : null,
      upstream: upstreamTarget(
        a.upstream,
        a.timeouts,
        a.upstreamTls ? { ...a.upstreamTls, at: config.apps ? `apps[${i}].upstreamTls` : 'upstreamTls' } : null,
        a.healthCheck ?? null,
      ),
      preserveHost: a.preserveHost,
      rules,
      fallback,
      byAddress: rules.some((r) => r.from !== null),
      caseSensitivePaths: a.caseSensitivePaths,
      headers,
      signed: names.assertion !== null || names.assertionBearer !== null,
      ownIdentityHeaders: own.size ? own : null,
      tokenRelay: a.tokenRelay ?? null,
      cors: compileCors(a.cors),
      events: a.events ? { url: new URL(a.events.url), types: new Set(a.events.types) } : null,
    });
  }
  for (const site of sites.values()) site.apps.sort((x, y) => y.pathPrefix.length - x.pathPrefix.length);
  // Single sign-on needs publicUrl's site, where users sign in, even with no app of its own
  // (auth.example.com): its pages only, the account page its start page.
  const home = hostKey(publicUrl.host, secure);
  if (!sites.has(home) && [...sites.values()].some((s) => s.sso))
    newSite(home, publicUrl.hostname).home = `${base}${config.authPrefix}/account`;
  return sites;
}

/**
 * Whether `path` starts with `lower` (a lower-case ASCII prefix) in any letter case, without
 * building a string: the same answer as path.slice(0, n).toLowerCase() === lower for the
 * normalized paths (http/target.ts), which are ASCII.
 */
export function startsWithFolded(path: string, lower: string): boolean {
  if (path.length < lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = path.charCodeAt(i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The Strict-Transport-Security value of an https site (hsts), or null: hsts: false, or a host
 * browsers do not pin (an IP address: RFC 6797 8.1.1) or should not (localhost and *.localhost,
 * where a pin would reach every other local server of the developer's).
 */
function strictTransportSecurity(hsts: Config['hsts'], host: string): string | null {
  if (hsts === false) return null;
  const name = host.replace(/:\d+$/, '');
  if (name === 'localhost' || name.endsWith('.localhost') || isIP(name.replace(/^\[|\]$/g, ''))) return null;
  return `max-age=${Math.floor(hsts.maxAge / 1000)}${hsts.includeSubDomains ? '; includeSubDomains' : ''}${hsts.preload ? '; preload' : ''}`;
}

/**
 * The path an app is sent for a (normalized) request path it serves: the same, or without its
 * pathPrefix when it has stripPrefix (/api/x → /x, /api → /). The upstream URL's path goes in
 * front of it in either case.
 */
export function appPath(app: App, path: string): string {
  return app.stripPrefix ? path.slice(app.pathPrefix.length) || '/' : path;
}

/** The app serving a path on a site: the longest matching prefix, on a segment boundary. */
export function appFor(site: Site, path: string): App | undefined {
  for (const app of site.apps) {
    if (!app.pathPrefix) return app;
    const p = app.pathPrefix;
    const match = app.caseSensitivePaths ? path.startsWith(p) : startsWithFolded(path, app.pathPrefixLower);
    if (match && (path.length === p.length || path.charCodeAt(p.length) === 47)) return app;
  }
  return undefined;
}
