import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, registerJson } from '../helpers/client.ts';
import { runCli } from '../helpers/cli.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';
import { signIn } from '../helpers/oauth.ts';
import { type Lab, labGatehouse, startLab } from '../helpers/providers.ts';
import { deviceLogin, withBearer } from '../oauth/helpers.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * allow.providers: a route that only a session signed in through the company's IdP may use (an
 * admin area), beside routes any signed-in user may, with real IdPs A and B. A password or
 * another provider's session is sent to sign in at the right one; an API gets RFC 9470's 401; a
 * CLI login carries the way its approving session signed in.
 */

let lab: Lab;
let gh: TestGatehouse;

before(async () => {
  lab = await startLab();
  gh = await labGatehouse(lab, {
    routes: [
      { path: '/admin/**', allow: { providers: ['a'] } },
      { path: '/ops/**', allow: { domains: ['example.com'], providers: ['a', 'b'] } },
      { path: '/either/**', allow: { providers: ['a', 'b'] } },
      { path: '/api/admin/**', unauthenticated: '401', allow: { providers: ['a'] } },
    ],
  });
});
after(async () => {
  await gh?.close();
  await lab?.close();
});

let lock: Promise<unknown> = Promise.resolve();
/** A browser signed in through the IdP as `account` (one at a time: autoLogin names the account). */
function throughIdp(idp: 'a' | 'b', account: string): Promise<Client> {
  const run = lock.then(async () => {
    lab[idp].autoLogin = account;
    const c = new Client(gh.url);
    assert.equal((await signIn(c, idp)).at(-1)!.res.status, 200);
    return c;
  });
  lock = run.catch(() => {});
  return run;
}

describe('allow.providers', () => {
  test('a password session is sent to sign in at the named provider and comes back to the page; the API gets 401 insufficient_user_authentication', async () => {
    const c = new Client(gh.url);
    await registerJson(c);
    assert.equal((await c.get('/elsewhere')).status, 200, 'signed in');
    const page = await c.html('/admin/users?x=1');
    assert.equal(page.status, 302);
    assert.equal(page.location, `${gh.url}/.auth/login/a?rd=${encodeURIComponent('/admin/users?x=1')}`);
    const api = await c.get('/api/admin/users');
    assert.equal(api.status, 401);
    assert.equal(api.json().error, 'insufficient_user_authentication');
    assert.match(
      String(api.headers['www-authenticate']),
      /error="insufficient_user_authentication", error_description="A sign-in through a is required"/,
    );
    assert.equal(
      gh.upstream.requests.some((r) => r.url.startsWith('/admin') || r.url.startsWith('/api/admin')),
      false,
    );

    // Where the redirect leads, as a click within the site goes: the provider's sign-in, and back
    // to the page, now let through.
    const flow = lock.then(() => {
      lab.a.autoLogin = 'alice';
      return signIn(c, 'a', '/admin/users?x=1');
    });
    lock = flow.catch(() => {});
    const hops = await flow;
    const last = hops.at(-1)!;
    assert.equal(last.url, `${gh.url}/admin/users?x=1`);
    assert.equal(last.res.status, 200);
    assert.ok(last.res.json().headers['x-user-id']);
  });

  test('a session of another provider is sent to the named one; with two named, either does, and the lists still apply', async () => {
    const viaB = await throughIdp('b', 'b-frank');
    assert.equal((await viaB.html('/admin/')).location, `${gh.url}/.auth/login/a?rd=%2Fadmin%2F`);
    // /ops: either provider, and an address at example.com.
    assert.equal((await viaB.get('/ops/')).status, 200, 'Frank, frank@example.com, through B');
    const erin = await throughIdp('a', 'erin');
    assert.equal((await erin.get('/admin/')).status, 200);
    assert.equal((await erin.get('/ops/')).status, 403, 'Erin, erin@elsewhere.org: through A, but not on the list');
    assert.equal((await erin.get('/either/')).status, 200);
    // Two named: the sign-in page with those two buttons alone, even for a browser signed in (with
    // a password), which it would otherwise send straight back (a loop).
    const password = new Client(gh.url);
    await registerJson(password);
    const either = await password.html('/either/');
    assert.equal(either.status, 302);
    assert.equal(either.location, `${gh.url}/.auth/login?rd=%2Feither%2F&via=a%2Cb`);
    const page = await password.html(either.location!);
    assert.equal(page.status, 200);
    assert.match(page.text, /This page needs a sign-in through IdP A or IdP B\./);
    assert.match(page.text, /href="\/\.auth\/login\/a\?rd=%2Feither%2F"/);
    assert.match(page.text, /href="\/\.auth\/login\/b\?rd=%2Feither%2F"/);
    assert.doesNotMatch(page.text, /name="password"/, 'no password form: it would not do');
    // A session that meets them is sent on, as on any sign-in page.
    assert.equal((await erin.html('/.auth/login?rd=%2Feither%2F&via=a%2Cb')).location, `${gh.url}/either/`);
  });

  test('a CLI login carries how its approving session signed in: from a password session it is refused, from the provider it passes', async () => {
    const password = new Client(gh.url);
    await registerJson(password);
    const weak = await deviceLogin(gh, password);
    const refused = await withBearer(gh, '/api/admin/x', weak.access_token);
    assert.equal(refused.status, 401);
    assert.equal(refused.seen, undefined);
    assert.match(refused.wwwAuthenticate!, /insufficient_user_authentication/);
    assert.match(refused.wwwAuthenticate!, /a login approved from a sign-in through a/);
    assert.equal((await withBearer(gh, '/elsewhere', weak.access_token)).status, 200);

    const viaA = await throughIdp('a', 'alice');
    const strong = await deviceLogin(gh, viaA);
    const passed = await withBearer(gh, '/api/admin/x', strong.access_token);
    assert.equal(passed.status, 200, passed.body);
  });

  test('check: a provider that is not configured is refused with the key; --explain says what the rule demands', async () => {
    const file = join(gh.dir, 'allow-providers.yaml');
    const configured = (routes: unknown[]) =>
      writeFileSync(
        file,
        JSON.stringify({ publicUrl: gh.url, upstream: gh.upstream.url, providers: lab.providers(), routes }),
      );
    configured([
      { path: '/admin/**', allow: { groups: ['admins'], providers: ['a'], mfa: true } },
      { path: '/ops/**', allow: { providers: ['a'] } },
    ]);
    const explained = await runCli(['check', '--config', file, '--explain', '/admin/x']);
    assert.equal(explained.code, 0, explained.stderr);
    assert.doesNotMatch(explained.stderr, /admits nobody/, 'providers alone admits everyone signed in through them');
    assert.match(
      explained.stdout,
      /decision: sign-in required, then only groups admins, signed in through a \(allow\.providers\), with a second factor in the session \(allow\.mfa\)/,
    );
    configured([{ path: '/admin/**', allow: { providers: ['corp'] } }]);
    const wrong = await runCli(['check', '--config', file]);
    assert.equal(wrong.code, 2);
    assert.match(
      wrong.stderr,
      /routes\[0\]\.allow\.providers\[0\]: allow\.providers names "corp", which is not one of providers\[\]\.id \(a, b\)/,
    );
  });
});
