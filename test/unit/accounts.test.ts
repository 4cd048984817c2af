import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { normalizeEmail } from '../../src/accounts/email.ts';
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
