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

const withoutPort = (authority: string, port: string) =>
  authority.endsWith(port) ? authority.slice(0, -port.length) : authority;

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
    // Compared normalized (RFC 9113 §8.3.1, RFC 3986 §6.2): case, and the scheme's default port.
    const port = h[':scheme'] === 'http' ? ':80' : ':443';
    if (withoutPort(h.host.toLowerCase(), port) !== withoutPort(String(h[':authority']).toLowerCase(), port))
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
