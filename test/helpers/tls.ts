import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'undici';

export interface TestCert {
  /** Paths of the PEM files. */
  cert: string;
  key: string;
  /** The certificate's PEM text (to trust it in a client). */
  pem: string;
  /** An undici dispatcher that trusts this certificate only. */
  agent: Agent;
}

/**
 * A self-signed certificate (EC P-256) for 127.0.0.1 and localhost, made with openssl for
 * this test run; `cn` tells two apart. (Expiry is tested with an injected clock.)
 */
export function selfSigned(
  o: { dir?: string; name?: string; cn?: string; hosts?: string[]; days?: number } = {},
): TestCert {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'gatehouse-tls-'));
  const name = o.name ?? 'server';
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const san = (o.hosts ?? ['127.0.0.1', 'localhost', '::1'])
    .map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`))
    .join(',');
  const args = [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    String(o.days ?? 30),
    '-subj',
    `/CN=${o.cn ?? 'gatehouse test'}`,
    '-addext',
    `subjectAltName=${san}`,
  ];
  execFileSync('openssl', args, { stdio: 'pipe' });
  const pem = readFileSync(cert, 'utf8');
  return { cert, key, pem, agent: new Agent({ connect: { ca: pem }, keepAliveTimeout: 1000 }) };
}

/** A private CA made with openssl for this test run, and certificates it signs. */
export interface TestCa {
  /** Path and PEM text of the CA's certificate. */
  cert: string;
  pem: string;
  /**
   * A certificate signed by this CA (EC P-256): `server` for a TLS server (SAN: `hosts`,
   * default 127.0.0.1 and localhost), `client` for a client certificate (CN only).
   */
  issue(o: { name: string; cn: string; use: 'server' | 'client'; hosts?: string[]; days?: number }): {
    cert: string;
    key: string;
    pem: string;
  };
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function testCa(o: { dir?: string; cn?: string } = {}): TestCa {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'gatehouse-ca-'));
  const cert = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      caKey,
      '-out',
      cert,
      '-days',
      '30',
      '-subj',
      `/CN=${o.cn ?? 'gatehouse test CA'}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    { stdio: 'pipe' },
  );
  return {
    cert,
    pem: readFileSync(cert, 'utf8'),
    issue({ name, cn, use, hosts = ['127.0.0.1', 'localhost'], days = 30 }) {
      const leaf = join(dir, `${name}.crt`);
      const key = join(dir, `${name}.key`);
      const san = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-CA',
          cert,
          '-CAkey',
          caKey,
          ...EC,
          '-keyout',
          key,
          '-out',
          leaf,
          '-days',
          String(days),
          '-subj',
          `/CN=${cn}`,
          '-addext',
          'basicConstraints=CA:FALSE',
          '-addext',
          `extendedKeyUsage=${use === 'server' ? 'serverAuth' : 'clientAuth'}`,
          ...(use === 'server' ? ['-addext', `subjectAltName=${san}`] : []),
        ],
        { stdio: 'pipe' },
      );
      return { cert: leaf, key, pem: readFileSync(leaf, 'utf8') };
    },
  };
}
