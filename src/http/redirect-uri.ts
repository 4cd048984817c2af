/**
 * Redirect URIs an OAuth client may register (RFC 9700 §2.1, RFC 8252 §7 for native apps):
 *   - https, any host;
 *   - http only on a loopback host (127.0.0.1, [::1], localhost): a native app's local listener;
 *   - a private-use scheme named after a domain the app's owner controls, reversed, so with a
 *     dot (RFC 8252 §7.1: com.example.app:/cb), which no other app or the browser claims; a
 *     single-word scheme (http2:, slack:, cursor:) may belong to any app on the device, so the
 *     code could land there. Single-word schemes the operator lists in
 *     tokens.privateUseSchemes are accepted too, never ones a browser runs or that reach
 *     files (javascript:, data:, file:, ...).
 * Never a fragment, credentials, whitespace or wildcards. Matching is exact, except that for
 * an http loopback IP literal the port may differ (RFC 8252 §7.3: the app picks a free port).
 */

const FORBIDDEN_SCHEMES = new Set([
  'javascript',
  'data',
  'file',
  'vbscript',
  'blob',
  'about',
  'filesystem',
  'view-source',
  'chrome',
  'ftp',
  'ws',
  'wss',
  'mailto',
  'tel',
  'intent',
]);
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
const LOOPBACK_IP = new Set(['127.0.0.1', '[::1]']);
const MAX_REDIRECT_URI = 2000;

/** A reverse-DNS scheme: at least two labels, each starting with a letter. */
const REVERSE_DNS = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/;

/** Why a scheme cannot be listed in tokens.privateUseSchemes, or undefined when it can. */
export function privateUseSchemeProblem(scheme: string): string | undefined {
  if (!/^[a-z][a-z0-9+.-]{0,63}$/.test(scheme)) return 'a scheme is lower-case letters, digits, "+", "-" and "."';
  if (scheme === 'http' || scheme === 'https' || FORBIDDEN_SCHEMES.has(scheme))
    return `${scheme}: is not a private-use scheme`;
  return undefined;
}

/**
 * Why a redirect URI cannot be registered, or undefined when it can. `schemes`: single-word
 * private-use schemes the operator accepts (tokens.privateUseSchemes).
 */
export function redirectUriProblem(uri: string, schemes: readonly string[] = []): string | undefined {
  if (uri.length === 0 || uri.length > MAX_REDIRECT_URI) return 'must be 1 to 2000 characters';
  if (!/^[\x21-\x7e]+$/.test(uri)) return 'must not contain spaces or non-ASCII characters';
  if (uri.includes('#')) return 'must not have a fragment';
  if (uri.includes('*')) return 'must not contain wildcards';
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return 'is not an absolute URI';
  }
  const scheme = u.protocol.slice(0, -1);
  if (u.username || u.password) return 'must not contain credentials';
  if (scheme === 'https') return u.hostname ? undefined : 'needs a host';
  if (scheme === 'http')
    return LOOPBACK_HOSTS.has(u.hostname)
      ? undefined
      : 'http is allowed only on a loopback host (127.0.0.1, [::1], localhost); use https';
  if (FORBIDDEN_SCHEMES.has(scheme)) return `the ${scheme}: scheme is not allowed`;
  if (!REVERSE_DNS.test(scheme) && !schemes.includes(scheme))
    return `the ${scheme}: scheme is not a reverse domain name: a private-use scheme must be one, such as com.example.app: (RFC 8252 §7.1)`;
  return undefined;
}

/** Whether `requested` is one of `registered`, exactly, or with another port on a loopback IP. */
export function redirectUriMatches(registered: readonly string[], requested: string): boolean {
  if (registered.includes(requested)) return true;
  if (!requested.startsWith('http://')) return false;
  let r: URL;
  try {
    r = new URL(requested);
  } catch {
    return false;
  }
  if (!LOOPBACK_IP.has(r.hostname) || r.username || r.password || r.hash) return false;
  return registered.some((uri) => {
    if (!uri.startsWith('http://')) return false;
    const g = new URL(uri);
    return (
      LOOPBACK_IP.has(g.hostname) &&
      g.hostname === r.hostname &&
      g.pathname === r.pathname &&
      g.search === r.search &&
      requested === `http://${r.host}${r.pathname}${r.search}`
    );
  });
}

/**
 * The CSP source that lets the consent form's redirect reach this URI (browsers apply
 * form-action to the redirect after a form POST): the origin, or the scheme for a
 * private-use scheme. Validated URIs only, so nothing here can end a CSP directive.
 */
export function redirectCspSource(uri: string): string {
  const u = new URL(uri);
  return u.protocol === 'https:' || u.protocol === 'http:' ? u.origin : u.protocol;
}
