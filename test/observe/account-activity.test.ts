import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { describeUserAgent } from '../../src/audit/index.ts';
import { Client, PASSWORD, registerJson, uniqueEmail } from '../helpers/client.ts';
import { runCli } from '../helpers/cli.ts';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { csrfOf } from '../helpers/providers.ts';

const CHROME_LINUX =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36';
const FIREFOX_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0';
const SAFARI_IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';

let gh: TestGatehouse;

before(async () => {
  gh = await startGatehouse();
});
after(() => gh.close());

function browser(ua: string): Client {
  const c = new Client(gh.url);
  c.defaultHeaders = { 'user-agent': ua };
  return c;
}

async function signInAs(ua: string, email: string): Promise<Client> {
  const c = browser(ua);
  const res = await c.postJson('/.auth/login', { email, password: PASSWORD });
  assert.equal(res.status, 200, res.text);
  return c;
}

const SAME_ORIGIN = () => ({ origin: gh.url, 'sec-fetch-site': 'same-origin' });

/** The section of the account page with this id (its heading is section-<id>). */
function section(page: string, id: string): string {
  const m = new RegExp(`<section aria-labelledby="section-${id}">([\\s\\S]*?)</section>`).exec(page);
  assert.ok(m, `section ${id}`);
  return m[1]!;
}

describe('the user agent in words', () => {
  test('browser and system from common user agents; unknown ones say so', () => {
    assert.equal(describeUserAgent(CHROME_LINUX), 'Chrome on Linux');
    assert.equal(describeUserAgent(FIREFOX_WINDOWS), 'Firefox on Windows');
    assert.equal(describeUserAgent(SAFARI_IPHONE), 'Safari on iPhone');
    assert.equal(
      describeUserAgent(
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0',
      ),
      'Edge on macOS',
    );
    assert.equal(describeUserAgent('curl/8.5.0'), 'curl');
    assert.equal(describeUserAgent(null), 'Unknown browser');
    assert.equal(describeUserAgent('<script>alert(1)</script>'), 'Unknown browser');
  });
});

describe('browser sessions on the account page', () => {
  let email: string;
  let a: Client;
  let b: Client;
  let c: Client;

  before(async () => {
    email = uniqueEmail('sessions');
    a = browser(CHROME_LINUX);
    await registerJson(a, email);
    b = await signInAs(FIREFOX_WINDOWS, email);
    c = await signInAs(SAFARI_IPHONE, email);
  });

  test('lists every browser with browser, OS, IP, times and "this session"; recent activity shows the sign-ins', async () => {
    const page = await a.html('/.auth/account');
    assert.equal(page.status, 200);
    const sessions = section(page.text, 'sessions');
    for (const d of ['Chrome on Linux', 'Firefox on Windows', 'Safari on iPhone'])
      assert.match(sessions, new RegExp(d));
    assert.equal(sessions.match(/class="tag">this session/g)?.length, 1);
    assert.match(sessions, /Chrome on Linux<\/strong> · <span class="tag">this session/);
    assert.match(sessions, /from 127\.0\.0\.1/);
    assert.equal(sessions.match(/End this session/g)?.length, 2, 'no End button on the current one');
    assert.match(sessions, /Sign out everywhere else/);
    const activity = section(page.text, 'activity');
    assert.match(activity, /Account created/);
    assert.equal(activity.match(/Signed in with your password/g)?.length, 2);
    assert.match(activity, /Safari on iPhone/);

    const json = (await a.get('/.auth/account/sessions')).json();
    assert.equal(json.sessions.length, 3);
    assert.equal(json.sessions.filter((s: { current: boolean }) => s.current).length, 1);
    const stored = await gh.gatehouse.store.sessions.listByUser((await a.get('/.auth/me')).json().id);
    const text = JSON.stringify(json) + page.text;
    for (const s of stored) assert.ok(!text.includes(s.idHash), 'a session id hash is never shown');
    const activityJson = (await a.get('/.auth/account/activity')).json();
    assert.ok(activityJson.activity.some((e: { event: string; device: string }) => e.device === 'Firefox on Windows'));
    assert.equal((await new Client(gh.url).get('/.auth/account/sessions')).status, 401);
  });

  test('ending one session signs that browser out at once, audited; only with the CSRF token', async () => {
    const page = await a.html('/.auth/account');
    const handle = (await a.get('/.auth/account/sessions'))
      .json()
      .sessions.find((s: { device: string }) => s.device === 'Firefox on Windows').handle;
    const noToken = await a.postForm('/.auth/account/sessions/end', { session: handle }, SAME_ORIGIN());
    assert.equal(noToken.status, 403);
    const crossSite = await a.postForm(
      '/.auth/account/sessions/end',
      { csrf: csrfOf(page), session: handle },
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    );
    assert.equal(crossSite.status, 403);
    assert.equal((await b.get('/.auth/me')).status, 200, 'still signed in after the refused attempts');
    const ended = await a.postForm(
      '/.auth/account/sessions/end',
      { csrf: csrfOf(page), session: handle },
      SAME_ORIGIN(),
    );
    assert.equal(ended.status, 303);
    assert.match(ended.location!, /\/\.auth\/account\?session_ended=1$/);
    assert.equal((await b.get('/.auth/me')).status, 401);
    assert.match((await a.html(ended.location!)).text, /That session has ended/);
    const events = await gh.gatehouse.audit.list({ event: 'session_ended' });
    assert.equal(events[0]!.detail.device, 'Firefox on Windows');
  });

  test("another user cannot end someone's session with its handle, nor can one end the current one (security.md #191)", async () => {
    const victimHandle = (await a.get('/.auth/account/sessions'))
      .json()
      .sessions.find((s: { device: string }) => s.device === 'Safari on iPhone').handle;
    const mallory = browser(CHROME_LINUX);
    await registerJson(mallory);
    const res = await mallory.postJson('/.auth/account/sessions/end', { session: victimHandle }, SAME_ORIGIN());
    assert.equal(res.status, 404);
    assert.equal((await c.get('/.auth/me')).status, 200, "the victim's session is untouched");
    const own = (await a.get('/.auth/account/sessions')).json().sessions.find((s: { current: boolean }) => s.current);
    const current = await a.postJson('/.auth/account/sessions/end', { session: own.handle }, SAME_ORIGIN());
    assert.equal(current.status, 409);
    assert.equal(current.json().error, 'current_session');
  });

  test('"sign out everywhere else" ends all but this session (JSON for SPAs)', async () => {
    const d = await signInAs(FIREFOX_WINDOWS, email);
    const res = await a.postJson('/.auth/account/sessions/end-others', {}, SAME_ORIGIN());
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { ok: true, ended: 2 });
    assert.equal((await c.get('/.auth/me')).status, 401);
    assert.equal((await d.get('/.auth/me')).status, 401);
    assert.equal((await a.get('/.auth/me')).status, 200);
    assert.equal((await a.get('/.auth/account/sessions')).json().sessions.length, 1);
    const [event] = await gh.gatehouse.audit.list({ event: 'sessions_ended' });
    assert.equal(event!.detail.ended, 2);
  });
});

describe('a hostile user agent', () => {
  test('is escaped on the account page and in `gatehouse audit` (security.md #190)', async () => {
    const email = uniqueEmail('ua');
    const c = browser('<img src=x onerror=alert(1)>');
    const user = await registerJson(c, email);
    const page = (await c.html('/.auth/account')).text;
    assert.doesNotMatch(page, /<img src=x/);
    assert.match(section(page, 'sessions'), /Unknown browser/);
    // HTTP keeps control characters out of headers, but a record may hold any text (a proxy's
    // header, an address typed at a provider): one with a line break and a terminal escape.
    await gh.gatehouse.store.audit.append([
      {
        id: 'forged-1',
        at: Date.now(),
        event: 'login',
        userId: user.id,
        outcome: 'failure',
        ip: '192.0.2.1',
        userAgent: 'x\n2026-01-01T00:00:00Z  login  success  admin@example.com\u001b[2J',
        actor: null,
        detail: { email: 'a\u0007b' },
      },
    ]);
    const file = join(gh.dir, 'cli.yaml');
    writeFileSync(file, JSON.stringify({ publicUrl: gh.url, upstream: gh.upstream.url, store: gh.config.store }));
    await gh.gatehouse.audit.flush();
    const r = await runCli(['audit', '--user', email, '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      !r.stdout.includes('\u001b') && !r.stdout.includes('\u0007'),
      'no control character reaches the operator',
    );
    assert.equal(r.stdout.trim().split('\n').length, 3, 'a header and two lines: no forged line');
    assert.match(r.stdout, /x\\x0a2026/);
    const activity = section((await c.html('/.auth/account')).text, 'activity');
    assert.match(activity, /Failed sign-in/);
    assert.doesNotMatch(activity, /\u001b/);
  });
});
