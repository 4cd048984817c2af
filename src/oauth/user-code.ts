import { randomInt } from 'node:crypto';

/**
 * Device-flow user codes (RFC 8628 §6.1): 8 characters from 20 consonants that cannot be
 * mistaken for one another or spell words, shown as XXXX-XXXX. 20^8 ≈ 2^34.6 codes, so with
 * entries rate-limited and codes living minutes a guess is hopeless. Entry is
 * case-insensitive; the dash, spaces and other separators are optional.
 */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
const LENGTH = 8;

export function newUserCode(): string {
  let code = '';
  for (let i = 0; i < LENGTH; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/** XXXX-XXXX, as shown to users. */
export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/** The canonical code from what a user typed, or undefined when it cannot be one. */
export function normalizeUserCode(input: string | undefined): string | undefined {
  if (input === undefined || input.length > 64) return undefined;
  const code = input.toUpperCase().replace(/[\s\-_.]/g, '');
  if (code.length !== LENGTH) return undefined;
  for (const c of code) if (!USER_CODE_ALPHABET.includes(c)) return undefined;
  return code;
}
