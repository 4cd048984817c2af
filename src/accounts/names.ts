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
 *
 * One exception: the zero-width joiner and non-joiner (U+200D, U+200C) are part of how Persian,
 * the Indic scripts and others are written, and of emoji sequences (👩‍💻). They are accepted
 * between two letters of a script that is not Latin, Greek or Cyrillic (where they would only
 * hide inside a look-alike of another name), and the joiner between two emoji.
 */

export const MAX_NAME_CHARS = 100;

const LINE_BREAK = /[\n\v\f\r\u0085\u2028\u2029]/;
const CONTROL = /\p{Cc}/u;
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const INVISIBLE = /\p{Cf}/gu;
/** What cleaning replaces with a space (breaks and controls) or drops (format characters, lone surrogates). */
const TO_SPACE = /[\p{Cc}\u2028\u2029]+/gu;
const TO_DROP = /[\p{Cf}\p{Cs}]/gu;
const LETTER = /^[\p{L}\p{M}]$/u;
const LOOKALIKE_SCRIPT = /^[\p{Script_Extensions=Latin}\p{Script_Extensions=Greek}\p{Script_Extensions=Cyrillic}]$/u;
const EMOJI = /^[\p{Extended_Pictographic}\p{Emoji_Modifier}\u{fe0f}]$/u;

/** The character before and after index `i` of `s` (whole code points), or '' at either end. */
function neighbours(s: string, i: number, length: number): [string, string] {
  const before =
    i === 0 ? '' : String.fromCodePoint(s.codePointAt(i - (i > 1 && /[\udc00-\udfff]/.test(s[i - 1]!) ? 2 : 1))!);
  const after = i + length >= s.length ? '' : String.fromCodePoint(s.codePointAt(i + length)!);
  return [before, after];
}

/** A joiner or non-joiner where its script uses it (see the module comment). */
function joinerInContext(s: string, i: number, c: string): boolean {
  if (c !== '\u200c' && c !== '\u200d') return false;
  const [before, after] = neighbours(s, i, c.length);
  if (c === '\u200d' && EMOJI.test(before) && EMOJI.test(after)) return true;
  const joins = (x: string) => LETTER.test(x) && !LOOKALIKE_SCRIPT.test(x);
  return joins(before) && joins(after);
}

/** The first invisible character of `t` that is not a joiner in its context. */
function invisible(t: string): string | undefined {
  for (const m of t.matchAll(INVISIBLE)) if (!joinerInContext(t, m.index, m[0])) return m[0];
  return undefined;
}
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
  const hidden = invisible(t);
  if (hidden)
    return { ok: false, error: `The name contains an invisible character (${codePoint(hidden)}). Remove it.` };
  const name = t.normalize('NFC');
  if (name.length > MAX_NAME_CHARS) return { ok: false, error: `Use at most ${MAX_NAME_CHARS} characters.` };
  return { ok: true, name };
}

/**
 * A name from somewhere the user cannot fix it (a provider's profile, a row stored before these
 * rules): line breaks and controls become a space, invisible and bidi characters are dropped
 * (joiners where their script uses them are kept),
 * NFC. Null when nothing is left or it is longer than `max`. Never refuses what checkDisplayName
 * accepts, and its result always passes checkDisplayName unchanged.
 */
export function cleanDisplayName(input: unknown, max = MAX_NAME_CHARS): string | null {
  if (typeof input !== 'string') return null;
  if (PLAIN.test(input)) {
    const t = input.trim();
    return t && t.length <= max ? t : null;
  }
  const t = input
    .replace(TO_SPACE, ' ')
    .replace(TO_DROP, (c, i: number, all: string) => (joinerInContext(all, i, c) ? c : ''))
    .trim()
    .normalize('NFC');
  return t && t.length <= max ? t : null;
}
