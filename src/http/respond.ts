import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** Headers on every page Gatehouse renders itself. */
export const PAGE_HEADERS: OutgoingHttpHeaders = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

export function wantsHtml(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

function addCookies(res: ServerResponse, cookies: readonly string[] | undefined): void {
  if (!cookies?.length) return;
  const prev = res.getHeader('set-cookie');
  res.setHeader('set-cookie', [...(Array.isArray(prev) ? prev : prev ? [String(prev)] : []), ...cookies]);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
  cookies?: readonly string[],
): void {
  const text = JSON.stringify(body);
  addCookies(res, cookies);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

export function sendHtml(
  res: ServerResponse,
  status: number,
  html: string,
  headers: OutgoingHttpHeaders = {},
  cookies?: readonly string[],
): void {
  addCookies(res, cookies);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    ...PAGE_HEADERS,
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : html);
}

export function redirect(
  res: ServerResponse,
  status: 302 | 303 | 307 | 308,
  location: string,
  cookies?: readonly string[],
): void {
  addCookies(res, cookies);
  res.writeHead(status, {
    location,
    'cache-control': 'no-store',
    'content-length': 0,
    'referrer-policy': 'no-referrer',
  });
  res.end();
}
