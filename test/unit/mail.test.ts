import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { EmailTokens, hashToken } from '../../src/accounts/email-tokens.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { humanDuration, passwordChangedMail, resetMail, verificationMail } from '../../src/mail/messages.ts';
import { parseMailbox } from '../../src/config/mail.ts';
import { openStore } from '../../src/store/index.ts';

const base = 'publicUrl: https://app.example.com\nupstream: http://127.0.0.1:3000\n';

function problems(text: string, env: Record<string, string> = {}) {
  try {
    parseConfig(text, 'g.yaml', env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems.map((p) => `${p.line ?? ''} ${p.key}: ${p.message}`);
  }
  assert.fail('expected a ConfigError');
}

describe('email config', () => {
  test('defaults, ${ENV} for the SMTP credentials, and errors that name key and line', () => {
    const c = parseConfig(
      `${base}email:\n  from: "Acme <no-reply@acme.example>"\n  smtp:\n    host: smtp.example.com\n    requireTLS: true\n    auth: {user: "\${SMTP_USER}", pass: "\${SMTP_PASS}"}\n`,
      'g.yaml',
      { SMTP_USER: 'u', SMTP_PASS: 'p' },
    );
    assert.deepEqual(c.email?.smtp.auth, { user: 'u', pass: 'p' });
    assert.deepEqual(c.email?.smtp.timeouts, { connect: 10_000, greeting: 10_000, socket: 30_000 });
    assert.deepEqual(c.email?.delivery, { attempts: 3, retryDelay: 5000, queueSize: 1000 });
    assert.equal(c.email?.resetLinkTtl, 30 * 60_000);
    assert.equal(c.email?.verifyLinkTtl, 24 * 3_600_000);
    assert.equal(c.accounts.requireVerifiedEmail, false);
    assert.deepEqual(
      [
        c.accounts.rateLimits.passwordResetPerIp,
        c.accounts.rateLimits.passwordResetPerAccount,
        c.accounts.rateLimits.emailsPerAddress,
      ],
      [20, 5, 10],
    );
    assert.equal(parseConfig(base, 'g.yaml', {}).email, undefined, 'no email: the features that need it are off');

    const bad = problems(
      `${base}email:\n  from: "Acme <not an address>"\n  smtp:\n    host: smtp.example.com\n    port: 99999\n    tls: {insecure: true}\n  resetLinkTtl: 10s\n`,
    );
    assert.ok(
      bad.some((p) => /^4 email\.from: an address such as/.test(p)),
      bad.join('\n'),
    );
    assert.ok(
      bad.some((p) => /^7 email\.smtp\.port/.test(p)),
      bad.join('\n'),
    );
    assert.ok(
      bad.some((p) => /email\.smtp\.tls/.test(p) && /insecure/.test(p)),
      'no switch to skip certificate checks',
    );
    assert.ok(
      bad.some((p) => /^9 email\.resetLinkTtl: expected a duration between "1m" and "24h"/.test(p)),
      bad.join('\n'),
    );
    assert.ok(
      problems(`${base}email: {from: no-reply@acme.example}\n`).some((p) => /email\.smtp/.test(p)),
      'smtp is required',
    );
    assert.ok(
      problems(`${base}email:\n  from: "a@b.co\\r\\nBcc: x@evil.example"\n  smtp: {host: h.example}\n`).some((p) =>
        /email\.from/.test(p),
      ),
      'no header injection',
    );
  });

  test('parseMailbox', () => {
    assert.deepEqual(parseMailbox('no-reply@acme.example'), { name: undefined, address: 'no-reply@acme.example' });
    assert.deepEqual(parseMailbox('"Acme, Inc." <help@acme.example>'), {
      name: 'Acme, Inc.',
      address: 'help@acme.example',
    });
    assert.deepEqual(parseMailbox('Acme <help@acme.example>'), { name: 'Acme', address: 'help@acme.example' });
    for (const bad of ['acme', 'a@b', '<a@b.co> x', 'a@b.co\nBcc: c@d.co', 'A <a@corp.com@evil.com>'])
      assert.equal(parseMailbox(bad), undefined, bad);
  });

  test('gatehouse check warns about missing and insecure mail settings', () => {
    const warnings = (yaml: string) => lintConfig(parseConfig(base + yaml, 'g.yaml', {}));
    const keys = (yaml: string) => warnings(yaml).map((w) => w.key);
    assert.ok(keys('').includes('email'), 'open registration without email');
    assert.ok(!keys('accounts: {registration: closed}\n').includes('email'));
    const invite = warnings('accounts: {registration: invite}\n').find((w) => w.key === 'accounts.registration');
    assert.match(invite!.message, /gatehouse users invite prints each invitation link/, 'invite without email');
    assert.ok(
      !keys('accounts: {registration: invite}\nemail: {from: a@b.co, smtp: {host: 127.0.0.1}}\n').includes(
        'accounts.registration',
      ),
    );
    assert.ok(
      keys('accounts: {requireVerifiedEmail: true}\n').includes('accounts.requireVerifiedEmail'),
      'nobody could ever verify',
    );
    const plain = warnings('email: {smtp: {host: smtp.example.com, auth: {user: u, pass: p}}}\n');
    assert.deepEqual(
      plain
        .map((w) => w.key)
        .filter((k) => k.startsWith('email'))
        .sort(),
      ['email.from', 'email.smtp.requireTLS'],
    );
    assert.match(
      plain.find((w) => w.key === 'email.smtp.requireTLS')!.message,
      /reset links and the SMTP password would cross the network in clear/,
    );
    assert.ok(
      !keys('email: {from: a@b.co, smtp: {host: 127.0.0.1, port: 25}}\n').some((k) => k.startsWith('email')),
      'plain SMTP on loopback is fine',
    );
    assert.ok(
      !keys('email: {from: a@b.co, smtp: {host: smtp.example.com, requireTLS: true}}\n').some((k) =>
        k.startsWith('email'),
      ),
    );
    assert.ok(
      keys('email: {from: a@b.co, smtp: {host: smtp.example.com, secure: true, port: 587}}\n').includes(
        'email.smtp.port',
      ),
    );
    assert.ok(
      keys('email: {from: a@b.co, smtp: {host: smtp.example.com, requireTLS: true, port: 465}}\n').includes(
        'email.smtp.secure',
      ),
    );
    assert.ok(
      keys(
        'email: {from: a@b.co, smtp: {host: smtp.example.com, secure: true, tls: {ca: /nonexistent/ca.pem}}}\n',
      ).includes('email.smtp.tls.ca'),
    );
    // Allow-lists by address trust typed addresses unless verification is required.
    const allow = 'routes:\n  - path: /admin/**\n    allow: {domains: [example.com]}\n';
    assert.ok(keys(allow).includes('routes[0].allow'));
    assert.ok(
      !keys(
        `${allow}email: {from: a@b.co, smtp: {host: 127.0.0.1}}\naccounts: {requireVerifiedEmail: true}\n`,
      ).includes('routes[0].allow'),
    );
    assert.match(
      warnings('email: {from: a@b.co, smtp: {host: 127.0.0.1}}\n').find((w) => w.key === 'accounts.registration')!
        .message,
      /use the apps before verifying it/,
    );
  });
});

describe('mail messages', () => {
  test('text and HTML, with the title escaped and stripped of line breaks', () => {
    const title = 'Acme <script>alert(1)</script> & "Co"\r\nBcc: evil@example.com';
    const m = resetMail({
      appTitle: title,
      email: 'ann@example.com',
      link: 'https://app.example.com/.auth/reset-password?token=abc&x="1"',
      ttlMs: 30 * 60_000,
    });
    assert.doesNotMatch(m.subject, /[\r\n]/);
    assert.equal(m.subject, 'Reset your password for Acme <script>alert(1)</script> & "Co" Bcc: evil@example.com');
    assert.doesNotMatch(m.html, /<script>/);
    assert.match(m.html, /Acme &lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; &quot;Co&quot;/);
    assert.match(m.html, /href="https:\/\/app\.example\.com\/\.auth\/reset-password\?token=abc&amp;x=&quot;1&quot;"/);
    assert.match(
      m.text,
      /within 30 minutes to choose a new password:\n\nhttps:\/\/app\.example\.com\/\.auth\/reset-password\?token=abc&x="1"\n/,
    );
    assert.doesNotMatch(m.text, /\r/);
    assert.doesNotMatch(m.html, /<img|src=|https?:\/\/(?!app\.example\.com)/, 'no images, no remote resources');
    const v = verificationMail({
      appTitle: 'Acme',
      email: 'ann@example.com',
      link: 'https://app.example.com/x',
      ttlMs: 24 * 3_600_000,
    });
    assert.match(
      v.text,
      /Please confirm that ann@example\.com is your address for Acme\. Open this link within 24 hours:/,
    );
    const c = passwordChangedMail({
      appTitle: 'Acme',
      email: 'ann@example.com',
      at: Date.UTC(2026, 0, 2, 3, 4, 5),
      how: 'changed',
      forgotUrl: 'https://app.example.com/.auth/forgot-password',
    });
    assert.match(c.text, /was changed on 2026-01-02 03:04:05 UTC\. Every other session was signed out\./);
  });

  test('humanDuration', () => {
    assert.deepEqual([30 * 60_000, 3_600_000, 24 * 3_600_000, 3 * 86_400_000, 90 * 60_000, 45_000].map(humanDuration), [
      '30 minutes',
      '1 hour',
      '24 hours',
      '3 days',
      '90 minutes',
      '45 seconds',
    ]);
  });
});

describe('email tokens (injected clock)', () => {
  test('a token works until its expiry, once; a newer one supersedes it; a password change or a disabled account ends it', async () => {
    const store = await openStore({ type: 'sqlite', path: ':memory:' });
    try {
      let now = Date.now();
      const tokens = new EmailTokens(store, { now: () => now });
      const user = await store.users.create({ email: 'ann@example.com', passwordHash: 'hash-1' });
      const t = await tokens.issue(user, 'reset_password', 60_000);
      assert.match(t, /^[A-Za-z0-9_-]{43}$/);
      assert.ok(await store.emailTokens.get(hashToken(t)), 'stored by its hash');
      assert.equal(await store.emailTokens.get(t), undefined, 'never in clear');
      assert.equal((await tokens.check(t, 'reset_password')).ok, true);
      assert.deepEqual(
        await tokens.check(t, 'verify_email'),
        { ok: false, problem: 'invalid' },
        'the purpose is part of the token',
      );
      now += 60_000;
      assert.deepEqual(await tokens.check(t, 'reset_password'), { ok: false, problem: 'expired' });
      assert.deepEqual(await tokens.consume(t, 'reset_password'), { ok: false, problem: 'expired' });
      now -= 1;
      assert.equal((await tokens.consume(t, 'reset_password')).ok, true, 'a millisecond before');
      assert.deepEqual(await tokens.consume(t, 'reset_password'), { ok: false, problem: 'used' });

      const a = await tokens.issue(user, 'reset_password', 60_000);
      now += 1;
      const b = await tokens.issue(user, 'reset_password', 60_000);
      assert.deepEqual(await tokens.check(a, 'reset_password'), { ok: false, problem: 'superseded' });
      await store.users.update(user.id, { passwordHash: 'hash-2' });
      assert.deepEqual(
        await tokens.check(b, 'reset_password'),
        { ok: false, problem: 'changed' },
        'bound to the password hash it was issued against',
      );

      const v = await tokens.issue((await store.users.get(user.id))!, 'verify_email', 60_000);
      assert.equal(
        (await tokens.check(v, 'verify_email')).ok,
        true,
        'a password change does not end a verification link',
      );
      await store.users.update(user.id, { disabled: true });
      assert.deepEqual(
        await tokens.check(v, 'verify_email'),
        { ok: false, problem: 'invalid' },
        'nothing for a disabled account',
      );
      for (const junk of [undefined, null, '', 'short', randomBytes(32).toString('base64url'), `${v}x`])
        assert.deepEqual(await tokens.check(junk, 'verify_email'), { ok: false, problem: 'invalid' });
    } finally {
      await store.close();
    }
  });
});
