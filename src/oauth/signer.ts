import { calculateJwkThumbprint, createLocalJWKSet, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import type { KeyValueStore } from '../store/types.ts';
import type { Secrets } from '../tokens/secrets.ts';

/**
 * What the OAuth server needs from a signing key ring: sign a JWT with the current key (with
 * `kid`), verify one against the published keys, and the JWKS itself.
 *
 * STAND-IN until the signing key ring of issue 4 (src/tokens/) is on main: one Ed25519 key,
 * generated on first start and kept in the store (private half encrypted), so every node
 * and a restart agree. No rotation.
 */
export interface TokenSigner {
  sign(claims: JWTPayload, options: { typ: string; now: number; ttlMs: number }): Promise<string>;
  /** The verified claims, or undefined for any failure (signature, kid, alg, typ, time). */
  verify(jwt: string, options: { typ: string; now: number }): Promise<JWTPayload | undefined>;
  jwks(): { keys: JWK[] };
}

const KV_NAME = 'oauth.standin_signing_key';

export async function loadStandInSigner(kv: KeyValueStore, secrets: Secrets): Promise<TokenSigner> {
  let stored = await kv.get(KV_NAME);
  if (!stored) {
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const jwk = await exportJWK(privateKey);
    stored = await kv.putIfAbsent(KV_NAME, secrets.encrypt(JSON.stringify(jwk), KV_NAME));
  }
  const plain = secrets.decrypt(stored, KV_NAME);
  if (!plain) throw new Error('the stored signing key cannot be decrypted with this master key (secrets.key)');
  const privateJwk = JSON.parse(plain) as JWK;
  const { d: _d, ...publicJwk } = privateJwk;
  const id = await calculateJwkThumbprint(publicJwk);
  const published: JWK = { ...publicJwk, kid: id, alg: 'EdDSA', use: 'sig' };
  const privateKey = await importJWK(privateJwk, 'EdDSA');
  const keySet = createLocalJWKSet({ keys: [published] });
  return {
    async sign(claims, o) {
      const iat = Math.floor(o.now / 1000);
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'EdDSA', kid: id, typ: o.typ })
        .setIssuedAt(iat)
        .setExpirationTime(iat + Math.ceil(o.ttlMs / 1000))
        .sign(privateKey);
    },
    async verify(jwt, o) {
      try {
        const { payload } = await jwtVerify(jwt, keySet, { algorithms: ['EdDSA'], typ: o.typ, currentDate: new Date(o.now), clockTolerance: 0 });
        return payload;
      } catch {
        return undefined;
      }
    },
    jwks: () => ({ keys: [published] }),
  };
}
