import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ConfigReader } from '@backstage/config';
import type { AuthResolverCatalogUserQuery, AuthResolverContext, SignInResolver } from '@backstage/plugin-auth-node';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import {
  authModuleGatehouseProvider,
  gatehouseAuthenticator,
  gatehouseProfile,
  gatehouseSignInResolvers,
  readVerifyOptions,
  USER_ID_ANNOTATION,
  type GatehouseResult,
} from '../../packages/backstage-auth-provider/src/index.ts';
import { createVerifier, type GatehouseUser } from '../../src/verify/index.ts';
import { Client, registerJson } from '../helpers/client.ts';
import { freePort, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.ts';
import { BACKSTAGE_PACKAGES } from './backstage.ts';

/**
 * @gatehouse/backstage-auth-provider without a Backstage backend: the claims-to-profile mapping
 * and the sign-in resolvers on users of real assertions (signed and verified by
 * gatehouse/verify), the authenticator against a real Gatehouse, the config it reads, and the
 * package as it would be published. backstage.test.ts runs it inside a real Backstage.
 */

const exec = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
const packageDir = join(root, 'packages/backstage-auth-provider');

// ---- users of real assertions ----------------------------------------------------------------

const keys = await generateKeyPair('EdDSA', { extractable: true });
const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'EdDSA' }] });
const verify = createVerifier({ issuer: 'https://gate.example', audience: 'backstage', keys: jwks });

/** The user gatehouse/verify makes of an assertion with these claims (besides iss, aud, sub, iat, exp). */
async function userWith(claims: Record<string, unknown>, sub = 'u-1'): Promise<GatehouseUser> {
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1', typ: 'gatehouse-assertion+jwt' })
    .setIssuer('https://gate.example')
    .setAudience('backstage')
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('1m')
    .sign(keys.privateKey);
  return verify(token);
}

describe('claims → Backstage profile', () => {
  test('a verified address and the name', async () => {
    const user = await userWith({ email: 'ann@example.com', email_verified: true, name: 'Ann Example' });
    assert.deepEqual(gatehouseProfile(user), { email: 'ann@example.com', displayName: 'Ann Example' });
  });

  test('an unverified address is left out: email_verified false, or missing (an older Gatehouse, a hand-made token)', async () => {
    for (const claims of [
      { email: 'ann@example.com', email_verified: false, name: 'Ann' },
      { email: 'ann@example.com', name: 'Ann' },
      { email: 'ann@example.com', email_verified: 'true', name: 'Ann' },
    ])
      assert.deepEqual(gatehouseProfile(await userWith(claims)), { displayName: 'Ann' }, JSON.stringify(claims));
  });

  test('no email, no name claims (the app did not opt in): an empty profile', async () => {
    assert.deepEqual(gatehouseProfile(await userWith({ groups: ['admins'] })), {});
    assert.deepEqual(gatehouseProfile(await userWith({ name: '' })), {});
  });
});

// ---- sign-in resolvers -----------------------------------------------------------------------

/** Backstage's resolver context, recording the catalog queries; `found` answers them. */
function catalog(found: (q: AuthResolverCatalogUserQuery) => boolean = () => true) {
  const queries: AuthResolverCatalogUserQuery[] = [];
  const notFound = Object.assign(new Error('User not found'), { name: 'NotFoundError' });
  const ctx = {
    async signInWithCatalogUser(query: AuthResolverCatalogUserQuery) {
      queries.push(query);
      if (!found(query)) throw notFound;
      return { token: 'backstage-token' };
    },
  } as unknown as AuthResolverContext;
  return { ctx, queries };
}

async function resolve(resolver: SignInResolver<GatehouseResult>, user: GatehouseUser, ctx: AuthResolverContext) {
  return resolver({ profile: gatehouseProfile(user), result: { user } }, ctx);
}

describe('sign-in resolvers', () => {
  const verified = () => userWith({ email: 'Carol@Corp.Example', email_verified: true });
  const unverified = () => userWith({ email: 'carol@corp.example', email_verified: false });

  test('userIdMatchingUserEntityAnnotation: the gatehouse/user-id annotation, whatever the address', async () => {
    const { ctx, queries } = catalog();
    const user = await userWith({ email: 'x@y.example', email_verified: false }, '5f0c0e2a-user');
    assert.deepEqual(await resolve(gatehouseSignInResolvers.userIdMatchingUserEntityAnnotation(), user, ctx), {
      token: 'backstage-token',
    });
    assert.deepEqual(queries, [{ annotations: { [USER_ID_ANNOTATION]: '5f0c0e2a-user' } }]);
    assert.throws(
      () => gatehouseSignInResolvers.userIdMatchingUserEntityAnnotation({ x: 1 } as never),
      /does not accept options/,
    );
  });

  test('emailMatchingUserEntityProfileEmail: spec.profile.email = the verified address; an unverified one is never looked up', async () => {
    const resolver = gatehouseSignInResolvers.emailMatchingUserEntityProfileEmail();
    const { ctx, queries } = catalog();
    await resolve(resolver, await verified(), ctx);
    assert.deepEqual(queries, [{ filter: { 'spec.profile.email': 'Carol@Corp.Example' } }]);
    for (const user of [await unverified(), await userWith({ email: 'carol@corp.example' }), await userWith({})])
      await assert.rejects(resolve(resolver, user, ctx), (e: Error) => {
        // NotFoundError: Backstage goes on to the next configured resolver.
        assert.equal(e.name, 'NotFoundError');
        return true;
      });
    assert.equal(queries.length, 1, 'the catalog was not asked about an unverified address');
  });

  test('emailLocalPartMatchingUserEntityName: the local part, for verified addresses of allowedDomains only', async () => {
    const resolver = gatehouseSignInResolvers.emailLocalPartMatchingUserEntityName({
      allowedDomains: ['corp.example'],
    });
    const { ctx, queries } = catalog();
    await resolve(resolver, await verified(), ctx);
    assert.deepEqual(queries, [{ entityRef: { name: 'Carol' } }]);
    await assert.rejects(
      resolve(resolver, await userWith({ email: 'carol@attacker.example', email_verified: true }), ctx),
      (e: Error) => e.name === 'NotAllowedError',
    );
    await assert.rejects(
      resolve(resolver, await userWith({ email: 'carol@corp.example.attacker.example', email_verified: true }), ctx),
      (e: Error) => e.name === 'NotAllowedError',
    );
    await assert.rejects(resolve(resolver, await unverified(), ctx), (e: Error) => e.name === 'NotFoundError');
    assert.equal(queries.length, 1);
  });

  test('emailLocalPartMatchingUserEntityName refuses to be configured without allowedDomains', () => {
    const factory = gatehouseSignInResolvers.emailLocalPartMatchingUserEntityName as (o?: unknown) => unknown;
    for (const options of [undefined, {}, { allowedDomains: [] }, { allowedDomains: [''] }])
      assert.throws(
        () => factory(options),
        (e: Error) => e.name === 'InputError',
        JSON.stringify(options),
      );
  });
});

// ---- the authenticator -----------------------------------------------------------------------

describe('the authenticator, against a real Gatehouse', () => {
  let gh: TestGatehouse;
  let assertion: string;
  let userId: string;

  before(async () => {
    gh = await startGatehouse(() => ({ name: 'backstage', headers: { email: true, name: true } }));
    const c = new Client(gh.url);
    userId = (await registerJson(c, 'dora@example.com')).id;
    await c.get('/catalog');
    assertion = String(gh.upstream.last().headers['x-gatehouse-assertion']);
  });
  after(() => gh.close());

  const config = (data: Record<string, unknown>) =>
    new ConfigReader(data as ConstructorParameters<typeof ConfigReader>[0], 'app-config.yaml');
  const request = (headers: Record<string, string>) => ({ req: { headers } }) as never;

  test('a real assertion: the user, and the profile of an address not yet verified (none)', async () => {
    const ctx = gatehouseAuthenticator.initialize({ config: config({ issuer: gh.url, audience: 'backstage' }) });
    const { result, providerInfo } = await gatehouseAuthenticator.authenticate(
      request({ 'x-gatehouse-assertion': assertion }),
      ctx,
    );
    assert.equal(result.user.id, userId);
    // Whether Gatehouse sends an unverified address at all (with email_verified: false) or not, it is not one.
    assert.notEqual(result.user.emailVerified, true);
    assert.equal(providerInfo, undefined);
    assert.deepEqual(await gatehouseAuthenticator.defaultProfileTransform(result, {} as never), { profile: {} });
  });

  test('no assertion, another audience, a renamed header: 401 (AuthenticationError) naming the reason', async () => {
    const cases: [Record<string, unknown>, Record<string, string>, string][] = [
      [{ issuer: gh.url, audience: 'backstage' }, { 'x-user-id': userId }, 'missing'],
      [{ issuer: gh.url, audience: 'wiki' }, { 'x-gatehouse-assertion': assertion }, 'wrong_audience'],
      [
        { issuer: `${gh.url}/`, audience: 'backstage', header: 'X-Identity' },
        { 'x-gatehouse-assertion': assertion },
        'missing',
      ],
    ];
    for (const [data, headers, code] of cases) {
      const ctx = gatehouseAuthenticator.initialize({ config: config(data) });
      await assert.rejects(gatehouseAuthenticator.authenticate(request(headers), ctx), (e: Error) => {
        assert.equal(e.name, 'AuthenticationError');
        assert.match(e.message, new RegExp(`\\(${code}\\)`));
        return true;
      });
    }
    const renamed = gatehouseAuthenticator.initialize({
      config: config({ issuer: gh.url, audience: 'backstage', header: 'X-Identity' }),
    });
    assert.equal(
      (await gatehouseAuthenticator.authenticate(request({ 'x-identity': assertion }), renamed)).result.user.id,
      userId,
    );
  });

  test("Gatehouse's keys unreachable: 503 (ServiceUnavailableError), not a sign-in", async () => {
    const ctx = gatehouseAuthenticator.initialize({
      config: config({
        issuer: gh.url,
        audience: 'backstage',
        jwksUrl: `http://127.0.0.1:${await freePort()}/.well-known/jwks.json`,
      }),
    });
    await assert.rejects(
      gatehouseAuthenticator.authenticate(request({ 'x-gatehouse-assertion': assertion }), ctx),
      (e: Error) => e.name === 'ServiceUnavailableError',
    );
  });

  test('bad configuration stops the backend at start, naming the key', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ audience: 'backstage' }, /issuer/],
      [{ issuer: 'gate.example', audience: 'backstage' }, /issuer must be an absolute URL/],
      [{ issuer: 'ftp://gate.example', audience: 'backstage' }, /issuer must be an http or https URL/],
      [{ issuer: 'https://gate.example' }, /audience/],
      [{ issuer: 'https://gate.example', audience: ' ' }, /audience must be the app name/],
      [{ issuer: 'https://gate.example', audience: 'b', jwksUrl: 'keys' }, /jwksUrl must be an absolute URL/],
      [{ issuer: 'https://gate.example', audience: 'b', header: 'x id' }, /header is not a header name/],
      [{ issuer: 'https://gate.example', audience: 'b', algorithms: ['HS256'] }, /algorithms must be/],
      [{ issuer: 'https://gate.example', audience: 'b', algorithms: [] }, /algorithms must be/],
    ];
    for (const [data, message] of bad) assert.throws(() => readVerifyOptions(config(data)), message);
    assert.deepEqual(
      readVerifyOptions(
        config({
          issuer: 'https://gate.example',
          audience: 'backstage',
          jwksUrl: 'http://gatehouse.internal:8080/.well-known/jwks.json',
          header: 'X-Identity',
          algorithms: ['EdDSA'],
        }),
      ),
      {
        issuer: 'https://gate.example',
        audience: 'backstage',
        jwksUrl: 'http://gatehouse.internal:8080/.well-known/jwks.json',
        header: 'X-Identity',
        algorithms: ['EdDSA'],
      },
    );
  });
});

// ---- the package -----------------------------------------------------------------------------

describe('the package as published', () => {
  const pkg = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

  test('a backend feature by default; peers on the Backstage packages it plugs into, the tested versions pinned for development', () => {
    assert.equal((authModuleGatehouseProvider as unknown as { $$type: string }).$$type, '@backstage/BackendFeature');
    assert.deepEqual(Object.keys(pkg.peerDependencies).sort(), [
      '@backstage/backend-plugin-api',
      '@backstage/plugin-auth-node',
    ]);
    for (const [name, version] of Object.entries(pkg.devDependencies as Record<string, string>))
      if (name in BACKSTAGE_PACKAGES)
        assert.equal(version, BACKSTAGE_PACKAGES[name], `${name}: the version backstage.test.ts runs`);
    assert.deepEqual(rootPkg.workspaces, ['packages/*']);
    // In the workspace, `gatehouse` is this checkout (never the unrelated npm package of that name).
    const dev = JSON.parse(readFileSync(join(packageDir, 'dev/gatehouse/package.json'), 'utf8'));
    assert.equal(pkg.devDependencies.gatehouse, 'file:./dev/gatehouse');
    assert.equal(dev.version, rootPkg.version);
    assert.equal(pkg.dependencies.gatehouse, `^${rootPkg.version}`);
    assert.equal(readFileSync(join(root, 'node_modules/gatehouse/verify.ts'), 'utf8').trim().length > 0, true);
  });

  test('tsc builds it to dist/ against the built gatehouse/verify; it loads, and npm packs only dist, the config schema and the README', async () => {
    mkdirSync(join(root, 'node_modules/.cache'), { recursive: true });
    const out = mkdtempSync(join(root, 'node_modules/.cache/gatehouse-backstage-dist-'));
    try {
      const tsc = join(root, 'node_modules/.bin/tsc');
      await exec(tsc, ['-p', 'tsconfig.build.json', '--outDir', join(out, 'gatehouse')], { cwd: root });
      // The module's own build, with gatehouse/verify's types from that build (as from the published package).
      writeFileSync(
        join(out, 'tsconfig.json'),
        JSON.stringify({
          extends: join(packageDir, 'tsconfig.build.json'),
          compilerOptions: {
            outDir: join(out, 'module'),
            paths: { 'gatehouse/verify': [join(out, 'gatehouse/verify/index.d.ts')] },
          },
        }),
      );
      await exec(tsc, ['-p', join(out, 'tsconfig.json')], { cwd: packageDir });
      assert.deepEqual(readdirSync(join(out, 'module')).sort(), [
        'authenticator.d.ts',
        'authenticator.js',
        'index.d.ts',
        'index.js',
        'profile.d.ts',
        'profile.js',
        'resolvers.d.ts',
        'resolvers.js',
      ]);
      const imports = new Set<string>();
      for (const file of readdirSync(join(out, 'module')).filter((f) => f.endsWith('.js')))
        for (const m of readFileSync(join(out, 'module', file), 'utf8').matchAll(
          /^(?:import|export) [^;]* from '([^']+)';$/gm,
        ))
          imports.add(m[1]!);
      assert.deepEqual([...imports].filter((i) => !i.startsWith('./')).sort(), [
        '@backstage/backend-plugin-api',
        '@backstage/errors',
        '@backstage/plugin-auth-node',
        'gatehouse/verify',
        'zod/v3',
      ]);
      const built = (await import(join(out, 'module/index.js'))) as Record<string, unknown>;
      assert.equal((built.default as { $$type: string }).$$type, '@backstage/BackendFeature');
      assert.deepEqual(Object.keys(built.gatehouseSignInResolvers as object), Object.keys(gatehouseSignInResolvers));

      const { stdout } = await exec('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: packageDir });
      const files = (JSON.parse(stdout) as [{ files: { path: string }[] }])[0].files.map((f) => f.path);
      for (const f of files) assert.match(f, /^(package\.json|README\.md|config\.d\.ts|dist\/.+)$/, f);
      assert.ok(files.includes('README.md') && files.includes('config.d.ts'));
      assert.deepEqual(pkg.exports['.'], { types: './dist/index.d.ts', default: './dist/index.js' });
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
