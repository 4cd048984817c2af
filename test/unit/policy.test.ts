import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { allows, compileRules, globToRegExp, matchRule } from '../../src/policy/rules.ts';

describe('route rules', () => {
  test('globs are anchored and "*" stays within a segment', () => {
    const r = globToRegExp('/api/*/items', true);
    assert.ok(r.test('/api/v1/items'));
    assert.ok(!r.test('/api/v1/x/items'));
    assert.ok(!r.test('/x/api/v1/items'));
    assert.ok(!r.test('/api/v1/items/extra'));
  });

  test('"/x/**" covers /x itself and below, not /xy', () => {
    const r = globToRegExp('/admin/**', true);
    for (const p of ['/admin', '/admin/', '/admin/a/b']) assert.ok(r.test(p), p);
    for (const p of ['/administrator', '/adminx/y', '/']) assert.ok(!r.test(p), p);
  });

  test('regex metacharacters in patterns are literal', () => {
    const r = globToRegExp('/a.b/(x)+', true);
    assert.ok(r.test('/a.b/(x)+'));
    assert.ok(!r.test('/aXb/xx'));
  });

  test('first match wins; method-scoped rules admit only their methods (security.md #19)', () => {
    const { rules, fallback } = compileRules(
      [
        { path: '/docs/**', methods: ['GET'], access: 'public' },
        { path: '/admin/**', access: 'authenticated', allow: { groups: ['admins'] } },
        { path: '/**', access: 'public' },
      ],
      'authenticated',
      false,
    );
    assert.equal(matchRule(rules, fallback, 'GET', '/docs/a', undefined).access, 'public');
    assert.equal(matchRule(rules, fallback, 'POST', '/docs/a', undefined).index, 2);
    assert.equal(matchRule(rules, fallback, 'HEAD', '/docs/a', undefined).index, 2);
    assert.equal(matchRule(rules, fallback, 'GET', '/admin/x', undefined).index, 1);
  });

  test('case-insensitive by default so /ADMIN meets the /admin rule (security.md #18)', () => {
    const insensitive = compileRules([{ path: '/admin/**', access: 'deny' }], 'authenticated', false);
    assert.equal(matchRule(insensitive.rules, insensitive.fallback, 'GET', '/ADMIN/x', undefined).access, 'deny');
    const sensitive = compileRules([{ path: '/admin/**', access: 'deny' }], 'authenticated', true);
    assert.equal(matchRule(sensitive.rules, sensitive.fallback, 'GET', '/ADMIN/x', undefined).access, 'authenticated');
  });

  test('no rule matches → the app default', () => {
    const { rules, fallback } = compileRules([{ path: '/public/**', access: 'public' }], 'deny', false);
    assert.equal(matchRule(rules, fallback, 'GET', '/other', undefined).access, 'deny');
  });

  test('allow-lists: emails and domains need a verified address; groups are exact', () => {
    const { rules } = compileRules(
      [
        {
          path: '/**',
          access: 'authenticated',
          allow: { emails: ['Boss@Corp.com'], domains: ['corp.com'], groups: ['ops'] },
        },
      ],
      'authenticated',
      false,
    );
    const allow = rules[0]!.allow;
    assert.ok(allows(allow, { email: 'boss@corp.com', emailVerified: true, groups: [] }));
    assert.ok(allows(allow, { email: 'x@corp.com', emailVerified: true, groups: [] }));
    assert.ok(!allows(allow, { email: 'x@corp.com', emailVerified: false, groups: [] }), 'unverified address');
    assert.ok(!allows(allow, { email: 'x@sub.corp.com', emailVerified: true, groups: [] }), 'subdomain');
    assert.ok(!allows(allow, { email: 'x@corp.com.evil.com', emailVerified: true, groups: [] }));
    assert.ok(allows(allow, { email: 'x@other.com', emailVerified: false, groups: ['ops'] }));
    assert.ok(!allows(allow, { email: 'x@other.com', emailVerified: true, groups: ['Ops', 'ops2'] }));
    assert.ok(allows(null, { email: 'x@other.com', emailVerified: false, groups: [] }));
  });
});
