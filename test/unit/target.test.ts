import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { originForm } from '../../src/http/protocol.ts';
import { normalizeTarget, safeReturnPath } from '../../src/http/target.ts';
import { isBelow } from '../../src/pipeline/route.ts';
import { startsWithFolded } from '../../src/sites/index.ts';

const path = (raw: string) => {
  const t = normalizeTarget(raw);
  return t.ok ? t.path : `400: ${t.reason}`;
};

describe('request-target normalization', () => {
  test('clean paths pass unchanged, query untouched', () => {
    assert.equal(path('/'), '/');
    assert.equal(path('/a/b.css'), '/a/b.css');
    assert.equal(path('/a/b/'), '/a/b/');
    const t = normalizeTarget('/x?q=/public/&a=%2e%2e');
    assert.deepEqual(t, { ok: true, path: '/x', query: '?q=/public/&a=%2e%2e' });
  });

  test('dot-segments are resolved, never passed through (security.md #14)', () => {
    assert.equal(path('/public/../admin'), '/admin');
    assert.equal(path('/public/%2e%2e/admin'), '/admin');
    assert.equal(path('/public/%2E%2e/admin'), '/admin');
    assert.equal(path('/public/./admin'), '/public/admin');
    assert.equal(path('/admin/.'), '/admin/');
    assert.equal(path('/admin/x/..'), '/admin/');
    assert.match(path('/..'), /^400/);
    assert.match(path('/../admin'), /^400/);
  });

  test('encoded slash, backslash, ";" and double encoding are refused (security.md #14-16)', () => {
    assert.match(path('/public/..%2fadmin'), /^400/);
    assert.match(path('/public%2F..%2Fadmin'), /^400/);
    assert.match(path('/%5cadmin'), /^400/);
    assert.match(path('/public/%252e%252e/admin'), /^400/);
    assert.match(path('/public/..;/admin'), /^400/);
    assert.match(path('/admin;x=1'), /^400/);
    assert.match(path('/admin%3bx=1'), /^400/);
    assert.match(path('/a\\b'), /^400/);
  });

  test('"//" collapses so //admin and /admin decide alike (security.md #15)', () => {
    assert.equal(path('//admin'), '/admin');
    assert.equal(path('/a//b///c'), '/a/b/c');
    assert.equal(path('/admin//'), '/admin/');
  });

  test('control characters, spaces, fragments and malformed escapes are refused (security.md #17-18)', () => {
    for (const bad of [
      '/a%0ab',
      '/a%00',
      '/a%0d%0aSet-Cookie:x',
      '/a%7f',
      '/a#b',
      '/a%zz',
      '/a%',
      '/a%4',
      '/a b',
      '/a\tb',
      '/é',
    ]) {
      assert.match(path(bad), /^400/, bad);
    }
    assert.equal(normalizeTarget('/a?x=1#frag').ok, false);
    assert.equal(normalizeTarget('/a?x=\r\n').ok, false);
  });

  test('non-path targets are refused', () => {
    for (const bad of ['', '*', 'http://evil.com/x', 'evil.com']) assert.equal(normalizeTarget(bad).ok, false, bad);
  });

  test('unreserved escapes are decoded, others kept with upper-case hex', () => {
    assert.equal(path('/%61dmin'), '/admin');
    assert.equal(path('/%7euser'), '/~user');
    assert.equal(path('/caf%c3%a9'), '/caf%C3%A9');
    assert.equal(path('/a%20b'), '/a%20b');
  });

  test('encoded non-ASCII must be well-formed UTF-8: kept as sent when it is, refused when not', () => {
    for (const good of [
      '/caf%C3%A9',
      '/%E2%82%AC',
      '/%F0%9F%98%80/x',
      '/%EF%BF%BD',
      '/%F4%8F%BF%BF',
      '/a%C3%A9%C3%A9b',
    ])
      assert.equal(path(good), good);
    for (const bad of [
      '/public/%C0%AE%C0%AE/admin', // overlong "." (the classic IIS traversal)
      '/%C0%AF',
      '/%C1%BF',
      '/%E0%80%AE', // overlong, three bytes
      '/%E0%9F%BF',
      '/%F0%80%80%AF', // overlong, four bytes
      '/%F0%8F%BF%BF',
      '/%ED%A0%80', // a UTF-16 surrogate
      '/%ED%BF%BF',
      '/%F4%90%80%80', // above U+10FFFF
      '/%F5%80%80%80',
      '/%FF',
      '/%80', // a continuation byte without its lead
      '/a%BFb',
      '/%C3', // cut off: at the end, before an ASCII character or escape, before "/" or "?"
      '/%C3a',
      '/%C3%41',
      '/%E2%82/x',
      '/%E2%82?x=1',
      '/%C3%A9%A9',
    ])
      assert.equal(path(bad), '400: percent-encoded bytes that are not well-formed UTF-8 in path', bad);
  });

  test('property: a path of escaped bytes passes exactly when the bytes are well-formed UTF-8', () => {
    const strict = new TextDecoder('utf-8', { fatal: true });
    // Whole characters (well-formed), single stray bytes, and unreserved ASCII, in any order.
    const char = fc
      .integer({ min: 0x80, max: 0x10ffff })
      .filter((cp) => cp < 0xd800 || cp > 0xdfff)
      .map((cp) => [...Buffer.from(String.fromCodePoint(cp), 'utf8')]);
    const stray = fc.integer({ min: 0x80, max: 0xff }).map((b) => [b]);
    const ascii = fc.constantFrom([0x61], [0x7e], [0x2e]);
    fc.assert(
      fc.property(fc.array(fc.oneof(char, stray, ascii), { maxLength: 8 }), (chunks) => {
        const bytes = chunks.flat();
        const raw = '/x' + bytes.map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
        let wellFormed = true;
        try {
          strict.decode(Uint8Array.from(bytes));
        } catch {
          wellFormed = false;
        }
        assert.equal(normalizeTarget(raw).ok, wellFormed, raw);
      }),
      { numRuns: 3000, seed: 1017 },
    );
  });

  test('property: normalization is idempotent and the forwarded path decides like the raw one (security.md #20)', () => {
    const segment = fc.oneof(
      fc.constantFrom(
        '.',
        '..',
        '',
        'admin',
        'public',
        'Admin',
        '%2e',
        '%2E%2e',
        '%61',
        '%2f',
        '%3b',
        ';',
        'x%20y',
        '~',
        'a.b',
        '%25',
        '%41dmin',
      ),
      fc.stringMatching(/^[A-Za-z0-9._~-]{1,6}$/),
    );
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 8 }), fc.boolean(), (segments, trailing) => {
        const raw = '/' + segments.join('/') + (trailing ? '/' : '');
        const first = normalizeTarget(raw);
        if (!first.ok) return true;
        const again = normalizeTarget(first.path);
        assert.ok(again.ok, `re-normalizing ${first.path} failed`);
        assert.equal(again.path, first.path, `${raw} → ${first.path} → ${again.path}`);
        // No dot-segment, "//" or decodable unreserved escape survives.
        assert.doesNotMatch(
          first.path,
          /(^|\/)\.\.?(\/|$)|\/\/|%(2[eEdD]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/,
        );
      }),
      { numRuns: 2000 },
    );
  });
});

describe('absolute-form request targets, RFC 9112 §3.2.2 (security.md #222)', () => {
  const refused = (target: string, host: string | undefined) => {
    const r = originForm(target, host);
    return typeof r === 'string' ? `accepted: ${r}` : `${r.status}: ${r.message}`;
  };
  const ANOTHER = '400: The request target names another host than the Host header.';
  const USERINFO = '400: A request target with user information (user@host) is not accepted.';

  test('one naming the Host becomes its origin-form, path and query byte for byte', () => {
    const host = 'app.example.com';
    assert.equal(originForm('http://app.example.com/a/b?x=1&y=%2F', host), '/a/b?x=1&y=%2F');
    assert.equal(originForm('https://app.example.com/a', host), '/a');
    assert.equal(originForm('http://app.example.com', host), '/', 'no path: "/"');
    assert.equal(originForm('http://app.example.com?x=1', host), '/?x=1');
    assert.equal(originForm('http://app.example.com/', host), '/');
    // Scheme and host in any letter case (RFC 3986 §6.2.2.1).
    assert.equal(originForm('HTTP://App.Example.COM/Case', host), '/Case');
    assert.equal(originForm('hTTpS://app.example.com/x', 'APP.example.com'), '/x');
    // The scheme's default port written on one side only (RFC 3986 §6.2.3), as for :authority.
    assert.equal(originForm('http://app.example.com:80/x', host), '/x');
    assert.equal(originForm('http://app.example.com/x', 'app.example.com:80'), '/x');
    assert.equal(originForm('https://app.example.com:443/x', host), '/x');
    assert.equal(originForm('https://app.example.com/x', 'app.example.com:443'), '/x');
    assert.equal(originForm('http://127.0.0.1:8080/x', '127.0.0.1:8080'), '/x');
    assert.equal(originForm('http://[::1]:8080/x', '[::1]:8080'), '/x');
    assert.equal(originForm('http://[::1]:80/x', '[::1]'), '/x');
    // Never parsed as a URL: what normalizeTarget refuses is left for it to refuse.
    for (const rest of ['/a/../../b', '/%2e%2e/x', '/a%2fb', '/a\\b', '/a;b', '/%C0%AE', '/a#frag', '#frag'])
      assert.equal(originForm(`http://app.example.com${rest}`, host), rest.startsWith('/') ? rest : `/${rest}`, rest);
  });

  test('another host than Host, user information or no host: refused', () => {
    const host = 'app.example.com';
    for (const [target, h] of [
      ['http://evil.example/x', host],
      ['http://app.example.com/x', 'evil.example'],
      ['http://app.example.com.evil.example/x', host],
      ['http://app.example.com:8080/x', host],
      ['http://app.example.com/x', 'app.example.com:8080'],
      // Only the target's own scheme's default port goes without saying.
      ['http://app.example.com:443/x', host],
      ['https://app.example.com:80/x', host],
      ['https://app.example.com/x', 'app.example.com:80'],
      ['http://app.example.com./x', host],
      ['http://app.example.com\\evil.example/x', host],
      ['http://app.example.com%2F/x', host],
      ['http://app.example.com/x', undefined],
    ] as const)
      assert.equal(refused(target, h), ANOTHER, `${target} with Host ${h}`);
    for (const target of [
      'http://user@app.example.com/x',
      'http://user:secret@app.example.com/x',
      'http://@app.example.com/x',
      'http://app.example.com@evil.example/x',
      'https://evil.example@app.example.com/x',
    ])
      assert.equal(refused(target, host), USERINFO, target);
    assert.equal(refused('http://app.example.com@app.example.com/x', 'app.example.com@app.example.com'), USERINFO);
    assert.equal(refused('http:///x', ''), '400: The request target names no host.');
    assert.equal(refused('https:///x', host), '400: The request target names no host.');
  });

  test('other targets come back as they are, for normalizeTarget to answer as before', () => {
    for (const target of [
      '/x?y=1',
      '*',
      'ftp://app.example.com/x',
      'ws://app.example.com/x',
      'wss://app.example.com/x',
      'file:///etc/passwd',
      'http:/x',
      'http:x',
      'http:\\\\app.example.com/x',
      '//app.example.com/x',
      'app.example.com:80',
      'httpx://app.example.com/x',
      '',
    ]) {
      assert.equal(originForm(target, 'app.example.com'), target, target);
      // "//app.example.com/x" is a path ("//" collapses): only what is no path is refused.
      if (!target.startsWith('/')) assert.equal(normalizeTarget(target).ok, false, target);
    }
  });

  test('property: an absolute-form target is decided exactly like its origin-form, never a way around the checks', () => {
    const segment = fc.oneof(
      fc.constantFrom(
        '.',
        '..',
        '',
        'admin',
        '%2e',
        '%2E%2e',
        '%2f',
        '%5C',
        '\\',
        '%3b',
        ';',
        '%25',
        '%C0%AE',
        '#f',
        '@',
      ),
      fc.stringMatching(/^[A-Za-z0-9._~-]{1,6}$/),
    );
    fc.assert(
      fc.property(
        fc.array(segment, { maxLength: 6 }),
        fc.constantFrom('', '?', '?x=1', '?a=/../b', '#frag'),
        fc.constantFrom('http', 'https', 'HTTP'),
        (segments, tail, scheme) => {
          const origin = '/' + segments.join('/') + tail;
          const absolute = originForm(`${scheme}://app.example.com${origin}`, 'app.example.com');
          assert.equal(absolute, origin);
          assert.deepEqual(normalizeTarget(absolute as string), normalizeTarget(origin), origin);
        },
      ),
      { numRuns: 2000, seed: 9112 },
    );
  });
});

describe('return targets (rd)', () => {
  const origins = ['https://app.example.com'];
  const ok = (v: string) => safeReturnPath(v, origins);

  test('same-origin paths are kept', () => {
    assert.equal(ok('/'), '/');
    assert.equal(ok('/dashboard?tab=2#x'), '/dashboard?tab=2#x');
    assert.equal(ok('/a/b/'), '/a/b/');
    assert.equal(ok('https://app.example.com/x?y=1'), '/x?y=1');
  });

  test('protocol-relative and backslash tricks fall back (security.md #8)', () => {
    for (const v of ['//evil.com', '/\\evil.com', '\\\\evil.com', '\\/evil.com', '///evil.com', '/\\/evil.com'])
      assert.equal(ok(v), undefined, v);
  });

  test('whitespace and control tricks are rejected (security.md #9)', () => {
    for (const v of [
      '/\t/evil.com',
      '/%09/evil.com',
      '/ /evil.com',
      '/\r\\evil.com',
      '/./\\evil.com',
      '/%0d/evil.com',
      '/\u2000/evil.com',
      '/%E2%80%80/evil.com',
      ' /x',
      '/x\n',
    ]) {
      assert.equal(ok(v), undefined, JSON.stringify(v));
    }
  });

  test('schemes and encodings are rejected (security.md #10)', () => {
    for (const v of [
      'https:evil.com',
      'http:/evil.com',
      'javascript:alert(1)',
      'JaVaScRiPt:alert(1)',
      'data:text/html,x',
      '%2F%2Fevil.com',
      '/%2F/evil.com',
      '/%2f%2fevil.com',
      '/%5C/evil.com',
      '%5c%5cevil.com',
    ]) {
      assert.equal(ok(v), undefined, v);
    }
  });

  test('look-alike absolute URLs are rejected (security.md #11)', () => {
    for (const v of [
      'https://app.example.com.evil.com/',
      'https://app.example.com@evil.com/',
      'https://evil.com@app.example.com/',
      'https://app.example.com:8443/',
      'http://app.example.com/',
      'https://evil.com/https://app.example.com/',
    ]) {
      assert.equal(ok(v), undefined, v);
    }
  });

  test('dot-segments resolve inside the origin', () => {
    assert.equal(ok('/a/../b'), '/b');
    assert.equal(ok('/../../etc'), '/etc');
    assert.equal(ok('/.//evil.com'), undefined);
  });

  test('non-strings and huge values fall back', () => {
    assert.equal(safeReturnPath(undefined, origins), undefined);
    assert.equal(safeReturnPath(['/x'], origins), undefined);
    assert.equal(ok('/' + 'a'.repeat(5000)), undefined);
  });

  test('property: whatever comes back is a same-origin path', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.constantFrom('', '/', '//', '/\\', '\\', 'https://', 'https://app.example.com', '%2f', '/%2f'),
        (s, pre) => {
          const result = ok(pre + s);
          if (result === undefined) return true;
          assert.ok(result.startsWith('/') && !result.startsWith('//') && !result.includes('\\'), result);
          assert.equal(new URL(result, 'https://app.example.com').origin, 'https://app.example.com');
        },
      ),
      { numRuns: 3000 },
    );
  });
});

test('prefix matching (own routes, base path, app prefixes) decides a normalized path as a lower-cased copy of it would', () => {
  const reference = (p: string, prefix: string, ignoreCase: boolean) => {
    const head = p.slice(0, prefix.length);
    return (
      (ignoreCase ? head.toLowerCase() === prefix.toLowerCase() : head === prefix) &&
      (p.length === prefix.length || p.charCodeAt(prefix.length) === 47)
    );
  };
  const segment = fc.stringMatching(/^[A-Za-z0-9._~-]{1,6}$/);
  const pathOf = fc.array(segment, { maxLength: 4 }).map((s) => `/${s.join('/')}`);
  fc.assert(
    fc.property(pathOf, pathOf, fc.boolean(), (raw, prefix, ignoreCase) => {
      const t = normalizeTarget(raw);
      if (!t.ok || prefix === '/') return;
      assert.equal(
        isBelow(t.path, prefix, ignoreCase),
        reference(t.path, prefix, ignoreCase),
        `${t.path} below ${prefix}`,
      );
      // A prefix that is one of the path's own, in another case.
      const own = t.path.slice(0, Math.max(2, Math.ceil(t.path.length / 2)));
      const swapped = [...own].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('');
      assert.equal(isBelow(t.path, swapped, true), reference(t.path, swapped, true));
      assert.equal(
        startsWithFolded(t.path, own.toLowerCase()),
        t.path.slice(0, own.length).toLowerCase() === own.toLowerCase(),
      );
    }),
    { numRuns: 2000 },
  );
});
