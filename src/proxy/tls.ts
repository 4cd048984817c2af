import type { X509Certificate } from 'node:crypto';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { loadCertificates, loadKeyPair } from '../http/tls-files.ts';
import type { UpstreamTarget } from '../sites/index.ts';

/** node:tls options for connections to an https app (undici's `connect`, https.request). */
export interface UpstreamTlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

/** An app's upstreamTls, its files read: what connections use, and what check and the logs describe. */
export interface UpstreamTls {
  options: UpstreamTlsOptions;
  /** The client certificate Gatehouse presents (mutual TLS), if any. */
  client: X509Certificate | null;
  /** The CA certificates the app's certificate must chain to, instead of the system's; [] = the system's. */
  authorities: X509Certificate[];
}

/**
 * Reads an app's upstreamTls files now (at start, on SIGHUP, for each event delivery); throws a
 * TlsFileError naming the key to fix. Without upstreamTls: empty options (the system's CAs, the
 * name from the URL or Host). Verification is never turned off: there is no option for it.
 * `serverName` is the name the app's certificate is checked against whatever name the
 * connection's SNI carries (undici takes SNI from the Host header the app is sent).
 */
export function loadUpstreamTls(tls: UpstreamTarget['tls']): UpstreamTls {
  if (!tls) return { options: {}, client: null, authorities: [] };
  const options: UpstreamTlsOptions = {};
  let authorities: X509Certificate[] = [];
  let client: X509Certificate | null = null;
  if (tls.ca) {
    const bundle = loadCertificates(`${tls.at}.ca`, tls.ca);
    options.ca = bundle.pem;
    authorities = bundle.certs;
  }
  if (tls.cert && tls.key) {
    const pair = loadKeyPair(tls.at, { cert: tls.cert, key: tls.key });
    options.cert = pair.cert;
    options.key = pair.key;
    client = pair.leaf;
  }
  const name = tls.serverName;
  if (name) {
    options.servername = name;
    options.checkServerIdentity = (_host, cert) => checkServerIdentity(name, cert);
  }
  return { options, client, authorities };
}
