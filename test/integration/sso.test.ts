import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, PASSWORD, registerJson, type Response, uniqueEmail } from '../helpers/client.ts';
import { runCli, withConfigFile } from '../helpers/cli.ts';
import { BASE_CONFIG, refusal } from '../helpers/config.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/**
 * Single sign-on across hosts (apps[].sso, security.md #285): users sign in on publicUrl's host
 * (127.0.0.1 here, the portal app), and the wiki on a host of its own signs them in from there
 * with a one-time code, into a session of its own. A browser is two cookie jars, one per host,
 * as a real one keeps them; the Host header picks the site, as a browser would send it.
 */

let gh: TestGatehouse;
let wikiApp: TestUpstream;
let homeHost: string;
let wikiHost: string;

before(async () => {
  wikiApp = await startUpstream();
  gh = await startGatehouse(({ port, upstream }) => ({
    apps: [
      { name: 'portal', host: `127.0.0.1:${port}`, upstream },
      { name: 'wiki', host: `wiki.localhost:${port}`, upstream: wikiApp.url, sso: true },
    ],
  }));
  homeHost = `127.0.0.1:${gh.port}`;
  wikiHost = `wiki.localhost:${gh.port}`;
});
after(async () => {
  await gh.close();
  await wikiApp.close();
});

/** A browser: a cookie jar per host, redirects followed across them. */
class Browser {
  readonly home = new Client(gh.url);
  readonly wiki = new Client(gh.url);
  constructor() {
    this.home.defaultHeaders = { host: homeHost };
    this.wiki.defaultHeaders = { host: wikiHost };
  }
  private jarFor(url: URL): Client {
    return url.host === wikiHost ? this.wiki : this.home;
  }
  /** GETs a URL as a page, following redirects; every hop's URL and answer. */
  async visit(start: string): Promise<{ url: string; res: Response }[]> {
    const hops: { url: string; res: Response }[] = [];
    let url = new URL(start);
    for (let i = 0; i < 10; i++) {
      const res = await this.jarFor(url).get(url.pathname + url.search, { accept: 'text/html' });
      hops.push({ url: url.href, res });
      if (!res.location) return hops;
      url = new URL(res.location, url);
    }
    throw new Error(`too many redirects: ${hops.map((h) => h.url).join(' → ')}`);
  }
}

const wikiUrl = (path: string) => `http://${wikiHost}${path}`;
const homeUrl = (path: string) => `http://${homeHost}${path}`;
const me = async (c: Client) => (await c.get('/.auth/me')).json();

/** The code a signed-in browser gets for the wiki: the hops up to the callback, not taken. */
async function codeFor(b: Browser, rd = '/page'): Promise<string> {
  const start = await b.wiki.get(`/.auth/login?rd=${encodeURIComponent(rd)}`, { accept: 'text/html' });
  assert.equal(start.status, 302);
  const issue = new URL(start.location!);
  const answer = await b.home.get(issue.pathname + issue.search, { accept: 'text/html' });
  assert.equal(answer.status, 302);
  const callback = new URL(answer.location!);
  assert.equal(callback.host, wikiHost);
  return callback.searchParams.get('code')!;
}

describe('single sign-on across hosts (apps[].sso)', () => {
  test('signed in on publicUrl’s host, the app with sso signs the browser in without a password: its own session, the same user, sign-in methods and time', async () => {
    const b = new Browser();
    const user = await registerJson(b.home);
    const hops = await b.visit(wikiUrl('/page?x=1'));
    assert.deepEqual(
      hops.map((h) => [new URL(h.url).host, new URL(h.url).pathname, h.res.status]),
      [
        [wikiHost, '/page', 302],
        [wikiHost, '/.auth/login', 302],
        [homeHost, '/.auth/sso', 302],
        [wikiHost, '/.auth/sso/callback', 303],
        [wikiHost, '/page', 200],
      ],
    );
    assert.equal(hops.at(-1)!.res.json().headers['x-user-id'], user.id);
    assert.equal(hops.at(-1)!.res.json().url, '/page?x=1');
    const [atHome, atWiki] = [await me(b.home), await me(b.wiki)];
    assert.equal(atWiki.id, user.id);
    assert.deepEqual(atWiki.session.amr, atHome.session.amr);
    assert.equal(atWiki.session.authTime, atHome.session.authTime, 'the sign-in’s time, for re-authentication');
    assert.notEqual(b.wiki.jar.get('gatehouse'), b.home.jar.get('gatehouse'), 'a session of its own');
    assert.equal(b.wiki.jar.has('gatehouse-sso'), false, 'the state cookie is used up');
    const line = gh.logs.find((l) => l.event === 'login' && l.method === 'sso' && l.userId === user.id);
    assert.equal(line?.site, `http://${wikiHost}`);
  });

  test('signed in nowhere: the browser signs in once, on publicUrl’s host, and lands back on the app’s page', async () => {
    const b = new Browser();
    const email = uniqueEmail('sso');
    await registerJson(new Client(gh.url), email);
    const hops = await b.visit(wikiUrl('/docs/a'));
    const login = hops.at(-1)!;
    assert.equal(new URL(login.url).host, homeHost);
    assert.equal(new URL(login.url).pathname, '/.auth/login');
    assert.equal(login.res.status, 200);
    const rd = new URL(login.url).searchParams.get('rd')!;
    const signedIn = await b.home.postJson('/.auth/login', { email, password: PASSWORD, rd });
    assert.equal(signedIn.status, 200);
    const back = await b.visit(homeUrl(signedIn.json().redirect));
    assert.equal(back.at(-1)!.url, wikiUrl('/docs/a'));
    assert.equal(back.at(-1)!.res.status, 200);
  });

  test('attack: a code works once, only in the browser that asked for it, only unaltered and only for its site', async () => {
    const b = new Browser();
    await registerJson(b.home);
    const code = await codeFor(b);
    // Another browser (an attacker's page making the victim's browser use the attacker's code: login CSRF).
    const other = new Browser();
    await other.wiki.get('/.auth/login', { accept: 'text/html' });
    const stolen = await other.wiki.get(`/.auth/sso/callback?code=${encodeURIComponent(code)}`);
    assert.equal(stolen.status, 400);
    assert.equal(other.wiki.jar.has('gatehouse'), false);
    const altered = await b.wiki.get(`/.auth/sso/callback?code=${encodeURIComponent(`${code.slice(0, -2)}AA`)}`);
    assert.equal(altered.status, 400);
    const used = await b.wiki.get(`/.auth/sso/callback?code=${encodeURIComponent(code)}`);
    assert.equal(used.status, 303);
    const again = await b.wiki.get(`/.auth/sso/callback?code=${encodeURIComponent(code)}`);
    assert.equal(again.status, 400, 'replayed');
    // publicUrl's host takes no code, and gives none for a site without sso or another origin.
    assert.equal((await b.home.get(`/.auth/sso/callback?code=${encodeURIComponent(code)}`)).status, 404);
    for (const site of [homeUrl(''), 'https://evil.example', ''])
      assert.equal(
        (await b.home.get(`/.auth/sso?site=${encodeURIComponent(site)}&state=${'a'.repeat(43)}`)).status,
        400,
        site,
      );
    assert.equal((await b.wiki.get(`/.auth/sso?site=${encodeURIComponent(wikiUrl(''))}`)).status, 404);
  });

  test('attack: the page to return to stays on the app’s site', async () => {
    const b = new Browser();
    await registerJson(b.home);
    for (const rd of ['//evil.example/x', 'https://evil.example/', homeUrl('/portal')]) {
      const hops = await b.visit(wikiUrl(`/.auth/login?rd=${encodeURIComponent(rd)}`));
      assert.equal(hops.at(-1)!.url, wikiUrl('/'), rd);
    }
  });

  test('signing out on the app’s host ends the session on publicUrl’s host too, and the other way round', async () => {
    const b = new Browser();
    await registerJson(b.home);
    await b.visit(wikiUrl('/page'));
    assert.equal((await b.wiki.get('/.auth/me')).status, 200);
    assert.equal((await b.wiki.postJson('/.auth/logout', {}, { origin: wikiUrl('') })).status, 200);
    assert.equal((await b.home.get('/.auth/me')).status, 401, 'signed out on publicUrl’s host too');
    const next = await b.visit(wikiUrl('/page'));
    assert.equal(new URL(next.at(-1)!.url).pathname, '/.auth/login', 'not signed in again behind the user’s back');
    // A form's sign-out lands on the wiki's login page, which sends the browser on to publicUrl's:
    // that one says the user signed out, and signing in there returns to the wiki.
    await b.visit(wikiUrl('/page'));
    const signedOut = await b.visit(wikiUrl('/.auth/login?signed_out=1'));
    const landed = signedOut.at(-1)!;
    assert.equal(new URL(landed.url).host, homeHost);
    assert.match(landed.res.text, /You have signed out\./);
    assert.doesNotMatch((await b.visit(wikiUrl('/.auth/login'))).at(-1)!.res.text, /You have signed out/);

    const c = new Browser();
    await registerJson(c.home);
    await c.visit(wikiUrl('/page'));
    assert.equal((await c.home.postJson('/.auth/logout', {}, { origin: homeUrl('') })).status, 200);
    assert.equal((await c.wiki.get('/.auth/me')).status, 401, 'the app’s session ended with it');
  });

  test('config: sso is for hosts other than publicUrl’s, said alike by every app of a host; publicUrl’s host needs no app', async () => {
    const apps = (list: string) => `publicUrl: https://example.com\napps:\n${list}`;
    assert.match(
      refusal(apps('  - { name: a, upstream: "http://10.0.0.1", sso: true }\n')),
      /apps\[0\]\.sso: sso only applies to apps on a host other than publicUrl's/,
    );
    assert.match(
      refusal(
        apps(
          '  - { name: a, host: wiki.example.com, upstream: "http://10.0.0.1", sso: true }\n  - { name: b, host: wiki.example.com, pathPrefix: /b, upstream: "http://10.0.0.2" }\n',
        ),
      ),
      /apps\[1\]\.sso: sso only applies to a whole host: apps\[0\] on wiki\.example\.com has it/,
    );
    assert.match(refusal(`${BASE_CONFIG}sso: true\n`), /sso/);
    await withConfigFile(
      'publicUrl: https://auth.example.com\ntrustedProxies: [loopback]\napps:\n  - { name: wiki, host: wiki.example.com, upstream: "http://10.0.0.1", sso: true }\n',
      async (file) => {
        const check = await runCli(['check', '--config', file]);
        assert.equal(check.code, 0, check.stderr);
        assert.match(check.stdout, /https:\/\/auth\.example\.com sign-in and account pages only \(no app\)/);
        assert.match(
          check.stdout,
          /https:\/\/wiki\.example\.com sign-in: single sign-on from https:\/\/auth\.example\.com \(sso\)/,
        );
      },
    );

    const alone = await startGatehouse(({ port, upstream }) => ({
      apps: [{ name: 'wiki', host: `wiki.localhost:${port}`, upstream, sso: true }],
    }));
    try {
      const page = await new Client(alone.url).get('/.auth/login', { accept: 'text/html' });
      assert.equal(page.status, 200, 'publicUrl’s host serves the sign-in pages without an app');
      const b = new Client(alone.url);
      await registerJson(b);
      assert.equal((await b.get('/.auth/login', { accept: 'text/html' })).location, `${alone.url}/.auth/account`);
    } finally {
      await alone.close();
    }
  });
});
