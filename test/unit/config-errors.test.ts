import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import { configJsonSchema } from '../../src/config/json-schema.ts';
import { lintConfig } from '../../src/cli/lint.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { BASE_CONFIG as base, problems } from '../helpers/config.ts';

/**
 * Every kind of problem zod can report for gatehouse.yaml is worded by the loader as
 * `key (line N): what was expected, what was found`, never as zod's own words ("Invalid
 * input") or as "is required" for a value that is there, and never as an exception that
 * escapes validation (`publicUrl: 127.0.0.1:8090` used to print "Invalid URL", no key).
 */

const one = (text: string, env: Record<string, string> = {}) => {
  const ps = problems(text, env);
  assert.equal(ps.length, 1, ps.map((p) => `${p.line} ${p.key}: ${p.message}`).join('\n'));
  return ps[0]!;
};

describe('each kind of config problem says what was expected and what was found, with key and line', () => {
  // [kind, yaml after the base (lines 1-2), key, line, message]
  const table: [string, string, string, number, RegExp][] = [
    [
      'wrong type: text for a number',
      'listen:\n  port: eighty\n',
      'listen.port',
      4,
      /^expected a number, found "eighty"$/,
    ],
    [
      'wrong type: text for a map',
      'headers: yes\n',
      'headers',
      3,
      /^expected a map of preset, id, email, unverifiedEmail, name.*, found "yes"$/,
    ],
    [
      'wrong type: text for a list',
      'trustedProxies: 10.0.0.0/8\n',
      'trustedProxies',
      3,
      /^expected a list, such as \[10\.0\.0\.0\/8\], found "10\.0\.0\.0\/8"$/,
    ],
    [
      'wrong type: text for true/false',
      'preserveHost: maybe\n',
      'preserveHost',
      3,
      /^expected true or false, found "maybe"$/,
    ],
    ['wrong type: a list for text', 'title: [a, b]\n', 'title', 3, /^expected text, found a list$/],
    [
      'wrong type: a fraction for a whole number',
      'listen:\n  port: 80.5\n',
      'listen.port',
      4,
      /whole number, found 80\.5$/,
    ],
    ['an empty value', 'listen:\n  port:\n', 'listen.port', 4, /^expected a number, found an empty value$/],
    ['a missing key', 'listen:\n  tls:\n    cert: c.pem\n', 'listen.tls.key', 4, /^is required$/],
    [
      'not one of the allowed values',
      'defaultAccess: public\n',
      'defaultAccess',
      3,
      /^expected one of authenticated, deny, found "public"$/,
    ],
    [
      'a number too large',
      'listen:\n  port: 99999\n',
      'listen.port',
      4,
      /^expected a number at most 65535, found 99999$/,
    ],
    [
      'a number too small',
      'accounts:\n  minPasswordLength: 4\n',
      'accounts.minPasswordLength',
      4,
      /^expected a number at least 8, found 4$/,
    ],
    ['text too short', 'title: ""\n', 'title', 3, /^expected non-empty text, found ""$/],
    [
      'text too long',
      `title: ${'x'.repeat(81)}\n`,
      'title',
      3,
      /^expected at most 80 characters, found "x+\.\.\." \(81 characters\)$/,
    ],
    [
      'a list too short',
      'tokens:\n  clients:\n    - {id: a, name: A, grantTypes: []}\n',
      'tokens.clients[0].grantTypes',
      5,
      /^expected at least one entry, found an empty list$/,
    ],
    [
      'sign-in links without email',
      'accounts:\n  signInLinks: true\n',
      'accounts.signInLinks',
      4,
      /^signInLinks needs email: the links are mailed \(set email, or signInLinks: false\)$/,
    ],
    [
      'a service client without a secret',
      'tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [client_credentials], apps: [app]}\n',
      'tokens.clients[0].secret',
      5,
      /^the client_credentials grant needs a secret or federated: a public client cannot prove it is the service$/,
    ],
    [
      'a service client without apps',
      `tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [client_credentials], secret: ${'x'.repeat(32)}}\n`,
      'tokens.clients[0].apps',
      5,
      /^the client_credentials grant needs apps: the names of the apps this client may call$/,
    ],
    [
      'a service client naming no app',
      `tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [client_credentials], secret: ${'x'.repeat(32)}, apps: [crm]}\n`,
      'tokens.clients[0].apps[0]',
      5,
      /^"crm" is not the name of an app \(app\)$/,
    ],
    [
      'a federated client with another grant type too',
      'tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [client_credentials, device_code], apps: [app], federated: {issuer: https://ci.example.com, subject: x}}\n',
      'tokens.clients[0].federated',
      5,
      /^federated is for a client whose only grant type is client_credentials$/,
    ],
    [
      'a federated issuer over plain http',
      'tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [client_credentials], apps: [app], federated: {issuer: http://ci.example.com, subject: x}}\n',
      'tokens.clients[0].federated.issuer',
      5,
      /^federated\.issuer must use https; plain http is allowed only on loopback/,
    ],
    [
      'groups without the client_credentials grant',
      'tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [device_code], groups: [ci]}\n',
      'tokens.clients[0].groups',
      5,
      /^apps and groups are for a client with the client_credentials grant \(add it to grantTypes\)$/,
    ],
    ['text of the wrong form', 'authPrefix: auth\n', 'authPrefix', 3, /^a path such as \/\.auth .*; found "auth"$/],
    [
      'a map key of the wrong form',
      'providers:\n  - {id: kc, type: oidc, issuer: "https://kc.example.com", clientId: c, authorizationParams: {"a b": x}}\n',
      'providers[0].authorizationParams.a b',
      4,
      /^expected a parameter name .*, found "a b"$/,
    ],
    ['an unknown key', 'listen:\n  prot: 80\n', 'listen.prot', 4, /^unknown key "prot"; did you mean "port"\?$/],
    [
      'an unknown type',
      'store:\n  type: mysql\n',
      'store.type',
      4,
      /^expected one of sqlite, postgres, found "mysql"$/,
    ],
    ['a missing type', 'store:\n  path: x.db\n', 'store.type', 3, /^is required \(one of sqlite, postgres\)$/],
    [
      'no member of a union',
      'headers:\n  email: [x]\n',
      'headers.email',
      4,
      /^expected true, false or a header name such as X-Auth-Email, found a list$/,
    ],
    [
      'a refinement of the value',
      'headers:\n  email: Cookie\n',
      'headers.email',
      4,
      /part of the request itself.*; found "Cookie"$/,
    ],
    [
      'a check across keys',
      'sessions:\n  idleTimeout: 8d\n',
      'sessions.idleTimeout',
      4,
      /^idleTimeout is longer than absoluteTimeout$/,
    ],
    [
      'a transform that refuses the value',
      'sessions:\n  idleTimeout: soon\n',
      'sessions.idleTimeout',
      4,
      /^expected a duration such as "30s".*, found "soon"$/,
    ],
    [
      'a CIDR that is not one',
      'trustedProxies: [10.0.0.0/33]\n',
      'trustedProxies[0]',
      3,
      /CIDR range.*, found "10\.0\.0\.0\/33"$/,
    ],
  ];
  for (const [kind, yaml, key, line, message] of table) {
    test(kind, () => {
      const p = one(base + yaml);
      assert.deepEqual([p.key, p.line], [key, line], p.message);
      assert.match(p.message, message);
    });
  }

  test('a URL without a scheme (new URL throws inside the schema): publicUrl and upstream named, with line', () => {
    const ps = problems('publicUrl: 127.0.0.1:8090\nupstream: 127.0.0.1:3000\n');
    assert.deepEqual(
      ps.map((p) => `${p.line} ${p.key}: ${p.message}`),
      [
        '1 publicUrl: expected an absolute URL with http:// or https://, such as https://app.example.com, found "127.0.0.1:8090"',
        '2 upstream: expected an absolute URL with http:// or https://, such as http://127.0.0.1:3000, found "127.0.0.1:3000"',
      ],
    );
  });

  test('secrets are never repeated: keys, client secrets, SMTP passwords, credentials in URLs', () => {
    const secret = one(
      `${base}tokens:\n  clients:\n    - {id: a, name: A, grantTypes: [device_code], secret: hunter2hunter2}\n`,
    );
    assert.match(secret.message, /at least 32 characters.*; found 14 characters$/);
    const list = one(`${base}secrets:\n  previousKeys: hunter2hunter2\n`);
    assert.equal(list.message, 'expected a list, found 14 characters');
    const url = one(`${base}store:\n  type: postgres\n  url: mysql://gatehouse:hunter2@db.example.com/g\n`);
    assert.equal(url.message, 'a postgres:// URL; found "mysql://***@db.example.com/g"');
  });
});

describe('a value takes the type the schema expects where its text reads as that type', () => {
  test('"8090" for a port, "true" for a switch, 401 for unauthenticated, 2024 for a title', () => {
    const c = parseConfig(
      `${base}listen:\n  port: "8090"\npreserveHost: "true"\ntitle: 2024\nroutes:\n  - path: /api/**\n    unauthenticated: 401\n`,
      'g.yaml',
      {},
    );
    assert.equal(c.listen.port, 8090);
    assert.equal(c.preserveHost, true);
    assert.equal(c.title, '2024');
    assert.equal(c.routes[0]!.unauthenticated, '401');
  });

  test('yes, no, on and off where true or false is expected (YAML 1.1, as Go reads it), but never as a header name', () => {
    const c = parseConfig(`${base}preserveHost: yes\ncaseSensitivePaths: Off\n`, 'g.yaml', {});
    assert.deepEqual([c.preserveHost, c.caseSensitivePaths], [true, false]);
    assert.match(
      one(`${base}headers:\n  email: yes\n`).message,
      /^expected true or false \(not yes, no, on or off here\), or a header name .*, found "yes"$/,
      'not a header named "yes"',
    );
  });

  test('a number where text is expected is the text as written (leading zeros, exponents)', () => {
    const c = parseConfig(
      `${base}providers:\n  - {id: kc, type: oidc, issuer: "https://kc.example.com", clientId: 00123, clientSecret: 1e3}\n`,
      'g.yaml',
      {},
    );
    assert.equal(c.providers[0]!.clientId, '00123');
    assert.equal(c.providers[0]!.clientSecret, '1e3');
  });

  test('one whole ${NAME}, quoted or not, takes the type the schema expects', () => {
    const env = { PORT: '9000', TITLE: '123', SEND: 'true', SECRET: '000123', RELAY: 'false', CODE: '401' };
    const c = parseConfig(
      `${base}listen:\n  port: "\${PORT}"\ntitle: \${TITLE}\nheaders:\n  email: "\${SEND}"\nroutes:\n  - path: /a\n    tokenRelay: \${RELAY}\n    unauthenticated: "\${CODE}"\nproviders:\n  - id: kc\n    type: oidc\n    issuer: https://kc.example.com\n    clientId: c\n    clientSecret: \${SECRET}\n`,
      'g.yaml',
      env,
    );
    assert.equal(c.listen.port, 9000);
    assert.equal(c.title, '123', 'digits where text is expected stay text');
    assert.equal(c.headers.email, true, 'true where true, false or a header name is expected is true');
    assert.equal(c.routes[0]!.tokenRelay, false);
    assert.equal(c.routes[0]!.unauthenticated, '401');
    assert.equal(c.providers[0]!.clientSecret, '000123', 'the text as the variable holds it');
  });

  test('text that does not read as the type is still refused, saying so', () => {
    assert.equal(one(`${base}listen:\n  port: "80 80"\n`).message, 'expected a number, found "80 80"');
    assert.equal(one(`${base}preserveHost: "sure"\n`).message, 'expected true or false, found "sure"');
    assert.equal(
      one(`${base}routes:\n  - path: /a\n    unauthenticated: 403\n`).message,
      'expected one of 401, redirect, found 403',
    );
  });
});

/**
 * Every key of the schema, each given values of every wrong shape: the loader never throws
 * anything but a ConfigError, every problem has a key and a line, and its message is the
 * loader's own wording. The seeds together hold every key of the JSON Schema (checked), so a
 * key added later is covered too.
 */
describe('every key, every wrong value: a worded problem with key and line, never an exception', () => {
  const common = {
    providers: [
      {
        type: 'oidc',
        id: 'kc',
        name: 'KC',
        icon: '/icon.png',
        clientId: 'c',
        clientSecret: 's',
        scopes: ['openid', 'offline_access'],
        authorizationParams: { prompt: 'consent' },
        groupsClaim: 'groups',
        syncGroups: true,
        linkByEmail: false,
        trustEmail: false,
        registration: 'open',
        timeout: '10s',
        issuer: 'https://kc.example.com',
        endSession: false,
        backchannelLogout: true,
        revalidate: '1h',
        revalidateGrace: '4h',
        idTokenSigningAlg: 'RS256',
        tokenEndpointAuthMethod: 'client_secret_basic',
        mfa: 'trust',
        bearerTokens: { audience: ['api://app'] },
      },
      {
        type: 'github',
        id: 'gh',
        clientId: 'c',
        clientSecret: 's',
        url: 'https://github.com',
        apiUrl: 'https://api.github.com',
        organizations: ['acme'],
      },
    ],
    routes: [
      {
        path: '/a/**',
        methods: ['GET'],
        from: ['10.0.0.0/8'],
        access: 'authenticated',
        allow: { emails: ['a@example.com'], domains: ['example.com'], groups: ['g'], mfa: true, providers: ['kc'] },
        unauthenticated: 'redirect',
        tokenRelay: 'kc',
        rateLimit: { requests: 100, per: '1m', headers: false },
        timeouts: { response: '5m', idle: '10m' },
      },
    ],
    headers: {
      preset: 'gatehouse',
      id: 'X-Uid',
      email: true,
      unverifiedEmail: false,
      name: 'X-Name',
      groups: false,
      assertion: true,
      assertionBearer: 'X-Id-Token',
      accessToken: 'Authorization',
    },
    timeouts: { connect: '5s', response: '60s', idle: '5m' },
  };
  const cors = {
    origins: ['https://spa.example.com'],
    credentials: true,
    methods: ['GET'],
    headers: ['Authorization'],
    exposeHeaders: ['Mcp-Session-Id'],
    maxAge: '1h',
  };
  const seeds: Record<string, unknown>[] = [
    {
      $schema: './gatehouse.schema.json',
      publicUrl: 'https://app.example.com',
      listen: {
        host: '127.0.0.1',
        port: 8080,
        tls: { cert: 'c.pem', key: 'k.pem' },
        timeouts: { headers: '15s', request: '10m', idle: '2m', keepAlive: '5s', drain: '15s', drainDelay: '5s' },
        workers: 2,
      },
      trustedProxies: ['10.0.0.0/8'],
      forwardedHeaders: 'x-forwarded',
      authPrefix: '/.auth',
      store: { type: 'sqlite', path: './data/g.db' },
      cache: { type: 'memory' },
      secrets: { key: 'k'.repeat(44), previousKeys: ['p'.repeat(44)] },
      upstream: 'https://127.0.0.1:3000',
      upstreamTls: { ca: 'ca.pem', cert: 'client.pem', key: 'client.key', serverName: 'app.internal' },
      healthCheck: {
        path: '/healthz',
        interval: '10s',
        timeout: '2s',
        unhealthyAfter: 2,
        healthyAfter: 2,
        status: [200],
        body: 'ok',
      },
      maxRequestBody: '10MB',
      affinity: 'user',
      responseHeaders: [{ name: 'X-Frame-Options', value: 'SAMEORIGIN' }],
      requestHeaders: [{ name: 'X-Api-Key', value: 'key' }],
      maintenance: {
        message: 'Back soon.',
        retryAfter: '10m',
        allow: { groups: ['ops'], emails: ['a@b.c'], domains: ['b.c'] },
      },
      name: 'app',
      title: 'App',
      branding: { logo: 'logo.svg', color: '#0b6e4f', links: [{ text: 'Privacy', url: '/privacy' }] },
      defaultAccess: 'authenticated',
      caseSensitivePaths: false,
      preserveHost: false,
      tokenRelay: 'kc',
      ...common,
      email: {
        from: 'a@example.com',
        replyTo: 'b@example.com',
        smtp: {
          host: 'smtp.example.com',
          port: 587,
          secure: false,
          requireTLS: true,
          auth: { user: 'u', pass: 'p' },
          tls: { ca: 'ca.pem', servername: 'smtp.example.com' },
          name: 'gh.example.com',
          timeouts: { connect: '10s', greeting: '10s', socket: '30s' },
        },
        delivery: { attempts: 3, retryDelay: '5s', queueSize: 1000 },
        verifyLinkTtl: '24h',
        resetLinkTtl: '30m',
        signInLinkTtl: '15m',
      },
      accounts: {
        registration: 'open',
        allowedDomains: ['example.com'],
        minPasswordLength: 8,
        requireVerifiedEmail: false,
        signInLinks: true,
        newSignInNotice: true,
        selfDeletion: true,
        reauthenticateAfter: '10m',
        invitationTtl: '7d',
        rateLimits: {
          loginPerIp: 30,
          loginPerAccount: 10,
          registerPerIp: 20,
          providerStartsPerIp: 120,
          passwordResetPerIp: 20,
          passwordResetPerAccount: 5,
          signInLinkPerIp: 20,
          signInLinkPerAccount: 5,
          emailsPerAddress: 10,
        },
        mfa: 'optional',
        passkeys: { rpId: 'example.com' },
      },
      tokens: {
        algorithm: 'EdDSA',
        assertionTtl: '60s',
        maxLifetime: '1h',
        clockSkew: '30s',
        keys: { publishBefore: '10m', refreshInterval: '1m' },
        accessTokenTtl: '10m',
        refreshTokenTtl: '90d',
        refreshIdleTtl: '30d',
        reuseGrace: '5s',
        scopes: ['read'],
        device: { codeTtl: '10m', interval: '5s' },
        clients: [
          {
            id: 'web',
            name: 'Web',
            redirectUris: ['https://web.example.com/cb'],
            grantTypes: ['authorization_code', 'refresh_token'],
            secret: 's'.repeat(32),
            scopes: ['read'],
          },
          {
            id: 'deployer',
            name: 'Deployer',
            grantTypes: ['client_credentials'],
            secret: 't'.repeat(32),
            apps: ['app'],
            groups: ['ci'],
          },
          {
            id: 'from-ci',
            name: 'From CI',
            grantTypes: ['client_credentials'],
            apps: ['app'],
            federated: {
              issuer: 'https://token.actions.githubusercontent.com',
              subject: 'repo:acme/app:ref:refs/heads/main',
              audience: 'https://app.example.com',
            },
          },
        ],
        dynamicRegistration: true,
        clientIdMetadataDocuments: true,
        rateLimits: {
          userCodePerIp: 20,
          userCodePerAccount: 10,
          deviceAuthorizationPerIp: 60,
          registerPerIp: 20,
          registerFailuresPerIp: 100,
          clientDocumentsPerIp: 30,
        },
        privateUseSchemes: ['cursor'],
        bearerHeader: 'X-Gatehouse-Token',
      },
      sessions: {
        cookieName: 'gatehouse',
        idleTimeout: '12h',
        absoluteTimeout: '7d',
        maxPerUser: 5,
        webSocketRecheck: '30s',
      },
      log: { level: 'info', requests: 'errors' },
      metrics: { listen: '127.0.0.1:9464' },
      audit: { retention: '90d' },
      forwardAuth: { cacheFor: '5s' },
      hsts: { maxAge: '365d', includeSubDomains: true, preload: true },
      cors,
      events: { url: 'http://127.0.0.1:3000/gatehouse/events', types: ['account_deleted', 'account_disabled'] },
    },
    {
      publicUrl: 'https://app.example.com',
      store: { type: 'postgres', url: 'postgres://db.example.com/g', poolSize: 10 },
      cache: { type: 'redis', url: 'redis://cache.example.com', keyPrefix: 'g:', whenDown: 'closed' },
      jobs: { interval: '10m' },
      providers: common.providers.map((p) =>
        p.type === 'oidc' ? { ...p, bearerTokens: { audience: 'api://a', apps: ['a'] } } : p,
      ),
      apps: [
        {
          name: 'a',
          title: 'A',
          branding: { logo: 'a.png', color: '#123456', links: [{ text: 'Terms', url: 'https://a.example/terms' }] },
          host: 'a.example.com',
          pathPrefix: '/api',
          stripPrefix: true,
          sso: true,
          upstream: ['https://127.0.0.1:3000', 'https://127.0.0.1:3001'],
          upstreamTls: { ca: 'ca.pem', cert: 'client.pem', key: 'client.key', serverName: 'a.internal' },
          healthCheck: {
            path: '/ready',
            interval: '5s',
            timeout: '1s',
            unhealthyAfter: 3,
            healthyAfter: 1,
            status: [204],
            body: 'ready',
          },
          maxRequestBody: 1_048_576,
          affinity: 'address',
          responseHeaders: [{ name: 'Content-Security-Policy', value: "default-src 'self'" }],
          requestHeaders: [{ name: 'X-Proxy-Secret', value: 'secret' }],
          maintenance: {
            message: 'Closed.',
            retryAfter: '1h',
            allow: { groups: ['ops'], emails: ['a@b.c'], domains: ['b.c'] },
          },
          defaultAccess: 'authenticated',
          caseSensitivePaths: false,
          preserveHost: false,
          tokenRelay: 'kc',
          routes: common.routes,
          headers: common.headers,
          timeouts: common.timeouts,
          cors: { ...cors, origins: ['*'], credentials: false },
          events: { url: 'https://a.internal/events', types: ['account_enabled'] },
        },
      ],
    },
  ];
  const WRONG: unknown[] = [
    'eighty',
    '',
    '127.0.0.1:8090',
    'http://u:hunter2@h.example/?q#f',
    -1,
    0,
    1.5,
    1e12,
    true,
    null,
    [],
    ['x'],
    {},
    { x: 1 },
  ];
  /** Messages of checks across keys: they compare values, so they have nothing "found" to show. */
  const ACROSS =
    /longer than|must be at least|not both|or apps|already|is not one of providers|is not in tokens\.scopes|needs at least one redirect|must include "openid"|only applies|must be longer|set by Gatehouse|must be more than twice|whole seconds|needs a list of origins|stands alone|is not the name of an app|grant needs (a secret|apps)|federated is for|are for a client with|needs email|go together|copies of one app|listed twice|the audience of the provider's ID tokens/;

  const paths = (v: unknown, at: (string | number)[] = []): (string | number)[][] => {
    if (Array.isArray(v)) return [at, ...v.flatMap((x, i) => paths(x, [...at, i]))];
    if (v && typeof v === 'object') return [at, ...Object.entries(v).flatMap(([k, x]) => paths(x, [...at, k]))];
    return [at];
  };
  const shape = (path: (string | number)[]) => path.map((p) => (typeof p === 'number' ? '[]' : p)).join('.');

  test('the seeds hold every key of the JSON Schema', () => {
    const schemaKeys = new Set<string>();
    const walk = (node: Record<string, any>, at: string[]) => {
      for (const k of ['anyOf', 'oneOf', 'allOf']) for (const n of node[k] ?? []) walk(n, at);
      for (const [k, n] of Object.entries(node.properties ?? {})) {
        schemaKeys.add([...at, k].join('.'));
        walk(n as Record<string, any>, [...at, k]);
      }
      if (node.items) walk(node.items, [...at, '[]']);
    };
    walk(JSON.parse(configJsonSchema()), []);
    const seeded = new Set(seeds.flatMap((s) => paths(s).map(shape)));
    assert.deepEqual(
      [...schemaKeys].filter((k) => !seeded.has(k)),
      [],
      'add these keys to the seeds',
    );
  });

  test('every key given every wrong value', () => {
    let cases = 0;
    for (const seed of seeds) {
      parseConfig(stringify(seed), 'g.yaml', {}); // the seed itself is valid
      for (const path of paths(seed).filter((p) => p.length > 0)) {
        for (const wrong of WRONG) {
          const data = structuredClone(seed);
          let parent: any = data;
          for (const p of path.slice(0, -1)) parent = parent[p];
          parent[path[path.length - 1]!] = wrong;
          const text = stringify(data);
          const where = `${path.join('.')} = ${JSON.stringify(wrong)}`;
          cases++;
          try {
            lintConfig(parseConfig(text, 'g.yaml', {}));
          } catch (e) {
            assert.ok(e instanceof ConfigError, `${where}: threw ${(e as Error).stack}`);
            for (const p of e.problems) {
              const shown = `${where}: ${p.line} ${p.key}: ${p.message}`;
              assert.ok(p.key, shown);
              assert.ok(Number.isInteger(p.line) && p.line! >= 1, shown);
              assert.doesNotMatch(p.message, /\u0000|^Invalid|^Too (small|big)|hunter2/, shown);
              if (!ACROSS.test(p.message)) assert.match(p.message, /found |^is required|^unknown key/, shown);
            }
          }
        }
      }
    }
    assert.ok(cases > 2000, `${cases} cases`);
  });
});
