import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as oauth from 'openid-client';
import { Client, decodeEntities, registerJson } from '../helpers/client.ts';
import type { TestGatehouse } from '../helpers/gatehouse.ts';

/** Real time plus an offset the test moves: openid-client's waits stay real, expiries come on demand. */
export class Clock {
  private offset = 0;
  readonly now = (): number => Date.now() + this.offset;
  advance(ms: number): void {
    this.offset += ms;
  }
}

/** openid-client's view of Gatehouse as the built-in CLI client would have it, by RFC 8414 discovery. */
export async function cliClient(
  gh: TestGatehouse,
  clientId = 'gatehouse-cli',
  secret?: string,
): Promise<oauth.Configuration> {
  return oauth.discovery(new URL(gh.url), clientId, secret, secret ? oauth.ClientSecretBasic(secret) : oauth.None(), {
    algorithm: 'oauth2',
    execute: [oauth.allowInsecureRequests],
  });
}

/**
 * The path of an authorization request by a configured public client, with a fixed PKCE
 * challenge: what a signed-in browser gets there is the consent page.
 */
export function consentPath(clientId: string, redirectUri: string, resource: string): string {
  return `/.auth/oauth/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: 'S256',
    state: 's',
    resource,
  })}`;
}

/** A browser with a signed-in (freshly registered) user. */
export async function signedInBrowser(
  gh: TestGatehouse,
): Promise<{ browser: Client; user: { id: string; email: string } }> {
  const browser = new Client(gh.url);
  const user = await registerJson(browser);
  return { browser, user };
}

export function hiddenFields(html: string): Record<string, string> {
  return Object.fromEntries(
    [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [
      m[1]!,
      decodeEntities(m[2]!),
    ]),
  );
}

/** The forms of a page: action and hidden fields, in order. */
export function forms(html: string): { action: string; fields: Record<string, string> }[] {
  return [...html.matchAll(/<form method="post" action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/g)].map((m) => ({
    action: decodeEntities(m[1]!),
    fields: hiddenFields(m[2]!),
  }));
}

/**
 * The user's side of the device flow over HTTP, as a browser does it: the entry page, the
 * code (as typed), the confirmation page, and Allow or Deny. `gh.url`: the origin the browser
 * uses (a proxy's, in front of Gatehouse).
 */
export async function decideDevice(
  gh: Pick<TestGatehouse, 'url'>,
  browser: Client,
  typed: string,
  decision: 'approve' | 'deny',
): Promise<{ confirm: string }> {
  const entry = await browser.html('/.auth/device');
  assert.equal(entry.status, 200, entry.text);
  const [form] = forms(entry.text);
  const confirm = await browser.postForm(form!.action, { ...form!.fields, user_code: typed }, { origin: gh.url });
  assert.equal(confirm.status, 200, confirm.text);
  const choice = forms(confirm.text).find((f) => f.fields.decision === decision);
  assert.ok(choice, 'the confirmation page has an Allow and a Deny form');
  const done = await browser.postForm(choice.action, choice.fields, { origin: gh.url });
  assert.equal(done.status, 303);
  assert.equal(done.location, `${gh.url}/.auth/device?done=${decision === 'approve' ? 'approved' : 'denied'}`);
  return { confirm: confirm.text };
}

/** A whole device login with openid-client: start, approve as the signed-in user, poll. */
export async function deviceLogin(
  gh: TestGatehouse,
  browser: Client,
  config?: oauth.Configuration,
  params: Record<string, string> = {},
): Promise<oauth.TokenEndpointResponse> {
  const c = config ?? (await cliClient(gh));
  const device = await oauth.initiateDeviceAuthorization(c, { scope: 'offline_access', resource: gh.url, ...params });
  await decideDevice(gh, browser, device.user_code, 'approve');
  return oauth.pollDeviceAuthorizationGrant(c, device);
}

/**
 * A request to the app with a bearer token: status and, when it got through, what the app saw
 * (found by a probe header of its own, so tests running at once do not see each other's).
 */
export async function withBearer(
  gh: TestGatehouse,
  path: string,
  token: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; seen: Record<string, string> | undefined; wwwAuthenticate: string | null; body: string }> {
  const probe = randomUUID();
  const res = await fetch(`${gh.url}${path}`, {
    headers: { authorization: `Bearer ${token}`, accept: 'application/json', 'x-probe': probe, ...headers },
  });
  const body = await res.text();
  const seen = gh.upstream.requests.find((r) => r.headers['x-probe'] === probe);
  return {
    status: res.status,
    seen: seen?.headers as Record<string, string> | undefined,
    wwwAuthenticate: res.headers.get('www-authenticate'),
    body,
  };
}

/** A client registering itself (RFC 7591), as an MCP client does: public, code flow, one loopback redirect URI. */
export async function registerClient(
  gh: Pick<TestGatehouse, 'url'>,
  metadata: Record<string, unknown> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${gh.url}/.auth/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      redirect_uris: ['http://127.0.0.1:9/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      client_name: 'Test client',
      ...metadata,
    }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** A raw form POST to an OAuth endpoint (for what openid-client would never send). */
export async function postForm(
  url: string,
  fields: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers };
}

export async function oauthError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof oauth.ResponseBodyError) return e.error;
    throw e;
  }
  assert.fail('expected an OAuth error');
}
