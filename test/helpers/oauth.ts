import type { Client, Response } from './client.ts';

/**
 * Walks a browser's redirects for the HTTP-client tests: Gatehouse → the provider → its
 * interaction pages → back to Gatehouse's callback. One cookie jar for all of them, as a
 * browser has for 127.0.0.1 whatever the port.
 */
export interface Hop {
  url: string;
  res: Response;
}

export async function follow(
  client: Client,
  start: string,
  headers: Record<string, string> = {},
  max = 20,
): Promise<Hop[]> {
  const hops: Hop[] = [];
  let url = new URL(start, client.base).href;
  for (let i = 0; i < max; i++) {
    const res = await client.fetch(url, { headers: { accept: 'text/html', ...headers } });
    hops.push({ url, res });
    if (res.status < 300 || res.status >= 400 || !res.location) return hops;
    url = new URL(res.location, url).href;
    // Past the first hop, the browser is navigating from wherever it was sent.
    headers = {
      ...headers,
      'sec-fetch-site': new URL(url).origin === new URL(client.base).origin ? 'same-site' : 'cross-site',
    };
  }
  throw new Error(
    `more than ${max} redirects from ${start}: ${hops.map((h) => `${h.res.status} ${h.url}`).join(' → ')}`,
  );
}

/** Starts a sign-in the way the login page's button does (a same-origin navigation). */
export function signIn(client: Client, provider: string, rd?: string): Promise<Hop[]> {
  return follow(client, `/.auth/login/${provider}${rd ? `?rd=${encodeURIComponent(rd)}` : ''}`, {
    'sec-fetch-site': 'same-origin',
  });
}

/** The hop that answered Gatehouse's callback. */
export function callbackHop(hops: Hop[]): Hop {
  const hop = hops.find((h) => new URL(h.url).pathname.includes('/callback/'));
  if (!hop) throw new Error(`no callback in ${hops.map((h) => `${h.res.status} ${h.url}`).join(' → ')}`);
  return hop;
}

/** Follows the flow until the provider redirects to the callback; returns that URL unopened. */
export async function stopAtCallback(
  client: Client,
  start: string,
  headers: Record<string, string> = { 'sec-fetch-site': 'same-origin' },
  max = 20,
): Promise<string> {
  let url = new URL(start, client.base).href;
  for (let i = 0; i < max; i++) {
    const res = await client.fetch(url, { headers: { accept: 'text/html', ...headers } });
    if (res.status < 300 || res.status >= 400 || !res.location)
      throw new Error(`the flow stopped at ${res.status} ${url}: ${res.text.slice(0, 300)}`);
    const next = new URL(res.location, url).href;
    if (new URL(next).pathname.includes('/callback/')) return next;
    url = next;
    headers = { ...headers, 'sec-fetch-site': 'cross-site' };
  }
  throw new Error('too many redirects');
}
