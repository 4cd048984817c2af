import type { AppConfig, Config } from '../config/schema.ts';
import { compileRules, type Rule } from '../policy/rules.ts';
import { Upstream } from '../proxy/forward.ts';
import { isSpoofable } from '../proxy/headers.ts';
import type { IdentityOptIn } from '../identity/headers.ts';
import type { SessionCookie } from '../sessions/index.ts';

/**
 * A site is one origin (scheme, host, port) that Gatehouse answers for. It owns the login
 * pages, the cookies and the sessions made on it: a browser session is bound to its site,
 * so apps on different hosts never share a login (the browser's own security boundary).
 * Apps sharing a host under path prefixes share the origin, and so the session.
 */
export interface Site {
  origin: string;
  /** Host as it appears in Host headers: lower-case, default port omitted. */
  host: string;
  secure: boolean;
  /**
   * publicUrl's path without its trailing slash ("" at the root, "/app" for
   * https://example.com/app/): Gatehouse is mounted below it, own routes included.
   */
  base: string;
  /** The start page: base + "/". Return targets fall back to it and must stay below it. */
  home: string;
  /** Path attribute of every Gatehouse cookie: "/" or the base path. */
  cookiePath: string;
  /**
   * Prefix of every Gatehouse cookie name: "__Host-" over https at the root, "__Secure-" over
   * https under a base path (__Host- requires Path=/), "" over http.
   */
  cookiePrefix: string;
  title: string;
  /** Longest pathPrefix first. */
  apps: App[];
  /**
   * `signin` is the loop-breaker's marker (edge/diagnose.ts): set with the session cookie at
   * sign-in, deliberately without Secure or a prefix, so it comes back when the session cookie
   * was dropped. `login` binds a pending sign-in at a provider to this browser (providers/flows.ts).
   */
  cookies: { session: string; csrf: string; device: string; signin: string; login: string };
  /** The session cookie's name and attributes. */
  session: SessionCookie;
  /** Cookie names removed before a request reaches an app. */
  ownCookies: string[];
  /** accounts.requireVerifiedEmail: protected routes need a verified address. */
  requireVerifiedEmail: boolean;
}

export interface App {
  name: string;
  title: string;
  site: Site;
  pathPrefix: string;
  /** pathPrefix in lower case, what case-insensitive paths are matched against. */
  pathPrefixLower: string;
  upstream: Upstream;
  preserveHost: boolean;
  rules: Rule[];
  fallback: Rule;
  caseSensitivePaths: boolean;
  /** Identity headers the app opted into, by name; null = not sent. */
  headers: IdentityOptIn & { assertion: string | null };
  /**
   * The app's own names for identity headers (lower-case, "_" as "-") that are not already
   * covered by the X-User-* / X-Gatehouse-* rule: client copies of these are dropped too.
   */
  ownIdentityHeaders: ReadonlySet<string> | null;
  /** Provider whose access token is relayed as Authorization: Bearer (a rule may override). */
  tokenRelay: string | null;
}

export function appsOf(config: Config): AppConfig[] {
  if (config.apps) return config.apps;
  return [
    {
      name: config.name,
      title: config.title,
      upstream: config.upstream!,
      routes: config.routes,
      defaultAccess: config.defaultAccess,
      headers: config.headers,
      caseSensitivePaths: config.caseSensitivePaths,
      preserveHost: config.preserveHost,
      timeouts: config.timeouts,
      tokenRelay: config.tokenRelay,
    },
  ];
}

/** "Host" header form: lower-case, without the scheme's default port. */
export function hostKey(host: string, secure: boolean): string {
  const h = host.toLowerCase();
  if (secure && h.endsWith(':443')) return h.slice(0, -4);
  if (!secure && h.endsWith(':80')) return h.slice(0, -3);
  return h;
}

const headerName = (v: boolean | string, def: string): string | null => (v === true ? def : v === false ? null : v);

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
  for (const a of appsOf(config)) {
    const host = hostKey(a.host ?? publicUrl.host, secure);
    let site = sites.get(host);
    if (!site) {
      const cookies = {
        session: `${prefix}${name}`,
        csrf: `${prefix}${name}-csrf`,
        device: `${prefix}${name}-device`,
        signin: `${name}-signin`,
        login: `${prefix}${name}-login`,
      };
      site = {
        origin: `${publicUrl.protocol}//${host}`,
        host,
        secure,
        base,
        home: `${base}/`,
        cookiePath,
        cookiePrefix: prefix,
        title: a.title ?? a.name,
        apps: [],
        cookies,
        session: { name: cookies.session, secure, path: cookiePath },
        ownCookies: Object.values(cookies),
        requireVerifiedEmail: config.accounts.requireVerifiedEmail,
      };
      sites.set(host, site);
    } else if (!a.pathPrefix) {
      // The app at the root of a shared host names the site.
      site.title = a.title ?? a.name;
    }
    const { rules, fallback } = compileRules(a.routes, a.defaultAccess, a.caseSensitivePaths);
    const headers = {
      email: headerName(a.headers.email, 'X-User-Email'),
      unverifiedEmail: a.headers.unverifiedEmail,
      name: headerName(a.headers.name, 'X-User-Name'),
      groups: headerName(a.headers.groups, 'X-User-Groups'),
      assertion: headerName(a.headers.assertion, 'X-Gatehouse-Assertion'),
    };
    const own = new Set(
      Object.values(a.headers)
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
      upstream: new Upstream(a.upstream, a.timeouts),
      preserveHost: a.preserveHost,
      rules,
      fallback,
      caseSensitivePaths: a.caseSensitivePaths,
      headers,
      ownIdentityHeaders: own.size ? own : null,
      tokenRelay: a.tokenRelay ?? null,
    });
  }
  for (const site of sites.values()) site.apps.sort((x, y) => y.pathPrefix.length - x.pathPrefix.length);
  return sites;
}

/** A return target (path, maybe with query) that stays below the site's base path. */
export function insideBase(site: Site, target: string): boolean {
  if (!site.base) return true;
  const end = target.search(/[?#]/);
  const path = end === -1 ? target : target.slice(0, end);
  return path === site.base || path.startsWith(`${site.base}/`);
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
