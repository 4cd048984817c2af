// http/ (base): HTTP without features: the request context, own paths, the router, targets, cookies,
// bodies, forwarding headers, CSRF checks, responses. Imports nothing above the base layer.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SessionCookie } from './cookies.ts';
import type { Scheme } from './forwarded.ts';
import type { Trace } from './trace.ts';

/**
 * The request context: what every handler and the pipeline know of a request. It holds what
 * pages, cookies and redirects need of the request's site (SiteInfo); sites/'s Site extends it
 * with the apps. It is generic in the site instead of holding a Site so that http/ imports
 * nothing above it, and so that code which needs the apps (the pipeline, the OAuth metadata)
 * asks for RequestContext<Site> and gets one without a cast.
 */
export interface SiteInfo {
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
  /** How its pages look (branding: pages/brand.ts): the plain look unless the config brands the site. */
  look: Look;
  /**
   * `signin` is the loop-breaker's marker (diagnosis/): set with the session cookie at
   * sign-in, deliberately without Secure or a prefix, so it comes back when the session cookie
   * was dropped. `login` binds a pending sign-in at a provider to this browser (providers/flows.ts).
   */
  cookies: {
    session: string;
    csrf: string;
    device: string;
    signin: string;
    login: string;
    mfa: string;
    /** The accounts that signed in with this browser (accounts/sign-in-notices.ts). */
    known: string;
    /** Binds a single sign-on from publicUrl's host to the browser that asked for it (accounts/sso.ts). */
    sso: string;
  };
  /** The session cookie's name and attributes. */
  session: SessionCookie;
  /** apps[].sso: browsers sign in on publicUrl's site and come back signed in (accounts/sso.ts). */
  sso: boolean;
}

/**
 * A site's look: the stylesheet its pages inline (and its hash, for the pages' CSP) and its logo,
 * served at <prefix>/brand/<file> (pages/brand.ts).
 */
export interface Look {
  css: string;
  cssHash: string;
  /** `url`: where the pages link it, <prefix>/brand/<file>. */
  logo: { file: string; url: string; type: string; body: Buffer } | null;
  /** The footer's links, as HTML ("" for none). */
  footer: string;
}

/** A request and its response: all that the routes answering for any Host get (no site is known). */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
}

export interface RequestContext<S extends SiteInfo = SiteInfo> extends Exchange {
  site: S;
  /** Normalized path (http/target.ts) and the raw query string, "?" included or "". */
  path: string;
  query: string;
  ip: string;
  /** The scheme the client used (through trusted proxies only; else the listener's). */
  scheme: Scheme;
  /** The direct peer is a trusted proxy. */
  viaProxy: boolean;
  /** Set once known, for the request log line. */
  userId?: string;
  /** The W3C trace (http/trace.ts): the client's, or one Gatehouse started. */
  trace?: Trace;
}
