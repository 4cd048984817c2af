import type { IncomingMessage } from 'node:http';

/**
 * Cross-site request checks for Gatehouse's own state-changing routes (security.md #28-30).
 * A browser tells where a request comes from: Sec-Fetch-Site (modern browsers) or Origin.
 * Anything but same-origin (or a typed URL, "none") is refused. Requests without either
 * header do not come from a browser page; for them (and for defence in depth) HTML forms
 * also carry a token bound to a cookie, checked separately.
 */
export function sameOriginRequest(req: IncomingMessage, origin: string): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  const from = req.headers.origin;
  if (from !== undefined && from !== origin) return false;
  return true;
}

/**
 * Stricter: the browser says outright that the request comes from a page of `origin`. For
 * requests that carry no form token and no content type a cross-site page could not send
 * without a preflight (a POST without a body), where the browser's word is all there is.
 */
export function fromOwnPage(req: IncomingMessage, origin: string): boolean {
  return (
    sameOriginRequest(req, origin) && (req.headers['sec-fetch-site'] === 'same-origin' || req.headers.origin === origin)
  );
}
