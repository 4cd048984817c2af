import { BlockList, isIP } from 'node:net';

const PRESETS: Record<string, string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
};

/** Strips the IPv4-mapped IPv6 form (::ffff:10.0.0.1) so one rule covers both. */
export function plainAddress(addr: string): string {
  return addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
}

/**
 * The set of peers whose forwarding headers are believed. Empty by default: nobody is
 * trusted, and X-Forwarded-* from clients is ignored (ATTACKS 5).
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    this.empty = entries.length === 0;
    for (const entry of entries.flatMap((e) => PRESETS[e] ?? [e])) {
      const [addr, bits] = entry.split('/');
      const family = isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.list.addAddress(addr!, family);
      else this.list.addSubnet(addr!, Number(bits), family);
    }
  }

  has(address: string | undefined): boolean {
    if (this.empty || !address) return false;
    const a = plainAddress(address);
    const family = isIP(a);
    return family !== 0 && this.list.check(a, family === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * The client's address: the peer, unless the peer is a trusted proxy, in which case the
   * X-Forwarded-For chain is walked from the right past trusted hops; the first untrusted
   * (or unparsable) hop is the client.
   */
  clientIp(peer: string | undefined, xForwardedFor: string | string[] | undefined): string {
    const direct = plainAddress(peer ?? '');
    if (!xForwardedFor || !this.has(direct)) return direct;
    const hops = (Array.isArray(xForwardedFor) ? xForwardedFor.join(',') : xForwardedFor).split(',');
    let client = direct;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = plainAddress(hops[i]!.trim());
      if (!isIP(hop)) break;
      client = hop;
      if (!this.has(hop)) break;
    }
    return client;
  }
}
