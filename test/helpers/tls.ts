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
