/**
 * Request-target normalization. The path produced here is the one route rules are matched
 * on AND the one forwarded to the app, so the two can never disagree (Pomerium
 * CVE-2023-33189, security.md #14-20). Anything a server could read two ways is refused (400)
 * rather than guessed:
 *   - percent-encoded unreserved characters are decoded (%7E → ~, %2e → .), other escapes
 *     are kept with upper-case hex;
 *   - encoded "/", "\", ";", "%", NUL and control characters are refused, as are raw "\",
 *     ";", "#", control characters and bytes outside ASCII printable;
 *   - encoded bytes above 0x7F must spell well-formed UTF-8 (RFC 3629), and are kept as
 *     they are; overlong forms (%C0%AE for "."), surrogates, code points above U+10FFFF,
 *     stray continuation bytes and cut-off sequences are refused, since an app that decodes
 *     them leniently would read another path than the rule saw;
 *   - "//" runs collapse to "/", and "." and ".." segments are resolved (".." above the root
 *     is refused).
 * The query string is passed through untouched: rules never look at it.
 */

export type Target = { ok: true; path: string; query: string } | { ok: false; reason: string };

const HEX = '0123456789ABCDEF';

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 65 && c <= 90) ||
    (c >= 97 && c <= 122) ||
    (c >= 48 && c <= 57) ||
    c === 45 ||
    c === 46 ||
    c === 95 ||
    c === 126
  );
}

/**
 * For a UTF-8 lead byte: how many continuation bytes follow, and the range the first of them
 * must fall in (RFC 3629 §4: this is what rules out overlong forms, surrogates and code
 * points above U+10FFFF). Undefined for a byte that cannot start a sequence.
 */
function utf8Lead(b: number): { need: number; lo: number; hi: number } | undefined {
  if (b >= 0xc2 && b <= 0xdf) return { need: 1, lo: 0x80, hi: 0xbf };
  if (b === 0xe0) return { need: 2, lo: 0xa0, hi: 0xbf };
  if (b === 0xed) return { need: 2, lo: 0x80, hi: 0x9f };
  if (b >= 0xe1 && b <= 0xef) return { need: 2, lo: 0x80, hi: 0xbf };
  if (b === 0xf0) return { need: 3, lo: 0x90, hi: 0xbf };
  if (b === 0xf4) return { need: 3, lo: 0x80, hi: 0x8f };
  if (b >= 0xf1 && b <= 0xf3) return { need: 3, lo: 0x80, hi: 0xbf };
  return undefined;
}

const BAD_UTF8 = 'percent-encoded bytes that are not well-formed UTF-8 in path';

/** Fast check: the common case of a clean path needs no rewriting. */
const CLEAN = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*\/?$/;

export function normalizeTarget(raw: string): Target {
  if (raw.length === 0 || raw.charCodeAt(0) !== 47 /* / */)
    return { ok: false, reason: 'request target must be a path starting with "/"' };
  const q = raw.indexOf('?');
  const rawPath = q === -1 ? raw : raw.slice(0, q);
  const query = q === -1 ? '' : raw.slice(q);
  if (query.includes('#')) return { ok: false, reason: 'fragment in request target' };
  for (let i = 0; i < query.length; i++) {
    const c = query.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return { ok: false, reason: 'control or non-ASCII character in query' };
  }
  if (CLEAN.test(rawPath)) return { ok: true, path: rawPath, query };

  // Decode unreserved escapes and validate, producing segments. `need`: continuation bytes
  // the current UTF-8 sequence still needs; the next one must be in lo..hi.
  let decoded = '';
  let need = 0;
  let lo = 0x80;
  let hi = 0xbf;
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c === 37 /* % */) {
      const h = hexVal(rawPath.charCodeAt(i + 1));
      const l = hexVal(rawPath.charCodeAt(i + 2));
      if (h < 0 || l < 0) return { ok: false, reason: 'malformed percent-encoding' };
      const byte = h * 16 + l;
      if (byte >= 0x80) {
        if (need > 0) {
          if (byte < lo || byte > hi) return { ok: false, reason: BAD_UTF8 };
          need--;
          lo = 0x80;
          hi = 0xbf;
        } else {
          const lead = utf8Lead(byte);
          if (!lead) return { ok: false, reason: BAD_UTF8 };
          ({ need, lo, hi } = lead);
        }
        decoded += '%' + HEX[h] + HEX[l];
        i += 2;
        continue;
      }
      if (need > 0) return { ok: false, reason: BAD_UTF8 };
      if (isUnreserved(byte)) decoded += String.fromCharCode(byte);
      else if (byte === 0x2f || byte === 0x5c) return { ok: false, reason: 'encoded slash or backslash in path' };
      else if (byte === 0x3b) return { ok: false, reason: 'encoded ";" in path' };
      else if (byte === 0x25) return { ok: false, reason: 'double percent-encoding in path' };
      else if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: 'encoded control character in path' };
      else decoded += '%' + HEX[h] + HEX[l];
      i += 2;
      continue;
    }
    if (need > 0) return { ok: false, reason: BAD_UTF8 };
    if (c <= 0x20 || c >= 0x7f) return { ok: false, reason: 'control, space or non-ASCII character in path' };
    if (c === 0x5c) return { ok: false, reason: 'backslash in path' };
    if (c === 0x3b) return { ok: false, reason: '";" path parameters are not accepted' };
    if (c === 0x23) return { ok: false, reason: 'fragment in request target' };
    decoded += rawPath[i];
  }
  if (need > 0) return { ok: false, reason: BAD_UTF8 };

  // Collapse "//" and resolve dot-segments (RFC 3986 §5.2.4 on segments).
  const parts = decoded.split('/');
  const out: string[] = [];
  const last = parts.length - 1;
  for (let i = 1; i <= last; i++) {
    const seg = parts[i]!;
    if (seg === '' && i !== last) continue;
    if (seg === '.') {
      if (i === last) out.push('');
      continue;
    }
    if (seg === '..') {
      if (out.length === 0) return { ok: false, reason: '".." above the root' };
      out.pop();
      if (i === last) out.push('');
      continue;
    }
    out.push(seg);
  }
  let path = '/' + out.join('/');
  if (path === '//') path = '/';
  return { ok: true, path, query };
}

/**
 * A safe return target from a `rd` / `return_to` value: a same-origin relative path, or an
 * absolute URL on one of `origins`, reduced to its path. Everything else → undefined, and
 * the caller falls back to "/". The value is decoded once before checking, so encoded
 * tricks (%2F%2Fevil.com, /%09/evil.com) are caught too.
 */
export function safeReturnPath(value: unknown, origins: readonly string[]): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return undefined;
  let candidate = value;
  if (!value.startsWith('/')) {
    // Absolute URL on our own origin only (exact scheme, host and port).
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      return undefined;
    }
    if (!origins.includes(u.origin) || u.username || u.password || !/^https?:\/\//i.test(value)) return undefined;
    candidate = u.pathname + u.search + u.hash;
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(candidate);
  } catch {
    return undefined;
  }
  for (const s of [candidate, decoded]) {
    if (!s.startsWith('/') || s.startsWith('//')) return undefined;
    // Backslashes, whitespace (any Unicode space) and control characters are never in a path we write.
    if (/[\\\s\u0000-\u001f\u007f-\u009f\u2000-\u200f\u2028\u2029\ufeff]/.test(s)) return undefined;
  }
  // The browser resolves dot-segments: /./\evil, /.//evil and friends must still land here.
  const base = 'http://gatehouse.invalid';
  let resolved: URL;
  try {
    resolved = new URL(candidate, base);
  } catch {
    return undefined;
  }
  if (resolved.origin !== base) return undefined;
  const path = resolved.pathname + resolved.search + resolved.hash;
  return path.startsWith('//') ? undefined : path;
}

/** A safe return target (safeReturnPath) on `site`, below its base path; or undefined. */
export function returnTargetOn(site: { origin: string; base: string }, value: unknown): string | undefined {
  const path = safeReturnPath(value, [site.origin]);
  return path !== undefined && insideBase(site, path) ? path : undefined;
}

/** A return target (path, maybe with query) that stays below the site's base path. */
export function insideBase(site: { base: string }, target: string): boolean {
  if (!site.base) return true;
  const end = target.search(/[?#]/);
  const path = end === -1 ? target : target.slice(0, end);
  return path === site.base || path.startsWith(`${site.base}/`);
}
