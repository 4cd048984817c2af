import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as oauth from 'openid-client';
import { Client, decodeEntities } from '../helpers/client.ts';
import { freePort, startGatehouse } from '../helpers/gatehouse.ts';
import { deviceLogin, forms, signedInBrowser } from './helpers.ts';

/** Bearer tokens where Gatehouse sits behind other proxies: forward-auth, and publicUrl with a base path. */

test('forward-auth (/.auth/check) decides bearer tokens like proxied requests: 200 with the identity, 401 with the challenge', async () => {
  const gh = await startGatehouse(() => ({
    trustedProxies: ['loopback'],
    routes: [{ path: '/api/**', unauthenticated: '401' }],
    tokens: { device: { interval: '1s' } },
  }));
  try {
    const { browser, user } = await signedInBrowser(gh);
    const tokens = await deviceLogin(gh, browser);
    const host = new URL(gh.url).host;
    const check = (extra: Record<string, string>) =>
      new Client(gh.url).fetch('/.auth/check', {
        headers: {
          'x-forwarded-host': host,
          'x-forwarded-uri': '/api/orders',
          'x-forwarded-method': 'GET',
          'x-forwarded-proto': 'http',
          ...extra,
        },
      });
    const ok = await check({ authorization: `Bearer ${tokens.access_token}` });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers['x-user-id'], user.id);
    assert.ok(ok.headers['x-gatehouse-assertion']);
    const [h, p] = tokens.access_token.split('.');
    const bad = await check({ authorization: `Bearer ${h}.${p}.AAAA` });
    assert.equal(bad.status, 401);
    assert.match(String(bad.headers['www-authenticate']), /error="invalid_token"/);
    const none = await check({ accept: 'application/json' });
    assert.equal(none.status, 401);
    assert.match(
      String(none.headers['www-authenticate']),
      /resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource"/,
    );
  } finally {
    await gh.close();
  }
});

test('publicUrl under a base path (/app): metadata, the device flow and bearer access all live below it', async () => {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const gh = await startGatehouse(() => ({ publicUrl: `${origin}/app/`, tokens: { device: { interval: '1s' } } }), {
    port,
  });
  try {
    const first = await fetch(`${origin}/app/api/x`, { headers: { accept: 'application/json' } });
    assert.equal(first.status, 401);
    const prmUrl = /resource_metadata="([^"]+)"/.exec(first.headers.get('www-authenticate')!)![1]!;
    assert.equal(prmUrl, `${origin}/app/.well-known/oauth-protected-resource`);
    const prm = (await (await fetch(prmUrl)).json()) as { resource: string; authorization_servers: string[] };
    assert.deepEqual(prm, { ...prm, resource: `${origin}/app`, authorization_servers: [`${origin}/app`] });
    const metadataUrl = `${origin}/app/.well-known/oauth-authorization-server`;
    const as = (await (await fetch(metadataUrl)).json()) as Record<string, string>;
    assert.equal(as.issuer, `${origin}/app`);
    assert.equal(as.device_authorization_endpoint, `${origin}/app/.auth/oauth/device_authorization`);
    assert.equal(as.jwks_uri, `${origin}/app/.well-known/jwks.json`);

    // As `gatehouse login` does when the root is not Gatehouse's: the document below the base.
    const config = await oauth.discovery(new URL(metadataUrl), 'gatehouse-cli', undefined, oauth.None(), {
      execute: [oauth.allowInsecureRequests],
    });
    const device = await oauth.initiateDeviceAuthorization(config, { resource: prm.resource });
    assert.equal(device.verification_uri, `${origin}/app/.auth/device`);
    const browser = new Client(origin);
    const reg = await browser.postJson('/app/.auth/register', {
      email: `base-${Date.now()}@example.com`,
      password: 'a long enough passphrase',
    });
    assert.equal(reg.status, 201, reg.text);
    const entry = forms((await browser.html('/app/.auth/device')).text)[0]!;
    const confirm = await browser.postForm(entry.action, { ...entry.fields, user_code: device.user_code }, { origin });
    const allow = forms(confirm.text).find((f) => f.fields.decision === 'approve')!;
    assert.equal((await browser.postForm(decodeEntities(allow.action), allow.fields, { origin })).status, 303);
    const tokens = await oauth.pollDeviceAuthorizationGrant(config, device);
    const api = await fetch(`${origin}/app/api/x`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(api.status, 200);
    assert.equal(((await api.json()) as { headers: Record<string, string> }).headers['x-user-id'], reg.json().user.id);
  } finally {
    await gh.close();
  }
});
