/**
 * Reads one cookie by exact name (case-sensitive, no Unicode trimming: "__HOST-x" and
 * "\u2000__Host-x" are other cookies, security.md #24). When the name appears more than once,
 * as with a cookie tossed from a sibling domain or a narrower path (security.md #23), none of
 * the copies is trusted: the result is "ambiguous".
 */
export function readCookie(header: string | undefined, name: string): string | undefined | null {
  if (!header) return undefined;
  let found: string | undefined;
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    let s = start;
    while (s < end && (header.charCodeAt(s) === 32 || header.charCodeAt(s) === 9)) s++;
    const eq = header.indexOf('=', s);
    if (eq !== -1 && eq < end && eq - s === name.length && header.startsWith(name, s)) {
      if (found !== undefined) return null;
      let e = end;
      while (e > eq + 1 && (header.charCodeAt(e - 1) === 32 || header.charCodeAt(e - 1) === 9)) e--;
      let value = header.slice(eq + 1, e);
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      found = value;
    }
    start = end + 1;
  }
  return found;
}

export interface CookieOptions {
  maxAgeSeconds?: number;
  secure: boolean;
  path?: string;
  sameSite?: 'Lax' | 'Strict' | 'None';
  httpOnly?: boolean;
}

/** Never sets Domain: every Gatehouse cookie is host-only. */
export function serializeCookie(name: string, value: string, o: CookieOptions): string {
  let s = `${name}=${value}; Path=${o.path ?? '/'}`;
  if (o.maxAgeSeconds !== undefined) s += `; Max-Age=${Math.max(0, Math.floor(o.maxAgeSeconds))}`;
  if (o.httpOnly !== false) s += '; HttpOnly';
  if (o.secure) s += '; Secure';
  s += `; SameSite=${o.sameSite ?? 'Lax'}`;
  return s;
}

export function expireCookie(name: string, o: Omit<CookieOptions, 'maxAgeSeconds'>): string {
  return serializeCookie(name, '', { ...o, maxAgeSeconds: 0 });
}

/** The session cookie's name and attributes (sessions/ reads and sets it). */
export interface SessionCookie {
  name: string;
  secure: boolean;
  /** Path attribute; default "/". */
  path?: string;
}
