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
 * trusted, and X-Forwarded-* from clients is ignored (ATTACKS 5). The headers themselves are
 * read in one place, http/forwarded.ts.
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
}
