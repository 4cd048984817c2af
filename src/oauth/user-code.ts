import { randomInt } from 'node:crypto';

/**
 * Device-flow user codes (RFC 8628 §6.1): 8 characters from 20 consonants that cannot be
 * mistaken for one another or spell words, shown as XXXX-XXXX. 20^8 ≈ 2^34.6 codes, so with
 * entries rate-limited and codes living minutes a guess is hopeless. Entry is
 * case-insensitive; the dash, spaces and other separators are optional.
 */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
const LENGTH = 8;
const EXAMPLE = 'BCDF-GHJK';
/** The letters no code contains (the vowels and Y), said on the entry page when one is typed. */
const NEVER_USED = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].filter((c) => !USER_CODE_ALPHABET.includes(c));

export function newUserCode(): string {
  let code = '';
  for (let i = 0; i < LENGTH; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/** XXXX-XXXX, as shown to users. */
export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

const clean = (input: string) => input.toUpperCase().replace(/[\s\-_.]/g, '');

/** The canonical code from what a user typed, or undefined when it cannot be one. */
export function normalizeUserCode(input: string | undefined): string | undefined {
  if (input === undefined || input.length > 64) return undefined;
  const code = clean(input);
  if (code.length !== LENGTH) return undefined;
  for (const c of code) if (!USER_CODE_ALPHABET.includes(c)) return undefined;
  return code;
}

/** "A", "A and E", "A, E and 1" (or "A, E or 1"). */
function listed(items: string[], conjunction = 'and'): string {
  return items.length === 1 ? items[0]! : `${items.slice(0, -1).join(', ')} ${conjunction} ${items.at(-1)}`;
}

/**
 * What to tell a user whose entry normalizeUserCode refused: which characters no code ever
 * has (the letters, and digits when one was typed), else what the length should be.
 */
export function userCodeProblem(input: string | undefined): string {
  const code = input === undefined ? '' : clean(input);
  if (!code) return `Enter the code your program shows, like ${EXAMPLE}.`;
  if (!/^[A-Z0-9]+$/.test(code)) return `A code has only letters and a dash, like ${EXAMPLE}.`;
  const never = [...new Set(code)].filter((c) => !USER_CODE_ALPHABET.includes(c));
  if (never.length) {
    const digits = never.some((c) => c >= '0' && c <= '9');
    return `This code has ${listed(never)}, which codes never use: codes have no ${listed(NEVER_USED, 'or')}${digits ? ', and no digits' : ''}. Check the code your program shows, like ${EXAMPLE}.`;
  }
  return `A code has ${LENGTH} letters, like ${EXAMPLE}; this one has ${code.length}.`;
}
