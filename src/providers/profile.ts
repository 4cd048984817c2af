/**
 * Who a provider says the user is, reduced to what Gatehouse keeps: the (issuer, subject)
 * key, an email with whether the provider verified it, a display name, and groups. Claims
 * are untrusted text from another system: values with control, invisible or bidi characters and
 * oversized ones are dropped here (names are cleaned of them instead), once, before anything is
 * stored or forwarded (security.md #54).
 */
export interface ProviderProfile {
  issuer: string;
  subject: string;
  email: string | null;
  emailVerified: boolean;
  name: string | null;
  groups: string[];
  /**
   * The ID token says the provider did multi-factor authentication: its `amr` has "mfa", or its
   * `acr` names a multi-factor or phishing-resistant level (providers[].mfa: trust counts it).
   */
  mfa?: boolean;
}

/** Whether an ID token's amr/acr say the user passed more than one factor at the provider. */
export function providerDidMfa(claims: Record<string, unknown>): boolean {
  if (Array.isArray(claims.amr) && claims.amr.includes('mfa')) return true;
  return typeof claims.acr === 'string' && /multi-?factor|(^|[^a-z])(mfa|phrh?)([^a-z]|$)/i.test(claims.acr);
}

/** Tokens from a provider's token endpoint, as kept server-side (never in a cookie). */
export interface ProviderTokenSet {
  accessToken: string | null;
  refreshToken: string | null;
  idToken: string | null;
  /** Epoch ms when the access token expires; null when the provider did not say. */
  expiresAt: number | null;
  /** Epoch ms when these tokens were obtained. */
  obtainedAt: number;
  scope: string | null;
  /** Set when the provider refused the refresh token: only signing in again helps. */
  refused?: boolean;
}

/** Controls, line separators, invisible and bidi format characters (Cf), broken UTF-16: a claim with one is dropped. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u;

/**
 * An identifier-like claim (an address, a group) as is, or null when it is blank, longer than
 * `max` or holds a character that is unsafe to store, match or forward. Display names are
 * cleaned instead (accounts/names.ts: cleanDisplayName), since the user cannot fix them there.
 */
export function cleanText(value: unknown, max: number): string | null {
  if (typeof value !== 'string') return null;
  const t = value.trim();
  if (!t || t.length > max || UNSAFE.test(t)) return null;
  return t;
}

/** The value at a dotted path ("realm_access.roles"); a claim whose own name has a dot wins. */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  if (path in claims) return claims[path];
  let v: unknown = claims;
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** Groups from an array of strings (or one string); at most 200, each at most 256 characters. */
export function groupsFrom(value: unknown): string[] {
  const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
  const out: string[] = [];
  for (const g of list) {
    const t = cleanText(g, 256);
    if (t && !out.includes(t)) out.push(t);
    if (out.length === 200) break;
  }
  return out;
}

/** email_verified is a boolean in the spec; some IdPs send the string "true". */
export function verifiedFrom(value: unknown): boolean {
  return value === true || value === 'true';
}
