import type { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { expiryWarning, type KeyPair, loadKeyPair } from '../http/tls-files.ts';

/**
 * Gatehouse's own TLS (`listen.tls: {cert, key}`): PEM files read at start and again on
 * SIGHUP. A pair that cannot be used is a TlsFileError that names the key to fix; at start
 * Gatehouse refuses to run, on reload it keeps serving the pair it has.
 */

export { describeCertificate as describe, TlsFileError as TlsError } from '../http/tls-files.ts';

export type TlsPair = KeyPair;

export function loadTls(files: { cert: string; key: string }): TlsPair {
  return loadKeyPair('listen.tls', files);
}

/** What `gatehouse check` and the start-up log say about a usable pair. */
export function certificateWarnings(leaf: X509Certificate, host: string, now = Date.now()): string[] {
  const w: string[] = [];
  const expiry = expiryWarning(leaf, 'the certificate', now);
  if (expiry) w.push(`${expiry}${/expired on/.test(expiry) ? ': browsers refuse it' : ''}.`);
  const name = host.replace(/^\[|\]$/g, '');
  const matches = isIP(name) ? leaf.checkIP(name) !== undefined : leaf.checkHost(name) !== undefined;
  if (!matches)
    w.push(
      `the certificate is not valid for ${name} (publicUrl's host)${leaf.subjectAltName ? `; it names ${leaf.subjectAltName}` : ''}.`,
    );
  return w;
}
