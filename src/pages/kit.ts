import { randomBytes } from 'node:crypto';
import { field, readInput, type Input } from '../http/body.ts';
import type { RequestContext } from '../http/context.ts';
import { readCookie, serializeCookie } from '../http/cookies.ts';
import { fromOwnPage, sameOriginRequest } from '../http/csrf.ts';
import { HttpError } from '../http/errors.ts';
import { hasBody } from '../http/protocol.ts';
import { sendHtml } from '../http/respond.ts';
import { returnTargetOn } from '../http/target.ts';
import { lookPage } from './brand.ts';
import { CSP, cspWithFormAction } from './styles.ts';

/**
 * The page kit every feature's pages use (sign-in, account, providers, mailed links, the OAuth
 * pages): CSRF tokens, reading a POST safely, return targets, own URLs, sending a page. Features
 * depend on the FormTools interface; the composition root makes the one FormKit.
 */
export interface FormTools {
  csrf(ctx: RequestContext): { token: string; cookies: string[] };
  readPost(ctx: RequestContext, o?: { bodiless?: boolean }): Promise<Input>;
  returnTarget(ctx: RequestContext, value: unknown): string | undefined;
  returnPath(ctx: RequestContext, value: unknown): string;
  queryParam(ctx: RequestContext, name: string): string | undefined;
  html(ctx: RequestContext, status: number, page: string, cookies?: string[], headers?: Record<string, string>): void;
  /** An own route's path (below the prefix) with its query: url(ctx, '/login', {rd}). */
  url(ctx: RequestContext, route: string, query?: Record<string, string | undefined>): string;
}

export interface FormKitDeps {
  /** Own routes' prefix, publicUrl's base path included: /.auth, or /app/.auth. */
  prefix: string;
  /** The MAC that binds a form's token to the CSRF cookie (keys/secrets.ts). */
  secrets: {
    mac(purpose: string, data: string): string;
    verifyMac(purpose: string, data: string, mac: string, length?: number): boolean;
  };
  /** What to throw when a form came without its CSRF cookie (diagnosis/ explains why). */
  csrfCookieMissing(ctx: RequestContext): Error;
  /**
   * apps[].sso: the origins a sign-in on publicUrl's site (`home`) may end on, after the
   * redirects that follow its form, which browsers hold to the page's CSP form-action.
   */
  singleSignOn?: { home: string; origins: readonly string[] };
}

/**
 * Every POST read through readPost passes two checks first: the browser must say the request
 * is same-origin (Sec-Fetch-Site / Origin), and an HTML form must carry the token bound to
 * the CSRF cookie. JSON bodies need no token: a cross-site page cannot send
 * application/json without a CORS preflight, which Gatehouse never grants.
 */
export class FormKit implements FormTools {
  private readonly s: FormKitDeps;

  constructor(deps: FormKitDeps) {
    this.s = deps;
  }

  url(ctx: RequestContext, route: string, query?: Record<string, string | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v) q.set(k, v);
    const qs = q.toString();
    return `${this.s.prefix}${route}${qs ? `?${qs}` : ''}`;
  }

  // ---- CSRF -------------------------------------------------------------------------

  /** The form token for this browser, and the cookie to set when it has none yet. */
  csrf(ctx: RequestContext): { token: string; cookies: string[] } {
    const name = ctx.site.cookies.csrf;
    let value = readCookie(ctx.req.headers.cookie, name);
    const cookies: string[] = [];
    if (!value || !/^[A-Za-z0-9_-]{22}$/.test(value)) {
      value = randomBytes(16).toString('base64url');
      cookies.push(serializeCookie(name, value, { secure: ctx.site.secure, path: ctx.site.cookiePath }));
    }
    return { token: this.s.secrets.mac('csrf', value), cookies };
  }

  /**
   * Refuses cross-site requests; for forms also checks the token. `bodiless`: the route needs
   * no fields, so a POST with no body and no Content-Type (what `fetch(url, {method: 'POST'})`
   * sends) is read as an empty JSON object, and answered as JSON. It carries no token and
   * needs no preflight, so the browser must say it comes from this origin.
   */
  async readPost(ctx: RequestContext, o: { bodiless?: boolean } = {}): Promise<Input> {
    if (!sameOriginRequest(ctx.req, ctx.site.origin))
      throw new HttpError(403, 'cross_site', 'Cross-site requests are not accepted here.');
    if (o.bodiless && ctx.req.headers['content-type'] === undefined && !hasBody(ctx.req)) {
      if (!fromOwnPage(ctx.req, ctx.site.origin))
        throw new HttpError(403, 'cross_site', 'A POST without a body must come from a page of this site.');
      return { kind: 'json', data: Object.create(null) };
    }
    const input = await readInput(ctx.req);
    if (input.kind === 'form') {
      const cookie = readCookie(ctx.req.headers.cookie, ctx.site.cookies.csrf);
      const token = field(input, 'csrf', 128);
      // The form came, its cookie did not: explain why instead of "expired" over and over.
      if (cookie === undefined && token) throw this.s.csrfCookieMissing(ctx);
      if (!cookie || !token || !this.s.secrets.verifyMac('csrf', cookie, token)) {
        throw new HttpError(403, 'csrf', 'This form has expired. Go back, reload the page and try again.');
      }
    }
    return input;
  }

  /** A same-origin return target below publicUrl's base path, or undefined. */
  returnTarget(ctx: RequestContext, value: unknown): string | undefined {
    return returnTargetOn(ctx.site, value);
  }

  returnPath(ctx: RequestContext, value: unknown): string {
    return this.returnTarget(ctx, value) ?? ctx.site.home;
  }

  queryParam(ctx: RequestContext, name: string): string | undefined {
    return ctx.query ? (new URLSearchParams(ctx.query.slice(1)).get(name) ?? undefined) : undefined;
  }

  html(
    ctx: RequestContext,
    status: number,
    page: string,
    cookies: string[] = [],
    headers: Record<string, string> = {},
  ): void {
    let csp = headers['content-security-policy'] ?? CSP;
    const sso = this.s.singleSignOn;
    if (sso && ctx.site.origin === sso.home) csp = cspWithFormAction(sso.origins, csp);
    // The site's look (brand.ts): its stylesheet and logo, and the CSP allowing that stylesheet.
    const looked = lookPage(ctx.site.look, page, csp);
    // The page's <meta name="referrer"> narrows this to no-referrer where it must (layout.ts).
    sendHtml(
      ctx.res,
      status,
      looked.page,
      { 'referrer-policy': 'same-origin', ...headers, 'content-security-policy': looked.csp },
      cookies,
    );
  }
}
