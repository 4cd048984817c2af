import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  base64url,
  createRemoteJWKSet,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  UnsecuredJWT,
  type JWK,
} from 'jose';
import { hashPassword } from '../../src/accounts/passwords.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { Client, PASSWORD, registerJson } from '../helpers/client.ts';
import { emailConfig, linkIn, mailTo, openLinkPage, submit } from '../helpers/email.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { example, nginxSkip, startNginx, type TestNginx } from '../helpers/nginx.ts';
import { startSmtp, type TestSmtp } from '../helpers/smtp.ts';
import { describeOrSkip } from '../helpers/requirements.ts';
import { selfSigned, type TestCert } from '../helpers/tls.ts';
import { eventually, PG_URL, postgres } from '../faults/services.ts';
import { Clock, forms } from '../oauth/helpers.ts';
import { USER_ID_ANNOTATION } from '../../packages/backstage-auth-provider/src/index.ts';
import { backstageOrSkip, createDatabase, startBackstage, type TestBackstage } from './backstage.ts';

/**
 * A real Backstage backend (@backstage/plugin-auth-backend + the catalog, installed from npm
 * with pinned versions) with @gatehouse/backstage-auth-provider, behind a real Gatehouse; and
 * the same behind nginx. Users sign in to Gatehouse (passwords, a mailed verification link,
 * `gatehouse login` for the CLI); Backstage's /api/auth/gatehouse/refresh, the endpoint its
 * ProxiedSignInPage calls, must give them the right User entity, and nobody else anything.
 */

const pgService = await postgres();
const backstage = await backstageOrSkip();
const skip = pgService.skip || backstage.skip;

const TEN_MINUTES = 10 * 60_000;
const STATIC_TOKEN = `static-${base64url.encode(crypto.getRandomValues(new Uint8Array(24)))}`;
const limits = { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000, emailsPerAddress: 100 };

/**
 * The routes of docs/backstage.md: Backstage's keys public; its auth plugin (the sign-in
 * endpoint included) and the plugin APIs behind a Gatehouse sign-in, 401 for API callers (a CLI
 * sends its Gatehouse token in tokens.bearerHeader and Backstage's in Authorization); the
 * frontend, everything else, behind the sign-in.
 */
const ROUTES = [
  { path: '/api/auth/.well-known/**', access: 'public' },
  { path: '/api/auth/**', unauthenticated: '401' },
  { path: '/api/**', unauthenticated: '401' },
] as const;

/** tokens.bearerHeader of the Gatehouses here: where the CLI sends its Gatehouse token. */
const TOKEN_HEADER = 'X-Gatehouse-Token';

interface CatalogUser {
  name: string;
  email?: string;
  userId?: string;
  memberOf?: string[];
}

/** The catalog file: the users the resolvers look for, and a group that one of them is in. */
function catalogYaml(users: CatalogUser[]): string {
  const group =
    'apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: team-a\nspec:\n  type: team\n  children: []\n';
  const docs = users.map(
    (u) =>
      'apiVersion: backstage.io/v1alpha1\nkind: User\nmetadata:\n' +
      `  name: ${u.name}\n` +
      (u.userId ? `  annotations:\n    ${USER_ID_ANNOTATION}: "${u.userId}"\n` : '') +
      'spec:\n' +
      (u.email ? `  profile:\n    email: ${u.email}\n` : '  profile: {}\n') +
      `  memberOf: [${(u.memberOf ?? []).join(', ')}]\n`,
  );
  return [group, ...docs].join('---\n');
}

/** Backstage's app-config: Gatehouse as the sign-in provider, the database, the catalog file. */
function appConfig(o: { origin: string; port: number; database: string; catalogFile: string }) {
  const pgUrl = new URL(PG_URL);
  return {
    app: { baseUrl: o.origin },
    backend: {
      baseUrl: o.origin,
      listen: { host: '127.0.0.1', port: o.port },
      database: {
        client: 'pg',
        connection: {
          host: pgUrl.hostname,
          port: Number(pgUrl.port || 5432),
          user: decodeURIComponent(pgUrl.username || 'postgres'),
          ...(pgUrl.password ? { password: decodeURIComponent(pgUrl.password) } : {}),
          database: o.database,
        },
        pluginDivisionMode: 'schema',
      },
      // A token of the test's own, to watch the catalog fill up.
      auth: { externalAccess: [{ type: 'static', options: { token: STATIC_TOKEN, subject: 'gatehouse-test' } }] },
    },
    auth: {
      providers: {
        gatehouse: {
          issuer: o.origin,
          audience: 'backstage',
          signIn: {
            resolvers: [
              { resolver: 'userIdMatchingUserEntityAnnotation' },
              { resolver: 'emailMatchingUserEntityProfileEmail' },
              { resolver: 'emailLocalPartMatchingUserEntityName', allowedDomains: ['corp.example'] },
            ],
          },
        },
        // Backstage's stock oauth2-proxy provider, behind a Gatehouse with the oauth2-proxy header
        // preset (X-Forwarded-User = the Gatehouse user id, X-Forwarded-Email only when verified).
        oauth2Proxy: {
          signIn: {
            resolvers: [
              { resolver: 'forwardedUserMatchingUserEntityName' },
              { resolver: 'emailMatchingUserEntityProfileEmail' },
            ],
          },
        },
      },
    },
    catalog: {
      rules: [{ allow: ['User', 'Group'] }],
      locations: [{ type: 'file', target: o.catalogFile }],
    },
  };
}

interface Stack {
  gh: TestGatehouse;
  /** Main only: a second Gatehouse in front of the same Backstage, with the oauth2-proxy header preset. */
  o2p?: TestGatehouse;
  bs: TestBackstage;
  /** Where users and the CLI go: Gatehouse, or nginx in front of it. */
  origin: string;
  /** Behind nginx: its certificate, for our client and the CLI. */
  cert?: TestCert;
  cleanup(): Promise<void>;
}

/** An operator-added user (`gatehouse users add`): the operator vouches for the address. */
async function addUser(gh: TestGatehouse, email: string, name: string | null = null) {
  return gh.gatehouse.store.users.create({
    email,
    name,
    emailVerified: true,
    passwordHash: await hashPassword(PASSWORD),
  });
}

/** Backstage with its own database and catalog file, started once Gatehouse's users exist; waits for the catalog. */
async function backstageFor(
  gh: TestGatehouse,
  o: { origin: string; port: number; users: CatalogUser[]; env?: Record<string, string> },
): Promise<{ bs: TestBackstage; cleanup(): Promise<void> }> {
  const db = await createDatabase();
  const catalogFile = join(gh.dir, 'catalog.yaml');
  writeFileSync(catalogFile, catalogYaml(o.users));
  let bs: TestBackstage;
  try {
    bs = await startBackstage(
      backstage.install!,
      o.port,
      appConfig({ origin: o.origin, port: o.port, database: db.name, catalogFile }),
      o.env,
    );
  } catch (err) {
    await db.drop();
    throw err;
  }
  const cleanup = async () => {
    await bs.stop();
    await db.drop();
  };
  try {
    await eventually(
      `the catalog to hold the ${o.users.length} test users`,
      async () => {
        const res = await fetch(`${bs.url}/api/catalog/entities?filter=kind=user`, {
          headers: { authorization: `Bearer ${STATIC_TOKEN}` },
        });
        return res.status === 200 && ((await res.json()) as unknown[]).length === o.users.length;
      },
      30_000,
      100,
    );
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { bs, cleanup };
}

/** What Backstage's ProxiedSignInPage does: GET <auth>/gatehouse/refresh with the browser's cookies. */
function refresh(c: Client, headers: Record<string, string> = {}, provider = 'gatehouse') {
  return c.fetch(`/api/auth/${provider}/refresh`, {
    headers: { accept: 'application/json', 'x-requested-with': 'XMLHttpRequest', ...headers },
  });
}

async function signIn(c: Client, email: string): Promise<void> {
  const res = await c.postJson('/.auth/login', { email, password: PASSWORD });
  assert.equal(res.status, 200, res.text);
}

interface Session {
  profile: { email?: string; displayName?: string; picture?: string };
  providerInfo?: Record<string, unknown>;
  backstageIdentity: {
    token: string;
    identity: { type: string; userEntityRef: string; ownershipEntityRefs: string[] };
  };
}

/** A signed-in browser's Backstage session: refresh must answer 200 in ProxiedSignInPage's shape. */
async function backstageSession(stack: Stack, email: string): Promise<{ c: Client; session: Session }> {
  const c = new Client(stack.origin, { dispatcher: stack.cert?.agent });
  await signIn(c, email);
  const res = await refresh(c);
  assert.equal(res.status, 200, `${res.text}\n${stack.bs.output().slice(-3000)}`);
  const session = res.json<Session>();
  assert.equal(typeof session.backstageIdentity.token, 'string');
  assert.equal(session.backstageIdentity.identity.type, 'user');
  assert.ok(Array.isArray(session.backstageIdentity.identity.ownershipEntityRefs));
  return { c, session };
}

/** The error of Backstage's JSON answer to a refused request (and no token in it). */
function refusal(text: string): { name: string; message: string } {
  assert.doesNotMatch(text, /backstageIdentity|"token"/, 'no Backstage token in a refusal');
  return (JSON.parse(text) as { error: { name: string; message: string } }).error;
}

/**
 * `gatehouse login <origin> --no-browser` as a user at a terminal runs it: the CLI prints a
 * code, the user (signed in in `browser`) enters and approves it; then `gatehouse token`.
 */
async function cliLogin(
  origin: string,
  browser: Client,
  env: NodeJS.ProcessEnv = {},
): Promise<{ token: string; header: [string, string] }> {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-backstage-cli-'));
  const userEnv: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: home, ...env };
  delete userEnv.DISPLAY;
  delete userEnv.WAYLAND_DISPLAY;
  const child = spawn(process.execPath, [CLI, 'login', origin, '--no-browser'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: userEnv,
  });
  try {
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const done = new Promise<number | null>((resolve) => child.on('close', resolve));
    const code = await eventually(
      'the CLI to print its code',
      () => /enter the code {2}([A-Z]{4}-[A-Z]{4})/.exec(stderr)?.[1],
    );
    const entry = await browser.html('/.auth/device');
    const [form] = forms(entry.text);
    const confirm = await browser.postForm(form!.action, { ...form!.fields, user_code: code }, { origin });
    const allow = forms(confirm.text).find((f) => f.fields.decision === 'approve');
    assert.ok(allow, confirm.text);
    assert.equal((await browser.postForm(allow.action, allow.fields, { origin })).status, 303);
    assert.equal(await done, 0, stderr);
    const token = await runCli(['token', origin], undefined, userEnv);
    assert.equal(token.code, 0, token.stderr);
    // `gatehouse token --header`: the line for curl -H, in the header Gatehouse announced at login.
    const line = await runCli(['token', origin, '--header'], undefined, userEnv);
    assert.equal(line.code, 0, line.stderr);
    const m = /^([A-Za-z0-9-]+): (\S+)\n$/.exec(line.stdout);
    assert.ok(m, line.stdout);
    return { token: token.stdout.trim(), header: [m[1]!, m[2]!] };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill();
    rmSync(home, { recursive: true, force: true });
  }
}

/**
 * A CLI's way into a Backstage API that Gatehouse protects: `gatehouse login`, then its Gatehouse
 * token (in tokens.bearerHeader, as `gatehouse token --header` prints it) buys a Backstage token
 * at the sign-in endpoint, and every API call carries both: the Gatehouse token in its header for
 * Gatehouse, the Backstage token in Authorization for Backstage, which gets it unchanged.
 */
async function cliReachesCatalog(stack: Stack, email: string) {
  const browser = new Client(stack.origin, { dispatcher: stack.cert?.agent });
  await signIn(browser, email);
  const { token: gatehouseToken, header } = await cliLogin(
    stack.origin,
    browser,
    stack.cert ? { NODE_EXTRA_CA_CERTS: stack.cert.cert } : {},
  );
  assert.deepEqual(header, [TOKEN_HEADER, gatehouseToken]);
  const cli = new Client(stack.origin, { dispatcher: stack.cert?.agent });
  const exchanged = await refresh(cli, { [header[0]]: header[1] });
  assert.equal(exchanged.status, 200, exchanged.text);
  const { backstageIdentity } = exchanged.json<Session>();
  assert.equal(backstageIdentity.identity.userEntityRef, 'user:default/alice');
  const path = '/api/catalog/entities/by-name/user/default/alice';
  const entity = await cli.get(path, {
    [header[0]]: header[1],
    authorization: `Bearer ${backstageIdentity.token}`,
  });
  assert.equal(entity.status, 200, entity.text);
  assert.equal(entity.json().spec.profile.email, 'alice@example.com');
  // Either token alone is not enough: Gatehouse keeps its own tokens from the app, and
  // Backstage's token is not Gatehouse's.
  const gatehouseOnly = await cli.get(path, { [header[0]]: header[1] });
  assert.equal(gatehouseOnly.status, 401);
  assert.equal(gatehouseOnly.json().error.name, 'AuthenticationError', "Backstage's refusal: no token reached it");
  const backstageOnly = await cli.get(path, { authorization: `Bearer ${backstageIdentity.token}` });
  assert.equal(backstageOnly.status, 401);
  assert.match(String(backstageOnly.headers['www-authenticate']), /resource_metadata=/, "Gatehouse's refusal");
  // Gatehouse's token in Authorization (the CLI without the header): Gatehouse lets it in and
  // takes it off, so Backstage sees no token.
  const inAuthorization = await cli.get(path, { authorization: `Bearer ${gatehouseToken}` });
  assert.equal(inAuthorization.status, 401);
  assert.equal(inAuthorization.json().error.name, 'AuthenticationError');
  return backstageIdentity;
}

describeOrSkip('Backstage behind Gatehouse (@gatehouse/backstage-auth-provider)', { skip }, () => {
  const clock = new Clock();
  let smtp: TestSmtp;
  let main: Stack;
  let users: Record<'alice' | 'bob' | 'carol' | 'carolElsewhere', { id: string; email: string }>;
  /** Users of the oauth2-proxy Gatehouse (main.o2p): erin's User entity is named for her Gatehouse id. */
  let o2pUsers: Record<'alice' | 'erin', { id: string; email: string }>;
  let front: (Stack & { nginx: TestNginx }) | undefined;
  const nginxSkipped = nginxSkip();

  /** Gatehouse and Backstage on loopback, users signing in to Gatehouse directly. */
  async function startMain(): Promise<Stack> {
    smtp = await startSmtp();
    const bsPort = await freePort();
    // The first signing key is made ten minutes in the past, so that the clock can be put back
    // for the expired-assertion test while the key still signs.
    clock.advance(-TEN_MINUTES);
    const gh = await startGatehouse(
      ({ upstream }) => ({
        title: 'Backstage',
        email: emailConfig(smtp),
        apps: [
          {
            name: 'backstage',
            upstream: `http://127.0.0.1:${bsPort}`,
            headers: { email: true, name: true },
            routes: [...ROUTES],
          },
          // Another app of the same Gatehouse, whose assertions must not open Backstage.
          { name: 'wiki', pathPrefix: '/wiki', upstream },
        ],
        accounts: { rateLimits: limits },
        tokens: { device: { interval: '1s' }, bearerHeader: TOKEN_HEADER },
      }),
      { clock: clock.now },
    );
    clock.advance(TEN_MINUTES);
    // The same Backstage behind a second Gatehouse that speaks oauth2-proxy, for its stock provider.
    let o2p: TestGatehouse | undefined;
    try {
      o2p = await startGatehouse(() => ({
        title: 'Backstage',
        name: 'backstage-o2p',
        upstream: `http://127.0.0.1:${bsPort}`,
        headers: { preset: 'oauth2-proxy', assertionBearer: 'X-OAUTH2-PROXY-ID-TOKEN' },
        routes: [...ROUTES],
        accounts: { rateLimits: limits },
      }));
      o2pUsers = {
        alice: await addUser(o2p, 'alice@example.com', 'Alice Liddell'),
        erin: await addUser(o2p, 'erin@example.com', 'Erin'),
      };
      users = {
        alice: await addUser(gh, 'alice@example.com', 'Alice Liddell'),
        bob: await addUser(gh, 'bob@example.com', 'Bob'),
        carol: await addUser(gh, 'carol@corp.example', 'Carol'),
        carolElsewhere: await addUser(gh, 'carol@attacker.example'),
      };
      const { bs, cleanup } = await backstageFor(gh, {
        origin: gh.url,
        port: bsPort,
        users: [
          { name: 'alice', email: 'alice@example.com', memberOf: ['team-a'] },
          { name: 'bob-builder', userId: users.bob.id },
          { name: 'carol' },
          { name: 'dave', email: 'dave@corp.example' },
          { name: o2pUsers.erin.id },
        ],
      });
      return {
        gh,
        o2p,
        bs,
        origin: gh.url,
        async cleanup() {
          await cleanup();
          await gh.close();
          await o2p?.close();
        },
      };
    } catch (err) {
      await gh.close();
      await o2p?.close();
      throw err;
    }
  }

  /** The same behind nginx (TLS, X-Forwarded-* from 127.0.0.2), with a Backstage of its own. */
  async function startFront(): Promise<Stack & { nginx: TestNginx }> {
    const cert = selfSigned();
    const https = await freePort();
    const origin = `https://127.0.0.1:${https}`;
    const bsPort = await freePort();
    const gh = await startGatehouse(() => ({
      publicUrl: origin,
      trustedProxies: ['127.0.0.2'],
      name: 'backstage',
      upstream: `http://127.0.0.1:${bsPort}`,
      headers: { email: true, name: true },
      routes: [...ROUTES],
      accounts: { rateLimits: limits },
      tokens: { device: { interval: '1s' }, bearerHeader: TOKEN_HEADER },
    }));
    let nginx: TestNginx | undefined;
    const stop = async () => {
      await nginx?.stop();
      await gh.close();
      rmSync(join(cert.cert, '..'), { recursive: true, force: true });
    };
    try {
      await addUser(gh, 'alice@example.com', 'Alice Liddell');
      const conf = example('nginx.conf', {
        https,
        http: await freePort(),
        cert: cert.cert,
        key: cert.key,
        gatehouse: gh.port,
        bindAddress: '127.0.0.2',
      });
      nginx = await startNginx(conf, [https]);
      // Backstage fetches Gatehouse's keys from the public address, through nginx, trusting its certificate.
      const { bs, cleanup } = await backstageFor(gh, {
        origin,
        port: bsPort,
        users: [{ name: 'alice', email: 'alice@example.com', memberOf: ['team-a'] }],
        env: { NODE_EXTRA_CA_CERTS: cert.cert },
      });
      return {
        gh,
        bs,
        origin,
        nginx,
        cert,
        async cleanup() {
          await cleanup();
          await stop();
        },
      };
    } catch (err) {
      await stop();
      throw err;
    }
  }

  before(async () => {
    const [m, f] = await Promise.allSettled([startMain(), nginxSkipped ? undefined : startFront()]);
    if (m.status === 'fulfilled') main = m.value;
    if (f.status === 'fulfilled') front = f.value;
    for (const r of [m, f]) if (r.status === 'rejected') throw r.reason;
  });
  after(async () => {
    await Promise.all([main?.cleanup(), front?.cleanup()]);
    await smtp?.close();
  });

  describe('sign-in through Gatehouse', () => {
    test('a verified address matching spec.profile.email: the User entity, its groups, a Backstage token Backstage accepts', async () => {
      const { c, session } = await backstageSession(main, users.alice.email);
      assert.equal(session.backstageIdentity.identity.userEntityRef, 'user:default/alice');
      assert.deepEqual(session.backstageIdentity.identity.ownershipEntityRefs.toSorted(), [
        'group:default/team-a',
        'user:default/alice',
      ]);
      assert.deepEqual(session.profile, { email: 'alice@example.com', displayName: 'Alice Liddell' });
      assert.equal(session.providerInfo, undefined, 'nothing of the assertion goes back to the browser');
      // The token works on a Backstage API that Gatehouse protects too (session cookie + Backstage token).
      const me = await c.get('/api/auth/v1/userinfo', {
        authorization: `Bearer ${session.backstageIdentity.token}`,
      });
      assert.equal(me.status, 200, me.text);
      assert.match(me.text, /user:default\/alice/);
    });

    test('the gatehouse/user-id annotation: the User entity named for the Gatehouse user id, whatever its name', async () => {
      const { session } = await backstageSession(main, users.bob.email);
      assert.equal(session.backstageIdentity.identity.userEntityRef, 'user:default/bob-builder');
      assert.deepEqual(session.profile, { email: 'bob@example.com', displayName: 'Bob' });
    });

    test('the local part of a verified address of an allowed domain: carol@corp.example is user:default/carol', async () => {
      const { session } = await backstageSession(main, users.carol.email);
      assert.equal(session.backstageIdentity.identity.userEntityRef, 'user:default/carol');
    });

    test('an unverified address never resolves to the User it names; once verified by its mailed link, it does', async () => {
      // Anyone can register dave@corp.example; only the mailbox's owner can verify it.
      const c = new Client(main.origin);
      await registerJson(c, 'dave@corp.example');
      const denied = await refresh(c);
      assert.equal(denied.status, 500, denied.text); // Backstage's answer when no resolver finds the user
      assert.match(refusal(denied.text).message, /unable to resolve user identity/);

      const mail = await mailTo(smtp, 'dave@corp.example', /^Confirm your email address/);
      const page = await openLinkPage(c, linkIn(mail, '/.auth/verify-email'));
      assert.equal((await submit(c, page, '/.auth/verify-email')).status, 303);
      const verified = await refresh(c);
      assert.equal(verified.status, 200, verified.text);
      assert.equal(verified.json<Session>().backstageIdentity.identity.userEntityRef, 'user:default/dave');
    });

    test("a verified address at another domain is not the allowed domain's user of that name", async () => {
      const c = new Client(main.origin);
      await signIn(c, users.carolElsewhere.email);
      const res = await refresh(c);
      assert.equal(res.status, 403, res.text);
      assert.equal(refusal(res.text).name, 'NotAllowedError');
    });

    test("a signed-in user's forged identity headers and assertion are replaced by Gatehouse's", async () => {
      const c = new Client(main.origin);
      await signIn(c, users.bob.email);
      const forged = await attackerAssertion({ sub: users.alice.id, email: users.alice.email });
      const res = await refresh(c, {
        'x-user-id': users.alice.id,
        'x-gatehouse-assertion': forged,
        'x-forwarded-email': users.alice.email,
        'x-forwarded-user': 'alice',
      });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json<Session>().backstageIdentity.identity.userEntityRef, 'user:default/bob-builder');
    });

    test('not signed in: Gatehouse answers 401 for the sign-in endpoint itself, with a link to its login', async () => {
      const res = await refresh(new Client(main.origin));
      assert.equal(res.status, 401);
      assert.match(String(res.headers['www-authenticate']), /^Bearer /);
      assert.deepEqual(res.json(), {
        error: 'unauthenticated',
        message: 'Sign in to use this resource.',
        login: `${main.origin}/.auth/login?rd=%2Fapi%2Fauth%2Fgatehouse%2Frefresh`,
      });
    });

    test("an expired assertion (Gatehouse's clock ten minutes behind) is refused", async () => {
      clock.advance(-TEN_MINUTES);
      try {
        const c = new Client(main.origin);
        await signIn(c, users.alice.email);
        const res = await refresh(c);
        assert.equal(res.status, 401, res.text);
        assert.match(refusal(res.text).message, /\(expired\)/);
      } finally {
        clock.advance(TEN_MINUTES);
      }
    });
  });

  describe("Backstage's stock oauth2Proxy provider behind the oauth2-proxy header preset", () => {
    /** A browser signed in to the oauth2-proxy Gatehouse, and what refresh answers it. */
    async function o2pRefresh(email: string | null, headers: Record<string, string> = {}) {
      const c = new Client(main.o2p!.url);
      if (email) await signIn(c, email);
      else await registerJson(c, 'dave@corp.example');
      return refresh(c, headers, 'oauth2Proxy');
    }

    test('X-Forwarded-User (the Gatehouse user id) names the User entity; the verified X-Forwarded-Email finds the one with that address', async () => {
      const erin = await o2pRefresh(o2pUsers.erin.email);
      assert.equal(erin.status, 200, `${erin.text}\n${main.bs.output().slice(-3000)}`);
      const session = erin.json<Session>();
      assert.equal(session.backstageIdentity.identity.userEntityRef, `user:default/${o2pUsers.erin.id}`);
      assert.deepEqual(session.profile, { email: 'erin@example.com', displayName: 'Erin' });
      // X-OAUTH2-PROXY-ID-TOKEN: the assertion as "Bearer <jwt>", which the provider hands on as
      // its access token; it verifies with Gatehouse's keys.
      const jwt = String(session.providerInfo?.accessToken);
      const jwks = createRemoteJWKSet(new URL(`${main.o2p!.url}/.well-known/jwks.json`));
      const { payload } = await jwtVerify(jwt, jwks, { issuer: main.o2p!.url, audience: 'backstage-o2p' });
      assert.equal(payload.sub, o2pUsers.erin.id);

      const alice = await o2pRefresh(o2pUsers.alice.email);
      assert.equal(alice.status, 200, alice.text);
      assert.equal(alice.json<Session>().backstageIdentity.identity.userEntityRef, 'user:default/alice');
    });

    test("an unverified address is never sent, and a client's X-Forwarded-* never arrive: the user resolves to nobody", async () => {
      const res = await o2pRefresh(null, {
        'x-forwarded-email': 'alice@example.com',
        'x-forwarded-user': 'alice',
        'X-Forwarded-Preferred-Username': 'alice',
        'x-oauth2-proxy-id-token': 'Bearer forged.jwt.value',
      });
      assert.notEqual(res.status, 200, res.text);
      refusal(res.text);
    });

    test('straight to Backstage, the stock provider believes whatever headers come: why the docs prefer the gatehouse provider', async () => {
      const res = await fetch(`${main.bs.url}/api/auth/oauth2Proxy/refresh`, {
        headers: { accept: 'application/json', 'x-forwarded-user': o2pUsers.erin.id },
      });
      assert.equal(res.status, 200, 'no signature checked: keep Backstage unreachable except through Gatehouse');
      const forged = (await res.json()) as Session;
      assert.equal(forged.backstageIdentity.identity.userEntityRef, `user:default/${o2pUsers.erin.id}`);
    });
  });

  /** A token shaped like an assertion, signed with a key of the attacker's own. */
  async function attackerAssertion(
    claims: Record<string, unknown>,
    header: Record<string, unknown> = {},
    audience = 'backstage',
  ): Promise<string> {
    const { privateKey } = await generateKeyPair('EdDSA');
    return new SignJWT({ email_verified: true, ...claims })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'gatehouse-assertion+jwt', kid: 'attacker', ...header })
      .setIssuer(main.gh.url)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(privateKey);
  }

  async function gatehouseKey(): Promise<JWK & { kid: string; x: string }> {
    const jwks = (await (await fetch(`${main.gh.url}/.well-known/jwks.json`)).json()) as {
      keys: (JWK & { kid: string; x: string })[];
    };
    return jwks.keys[0]!;
  }

  describe('requests straight to Backstage, not through Gatehouse', () => {
    const direct = (headers: Record<string, string>) =>
      fetch(`${main.bs.url}/api/auth/gatehouse/refresh`, { headers: { accept: 'application/json', ...headers } });

    /** Asserts a 401 AuthenticationError naming gatehouse/verify's reason. */
    async function refused(headers: Record<string, string>, code: string) {
      const res = await direct(headers);
      assert.equal(res.status, 401, `${code}: ${res.status}`);
      const error = refusal(await res.text());
      assert.equal(error.name, 'AuthenticationError');
      assert.match(error.message, new RegExp(`\\(${code}\\)`), error.message);
    }

    test('the identity headers of oauth2-proxy, Gatehouse and others, without an assertion → 401', async () => {
      await refused(
        {
          'x-user-id': users.alice.id,
          'x-user-email': users.alice.email,
          'x-forwarded-user': 'alice',
          'x-forwarded-email': users.alice.email,
          'x-forwarded-preferred-username': 'alice',
          'x-auth-request-email': users.alice.email,
          'x-oauth2-proxy-id-token': 'Bearer x.y.z',
          'remote-user': 'alice',
        },
        'missing',
      );
    });

    test("alg none, HS256 keyed with the public key, a foreign key under Gatehouse's kid or its own, an embedded jwk → 401", async () => {
      const key = await gatehouseKey();
      const claims = { sub: users.alice.id, email: users.alice.email, email_verified: true };
      const none = new UnsecuredJWT(claims)
        .setIssuer(main.gh.url)
        .setAudience('backstage')
        .setIssuedAt()
        .setExpirationTime('1m')
        .encode();
      await refused({ 'x-gatehouse-assertion': none }, 'alg_not_allowed');
      const hs256 = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', typ: 'gatehouse-assertion+jwt', kid: key.kid })
        .setIssuer(main.gh.url)
        .setAudience('backstage')
        .setIssuedAt()
        .setExpirationTime('1m')
        .sign(base64url.decode(key.x));
      await refused({ 'x-gatehouse-assertion': hs256 }, 'alg_not_allowed');
      await refused(
        { 'x-gatehouse-assertion': await attackerAssertion(claims, { kid: key.kid }) },
        'invalid_signature',
      );
      await refused({ 'x-gatehouse-assertion': await attackerAssertion(claims) }, 'unknown_key');
      const attacker = await generateKeyPair('EdDSA', { extractable: true });
      const embedded = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'EdDSA', typ: 'gatehouse-assertion+jwt', jwk: await exportJWK(attacker.publicKey) })
        .setIssuer(main.gh.url)
        .setAudience('backstage')
        .setIssuedAt()
        .setExpirationTime('1m')
        .sign(attacker.privateKey);
      await refused({ 'x-gatehouse-assertion': embedded }, 'invalid_signature');
    });

    test("Gatehouse's real assertion for another app (wiki) → 401", async () => {
      const c = new Client(main.origin);
      await signIn(c, users.alice.email);
      const seen = await c.get('/wiki/page', { 'x-probe': 'wiki' });
      assert.equal(seen.status, 200);
      const assertion = seen.json().headers['x-gatehouse-assertion'] as string;
      assert.ok(assertion);
      await refused({ 'x-gatehouse-assertion': assertion }, 'wrong_audience');
    });

    test('a garbled assertion, or two of them → 401', async () => {
      await refused({ 'x-gatehouse-assertion': 'not.a.jwt' }, 'malformed');
      const res = await fetch(`${main.bs.url}/api/auth/gatehouse/refresh`, {
        headers: [
          ['x-gatehouse-assertion', await attackerAssertion({ sub: users.alice.id })],
          ['x-gatehouse-assertion', await attackerAssertion({ sub: users.bob.id })],
        ],
      });
      assert.equal(res.status, 401);
    });
  });

  test("a CLI device login (gatehouse login) reaches a Backstage API with both tokens: Gatehouse's in its header, Backstage's in Authorization", async () => {
    const identity = await cliReachesCatalog(main, users.alice.email);
    assert.ok(identity.identity.ownershipEntityRefs.includes('group:default/team-a'));
  });

  describeOrSkip('behind nginx', { skip: nginxSkipped }, () => {
    test('sign-in over https through nginx: the User entity of the verified address', async () => {
      const { session } = await backstageSession(front!, 'alice@example.com');
      assert.equal(session.backstageIdentity.identity.userEntityRef, 'user:default/alice');
    });

    test('a CLI device login through nginx reaches the catalog with both tokens', async () => {
      await cliReachesCatalog(front!, 'alice@example.com');
    });
  });
});
