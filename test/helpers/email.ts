import type { ConfigInput } from '../../src/config/schema.ts';
import type { Client, Response } from './client.ts';
import { csrfOf } from './providers.ts';
import { linkIn, type ReceivedMail, type TestSmtp } from './smtp.ts';

/** `email:` for a Gatehouse that sends through the test SMTP server (plain, on loopback). */
export function emailConfig(
  smtp: { port: number },
  over: Record<string, unknown> = {},
): NonNullable<ConfigInput['email']> {
  return {
    from: 'Acme Portal <no-reply@acme.example>',
    smtp: { host: '127.0.0.1', port: smtp.port, timeouts: { connect: '2s', greeting: '2s', socket: '5s' } },
    delivery: { attempts: 2, retryDelay: '100ms' },
    ...over,
  } as NonNullable<ConfigInput['email']>;
}

/** Headers of a same-origin form POST from a page of `c`'s site. */
export const sameOrigin = (c: Client) => ({ origin: c.base, 'sec-fetch-site': 'same-origin' });

/** The latest message to `address` whose subject matches, once it has arrived. */
export function mailTo(smtp: TestSmtp, address: string, subject: RegExp, after = 0): Promise<ReceivedMail> {
  return smtp.waitFor((m) => m.to.includes(address) && subject.test(m.subject) && smtp.messages.indexOf(m) >= after);
}

/**
 * Opens a mailed link as a browser does after a click in a mail client (a cross-site
 * navigation): the answer is a 303 to the same route without the token. Returns that answer.
 */
export function openLink(c: Client, link: string): Promise<Response> {
  const u = new URL(link);
  return c.fetch(u.pathname + u.search, { headers: { accept: 'text/html', 'sec-fetch-site': 'cross-site' } });
}

/** Opens the link and follows its redirect to the page with the form; returns that page. */
export async function openLinkPage(c: Client, link: string): Promise<Response> {
  const landing = await openLink(c, link);
  if (landing.status !== 303 || !landing.location) return landing;
  const u = new URL(landing.location);
  return c.html(u.pathname + u.search, { 'sec-fetch-site': 'cross-site' });
}

/** Submits the form on `page` (its csrf) to `action` with `fields`, as a same-origin browser POST. */
export function submit(
  c: Client,
  page: Response,
  action: string,
  fields: Record<string, string> = {},
): Promise<Response> {
  return c.postForm(action, { csrf: csrfOf(page), ...fields }, sameOrigin(c));
}

export { linkIn };
