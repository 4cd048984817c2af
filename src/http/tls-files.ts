import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * PEM files the config names (listen.tls, an app's upstreamTls), read at start and again on
 * SIGHUP. A file that cannot be used (missing, unreadable, not PEM, a key not matching its
 * certificate) is a TlsFileError naming the config key to fix.
 */

export class TlsFileError extends Error {
  /** The config key to fix, e.g. listen.tls.cert or apps[0].upstreamTls.ca. */
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.key = key;
  }
}

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
  leaf: X509Certificate;
}

function read(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TlsFileError(
      key,
      `cannot read ${path} (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message})`,
    );
  }
}

/** A certificate (the chain after the leaf) and its private key; `at` is the config key holding both. */
export function loadKeyPair(at: string, files: { cert: string; key: string }): KeyPair {
  const cert = read(`${at}.cert`, files.cert);
  const key = read(`${at}.key`, files.key);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new TlsFileError(`${at}.cert`, `${files.cert} is not a PEM certificate`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new TlsFileError(`${at}.key`, `${files.key} is not a PEM private key (or it is encrypted)`);
  }
  if (!leaf.checkPrivateKey(privateKey))
    throw new TlsFileError(`${at}.key`, `${files.key} is not the key of the certificate in ${files.cert}`);
  return { cert, key, leaf };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** A PEM bundle of CA certificates (one or more), each parsed, none missing. */
export function loadCertificates(key: string, path: string): { pem: Buffer; certs: X509Certificate[] } {
  const pem = read(key, path);
  const certs: X509Certificate[] = [];
  for (const block of pem.toString('latin1').match(PEM_CERTIFICATE) ?? []) {
    try {
      certs.push(new X509Certificate(block));
    } catch {
      throw new TlsFileError(key, `${path} holds a certificate that cannot be read (${certs.length + 1}. in the file)`);
    }
  }
  if (certs.length === 0) throw new TlsFileError(key, `${path} holds no PEM certificate`);
  return { pem, certs };
}

/** What `gatehouse check` and the logs say of a certificate that has expired or soon will. */
export function expiryWarning(cert: X509Certificate, what: string, now = Date.now()): string | null {
  const notAfter = Date.parse(cert.validTo);
  if (now > notAfter) return `${what} expired on ${cert.validTo}`;
  if (notAfter - now < 14 * 86_400_000)
    return `${what} expires on ${cert.validTo}: renew it (and send SIGHUP to reload)`;
  if (now < Date.parse(cert.validFrom)) return `${what} is not valid before ${cert.validFrom}`;
  return null;
}

/** A short description for logs. */
export function describeCertificate(cert: X509Certificate): Record<string, string> {
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    validTo: new Date(cert.validTo).toISOString(),
    fingerprint256: cert.fingerprint256,
  };
}
