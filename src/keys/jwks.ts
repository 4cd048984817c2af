import type { ServerResponse } from 'node:http';
import { errors } from 'jose';
import type { Exchange } from '../http/context.ts';
import type { KeyRing } from './keys.ts';

/**
 * GET /.well-known/jwks.json: the public keys (published, pending and retiring ones) in
 * the same bytes on every node. Cache-Control max-age never exceeds the time a new key is
 * published before it signs (minus the nodes' refresh interval); ETag for cheap revalidation.
 */
export function serveJwks(ring: KeyRing, { req, res }: Exchange): void {
  const { body, etag } = ring.jwks();
  const headers = {
    'content-type': 'application/jwk-set+json',
    'cache-control': `public, max-age=${ring.jwksMaxAge}`,
    etag,
    'access-control-allow-origin': '*',
    'x-content-type-options': 'nosniff',
  };
  const match = req.headers['if-none-match'];
  if (match !== undefined && match.split(',').some((t) => t.trim().replace(/^W\//, '') === etag))
    return void end(res, 304, headers);
  end(res, 200, { ...headers, 'content-length': Buffer.byteLength(body) }, req.method === 'HEAD' ? undefined : body);
}

function end(res: ServerResponse, status: number, headers: Record<string, string | number>, body?: string): void {
  res.writeHead(status, headers);
  res.end(body);
}

/**
 * Another issuer's key set URL from its discovery document, when it is safe to fetch keys from:
 * https, or http only for an issuer that is itself http (loopback: the config allows plain http
 * nowhere else), so a document cannot downgrade where the keys come from. Undefined otherwise.
 */
export function issuerJwksUri(jwksUri: unknown, issuer: string): URL | undefined {
  const uri = typeof jwksUri === 'string' ? URL.parse(jwksUri) : null;
  return uri && ['https:', new URL(issuer).protocol].includes(uri.protocol) ? uri : undefined;
}

/**
 * Why jwtVerify against another issuer's remote key set (jose's createRemoteJWKSet) failed, when
 * it was not the token's fault: 'unfetched', the keys could not be fetched (a timeout, or fetch's
 * TypeError: refused, reset, DNS); 'unreadable', they came but are no key set (not 200, not JSON).
 * Undefined: the token itself was refused. Callers answer the first two "try again" (503), never
 * "the token is bad".
 */
export function keySetTrouble(err: unknown): 'unfetched' | 'unreadable' | undefined {
  if (err instanceof errors.JWKSTimeout || (err instanceof TypeError && !(err instanceof errors.JOSEError)))
    return 'unfetched';
  if (err instanceof errors.JOSEError && err.code === 'ERR_JOSE_GENERIC') return 'unreadable';
  return undefined;
}
