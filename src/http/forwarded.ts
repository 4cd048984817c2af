import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { plainAddress, type TrustedProxies } from './client-ip.ts';
import { h2Stream } from './protocol.ts';

/**
 * What the client used to reach the first proxy Gatehouse trusts: its address, the scheme and
 * the Host. The one place that reads forwarding headers (security.md #5, #7, #42):
 *
 *   - from a peer that is not in trustedProxies, nothing is read: the client is the peer, the
 *     scheme is the socket's (https only on Gatehouse's own TLS), the host is Host/:authority;
 *   - from a trusted peer, the chain is walked from the right past trusted hops; the first
 *     untrusted hop is the client, and the scheme and host are taken from the same hop's
 *     entry, i.e. what the outermost trusted proxy itself received.
 *
 * Exactly one header family is read, chosen by `forwardedHeaders`: X-Forwarded-For/-Proto/-Host
 * (default: what nginx, Traefik, Caddy and cloud load balancers write) or RFC 7239 `Forwarded`.
 * Reading both would let a client slip the other one past a proxy that only maintains one
 * (nginx appends to X-Forwarded-For but passes a client's `Forwarded` through untouched).
 */

export type Scheme = 'http' | 'https';
export type ForwardedHeaders = 'x-forwarded' | 'forwarded';

export interface Forwarded {
  /** The client's address. */
  ip: string;
  /** The scheme the client used, as far as trusted hops tell; else the socket's. */
  scheme: Scheme;
  /** The Host the client used (as sent, not yet lower-cased), or undefined. */
  host: string | undefined;
  /** The direct peer is a trusted proxy. */
  viaProxy: boolean;
}

/** For diagnosis only (off the hot path): what each party said. */
export interface ForwardedDetail extends Forwarded {
  peer: string;
  /** The scheme and host the headers claimed, whoever sent them (also from untrusted peers). */
  claimedScheme: string | undefined;
  claimedHost: string | undefined;
  /** Header names that carried the claims, for messages. */
  schemeHeader: string;
  hostHeader: string;
  /** The Host / :authority header itself. */
  hostHeaderValue: string | undefined;
  /** X-Forwarded-Prefix as sent (never used to build anything). */
  prefix: string | undefined;
}

const HOST_VALUE = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** The Host of a request: Host for HTTP/1.x, :authority for HTTP/2 (RFC 9113 §8.3.1). */
function requestHost(req: IncomingMessage): string | undefined {
  return h2Stream(req) ? ((req.headers[':authority'] as string | undefined) ?? req.headers.host) : req.headers.host;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

function scheme(v: string | undefined): Scheme | undefined {
  if (v === undefined) return undefined;
  const s = v.trim().toLowerCase();
  return s === 'https' || s === 'wss' ? 'https' : s === 'http' || s === 'ws' ? 'http' : undefined;
}

function hostValue(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const h = v.trim();
  return HOST_VALUE.test(h) ? h : undefined;
}

/** One RFC 7239 element: lower-case parameter names, unquoted values. null when malformed. */
export type ForwardedElement = Record<string, string>;

/**
 * Splits a Forwarded header into elements (RFC 7239 §4), honouring quoted strings. A
 * malformed element becomes null in place, so a walk from the right stops there.
 */
export function parseForwarded(header: string): (ForwardedElement | null)[] {
  const out: (ForwardedElement | null)[] = [];
  let el: ForwardedElement | null = {};
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  while (i <= n) {
    skipWs();
    if (i >= n) {
      out.push(el && Object.keys(el).length ? el : null);
      break;
    }
    const c = header[i];
    if (c === ',') {
      out.push(el && Object.keys(el).length ? el : null);
      el = {};
      i++;
      continue;
    }
    if (c === ';') {
      i++;
      continue;
    }
    // name=value
    const start = i;
    while (i < n && /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(header[i]!)) i++;
    const name = header.slice(start, i).toLowerCase();
    if (!name || header[i] !== '=') {
      el = null;
      while (i < n && header[i] !== ',') i++;
      continue;
    }
    i++;
    let value = '';
    if (header[i] === '"') {
      i++;
      let closed = false;
      while (i < n) {
        const ch = header[i]!;
        if (ch === '\\' && i + 1 < n) {
          value += header[i + 1];
          i += 2;
        } else if (ch === '"') {
          i++;
          closed = true;
          break;
        } else {
          value += ch;
          i++;
        }
      }
      if (!closed) el = null;
    } else {
      const vs = i;
      while (i < n && /[A-Za-z0-9!#$%&'*+.^_`|~:\[\]-]/.test(header[i]!)) i++;
      value = header.slice(vs, i);
    }
    if (el) {
      if (name in el) el = null;
      else el[name] = value;
    }
    skipWs();
    if (i < n && header[i] !== ';' && header[i] !== ',') {
      el = null;
      while (i < n && header[i] !== ',') i++;
    }
  }
  return out;
}

/** The IP in a Forwarded node (`192.0.2.1`, `"[2001:db8::1]:443"`, `1.2.3.4:80`), else undefined. */
function nodeAddress(node: string | undefined): string | undefined {
  if (!node) return undefined;
  let a = node;
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    if (end === -1) return undefined;
    a = a.slice(1, end);
    return isIP(a) === 6 ? a : undefined;
  }
  if (isIP(a)) return plainAddress(a);
  const colon = a.lastIndexOf(':');
  if (colon > 0 && a.indexOf(':') === colon) {
    const host = a.slice(0, colon);
    if (isIP(host) === 4) return host;
  }
  return undefined;
}

function splitList(v: string | undefined): string[] {
  return v === undefined ? [] : v.split(',').map((s) => s.trim());
}

export class Forwarding {
  readonly trusted: TrustedProxies;
  readonly headers: ForwardedHeaders;
  /** The scheme of Gatehouse's own listener. */
  readonly ownScheme: Scheme;

  constructor(trusted: TrustedProxies, headers: ForwardedHeaders, tls: boolean) {
    this.trusted = trusted;
    this.headers = headers;
    this.ownScheme = tls ? 'https' : 'http';
  }

  /** The effective client, scheme and host of a request. */
  resolve(req: IncomingMessage): Forwarded {
    const peer = req.socket.remoteAddress;
    if (this.trusted.empty || !this.trusted.has(peer)) {
      return { ip: plainAddress(peer ?? ''), scheme: this.ownScheme, host: requestHost(req), viaProxy: false };
    }
    return this.headers === 'forwarded'
      ? this.fromForwarded(req, plainAddress(peer!))
      : this.fromXForwarded(req, plainAddress(peer!));
  }

  private fromXForwarded(req: IncomingMessage, peer: string): Forwarded {
    const h = req.headers;
    const hops = splitList(one(h['x-forwarded-for']));
    let client = peer;
    let at = hops.length; // index of the hop chosen as the client; hops.length = the peer itself
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = plainAddress(hops[i]!);
      if (!isIP(hop)) break;
      client = hop;
      at = i;
      if (!this.trusted.has(hop)) break;
    }
    // Proto and host lists that were appended hop by hop line up with X-Forwarded-For; a
    // single value was written (overwritten) by the peer.
    const pick = (list: string[]) =>
      list.length === 0
        ? undefined
        : list.length === hops.length && at < hops.length
          ? list[at]
          : list[list.length - 1];
    const protos = splitList(one(h['x-forwarded-proto']));
    const hosts = splitList(one(h['x-forwarded-host']));
    return {
      ip: client,
      scheme: scheme(pick(protos)) ?? this.ownScheme,
      host: hostValue(pick(hosts)) ?? requestHost(req),
      viaProxy: true,
    };
  }

  private fromForwarded(req: IncomingMessage, peer: string): Forwarded {
    const header = one(req.headers.forwarded);
    let client = peer;
    let proto: Scheme | undefined;
    let host: string | undefined;
    if (header) {
      const elements = parseForwarded(header);
      for (let i = elements.length - 1; i >= 0; i--) {
        const el = elements[i];
        const addr = nodeAddress(el?.for);
        if (!el || !addr) break;
        client = addr;
        proto = scheme(el.proto) ?? proto;
        host = hostValue(el.host) ?? host;
        if (!this.trusted.has(addr)) break;
      }
    }
    return { ip: client, scheme: proto ?? this.ownScheme, host: host ?? requestHost(req), viaProxy: true };
  }

  /**
   * The X-Forwarded-For the app gets: the trusted chain plus the peer, or just the client
   * when the peer is not trusted (whatever the client wrote).
   */
  chainFor(req: IncomingMessage, f: Pick<Forwarded, 'ip' | 'viaProxy'>): string {
    if (!f.viaProxy) return f.ip;
    const peer = plainAddress(req.socket.remoteAddress ?? '');
    if (this.headers === 'x-forwarded') {
      const xff = one(req.headers['x-forwarded-for']);
      return xff ? `${xff}, ${peer}` : peer;
    }
    const header = one(req.headers.forwarded);
    const fors = header ? parseForwarded(header).map((e) => nodeAddress(e?.for) ?? 'unknown') : [];
    return [...fors, peer].join(', ');
  }

  /** Everything that was claimed, trusted or not, for the misconfiguration diagnosis. */
  detail(req: IncomingMessage): ForwardedDetail {
    const f = this.resolve(req);
    const h = req.headers;
    let claimedScheme: string | undefined;
    let claimedHost: string | undefined;
    if (this.headers === 'forwarded') {
      const els = h.forwarded ? parseForwarded(one(h.forwarded)!) : [];
      const last = els[els.length - 1];
      claimedScheme = last?.proto;
      claimedHost = last?.host;
    } else {
      const p = splitList(one(h['x-forwarded-proto']));
      const hs = splitList(one(h['x-forwarded-host']));
      claimedScheme = p[p.length - 1];
      claimedHost = hs[hs.length - 1];
    }
    return {
      ...f,
      peer: plainAddress(req.socket.remoteAddress ?? ''),
      claimedScheme,
      claimedHost,
      schemeHeader: this.headers === 'forwarded' ? 'Forwarded: proto=' : 'X-Forwarded-Proto',
      hostHeader: this.headers === 'forwarded' ? 'Forwarded: host=' : 'X-Forwarded-Host',
      hostHeaderValue: requestHost(req),
      prefix: one(h['x-forwarded-prefix']),
    };
  }
}
