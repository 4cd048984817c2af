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
 * What a per-address rate limit counts by: an IPv4 address as it is, an IPv6 address by its
 * /64. A single subscriber, host or VM usually gets a whole /64, so counting full addresses
 * would hand a client 2^64 fresh allowances to rotate through.
 */
export function rateLimitAddress(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const zone = ip.indexOf('%');
  const [left = '', right] = (zone === -1 ? ip : ip.slice(0, zone)).split('::');
  // An embedded IPv4 part (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) is the last 32 bits: two groups.
  const groups = (s: string | undefined) =>
    s ? s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : [];
  const head = groups(left);
  const tail = groups(right);
  const all =
    right === undefined
      ? head
      : [...head, ...Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
  return `${all
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/** A set of addresses: IPs, CIDR ranges and the presets loopback, private, linklocal. */
export class AddressSet {
  private readonly list = new BlockList();
  readonly empty: boolean;
  /** The entries as configured (presets by name), for messages. */
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    this.entries = entries;
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
}

/**
 * The set of peers whose forwarding headers are believed. Empty by default: nobody is
 * trusted, and X-Forwarded-* from clients is ignored (security.md #5). The headers themselves are
 * read in one place, http/forwarded.ts.
 */
export class TrustedProxies extends AddressSet {}
