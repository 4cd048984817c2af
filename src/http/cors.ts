import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { CorsConfig } from '../config/cors.ts';

/**
 * CORS (Fetch standard §3.2) for an app with `cors:` (docs/cors.md, security.md "Cross-origin
 * browser clients"). Gatehouse answers the preflights (they carry no credentials, so they never
 * reach the app and are never refused as anonymous) and puts the answer's headers on every
 * response for that app: the app's own response when it is forwarded (its Access-Control-*
 * headers replaced), and Gatehouse's 401s, 403s and error pages, so a page can read the 401's
 * WWW-Authenticate. An origin gets an Access-Control-Allow-Origin only when it is listed; an
 * answer never echoes an origin it was not configured with (security.md #223).
 */
export interface CorsPolicy {
  /** origins: ["*"]: any page, never with cookies. */
  readonly any: boolean;
  readonly origins: ReadonlySet<string>;
  readonly credentials: boolean;
  /** The values of a preflight's answer, made once. */
  readonly allowMethods: string;
  readonly allowHeaders: string;
  readonly maxAge: string;
  readonly expose: string;
}

export function compileCors(c: CorsConfig | undefined): CorsPolicy | null {
  if (!c) return null;
  const any = c.origins.includes('*');
  const expose = new Set(['www-authenticate', ...c.exposeHeaders.map((h) => h.toLowerCase())]);
  return {
    any,
    // URL's origin is the browser's serialization: lower-case scheme and host, no default port.
    origins: new Set(any ? [] : c.origins.map((o) => new URL(o).origin)),
    credentials: c.credentials,
    allowMethods: c.methods.join(', '),
    allowHeaders: c.headers.map((h) => h.toLowerCase()).join(', '),
    maxAge: String(Math.floor(c.maxAge / 1000)),
    expose: [...expose].join(', '),
  };
}

/** Who may call, as `gatehouse check` says it: "https://a.example, with cookies", "any origin". */
export function describeCors(policy: CorsPolicy): string {
  return `${policy.any ? 'any origin' : [...policy.origins].join(', ')}${policy.credentials ? ', with cookies' : ''}`;
}

/**
 * A CORS preflight: OPTIONS with an Origin and the method the page means to use. Anything less is
 * an ordinary request, decided by the app's routes (security.md #225).
 */
export function isPreflight(req: IncomingMessage): boolean {
  return (
    req.method === 'OPTIONS' &&
    typeof req.headers.origin === 'string' &&
    typeof req.headers['access-control-request-method'] === 'string'
  );
}

function allowedOrigin(policy: CorsPolicy, origin: string | undefined): string | undefined {
  if (origin === undefined) return undefined;
  if (policy.any) return '*';
  return policy.origins.has(origin) ? origin : undefined;
}

/**
 * The CORS headers of an answer to `req` (set on the response before it is written). A listed
 * origin gets Access-Control-Allow-Origin and what its page may read; every answer of an app
 * with a list says `Vary: Origin`, so a shared cache never hands one origin's answer to another
 * (security.md #227).
 */
export function setCorsHeaders(policy: CorsPolicy, req: IncomingMessage, res: ServerResponse): void {
  const allow = allowedOrigin(policy, req.headers.origin);
  if (!policy.any) res.setHeader('vary', 'Origin');
  if (!allow) return;
  res.setHeader('access-control-allow-origin', allow);
  if (policy.credentials) res.setHeader('access-control-allow-credentials', 'true');
  res.setHeader('access-control-expose-headers', policy.expose);
}

/**
 * Answers a preflight: 204, with the allowed methods and headers when its origin is listed,
 * without any Access-Control-Allow-Origin otherwise (the browser then refuses the request).
 */
export function answerPreflight(policy: CorsPolicy, req: IncomingMessage, res: ServerResponse): number {
  const allow = allowedOrigin(policy, req.headers.origin);
  const headers: OutgoingHttpHeaders = { 'content-length': 0 };
  if (!policy.any) headers.vary = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';
  if (allow) {
    headers['access-control-allow-origin'] = allow;
    if (policy.credentials) headers['access-control-allow-credentials'] = 'true';
    headers['access-control-allow-methods'] = policy.allowMethods;
    if (policy.allowHeaders) headers['access-control-allow-headers'] = policy.allowHeaders;
    headers['access-control-max-age'] = policy.maxAge;
  }
  res.writeHead(204, headers);
  res.end();
  return 204;
}

/**
 * The app's response headers where Gatehouse speaks CORS for it: its own Access-Control-*
 * headers are dropped (they would contradict Gatehouse's, and an app could otherwise widen
 * what the operator allowed: security.md #226) and its Vary keeps Origin beside its own fields.
 */
export function withoutAppCors(
  headers: Record<string, string | string[]>,
  res: ServerResponse,
): Record<string, string | string[]> {
  for (const name of Object.keys(headers)) if (/^access-control-/i.test(name)) delete headers[name];
  const vary = headers.vary;
  const ours = res.getHeader('vary');
  if (vary !== undefined && ours !== undefined) {
    const own = Array.isArray(vary) ? vary.join(', ') : vary;
    headers.vary = own.trim() === '*' || /(^|,)\s*origin\s*(,|$)/i.test(own) ? own : `${own}, Origin`;
  }
  return headers;
}
