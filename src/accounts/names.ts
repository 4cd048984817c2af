/**
 * Display names: the one set of rules for every place a name enters Gatehouse (registration,
 * `gatehouse users add --name`, a provider's profile) and for every place one leaves it (the
 * name header and the assertion's `name` claim, built from one cleaned value).
 *
 * A name is shown by apps next to other people's, so characters that change how text displays
 * without being seen are refused: bidi controls (U+202E makes "evil\u202Egnp.exe" read
 * "evilexe.png"), zero-width and other invisible format characters (Unicode category Cf, which
 * holds the bidi controls too), control characters (C0, DEL, C1: U+0085 is a line break to some
 * parsers), line and paragraph separators, and broken UTF-16. Names are stored in NFC.
 */

export const MAX_NAME_CHARS = 100;

const LINE_BREAK = /[\n\v\f\r\u0085\u2028\u2029]/;
const CONTROL = /\p{Cc}/u;
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const INVISIBLE = /\p{Cf}/u;
/** What cleaning replaces with a space (breaks and controls) or drops (format characters, lone surrogates). */
const TO_SPACE = /[\p{Cc}\u2028\u2029]+/gu;
const TO_DROP = /[\p{Cf}\p{Cs}]/gu;
/** Plain printable ASCII: nothing to clean or normalize (the common case, checked first). */
const PLAIN = /^[\x20-\x7e]*$/;

const codePoint = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * A name a user typed: the name to store (NFC, trimmed; null when blank), or what is wrong
 * with it, in words that say what to change.
 */
export function checkDisplayName(
  input: string | undefined | null,
): { ok: true; name: string | null } | { ok: false; error: string } {
  const t = (input ?? '').trim();
  if (!t) return { ok: true, name: null };
  if (!t.isWellFormed()) return { ok: false, error: 'The name contains a broken character. Type it again.' };
  if (LINE_BREAK.test(t)) return { ok: false, error: 'Put the name on one line: it contains a line break.' };
  let m = CONTROL.exec(t);
  if (m) return { ok: false, error: `The name contains a control character (${codePoint(m[0])}). Remove it.` };
  m = BIDI.exec(t);
  if (m)
    return {
      ok: false,
      error: `The name contains a text-direction control (${codePoint(m[0])}), which can make it display as something else. Remove it.`,
    };
  m = INVISIBLE.exec(t);
  if (m) return { ok: false, error: `The name contains an invisible character (${codePoint(m[0])}). Remove it.` };
  const name = t.normalize('NFC');
  if (name.length > MAX_NAME_CHARS) return { ok: false, error: `Use at most ${MAX_NAME_CHARS} characters.` };
  return { ok: true, name };
}

/**
 * A name from somewhere the user cannot fix it (a provider's profile, a row stored before these
 * rules): line breaks and controls become a space, invisible and bidi characters are dropped,
 * NFC. Null when nothing is left or it is longer than `max`. Never refuses what checkDisplayName
 * accepts, and its result always passes checkDisplayName unchanged.
 */
export function cleanDisplayName(input: unknown, max = MAX_NAME_CHARS): string | null {
  if (typeof input !== 'string') return null;
  if (PLAIN.test(input)) {
    const t = input.trim();
    return t && t.length <= max ? t : null;
  }
  const t = input.replace(TO_SPACE, ' ').replace(TO_DROP, '').trim().normalize('NFC');
  return t && t.length <= max ? t : null;
}
