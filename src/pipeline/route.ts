import type { Exchange, RequestContext } from '../http/context.ts';
import { WELL_KNOWN_PREFIX } from '../http/paths.ts';
import { type Match, type Params, Router } from '../http/router.ts';
import { normalizeTarget } from '../http/target.ts';
import { hostKey } from '../http/protocol.ts';
import { type Site, startsWithFolded } from '../sites/index.ts';

/**
 * Step 1 of the pipeline: where a request goes. Host → site; the target is normalized
 * (http/target.ts) by the caller, who keeps it for the request context; then route() says
 * whether the (normalized) path is outside publicUrl's base path, one of Gatehouse's own routes (below the
 * prefix), one of its documents under <base>/.well-known/, or the app's. Every entry point
 * (pipeline/request.ts, upgrade.ts, forward-auth.ts, explain.ts) routes through here, so they
 * cannot disagree on what is Gatehouse's. The table it routes by is server/routes.ts.
 */

/** An own route's or a well-known document's handler, with the features bound (server/routes.ts). */
export type Handler = (ctx: RequestContext<Site>, params: Params) => void | Promise<void>;

/** One row of the route table. */
export interface RouteEntry {
  /** Below the prefix (own routes) or below publicUrl's base path (well-known documents). */
  path: string;
  methods: readonly string[];
  handler: Handler;
  /** Also answered for a request whose Host names no site (the probes, the JWKS): without a site. */
  anyHost?: (x: Exchange) => void | Promise<void>;
  /** Well-known only: this path and every path below it (RFC 9728's path-suffixed metadata). */
  tree?: boolean;
}

export interface RouteTable {
  /** Below the prefix (/.auth): paths without it. */
  own: readonly RouteEntry[];
  /** Below publicUrl's base path, each under /.well-known/. Only these exact paths are Gatehouse's. */
  wellKnown: readonly RouteEntry[];
}

export type Routed =
  /** Outside publicUrl's path: 404 (diagnosis may know why). */
  | { kind: 'outside_base' }
  /** Below the prefix: `sub` is the path without it; `found` undefined → 404, `allowed` → 405. */
  | { kind: 'own'; sub: string; found: Match<RouteEntry> }
  /** A well-known document; `path` is below the base path. */
  | { kind: 'well_known'; path: string; entry: RouteEntry }
  /** Everything else: decided by the app's rules (pipeline/decide.ts). */
  | { kind: 'app' };

// Shared answers: routing a proxied request allocates nothing.
const OUTSIDE_BASE: Routed = { kind: 'outside_base' };
const APP: Routed = { kind: 'app' };

/**
 * `path` (normalized) is `prefix` or below it (on a segment boundary). Builds no string when
 * `prefix` is lower-case already.
 */
export function isBelow(path: string, prefix: string, ignoreCase: boolean): boolean {
  if (ignoreCase ? !startsWithFolded(path, prefix.toLowerCase()) : !path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 47;
}

export class Routes {
  readonly sites: Map<string, Site>;
  /** publicUrl's base path: "" or /app. */
  readonly base: string;
  /** Own routes' prefix with publicUrl's base path: /.auth or /app/.auth. */
  readonly prefix: string;
  private readonly prefixLower: string;
  private readonly own = new Router<RouteEntry>();
  private readonly wellKnown = new Map<string, RouteEntry>();
  /** Paths that are Gatehouse's with everything below them. */
  private readonly trees = new Map<string, RouteEntry>();

  constructor(sites: Map<string, Site>, table: RouteTable, o: { base: string; prefix: string }) {
    this.sites = sites;
    this.base = o.base;
    this.prefix = o.prefix;
    this.prefixLower = o.prefix.toLowerCase();
    for (const e of table.own) this.own.add([...e.methods], e.path, e);
    for (const e of table.wellKnown) {
      if (!e.path.startsWith(WELL_KNOWN_PREFIX) || e.path.length === WELL_KNOWN_PREFIX.length)
        throw new Error(`a well-known route is under ${WELL_KNOWN_PREFIX}: ${e.path}`);
      this.wellKnown.set(e.path, e);
      if (e.tree) this.trees.set(e.path, e);
    }
  }

  /** The site for a Host value (as the client sent it, default port or not). */
  siteFor(host: string | undefined): Site | undefined {
    if (!host) return undefined;
    const h = host.toLowerCase();
    const site = this.sites.get(h);
    if (site || !(h.endsWith(':443') || h.endsWith(':80'))) return site;
    const s = this.sites.values().next().value!;
    return this.sites.get(hostKey(h, s.secure));
  }

  /**
   * Where a (normalized) path on a site goes. `foldCase`: own routes match in any letter case
   * (Gatehouse's own listener); forward-auth passes false, since the proxies in front match
   * paths case-sensitively and send /.AUTH/x on to the app.
   */
  route(method: string, path: string, foldCase = true): Routed {
    if (this.base && !isBelow(path, this.base, false)) return OUTSIDE_BASE;
    if (foldCase ? isBelow(path, this.prefixLower, true) : isBelow(path, this.prefix, false)) {
      const sub = path.slice(this.prefix.length) || '/';
      return { kind: 'own', sub, found: this.own.match(method, sub) };
    }
    const below = this.base ? path.slice(this.base.length) : path;
    const entry = this.wellKnownEntry(below);
    if (entry) return { kind: 'well_known', path: below, entry };
    return APP;
  }

  /**
   * For a request whose Host names no site: the route that answers whatever the Host, if the
   * raw target names one and the method is one it takes. Load balancers and kubelets probe by
   * address (Host: 10.0.0.7:8080), and apps fetch the JWKS by an internal address.
   */
  anyHost(method: string, rawTarget: string): RouteEntry['anyHost'] {
    const target = normalizeTarget(rawTarget);
    if (!target.ok) return undefined;
    let entry: RouteEntry | undefined;
    if (isBelow(target.path, this.prefixLower, true)) {
      const found = this.own.match(method, target.path.slice(this.prefix.length) || '/');
      entry = found && 'handler' in found ? found.handler : undefined;
    } else if (!this.base || isBelow(target.path, this.base, false)) {
      entry = this.wellKnownEntry(this.base ? target.path.slice(this.base.length) : target.path);
      if (entry && !entry.methods.includes(method)) entry = undefined;
    }
    return entry?.anyHost;
  }

  private wellKnownEntry(path: string): RouteEntry | undefined {
    if (path.length <= WELL_KNOWN_PREFIX.length || path.charCodeAt(1) !== 46 /* . */) return undefined;
    const exact = this.wellKnown.get(path);
    if (exact || this.trees.size === 0) return exact;
    const second = path.indexOf('/', WELL_KNOWN_PREFIX.length);
    return second === -1 ? undefined : this.trees.get(path.slice(0, second));
  }
}
