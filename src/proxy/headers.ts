/**
 * What crosses from client to app and back. Request headers are rebuilt from rawHeaders in
 * one pass, in this order (security.md #1-5):
 *   1. hop-by-hop headers, and every header the client names in Connection, are dropped
 *      (RFC 9110 §7.6.1) BEFORE anything is added, so a client cannot name ours away;
 *   2. every header that claims identity or forwarding (X-User-*, X-Gatehouse-*,
 *      X-Forwarded-*, Forwarded, X-Real-IP, X-Original-*, ...) is dropped, whatever its case
 *      and with "_" read as "-", in every copy;
 *   3. Gatehouse's own cookies are cut out of Cookie: the app never sees a session id;
 *   4. Gatehouse adds its own forwarding and identity headers.
 */

import { HOP_BY_HOP_HEADERS, isSpoofable } from '../http/header-names.ts';

const HOP_BY_HOP = new Set([
  ...HOP_BY_HOP_HEADERS,
  'proxy-authorization',
  'proxy-authenticate',
  'host',
  'expect',
  // HTTP/2 pseudo-headers (in the compat API's rawHeaders): never sent on. In this set they
  // cost an HTTP/1.1 request nothing extra.
  ':method',
  ':path',
  ':scheme',
  ':authority',
  ':protocol',
]);

let lastConnection = '';
let lastTokens: ReadonlySet<string> = new Set();

/** Names listed in Connection (lower-case), to be dropped with it. Callers only read the set. */
export function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> | null {
  if (!value) return null;
  // An app answers with the same "Connection: keep-alive" every time: parse it once.
  if (value === lastConnection) return lastTokens;
  const set = new Set<string>();
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const t = part.trim().toLowerCase();
    if (t) set.add(t);
  }
  if (typeof value === 'string' && value.length <= 64) {
    lastConnection = value;
    lastTokens = set;
  }
  return set;
}

/** Removes the named cookies from a Cookie header; returns null when nothing is left. */
export function stripCookies(header: string, names: readonly string[]): string | null {
  if (!names.some((n) => header.includes(n))) return header;
  const kept: string[] = [];
  for (const part of header.split(';')) {
    const trimmed = part.trim();
    if (!trimmed) continue;
    const eq = trimmed.indexOf('=');
    const name = eq === -1 ? trimmed : trimmed.slice(0, eq);
    if (!names.includes(name)) kept.push(trimmed);
  }
  return kept.length ? kept.join('; ') : null;
}

export interface ForwardingInfo {
  clientIp: string;
  /** The X-Forwarded-For the app gets: the trusted chain plus the peer, or just the client. */
  forwardedFor: string;
  proto: 'http' | 'https';
  host: string;
  requestId: string;
  /** Host header for the app. */
  upstreamHost: string;
  /** Gatehouse's cookie names, removed from Cookie. */
  ownCookies: readonly string[];
  /**
   * A traceparent Gatehouse started (http/trace.ts): the client's traceparent and tracestate
   * are dropped and this one is sent. Undefined: the client's pass unchanged.
   */
  traceparent?: string;
  /** X-Forwarded-Prefix, for an app with stripPrefix: the pathPrefix its paths were sent without. */
  prefix?: string;
  /** The app's requestHeaders (name, value, ...): sent as they are (the client's copies are dropped as identity headers). */
  extra?: string[] | null;
}

/**
 * Builds the flat [name, value, ...] list for the upstream request. `identity` is appended
 * last, already in [name, value] pairs. `drop` names further headers to remove (lower-case),
 * e.g. an Authorization that Gatehouse consumed. `ownIdentity` names the app's own identity
 * header names (lower-case, "-" for "_"), dropped in every spelling like the built-in ones.
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  connection: string | string[] | undefined,
  fwd: ForwardingInfo,
  identity: readonly string[],
  drop?: string,
  ownIdentity?: ReadonlySet<string> | null,
): string[] {
  const listed = connectionTokens(connection);
  const out: string[] = [];
  let cookieAt = -1;
  const newTrace = fwd.traceparent !== undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (listed !== null && listed.has(lower)) || isSpoofable(lower) || lower === drop)
      continue;
    if (newTrace && (lower === 'traceparent' || lower === 'tracestate')) continue;
    // An app's own names for identity headers (headers: {email: X-Email}) are claimed the same way.
    if (ownIdentity && ownIdentity.has(lower.includes('_') ? lower.replaceAll('_', '-') : lower)) continue;
    if (lower === 'cookie') {
      const value = stripCookies(rawHeaders[i + 1]!, fwd.ownCookies);
      if (value === null) continue;
      // HTTP/2 clients send one cookie field per cookie; HTTP/1.1 wants one header.
      if (cookieAt === -1) {
        cookieAt = out.length + 1;
        out.push(name, value);
      } else out[cookieAt] += `; ${value}`;
      continue;
    }
    out.push(name, rawHeaders[i + 1]!);
  }
  out.push(
    'host',
    fwd.upstreamHost,
    'x-forwarded-for',
    fwd.forwardedFor,
    'x-forwarded-proto',
    fwd.proto,
    'x-forwarded-host',
    fwd.host,
    'x-request-id',
    fwd.requestId,
  );
  if (fwd.prefix !== undefined) out.push('x-forwarded-prefix', fwd.prefix);
  if (fwd.extra) for (let i = 0; i < fwd.extra.length; i++) out.push(fwd.extra[i]!);
  if (newTrace) out.push('traceparent', fwd.traceparent!);
  for (let i = 0; i < identity.length; i++) out.push(identity[i]!);
  return out;
}

const RESPONSE_HOP_BY_HOP = new Set([...HOP_BY_HOP_HEADERS, 'proxy-authenticate']);

/** The app's response headers without hop-by-hop ones (and those its Connection names). */
export function downstreamResponseHeaders(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const listed = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const key in headers) {
    const v = headers[key];
    if (v === undefined || RESPONSE_HOP_BY_HOP.has(key) || (listed !== null && listed.has(key))) continue;
    out[key] = v;
  }
  return out;
}
