import type { AppConfig, Config } from '../config/schema.ts';
import { compileRules, type Rule } from '../policy/rules.ts';
import { Upstream } from '../proxy/forward.ts';
import { isSpoofable } from '../proxy/headers.ts';

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
  title: string;
  /** Longest pathPrefix first. */
  apps: App[];
  /** login: binds a pending sign-in at a provider to this browser (providers/flows.ts). */
  cookies: { session: string; csrf: string; device: string; login: string };
  /** Cookie names removed before a request reaches an app. */
  ownCookies: string[];
}

export interface App {
  name: string;
  title: string;
  site: Site;
  pathPrefix: string;
  upstream: Upstream;
  preserveHost: boolean;
  rules: Rule[];
  fallback: Rule;
  caseSensitivePaths: boolean;
  /** Identity headers the app opted into, by name; null = not sent. */
  headers: { email: string | null; name: string | null; groups: string | null; assertion: string | null };
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

export function buildSites(config: Config): Map<string, Site> {
  const publicUrl = new URL(config.publicUrl);
  const secure = publicUrl.protocol === 'https:';
  const prefix = secure ? '__Host-' : '';
  const base = config.sessions.cookieName;
  const sites = new Map<string, Site>();
  for (const a of appsOf(config)) {
    const host = hostKey(a.host ?? publicUrl.host, secure);
    let site = sites.get(host);
    if (!site) {
      const cookies = { session: `${prefix}${base}`, csrf: `${prefix}${base}-csrf`, device: `${prefix}${base}-device`, login: `${prefix}${base}-login` };
      site = {
        origin: `${publicUrl.protocol}//${host}`,
        host,
        secure,
        title: a.title ?? a.name,
        apps: [],
        cookies,
        ownCookies: Object.values(cookies),
      };
      sites.set(host, site);
    } else if (!a.pathPrefix) {
      // The app at the root of a shared host names the site.
      site.title = a.title ?? a.name;
    }
    const { rules, fallback } = compileRules(a.routes, a.defaultAccess, a.caseSensitivePaths);
    const headers = {
      email: headerName(a.headers.email, 'X-User-Email'),
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

/** The app serving a path on a site: the longest matching prefix, on a segment boundary. */
export function appFor(site: Site, path: string): App | undefined {
  for (const app of site.apps) {
    if (!app.pathPrefix) return app;
    const p = app.pathPrefix;
    const match = app.caseSensitivePaths ? path.startsWith(p) : path.slice(0, p.length).toLowerCase() === p.toLowerCase();
    if (match && (path.length === p.length || path.charCodeAt(p.length) === 47)) return app;
  }
  return undefined;
}
