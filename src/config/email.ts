import { domainToASCII } from 'node:url';

const LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;

/**
 * The canonical form of an email address, or undefined when it is not one. One "@",
 * a dot-atom local part, a domain with at least one dot (IDNs become punycode), all
 * lower-cased: "A@Corp.com" and "a@corp.com" are one account; "a@corp.com@evil.com" is
 * nothing (security.md #37).
 */
export function normalizeEmail(input: unknown): string | undefined {
  if (typeof input !== 'string') return undefined;
  const s = input.trim();
  if (s.length === 0 || s.length > 254) return undefined;
  const at = s.indexOf('@');
  if (at <= 0 || at !== s.lastIndexOf('@')) return undefined;
  const local = s.slice(0, at);
  const domain = domainToASCII(s.slice(at + 1).toLowerCase());
  if (local.length > 64 || !LOCAL.test(local)) return undefined;
  if (!domain || domain.length > 253 || !domain.includes('.') || !/^[a-z0-9.-]+$/.test(domain)) return undefined;
  if (
    domain
      .split('.')
      .some((label) => label.length === 0 || label.length > 63 || label.startsWith('-') || label.endsWith('-'))
  )
    return undefined;
  return `${local.toLowerCase()}@${domain}`;
}
