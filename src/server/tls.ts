import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

/**
 * Gatehouse's own TLS (`listen.tls: {cert, key}`): PEM files read at start and again on
 * SIGHUP. A pair that cannot be used (missing, unreadable, not PEM, key not matching the
 * certificate) is an error that names the key to fix; at start Gatehouse refuses to run, on
 * reload it keeps serving the pair it has.
 */

export interface TlsFiles {
  cert: string;
  key: string;
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
  leaf: X509Certificate;
}

export class TlsError extends Error {
  /** The config key to fix: listen.tls.cert or listen.tls.key. */
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.key = key;
  }
}

function read(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TlsError(
      key,
      `cannot read ${path} (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message})`,
    );
  }
}

export function loadTls(files: TlsFiles): TlsPair {
  const cert = read('listen.tls.cert', files.cert);
  const key = read('listen.tls.key', files.key);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new TlsError('listen.tls.cert', `${files.cert} is not a PEM certificate`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new TlsError('listen.tls.key', `${files.key} is not a PEM private key (or it is encrypted)`);
  }
  if (!leaf.checkPrivateKey(privateKey))
    throw new TlsError('listen.tls.key', `${files.key} is not the key of the certificate in ${files.cert}`);
  return { cert, key, leaf };
}

/** What `gatehouse check` and the start-up log say about a usable pair. */
export function certificateWarnings(leaf: X509Certificate, host: string, now = Date.now()): string[] {
  const w: string[] = [];
  const notAfter = Date.parse(leaf.validTo);
  const notBefore = Date.parse(leaf.validFrom);
  if (now > notAfter) w.push(`the certificate expired on ${leaf.validTo}: browsers refuse it.`);
  else if (notAfter - now < 14 * 86_400_000)
    w.push(`the certificate expires on ${leaf.validTo}: renew it (and send SIGHUP to reload).`);
  if (now < notBefore) w.push(`the certificate is not valid before ${leaf.validFrom}.`);
  const name = host.replace(/^\[|\]$/g, '');
  const matches = isIP(name) ? leaf.checkIP(name) !== undefined : leaf.checkHost(name) !== undefined;
  if (!matches)
    w.push(
      `the certificate is not valid for ${name} (publicUrl's host)${leaf.subjectAltName ? `; it names ${leaf.subjectAltName}` : ''}.`,
    );
  return w;
}

/** A short description for logs. */
export function describe(leaf: X509Certificate): Record<string, string> {
  return {
    subject: leaf.subject.replace(/\n/g, ', '),
    validTo: new Date(leaf.validTo).toISOString(),
    fingerprint256: leaf.fingerprint256,
  };
}
