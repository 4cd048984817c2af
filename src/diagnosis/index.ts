// diagnosis/ (feature): misconfigurations named instead of looping: the wrong scheme, an untrusted proxy,
// a dropped cookie, an unknown host; one page that says what to fix.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { expireCookie, readCookie, serializeCookie } from '../http/cookies.ts';
import type { Forwarding } from '../http/forwarded.ts';
import { sendHtml, sendJson, wantsHtml } from '../http/respond.ts';
import type { Logger } from '../log/index.ts';
import { CSP, html, layout, type SafeHtml } from '../pages/index.ts';
import type { Lookup } from '../sessions/index.ts';
import type { RequestContext, SiteInfo } from '../http/context.ts';
import { insideBase } from '../http/target.ts';
import type { Secrets } from '../keys/secrets.ts';

/**
 * Why a sign-in cannot work, named instead of looped. The usual login loop behind a
 * proxy: Gatehouse thinks the browser is on http (or on another host), its Secure cookies are
 * dropped, and the browser bounces between the app, the login page and the callback. Here:
 *
 *   - `check(ctx)`: the request itself shows the problem (scheme differs from publicUrl, a
 *     proxy that is not trusted or that does not forward the scheme). Run before every page of
 *     Gatehouse's own that sets or needs cookies (login, register, provider start, callback).
 *   - `cookieMissing(ctx, which)`: the browser came back without a cookie Gatehouse set a
 *     moment ago (the form's CSRF cookie, an OIDC state cookie). Always returns a cause.
 *   - `afterSignIn(ctx, lookup)`: the loop-breaker. Every sign-in also sets a short-lived,
 *     signed marker cookie, deliberately without Secure or a name prefix; a browser that
 *     arrives with the marker but without a working session (dropped, duplicated or unknown
 *     session cookie) gets the explanation instead of another trip to the login page.
 *   - `respond(...)`: ONE page (or JSON for APIs) that names the cause and the config key or
 *     proxy setting to fix; each cause is logged once per 10 minutes (event "misconfiguration",
 *     with how many were suppressed).
 *
 * Nothing here runs on the hot path of a signed-in request.
 */

export type CauseCode =
  | 'proxy_not_trusted'
  | 'plain_http'
  | 'proto_not_forwarded'
  | 'proxy_says_http'
  | 'public_url_http'
  | 'unknown_host'
  | 'host_not_forwarded'
  | 'prefix_stripped'
  | 'cookie_missing'
  | 'state_cookie_missing'
  | 'session_cookie_dropped'
  | 'session_cookie_duplicate'
  | 'session_unknown'
  | 'session_rejected'
  | 'forward_auth_untrusted'
  | 'forward_auth_no_uri';

export interface Cause {
  code: CauseCode;
  status: number;
  /** The JSON `error` field; default "misconfigured". */
  error?: string;
  heading: string;
  /** The config key or proxy setting to change. */
  key: string;
  /** What went wrong, in one or two sentences. Backticks mark code. */
  summary: string;
  /** What to change, most likely first. Backticks mark code. */
  fix: string[];
  /** Where to try again, if anywhere. */
  retry?: { href: string; text: string };
  /** Extra fields for the log line (never secrets). */
  log: Record<string, unknown>;
}

/**
 * Thrown by a handler that finds a cause midway (a form posted without its CSRF cookie, a
 * callback without its state cookie); Gatehouse answers it with `respond`.
 */
export class DiagnosedError extends Error {
  readonly diagnosis: Cause;
  constructor(cause: Cause) {
    super(cause.summary);
    this.name = 'DiagnosedError';
    this.diagnosis = cause;
  }
}

/** Own routes that are not pages a browser signs in through: never intercepted. */
const UNGUARDED = new Set(['/health', '/ready', '/check', '/me']);

const LOG_EVERY_MS = 10 * 60_000;
const MARKER_MAX_AGE_S = 60;
/**
 * The marker's states: set at a sign-in (FRESH); an ended session was let through to the login
 * page since (LET_THROUGH); signed in again after that, within the minute (AGAIN).
 */
const FRESH = 'f';
const LET_THROUGH = 'l';
const AGAIN = 'a';
type MarkerState = typeof FRESH | typeof LET_THROUGH | typeof AGAIN;

export class Diagnosis {
  private readonly logger: Logger;
  private readonly forwarding: Forwarding;
  private readonly secrets: Secrets;
  /** The own-route prefix, base path included (/app/.auth). */
  private readonly prefix: string;
  private readonly logged = new Map<string, { until: number; suppressed: number }>();
  private readonly now: () => number;

  constructor(o: { logger: Logger; forwarding: Forwarding; secrets: Secrets; prefix: string; now?: () => number }) {
    this.logger = o.logger;
    this.forwarding = o.forwarding;
    this.secrets = o.secrets;
    this.prefix = o.prefix;
    this.now = o.now ?? Date.now;
  }

  /** True for own routes (the part after the prefix) that `check` guards. */
  guards(route: string): boolean {
    return !UNGUARDED.has(route) && (!route.startsWith('/oauth/') || route === '/oauth/authorize');
  }

  private loginUrl(site: SiteInfo, rd?: string): string {
    const q = rd && rd !== site.home ? `?rd=${encodeURIComponent(rd)}` : '';
    return `${site.origin}${this.prefix}/login${q}`;
  }

  /** The return target a retry link keeps: the rd of this request, if it has one. */
  private rdOf(ctx: RequestContext): string | undefined {
    const rd = ctx.query ? new URLSearchParams(ctx.query.slice(1)).get('rd') : null;
    return rd && rd.startsWith('/') && !rd.startsWith('//') && insideBase(ctx.site, rd) ? rd : undefined;
  }

  // ---- request-level causes ---------------------------------------------------------

  /**
   * Why a redirect to publicUrl (the login page) would reach nothing: no proxy is trusted, so
   * this listener is the only way in, and it does not serve publicUrl's scheme (plain http
   * with an https publicUrl: the browser meets a TLS error; listen.tls with an http one). The
   * configurations `gatehouse check` calls an error (server/lint.ts). Undefined when it can work.
   */
  unreachable(ctx: RequestContext): Cause | undefined {
    return this.forwarding.trusted.empty ? this.check(ctx) : undefined;
  }

  /** Why this request cannot complete a sign-in as it is, or undefined when it can. */
  check(ctx: RequestContext): Cause | undefined {
    const { site } = ctx;
    if (site.secure === (ctx.scheme === 'https')) return undefined;
    const d = this.forwarding.detail(ctx.req);
    const retry = { href: this.loginUrl(site, this.rdOf(ctx)), text: `Open ${site.origin}${site.home}` };
    const log = { peer: d.peer, viaProxy: d.viaProxy, claimedScheme: d.claimedScheme };
    if (!site.secure) {
      return {
        code: 'public_url_http',
        status: 421,
        heading: 'Sign-in is set up for another address',
        key: 'publicUrl',
        summary: `The browser used https, but \`publicUrl\` is ${site.origin}${site.home}: every redirect would send it back to plain http, and a proxy that upgrades http to https would bounce it forever.`,
        fix: [`Set \`publicUrl: https://${site.host}${site.home}\`.`],
        log,
      };
    }
    if (!d.viaProxy && d.claimedScheme !== undefined && d.claimedScheme.toLowerCase() === 'https') {
      return {
        code: 'proxy_not_trusted',
        status: 421,
        heading: 'Sign-in cannot work at this address',
        key: 'trustedProxies',
        summary: `This request reached Gatehouse over plain http from ${d.peer}. That peer says the browser used https (\`${d.schemeHeader}: ${d.claimedScheme}\`), but it is not in \`trustedProxies\`, so Gatehouse does not believe it, and the browser would drop Gatehouse's Secure cookies.`,
        fix: [
          `Add the proxy to \`trustedProxies\`: its address (\`trustedProxies: [${d.peer}]\`), a CIDR such as \`10.0.0.0/8\`, or a preset (\`loopback\`, \`private\`).`,
        ],
        retry,
        log,
      };
    }
    if (!d.viaProxy) {
      return {
        code: 'plain_http',
        status: 421,
        heading: 'Sign-in cannot work at this address',
        key: 'trustedProxies',
        summary: `\`publicUrl\` is https (${site.origin}), but this request reached Gatehouse over plain http from ${d.peer}, and nothing Gatehouse trusts says the browser used https. The browser would drop Gatehouse's Secure cookies, and sign-in would start over and over.`,
        fix: [
          'If TLS ends at a proxy or load balancer in front of Gatehouse: add it to `trustedProxies` and have it send `X-Forwarded-Proto` (nginx: `proxy_set_header X-Forwarded-Proto $scheme;`).',
          'If browsers reach Gatehouse directly: give it a certificate (`listen.tls: {cert, key}`) and open the https address.',
          'Only for a local test without TLS: set `publicUrl` to an http:// address.',
        ],
        retry,
        log,
      };
    }
    if (d.claimedScheme === undefined) {
      return {
        code: 'proto_not_forwarded',
        status: 421,
        heading: 'Sign-in cannot work at this address',
        key: this.forwarding.headers === 'forwarded' ? 'Forwarded: proto= (proxy)' : 'X-Forwarded-Proto (proxy)',
        summary: `The proxy in front of Gatehouse is trusted, but it does not say which scheme the browser used (no \`${d.schemeHeader}\`), so Gatehouse sees plain http while \`publicUrl\` is https. The browser would drop Gatehouse's Secure cookies.`,
        fix:
          this.forwarding.headers === 'forwarded'
            ? [
                'Make the proxy send `Forwarded: for=...;proto=https` (or set `forwardedHeaders: x-forwarded` if it sends X-Forwarded-Proto).',
              ]
            : [
                'nginx: add `proxy_set_header X-Forwarded-Proto $scheme;` next to `proxy_pass` (examples/nginx.conf).',
                'Traefik and Caddy send X-Forwarded-Proto themselves; any other proxy: make it send `X-Forwarded-Proto: https`.',
              ],
        retry,
        log,
      };
    }
    return {
      code: 'proxy_says_http',
      status: 421,
      heading: 'Sign-in cannot work at this address',
      key: this.forwarding.headers === 'forwarded' ? 'Forwarded: proto= (proxy)' : 'X-Forwarded-Proto (proxy)',
      summary: `The trusted proxy in front of Gatehouse says the browser used plain http (\`${d.schemeHeader}: ${d.claimedScheme}\`), but \`publicUrl\` is https.`,
      fix: [
        'If browsers really came over http: make the proxy redirect http to https (nginx: `return 301 https://$host$request_uri;` in the port-80 server).',
        'If another load balancer in front of this proxy terminates TLS, the proxy is overwriting its header with its own scheme: pass the outer value on (nginx: `proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;`) and list the load balancer in `trustedProxies` too.',
      ],
      retry,
      log,
    };
  }

  /** A request for a host no site answers for (421). */
  misdirected(
    req: IncomingMessage,
    sites: Map<string, SiteInfo>,
    hostOf: (host: string | undefined) => SiteInfo | undefined,
  ): Cause {
    const d = this.forwarding.detail(req);
    const first = sites.values().next().value!;
    const origins = [...sites.values()].map((s) => s.origin).join(', ');
    const asked = d.host ?? '(none)';
    const link = { href: `${first.origin}${first.home}`, text: `Go to ${first.origin}${first.home}` };
    const log = { host: asked.slice(0, 256), peer: d.peer, viaProxy: d.viaProxy };
    if (!d.viaProxy && d.claimedHost !== undefined && hostOf(d.claimedHost)) {
      return {
        code: 'proxy_not_trusted',
        status: 421,
        error: 'misdirected_request',
        heading: 'Wrong address',
        key: 'trustedProxies',
        summary: `This request asks for ${asked}, which Gatehouse does not serve. ${d.peer} says the browser asked for ${d.claimedHost} (\`${d.hostHeader}\`), but it is not in \`trustedProxies\`, so Gatehouse does not believe it.`,
        fix: [
          `Add the proxy to \`trustedProxies\` (\`trustedProxies: [${d.peer}]\`, a CIDR, or \`loopback\` / \`private\`), or have it pass the original Host on (nginx: \`proxy_set_header Host $host;\`).`,
        ],
        retry: link,
        log,
      };
    }
    if (d.viaProxy && d.claimedHost === undefined) {
      return {
        code: 'host_not_forwarded',
        status: 421,
        error: 'misdirected_request',
        heading: 'Wrong address',
        key: 'Host (proxy)',
        summary: `The trusted proxy in front of Gatehouse sent \`Host: ${asked}\`, which is not an address Gatehouse serves (${origins}), and no \`${d.hostHeader}\`. A proxy usually sends its upstream's name unless told otherwise.`,
        fix: [
          "nginx: add `proxy_set_header Host $host;` (nginx sends the upstream's name by default).",
          'Traefik and Caddy pass the Host on unless told otherwise.',
          `If users really type ${asked}: set \`publicUrl\` (or an app's \`host\`) to it.`,
        ],
        retry: link,
        log,
      };
    }
    return {
      code: 'unknown_host',
      status: 421,
      error: 'misdirected_request',
      heading: 'Wrong address',
      key: 'publicUrl',
      summary: `This server does not serve the address you used (${asked}). Gatehouse answers for ${origins}.`,
      fix: [
        'Open it at that address.',
        "Or set `publicUrl` (or an app's `host`) to the address users type.",
        'Behind a proxy, pass the original Host on (nginx: `proxy_set_header Host $host;`).',
      ],
      retry: link,
      log,
    };
  }

  /**
   * A path outside publicUrl's base path. A cause when it looks like the proxy in front strips
   * the prefix (an own route without it, or X-Forwarded-Prefix naming it); else undefined (a
   * plain 404).
   */
  outsideBase(ctx: { req: IncomingMessage; site: SiteInfo; path: string }, authPrefix: string): Cause | undefined {
    const { site, path } = ctx;
    const d = this.forwarding.detail(ctx.req);
    const ownRoute =
      path.toLowerCase() === authPrefix.toLowerCase() || path.toLowerCase().startsWith(`${authPrefix.toLowerCase()}/`);
    const strippedPrefix = d.prefix !== undefined && d.prefix.replace(/\/+$/, '') === site.base;
    if (!ownRoute && !strippedPrefix) return undefined;
    return {
      code: 'prefix_stripped',
      status: 404,
      heading: 'Not found',
      key: 'publicUrl',
      summary: `Gatehouse is mounted at ${site.base}/ (the path of \`publicUrl\`), but received ${path}: the proxy in front seems to strip the prefix.`,
      fix: [
        `Forward the path unchanged. nginx: \`location ${site.base}/ { proxy_pass http://gatehouse; }\` (no path after the address); Traefik: no StripPrefix middleware; Caddy: \`handle\`, not \`handle_path\`.`,
        'Gatehouse never takes the prefix from X-Forwarded-Prefix: `publicUrl` is the one source of every URL it builds.',
      ],
      retry: { href: `${site.origin}${site.home}`, text: `Go to ${site.origin}${site.home}` },
      log: { path: path.slice(0, 256), forwardedPrefix: d.prefix?.slice(0, 256) },
    };
  }

  // ---- cookies that did not come back -----------------------------------------------

  /**
   * The browser came back without a cookie Gatehouse set a moment ago: the form's CSRF cookie
   * ("csrf") or the state cookie of an OIDC sign-in ("state"). A request-level cause comes
   * first, since it is the likelier explanation.
   */
  cookieMissing(ctx: RequestContext, which: 'csrf' | 'state'): Cause {
    const first = this.check(ctx);
    if (first) return first;
    const retry = { href: this.loginUrl(ctx.site), text: 'Sign in again' };
    const common = [
      'If it happens every time: something between the browser and Gatehouse drops cookies (a CDN or proxy that strips `Set-Cookie` or `Cookie`), or the browser blocks cookies for this site.',
      `If the proxy always sends \`X-Forwarded-Proto: https\` while browsers can reach it over plain http, the browser drops the Secure cookie: redirect http to https at the proxy.`,
    ];
    if (which === 'state') {
      return {
        code: 'state_cookie_missing',
        status: 400,
        heading: 'Sign-in could not be completed',
        key: 'publicUrl',
        summary:
          'The browser came back from the identity provider without the cookie Gatehouse set when this sign-in started.',
        fix: [
          `The redirect URI registered at the provider must be on \`publicUrl\`: ${ctx.site.origin}${this.prefix}/callback/<provider>. A callback on another host or scheme arrives without the cookie.`,
          'If this happens once (an old tab, a sign-in that took very long): start again.',
          ...common,
        ],
        retry,
        log: {},
      };
    }
    return {
      code: 'cookie_missing',
      status: 403,
      heading: 'Sign-in could not be completed',
      key: 'cookies at the proxy',
      summary: 'The browser sent this form without the cookie Gatehouse set when it showed the form.',
      fix: ['If this happens once (the browser was closed in between): reload the page and try again.', ...common],
      retry,
      log: {},
    };
  }

  /**
   * Set-Cookie for the loop-breaker's marker: add it wherever a sign-in succeeds. `req`: the
   * sign-in's request, whose marker (if any) says whether an ended session was let through
   * a moment ago (afterSignIn): the new marker remembers it.
   */
  signedIn(site: SiteInfo, req: IncomingMessage): string {
    const earlier = this.marker(req, site);
    return this.markerCookie(site, this.now().toString(36), earlier && earlier.state !== FRESH ? AGAIN : FRESH);
  }

  private markerCookie(site: SiteInfo, ts: string, state: MarkerState): string {
    return serializeCookie(
      site.cookies.signin,
      `${ts}.${state}.${this.secrets.mac('signin', `${site.origin}|${ts}|${state}`)}`,
      {
        secure: false,
        path: site.cookiePath,
        maxAgeSeconds: MARKER_MAX_AGE_S,
      },
    );
  }

  /** Set-Cookie that removes the marker (at sign-out, and once the explanation is shown). */
  clearSignedIn(site: SiteInfo): string {
    return expireCookie(site.cookies.signin, { secure: false, path: site.cookiePath });
  }

  /** The browser's valid marker (it signed in on this site within the last minute), if it carries one. */
  private marker(req: IncomingMessage, site: SiteInfo): { ts: string; state: MarkerState } | undefined {
    const header = req.headers.cookie;
    if (!header || !header.includes(site.cookies.signin)) return undefined;
    const value = readCookie(header, site.cookies.signin);
    if (!value) return undefined;
    const [ts, state, mac, extra] = value.split('.');
    if (!ts || !mac || extra !== undefined || (state !== FRESH && state !== LET_THROUGH && state !== AGAIN))
      return undefined;
    const at = parseInt(ts, 36);
    const age = this.now() - at;
    const valid =
      Number.isFinite(at) &&
      age >= -5_000 &&
      age <= MARKER_MAX_AGE_S * 1000 &&
      this.secrets.verifyMac('signin', `${site.origin}|${ts}|${state}`, mac);
    return valid ? { ts, state } : undefined;
  }

  /**
   * The loop-breaker: a browser that signed in a moment ago and is about to be sent to the
   * login page again. Returns why its session did not work, or undefined; `setCookies` may
   * get the marker rewritten, for the answer to carry.
   */
  afterSignIn(ctx: RequestContext, lookup: Lookup | undefined, setCookies: string[]): Cause | undefined {
    if (lookup?.state === 'active') return undefined;
    const marker = this.marker(ctx.req, ctx.site);
    if (!marker) return undefined;
    // A session that ended for a reason of its own (account disabled, timed out) is not a loop.
    if (
      lookup?.state === 'invalid' &&
      (lookup.reason === 'disabled' || lookup.reason === 'expired' || lookup.reason === 'other_site')
    )
      return undefined;
    // A session ended since the sign-in (signed out at the provider or on another device,
    // revoked, the account deleted) is unknown here just as one made by a node that does not
    // share this store. The first one is let through to the login page as usual (its cookie
    // cleared there), and the marker notes it; a store that is not shared makes the next
    // sign-in's session unknown too, and that one is explained (security.md #237).
    if (lookup?.state === 'invalid' && lookup.reason === 'unknown' && marker.state === FRESH) {
      setCookies.push(this.markerCookie(ctx.site, marker.ts, LET_THROUGH));
      return undefined;
    }
    // No session cookie after one was let through: the answer that let it through cleared it.
    if ((!lookup || lookup.state === 'none') && marker.state === LET_THROUGH) return undefined;
    const first = this.check(ctx);
    if (first) return first;
    const { site } = ctx;
    const retry = { href: this.loginUrl(site, ctx.path + ctx.query), text: 'Sign in again' };
    const heading = 'Signed in, but the session did not stick';
    if (!lookup || lookup.state === 'none') {
      return {
        code: 'session_cookie_dropped',
        status: 400,
        heading,
        key: 'cookies at the proxy',
        summary: `You signed in a moment ago, but the browser did not send the session cookie (${site.session.name}) back.`,
        fix: [
          'The browser drops Secure cookies on plain http: if the proxy always sends `X-Forwarded-Proto: https`, make sure browsers reach it over https only (redirect http to https).',
          'Something between the browser and Gatehouse removes the cookie: a CDN or proxy that strips `Cookie` or `Set-Cookie`, or rewrites it (`proxy_cookie_path`, `proxy_cookie_domain`).',
          `The app behind Gatehouse must not set a cookie named ${site.session.name}.`,
        ],
        retry,
        log: {},
      };
    }
    if (lookup.reason === 'ambiguous') {
      return {
        code: 'session_cookie_duplicate',
        status: 400,
        heading,
        key: 'sessions.cookieName',
        summary: `The browser sends two cookies named ${site.session.name}: the one Gatehouse set and another, set by a site on a parent domain or for a narrower path. Gatehouse trusts neither.`,
        fix: [
          "Stop whatever sets the other cookie (another service on a parent domain with `Domain=`), and clear this site's cookies in the browser.",
          'Or give Gatehouse a cookie name of its own: `sessions.cookieName`.',
        ],
        retry,
        log: {},
      };
    }
    if (lookup.reason === 'unknown') {
      return {
        code: 'session_unknown',
        status: 400,
        heading,
        key: 'store',
        summary:
          'You signed in a moment ago and the browser sent the session cookie back, but this Gatehouse node does not know the session.',
        fix: [
          'Several Gatehouse nodes behind a load balancer must share one store: `store: {type: postgres, url: ...}` on every node (a SQLite file belongs to one node).',
          'Or the store was reset or replaced since the sign-in, or the session was ended right after it (signed out elsewhere, revoked): then just sign in again.',
        ],
        retry,
        log: {},
      };
    }
    return {
      code: 'session_rejected',
      status: 400,
      heading,
      key: 'cookies at the proxy',
      summary: `You signed in a moment ago, but the session cookie (${site.session.name}) came back altered.`,
      fix: [
        'Something between the browser and Gatehouse rewrites cookies (a CDN or proxy that re-encodes or truncates `Cookie`): pass it on unchanged.',
      ],
      retry,
      log: { reason: lookup.reason },
    };
  }

  // ---- forward-auth -----------------------------------------------------------------

  forwardAuth(req: IncomingMessage, problem: 'untrusted' | 'no_uri'): Cause {
    const d = this.forwarding.detail(req);
    if (problem === 'untrusted') {
      return {
        code: 'forward_auth_untrusted',
        status: 400,
        heading: 'Access check refused',
        key: 'trustedProxies',
        summary: `${this.prefix}/check was called by ${d.peer}, which is not in \`trustedProxies\`, so Gatehouse cannot believe which URL it is asked to check.`,
        fix: [
          `Add the proxy to \`trustedProxies\` (\`trustedProxies: [${d.peer}]\`, a CIDR, or \`loopback\` / \`private\`).`,
        ],
        log: { peer: d.peer },
      };
    }
    return {
      code: 'forward_auth_no_uri',
      status: 400,
      heading: 'Access check refused',
      key: 'X-Original-URI (proxy)',
      summary: `${this.prefix}/check was called without the original URL (\`X-Original-URI\` or \`X-Forwarded-Uri\`), so Gatehouse cannot tell what to decide.`,
      fix: [
        'nginx: `proxy_set_header X-Original-URI $request_uri;` and `proxy_set_header X-Original-Method $request_method;` in the auth location (examples/nginx-forward-auth.conf).',
        'Traefik ForwardAuth and Caddy forward_auth send X-Forwarded-Uri and X-Forwarded-Method themselves.',
      ],
      log: { peer: d.peer },
    };
  }

  // ---- the answer -------------------------------------------------------------------

  /** Logs the cause (once per window) and sends the page or JSON. */
  respond(
    req: IncomingMessage,
    res: ServerResponse,
    site: SiteInfo | undefined,
    cause: Cause,
    requestId: string,
    cookies?: string[],
  ): void {
    this.log(req, cause, requestId);
    if (res.headersSent) return void res.destroy();
    if (wantsHtml(req)) {
      sendHtml(
        res,
        cause.status,
        renderCause(site?.title ?? 'Gatehouse', cause, requestId),
        { 'content-security-policy': CSP },
        cookies,
      );
    } else {
      sendJson(
        res,
        cause.status,
        {
          error: cause.error ?? 'misconfigured',
          cause: cause.code,
          key: cause.key,
          message: plain(cause.summary),
          fix: cause.fix.map(plain),
        },
        {},
        cookies,
      );
    }
  }

  private log(req: IncomingMessage, cause: Cause, requestId: string): void {
    const now = this.now();
    const seen = this.logged.get(cause.code);
    if (seen && now < seen.until) {
      seen.suppressed++;
      return;
    }
    this.logged.set(cause.code, { until: now + LOG_EVERY_MS, suppressed: 0 });
    this.logger.warn(
      {
        event: 'misconfiguration',
        cause: cause.code,
        key: cause.key,
        status: cause.status,
        requestId,
        path: req.url?.split('?')[0]?.slice(0, 256),
        suppressedBefore: seen?.suppressed ?? 0,
        ...cause.log,
      },
      `${plain(cause.summary)} Fix: ${plain(cause.fix[0] ?? '')}`,
    );
  }
}

/** `code` spans as they read in a log line. */
function plain(s: string): string {
  return s.replaceAll('`', '');
}

/** Text with `code` spans, escaped. */
function rich(s: string): SafeHtml {
  const parts = s.split('`');
  return html`${parts.map((p, i) => (i % 2 ? html`<code>${p}</code>` : p))}`;
}

/** The one explanation page: what happened for everyone, what to change for the operator. */
function renderCause(appTitle: string, cause: Cause, requestId: string): string {
  return layout({
    appTitle,
    heading: cause.heading,
    error: true,
    body: html`<p>This is about how the server is set up, not about anything you did. Tell whoever runs this site; the details below are for them.</p>
<h2>For the administrator</h2>
<p>${rich(cause.summary)}</p>
<p>To change: <code class="key">${cause.key}</code></p>
<ol class="fix">${cause.fix.map((f) => html`<li>${rich(f)}</li>`)}</ol>
<p class="hint">Gatehouse logged this as event <code>misconfiguration</code>, cause <code>${cause.code}</code> (request ${requestId}).</p>
${cause.retry ? html`<p class="alt"><a class="button secondary" href="${cause.retry.href}">${cause.retry.text}</a></p>` : ''}`,
  });
}
