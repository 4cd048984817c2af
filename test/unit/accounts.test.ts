import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { normalizeEmail } from '../../src/config/email.ts';
import { checkDisplayName, cleanDisplayName } from '../../src/accounts/names.ts';
import { hashPassword, needsRehash, passwordProblem, verifyPassword } from '../../src/accounts/passwords.ts';

describe('passwords', () => {
  test('argon2id PHC hashes with OWASP parameters verify, and only the right password', async () => {
    const h = await hashPassword('correct horse battery staple');
    assert.match(h, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    assert.equal(await verifyPassword('correct horse battery staple', h), true);
    assert.equal(await verifyPassword('correct horse battery stapl', h), false);
    assert.equal(needsRehash(h), false);
    assert.notEqual(await hashPassword('correct horse battery staple'), h, 'salted');
  });

  test('Unicode is normalized (NFKC) so the same password typed two ways matches', async () => {
    const h = await hashPassword('caf\u00e9 au lait, s\u2019il vous pla\u00eet');
    assert.equal(await verifyPassword('cafe\u0301 au lait, s\u2019il vous pla\u00eet', h), true);
  });

  test('long passwords are not silently truncated', async () => {
    const long = 'x'.repeat(200) + 'A';
    const h = await hashPassword(long);
    assert.equal(await verifyPassword('x'.repeat(200) + 'B', h), false);
  });

  test('hashing runs off the event loop', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    await hashPassword('a long enough passphrase');
    clearInterval(timer);
    assert.ok(ticks > 0, 'the event loop kept turning while hashing');
  });

  test('malformed stored hashes never verify', async () => {
    assert.equal(await verifyPassword('x', 'plain'), false);
    assert.equal(await verifyPassword('x', '$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA'), false);
  });

  test('NIST rules: length, common passwords, email, no composition rules (security.md #43)', () => {
    const p = (pw: string, email?: string) => passwordProblem(pw, { minLength: 8, email });
    assert.match(p('short')!, /at least 8/);
    assert.match(p('1234567')!, /at least 8/);
    assert.equal(p('correct horse battery staple'), undefined, 'spaces welcome');
    assert.equal(p('ünïcödé-pässwörd'), undefined, 'Unicode welcome');
    assert.equal(p('all lowercase words here'), undefined, 'no composition rules');
    assert.equal(p('🙂🙃🙂🙃🙂🙃🙂🙃'), undefined, 'eight emoji are eight characters');
    assert.equal(p('x'.repeat(64) + 'yz'), undefined, '64+ accepted');
    assert.match(p('password')!, /common/);
    assert.match(p('Password1')!, /common/);
    assert.match(p('qwertyuiop')!, /common/);
    assert.match(p('iloveyou123')!, /common/);
    assert.match(p('ann@example.com', 'ann@example.com')!, /email/);
    assert.match(p('annexample', 'annexample@example.com')!, /email/);
    assert.match(p('ñññññññññññ')!, /easy/);
    assert.match(p('z'.repeat(1025))!, /at most/);
  });
});

describe('email addresses', () => {
  test('canonical form: trimmed, lower-cased, IDN as punycode', () => {
    assert.equal(normalizeEmail(' Ann@Example.COM '), 'ann@example.com');
    assert.equal(normalizeEmail('a.b+tag@sub.example.co.uk'), 'a.b+tag@sub.example.co.uk');
    assert.equal(normalizeEmail('x@bücher.example'), 'x@xn--bcher-kva.example');
  });

  test('anything else is not an address (security.md #37)', () => {
    for (const bad of [
      'a@corp.com@evil.com',
      'plain',
      '@example.com',
      'a@',
      'a@localhost',
      'a b@example.com',
      'a@exa mple.com',
      '"a"@example.com',
      'a..b@example.com',
      '.a@example.com',
      'a@-x.com',
      'a\n@example.com',
      `${'a'.repeat(65)}@example.com`,
      42,
      null,
    ]) {
      assert.equal(normalizeEmail(bad), undefined, String(bad));
    }
  });
});

describe('display names (issue 10.15)', () => {
  const refused = (input: string) => {
    const r = checkDisplayName(input);
    assert.equal(r.ok, false, JSON.stringify(input));
    return (r as { error: string }).error;
  };

  test('typed names: trimmed, NFC, at most 100 characters; blank is no name', () => {
    assert.deepEqual(checkDisplayName('  Zoë Ops '), { ok: true, name: 'Zoë Ops' });
    assert.deepEqual(checkDisplayName('Zoe\u0308'), { ok: true, name: 'Zo\u00eb' }, 'NFC');
    assert.deepEqual(checkDisplayName('   '), { ok: true, name: null });
    assert.deepEqual(checkDisplayName(undefined), { ok: true, name: null });
    assert.deepEqual(checkDisplayName('李小龍 🐉 O\u2019Brien'), { ok: true, name: '李小龍 🐉 O\u2019Brien' });
    assert.equal(refused('x'.repeat(101)), 'Use at most 100 characters.');
  });

  test('line breaks, controls, bidi and invisible characters are refused with what is wrong, not "at most 100 characters"', () => {
    for (const c of ['\n', '\r', '\u0085', '\u2028', '\u2029', '\v', '\f'])
      assert.equal(refused(`Ann${c}Lee`), 'Put the name on one line: it contains a line break.', JSON.stringify(c));
    assert.equal(refused('Ann\u0000Lee'), 'The name contains a control character (U+0000). Remove it.');
    assert.equal(refused('Ann\tLee'), 'The name contains a control character (U+0009). Remove it.');
    assert.equal(refused('Ann\u009bLee'), 'The name contains a control character (U+009B). Remove it.');
    for (const c of [
      '\u202a',
      '\u202b',
      '\u202c',
      '\u202d',
      '\u202e',
      '\u2066',
      '\u2067',
      '\u2068',
      '\u2069',
      '\u200e',
      '\u200f',
      '\u061c',
    ])
      assert.match(
        refused(`evil${c}gnp.exe`),
        /^The name contains a text-direction control \(U\+[0-9A-F]{4}\), which can make it display as something else\. Remove it\.$/,
      );
    assert.match(refused('admin\u202egnp'), /U\+202E/);
    for (const c of ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u180e', '\u{e0041}'])
      assert.match(
        refused(`ad${c}min`),
        /^The name contains an invisible character \(U\+[0-9A-F]{4,5}\)\. Remove it\.$/,
        JSON.stringify(c),
      );
    assert.equal(refused('a\ud800b'), 'The name contains a broken character. Type it again.');
    for (const name of [
      'admin\u200d',
      '\u200cadmin',
      'a\u200d\u200db',
      'م\u200c',
      'م\u200c a',
      'Ad\u200dmin',
      'Ω\u200cΩ',
      'д\u200dд',
    ])
      assert.match(
        refused(name),
        /invisible character \(U\+200[CD]\)/,
        `${JSON.stringify(name)}: a joiner out of its script`,
      );
  });

  test('joiners where their script uses them: Persian, Devanagari, emoji sequences (and nowhere else)', () => {
    for (const name of ['می\u200cخواهم', 'क्\u200dष', 'Ann 👩\u200d💻', '👨🏽\u200d🚀 Raj', 'ন্\u200dয'])
      assert.deepEqual(checkDisplayName(name), { ok: true, name: name.normalize('NFC') }, JSON.stringify(name));
    assert.equal(cleanDisplayName('می\u200cخواهم'), 'می\u200cخواهم', 'kept when cleaning too');
    assert.equal(cleanDisplayName('ad\u200dmin\u200d'), 'admin', 'dropped where it only hides');
  });

  test('names from elsewhere are cleaned, not refused: breaks become a space, invisible and bidi characters go', () => {
    assert.equal(cleanDisplayName('Ann\u0085Lee'), 'Ann Lee');
    assert.equal(cleanDisplayName('Ann\u2028Lee'), 'Ann Lee');
    assert.equal(cleanDisplayName('Ann\r\nLee\u0000'), 'Ann Lee');
    assert.equal(cleanDisplayName('evil\u202egnp.exe'), 'evilgnp.exe');
    assert.equal(cleanDisplayName('ad\u200bmin\u2066'), 'admin');
    assert.equal(cleanDisplayName('Zoe\u0308'), 'Zo\u00eb');
    assert.equal(cleanDisplayName('a\ud800b'), 'ab');
    assert.equal(cleanDisplayName('\u200b\u202e '), null, 'nothing left');
    assert.equal(cleanDisplayName('x'.repeat(101)), null, 'too long: the caller falls back');
    assert.equal(cleanDisplayName(42), null);
  });

  test('property: a cleaned name is always one that typing would accept, unchanged; typed names survive cleaning', () => {
    const text = fc.string({
      unit: fc.oneof(
        fc.constantFrom(
          '\u0085',
          '\u2028',
          '\u202e',
          '\u200b',
          '\u200c',
          '\u200d',
          'م',
          'क',
          '👩',
          '\ufe0f',
          '\r',
          '\u0000',
          '\ud800',
          ' ',
          '  ',
          'é',
          'e\u0301',
        ),
        fc.string({ unit: 'binary', maxLength: 3 }),
      ),
      maxLength: 40,
    });
    fc.assert(
      fc.property(text, (s) => {
        const cleaned = cleanDisplayName(s);
        if (cleaned !== null) assert.deepEqual(checkDisplayName(cleaned), { ok: true, name: cleaned });
        const typed = checkDisplayName(s);
        if (typed.ok && typed.name !== null) assert.equal(cleanDisplayName(s), typed.name);
      }),
      { numRuns: 2000 },
    );
  });
});
