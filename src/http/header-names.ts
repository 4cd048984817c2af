/**
 * Header names that claim identity or forwarding, which only Gatehouse may send to an app
 * (security.md #1-5): proxy/headers.ts drops every client copy of them, and sites/ leaves
 * them out of an app's own identity header names, which are dropped the same way.
 */

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) and HTTP/2's: they describe one connection and are never
 * passed on (proxy/headers.ts), so no configured header name may be one of them (config/headers.ts).
 */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'http2-settings',
];

/** Headers by which an app may act on another method than the request's (security.md #69). */
export const METHOD_OVERRIDE_HEADERS: readonly string[] = [
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
];

const SPOOFABLE_EXACT = new Set([
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-rewrite-url',
  'x-request-id',
  'x-cluster-client-ip',
  ...METHOD_OVERRIDE_HEADERS,
]);
const SPOOFABLE_PREFIXES = [
  'x-user-',
  'x-gatehouse-',
  'x-forwarded-',
  'x-original-',
  'x-auth-request-',
  'remote-user',
  'x-remote-',
];

/** True for a header name no client may send to the app, in any spelling. */
export function isSpoofable(lowerName: string): boolean {
  const name = lowerName.includes('_') ? lowerName.replaceAll('_', '-') : lowerName;
  if (SPOOFABLE_EXACT.has(name)) return true;
  for (const p of SPOOFABLE_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}
