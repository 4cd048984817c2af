import type { IncomingMessage } from 'node:http';
import http2 from 'node:http2';

/**
 * What a request's protocol allows, checked before anything reads the request (RFC 9112,
 * RFC 9113). Node's parsers refuse most malformed messages themselves (answered in
 * clientError); these are the shapes they let through that the rest of Gatehouse, or the app
 * behind it, could read another way.
 */

/**
 * The HTTP/2 stream a request came on, or undefined for HTTP/1.x. Decided by the object Node
 * made, never by the version the client wrote: Node's HTTP/1 parser accepts a request line
 * ending in "HTTP/2.0", and such a request has no stream.
 */
export function h2Stream(req: IncomingMessage): http2.ServerHttp2Stream | undefined {
  return req instanceof http2.Http2ServerRequest ? req.stream : undefined;
}

/** Whether a body follows the headers: a length, chunked framing, or (HTTP/2) DATA frames to come. */
export function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const cl = req.headers['content-length'];
  if (cl !== undefined) return cl !== '0';
  const stream = h2Stream(req);
  return stream !== undefined && !stream.endAfterHeaders;
}

/**
 * For a request line the HTTP/1 parser refused for its version: whether it names a major
 * version other than 1 ("HTTP/3.0"), answered 505 like the "HTTP/2.0" and "HTTP/0.9" the
 * parser lets through, rather than 400 (which malformed versions such as "HTTP/1.2" get).
 */
export function otherMajorVersion(rawPacket: Buffer | undefined): boolean {
  const line = rawPacket && /^[^\r\n]* HTTP\/(\d)\.\d\r?\n/.exec(rawPacket.subarray(0, 8192).toString('latin1'));
  return !!line && line[1] !== '1';
}

export interface ProtocolError {
  status: 400 | 505;
  code: 'bad_request' | 'http_version_not_supported';
  message: string;
}

/**
 * Fields Node keeps only the first copy of while rawHeaders (and so the app) gets all of
 * them: a second copy would let Gatehouse decide on one value and the app act on another.
 * Cookie is not one of them (Node joins copies, and HTTP/2 sends one field per cookie).
 */
function singleton(name: string): number {
  switch (name.length) {
    case 4:
      return name.toLowerCase() === 'host' ? 1 : 0;
    case 12:
      return name.toLowerCase() === 'content-type' ? 2 : 0;
    case 13:
      return name.toLowerCase() === 'authorization' ? 4 : 0;
    case 14:
      return name.toLowerCase() === 'content-length' ? 8 : 0;
    default:
      return 0;
  }
}

const badRequest = (message: string): ProtocolError => ({ status: 400, code: 'bad_request', message });

/** "Host" header form: lower-case, without the scheme's default port. */
export function hostKey(host: string, secure: boolean): string {
  const h = host.toLowerCase();
  if (secure && h.endsWith(':443')) return h.slice(0, -4);
  if (!secure && h.endsWith(':80')) return h.slice(0, -3);
  return h;
}

/**
 * Whether two authorities name the same host and port, compared normalized (RFC 3986 §6.2.3,
 * RFC 9113 §8.3.1): letter case, and `scheme`'s default port written on one side only
 * (`example.com:443` and `example.com` over https), do not count.
 */
function sameAuthority(a: string, b: string, scheme: string): boolean {
  const secure = scheme !== 'http';
  return hostKey(a, secure) === hostKey(b, secure);
}

/**
 * Why a request must be refused before it is read, or undefined. For HTTP/1.x: any version
 * but 1.0 and 1.1 (505), Transfer-Encoding on HTTP/1.0 or other than exactly "chunked"
 * (`gzip, chunked` would be decoded by the app, not by Gatehouse or its upstream client).
 * For both: a second Host, Authorization, Content-Type or Content-Length; for HTTP/2 a Host
 * that names another authority than :authority.
 */
export function protocolError(req: IncomingMessage): ProtocolError | undefined {
  const h = req.headers;
  if (h2Stream(req) === undefined) {
    if (req.httpVersionMajor !== 1)
      return {
        status: 505,
        code: 'http_version_not_supported',
        message: `HTTP/${req.httpVersion} is not served here: use HTTP/1.1, or HTTP/2 negotiated by TLS (ALPN).`,
      };
    const te = h['transfer-encoding'];
    if (te !== undefined && req.httpVersionMinor === 0)
      return badRequest('Transfer-Encoding is not allowed in an HTTP/1.0 request.');
    if (te !== undefined && te.toLowerCase() !== 'chunked')
      return badRequest('The only Transfer-Encoding accepted in a request is "chunked".');
  } else if (h.host !== undefined && h[':authority'] !== undefined) {
    if (!sameAuthority(h.host, String(h[':authority']), String(h[':scheme'])))
      return badRequest('Host and :authority name different hosts.');
  }
  const raw = req.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const bit = singleton(raw[i]!);
    if (bit === 0) continue;
    if (seen & bit) return badRequest(`The ${raw[i]!.toLowerCase()} header is sent more than once.`);
    seen |= bit;
  }
  return undefined;
}

/** `http://` or `https://` (any letter case), the authority, and the rest: path (maybe empty), query, fragment. */
const ABSOLUTE = /^(https?):\/\/([^/?#]*)(.*)$/is;

/**
 * The origin-form (path and query) of an absolute-form request target, which a server must
 * accept (RFC 9112 §3.2.2; clients talking through some proxies send it):
 * `http://app.example.com/a?b=1` → `/a?b=1`, `https://app.example.com` → `/`. The path and
 * query are kept byte for byte, for normalizeTarget (target.ts) to check like any origin-form
 * path: never parsed with URL, which resolves dot-segments, reads `\` as `/` and decodes
 * `%2e`, and so would make an absolute-form target a way around those checks.
 *
 * Its authority must name the host the Host header names, compared normalized like Host and
 * :authority (sameAuthority, with the target's scheme): the site is chosen by Host, and a
 * request naming two hosts is one a proxy in front may have read the other way (RFC 9112 §3.2
 * has clients send the same in both). User information (`http://user@host/`) is refused (RFC
 * 9110 §4.2.4), and so is an empty host (RFC 9110 §4.2.1). Any other target (origin-form,
 * `*`, another scheme, `http:` without `//`) comes back unchanged: normalizeTarget refuses
 * what is not a path, as it always has.
 */
export function originForm(target: string, host: string | undefined): string | ProtocolError {
  const m = ABSOLUTE.exec(target);
  if (!m) return target;
  const authority = m[2]!;
  const rest = m[3]!;
  if (authority.includes('@')) return badRequest('A request target with user information (user@host) is not accepted.');
  if (authority === '') return badRequest('The request target names no host.');
  if (host === undefined || !sameAuthority(authority, host, m[1]!.toLowerCase()))
    return badRequest('The request target names another host than the Host header.');
  return rest.charCodeAt(0) === 47 /* / */ ? rest : `/${rest}`;
}

/**
 * For an HTTP/1.x request whose target is in absolute form: req.url rewritten to its
 * origin-form (originForm) before anything reads it, so that routes, rules, the log line and
 * the app all see one form; or why it is refused (answered like protocolError's refusals:
 * 400, connection closed). HTTP/2 has no absolute-form (:path is origin-form or `*`, RFC 9113
 * §8.3.1): an HTTP/2 request is left as it is.
 */
export function toOriginForm(req: IncomingMessage): ProtocolError | undefined {
  const url = req.url;
  if (url === undefined || url.charCodeAt(0) === 47 /* / */ || h2Stream(req) !== undefined) return undefined;
  const origin = originForm(url, req.headers.host);
  if (typeof origin !== 'string') return origin;
  req.url = origin;
  return undefined;
}
