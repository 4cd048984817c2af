import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { ConfigInput } from '../../src/config/schema.ts';
import { SqliteDriver } from '../../src/store/sqlite.ts';
import { decodeEntities, type Client, type Response } from './client.ts';
import { freePort, startGatehouse, type TestGatehouse } from './gatehouse.ts';
import { startIdp, type IdpAccount, type IdpOptions, type TestIdp } from './idp.ts';

/**
 * Two real OpenID Providers ("idpa", "idpb") for the provider tests, with clients registered
 * for the Gatehouse origins the test will run, and the matching `providers:` config.
 * Secrets are random per run, so a test can look for them in logs.
 */

export const ACCOUNTS_A: IdpAccount[] = [
  {
    sub: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Liddell',
    groups: ['staff', 'admins'],
  },
  { sub: 'bob', email: 'bob@example.com', email_verified: true, name: 'Bob', groups: ['staff'] },
  { sub: 'carol', email: 'carol@example.com', email_verified: false, name: 'Carol' },
  { sub: 'dave', name: 'Dave (no email)' },
  { sub: 'erin', email: 'erin@elsewhere.org', email_verified: true, name: 'Erin' },
  { sub: 'mallory', email: 'a@corp.com@evil.com', email_verified: true, name: 'Mallory' },
];

export const ACCOUNTS_B: IdpAccount[] = [
  { sub: 'b-alice', email: 'alice@example.com', email_verified: true, name: 'Alice at B', groups: ['b-readers'] },
  { sub: 'b-frank', email: 'frank@example.com', email_verified: true, name: 'Frank' },
  { sub: 'b-grace', email: 'grace@example.com', email_verified: true, name: 'Grace' },
];

export interface Lab {
  a: TestIdp;
  b: TestIdp;
  secretA: string;
  secretB: string;
  /** Gatehouse ports the IdP clients accept redirects to, in order. */
  ports: number[];
  origin(i?: number): string;
  /** providers: entries for a Gatehouse of this lab; `over` per provider id. */
  providers(over?: Partial<Record<'a' | 'b', Record<string, unknown>>>): NonNullable<ConfigInput['providers']>;
  close(): Promise<void>;
}

export async function startLab(
  options: {
    gatehouses?: number;
    a?: Partial<IdpOptions>;
    b?: Partial<IdpOptions>;
    /** The IdPs' clients get the first Gatehouse's back-channel logout URI (their tokens then carry sid). */
    backchannel?: boolean;
    /** IdP B's client gets no refresh tokens. */
    noRefreshB?: boolean;
  } = {},
): Promise<Lab> {
  const ports = await Promise.all(Array.from({ length: options.gatehouses ?? 1 }, () => freePort()));
  const origins = ports.map((p) => `http://127.0.0.1:${p}`);
  const secretA = `secret-a-${randomBytes(12).toString('hex')}`;
  const secretB = `secret-b-${randomBytes(12).toString('hex')}`;
  const redirects = (id: string) => origins.map((o) => `${o}/.auth/callback/${id}`);
  const signedOut = origins.map((o) => `${o}/.auth/signed-out`);
  const backchannel = (id: string) =>
    options.backchannel
      ? {
          backchannel_logout_uri: `${origins[0]}/.auth/backchannel-logout/${id}`,
          backchannel_logout_session_required: true,
        }
      : {};
  const a = await startIdp({
    name: 'idpa',
    accounts: ACCOUNTS_A,
    claimsOnlyAtUserinfo: false,
    clients: [
      {
        client_id: 'gatehouse-a',
        client_secret: secretA,
        redirect_uris: redirects('a'),
        post_logout_redirect_uris: signedOut,
        ...backchannel('a'),
      },
      { client_id: 'other-client', client_secret: `other-${secretA}`, redirect_uris: ['http://127.0.0.1:9/cb'] },
    ],
    ...options.a,
  });
  const b = await startIdp({
    name: 'idpb',
    alg: 'ES256',
    accounts: ACCOUNTS_B,
    claimsOnlyAtUserinfo: true,
    clients: [
      {
        client_id: 'gatehouse-b',
        client_secret: secretB,
        redirect_uris: redirects('b'),
        post_logout_redirect_uris: signedOut,
        id_token_signed_response_alg: 'ES256',
        ...backchannel('b'),
        ...(options.noRefreshB ? { grant_types: ['authorization_code'] } : {}),
      },
    ],
    ...options.b,
  });
  return {
    a,
    b,
    secretA,
    secretB,
    ports,
    origin: (i = 0) => origins[i]!,
    providers: (over = {}) =>
      [
        {
          id: 'a',
          type: 'oidc',
          name: 'IdP A',
          issuer: a.issuer,
          clientId: 'gatehouse-a',
          clientSecret: secretA,
          endSession: true,
          ...over.a,
        },
        {
          id: 'b',
          type: 'oidc',
          name: 'IdP B',
          issuer: b.issuer,
          clientId: 'gatehouse-b',
          clientSecret: secretB,
          ...over.b,
        },
      ] as NonNullable<ConfigInput['providers']>,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
}

/**
 * A Gatehouse on the lab's first port (the one its IdP clients accept redirects to), with the
 * lab's providers and sign-in limits no test reaches, and `over` (its own `providers` replace them).
 */
export function labGatehouse(lab: Lab, over: Partial<ConfigInput> = {}): Promise<TestGatehouse> {
  return startGatehouse(
    () => ({
      providers: lab.providers(),
      accounts: {
        rateLimits: { loginPerIp: 1000, loginPerAccount: 1000, registerPerIp: 1000, providerStartsPerIp: 1000 },
      },
      ...over,
    }),
    { port: lab.ports[0] },
  );
}

/** A second connection to a test Gatehouse's SQLite file, to read rows as they are stored. */
export function rawDb(gh: TestGatehouse): SqliteDriver {
  return new SqliteDriver(join(gh.dir, 'gatehouse.db'));
}

/** The hidden csrf value of a page's forms. */
export function csrfOf(page: Response): string {
  const m = /name="csrf" value="([^"]+)"/.exec(page.text);
  if (!m) throw new Error(`no csrf field (status ${page.status}): ${page.text.slice(0, 200)}`);
  return decodeEntities(m[1]!);
}

/** Posts one of the account page's forms (link / unlink), the way its button does. */
export async function accountPost(
  c: Client,
  action: '/.auth/account/link' | '/.auth/account/unlink',
  fields: Record<string, string>,
): Promise<Response> {
  const page = await c.html('/.auth/account');
  return c.postForm(action, { csrf: csrfOf(page), ...fields }, { origin: c.base, 'sec-fetch-site': 'same-origin' });
}

/** The error page of a failed flow: its status and the log line, for assertions. */
export function failures(gh: TestGatehouse, reason?: string): Record<string, unknown>[] {
  return gh.logs.filter((l) => l.event === 'oauth_callback_failed' && (reason === undefined || l.reason === reason));
}

/** The IdP's "Sign out?" page: its form's action and hidden fields (oidc-provider's end_session). */
export function idpLogoutForm(text: string): { action: string | undefined; hidden: Record<string, string> } {
  const action = /<form id="op\.logoutForm" method="post" action="([^"]+)"/.exec(text)?.[1];
  const hidden = Object.fromEntries(
    [...text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]),
  );
  return { action: action && decodeEntities(action), hidden };
}

/** The user signs out at the IdP itself (its end_session page, confirmed), not through Gatehouse. */
export async function signOutAtIdp(c: Client, idp: TestIdp): Promise<Response> {
  const confirm = await c.fetch(`${idp.issuer}/session/end`, { headers: { accept: 'text/html' } });
  const form = idpLogoutForm(confirm.text);
  if (!form.action)
    throw new Error(`no logout form at the IdP (status ${confirm.status}): ${confirm.text.slice(0, 200)}`);
  return c.postForm(form.action, { ...form.hidden, logout: 'yes' });
}
