import { isIP } from 'node:net';

/**
 * A host name or address on this machine: localhost, 127.0.0.0/8, ::1 (brackets allowed).
 * Development and tests only get leeway for these.
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const family = isIP(h);
  return family === 4 ? h.startsWith('127.') : family === 6 && (h === '::1' || h === '0:0:0:0:0:0:0:1');
}
