import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLocalJWKSet, errors, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { OidcProviderSchema } from '../../src/config/providers.ts';
import { createLogger } from '../../src/log/index.ts';
import { LOGOUT_EVENT, LogoutTokenError, verifyLogoutToken } from '../../src/providers/backchannel.ts';
import { OidcProvider } from '../../src/providers/oidc.ts';
import { freePort } from '../helpers/gatehouse.ts';

/**
 * The logout token's checks (providers/backchannel.ts) apart from a provider: what they accept,
 * and that a provider whose keys or discovery cannot be fetched is "unavailable" (503, the issuer
 * retries), not "invalid" (400, the issuer gives up). The refusals are shown end to end in
 * test/integration/backchannel-logout.test.ts.
 */

const { privateKey, publicKey } = await generateKeyPair('ES256');
const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
const keys = {
  issuer: 'https://idp.example.com',
  clientId: 'gatehouse',
  algorithms: ['ES256'],
  jwks: createLocalJWKSet({ keys: [jwk] }),
};
const sign = (claims: Record<string, unknown>) =>
  new SignJWT({
    iss: keys.issuer,
    aud: keys.clientId,
    iat: Math.floor(Date.now() / 1000),
    jti: 'j1',
    events: { [LOGOUT_EVENT]: {} },
    ...claims,
  })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'logout+jwt' })
    .sign(privateKey);

describe('logout tokens', () => {
  test('a good token gives its jti and whichever of sid and sub it names', async () => {
    assert.deepEqual(await verifyLogoutToken(await sign({ sid: 's1' }), keys), { jti: 'j1', sid: 's1' });
    assert.deepEqual(await verifyLogoutToken(await sign({ sub: 'u1' }), keys), { jti: 'j1', sub: 'u1' });
    assert.deepEqual(await verifyLogoutToken(await sign({ sid: 's1', sub: 'u1' }), keys), {
      jti: 'j1',
      sid: 's1',
      sub: 'u1',
    });
  });

  test('keys that cannot be fetched make the provider unavailable, not the token invalid', async () => {
    const token = await sign({ sid: 's1' });
    for (const failure of [new errors.JWKSTimeout(), new TypeError('fetch failed')]) {
      const err = await verifyLogoutToken(token, {
        ...keys,
        jwks: async () => {
          throw failure;
        },
      }).catch((e: unknown) => e);
      assert.ok(err instanceof LogoutTokenError && err.unavailable, String(err));
    }
    const wrongKey = await verifyLogoutToken(token, { ...keys, jwks: createLocalJWKSet({ keys: [] }) }).catch(
      (e: unknown) => e,
    );
    assert.ok(wrongKey instanceof LogoutTokenError && !wrongKey.unavailable, 'no matching key: invalid');
  });

  test('a provider whose discovery cannot be read is unavailable', async () => {
    const config = OidcProviderSchema.parse({
      id: 'down',
      type: 'oidc',
      issuer: `http://127.0.0.1:${await freePort()}`,
      clientId: 'c',
      timeout: '1s',
    });
    const client = new OidcProvider(config, createLogger('silent'));
    const err = await client.signingKeys().catch((e: unknown) => e);
    assert.ok(err instanceof LogoutTokenError && err.unavailable, String(err));
    assert.match(err.message, /discovery document/);
  });
});
