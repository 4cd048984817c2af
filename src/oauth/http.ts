import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { readBody } from '../http/body.ts';
import { HttpError } from '../http/errors.ts';
import { sendJson } from '../http/respond.ts';

/**
 * The wire format of the OAuth endpoints: form-encoded requests (RFC 6749 §3.2), JSON answers
 * that are never cached, errors as {error, error_description}, and CORS for the endpoints a
 * browser-based client (an MCP inspector) calls without cookies.
 */

export class OAuthError extends Error {
  readonly status: number;
  readonly error: string;
  readonly headers: OutgoingHttpHeaders;
  constructor(status: number, error: string, description: string, headers: OutgoingHttpHeaders = {}) {
    super(description);
    this.status = status;
    this.error = error;
    this.headers = headers;
  }
}

/** Endpoints that take no cookies may be called from any origin. */
export const CORS: OutgoingHttpHeaders = { 'access-control-allow-origin': '*' };

export function sendOAuthJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
): void {
  sendJson(res, status, body, { pragma: 'no-cache', ...CORS, ...headers });
}

function sendOAuthError(res: ServerResponse, err: OAuthError): void {
  sendOAuthJson(res, err.status, { error: err.error, error_description: err.message }, err.headers);
}

/** Answers a CORS preflight for a cookie-less endpoint. */
export function preflight(res: ServerResponse, methods: string): void {
  res.writeHead(204, {
    ...CORS,
    'access-control-allow-methods': methods,
    'access-control-allow-headers': 'authorization, content-type, mcp-protocol-version',
    'access-control-max-age': '86400',
    'content-length': 0,
  });
  res.end();
}

/** Runs an endpoint, answering OAuthError (and the body reader's HttpError) in OAuth's format. */
export async function oauthEndpoint(res: ServerResponse, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof OAuthError) return sendOAuthError(res, err);
    if (err instanceof HttpError)
      return sendOAuthError(
        res,
        new OAuthError(err.status, err.status === 400 ? 'invalid_request' : err.code, err.message, err.headers),
      );
    throw err;
  }
}

export interface OAuthParams {
  get(name: string): string | undefined;
  all(name: string): string[];
}

/** Parameters that may be repeated (RFC 8707 §2: several resource indicators). */
const REPEATABLE = new Set(['resource']);

export function paramsFrom(search: URLSearchParams): OAuthParams {
  const seen = new Map<string, string[]>();
  for (const [k, v] of search) {
    const list = seen.get(k);
    if (list) {
      if (!REPEATABLE.has(k))
        throw new OAuthError(400, 'invalid_request', `the parameter "${k}" appears more than once`);
      list.push(v);
    } else seen.set(k, [v]);
  }
  return {
    get: (name) => {
      const v = seen.get(name)?.[0];
      return v === '' ? undefined : v;
    },
    all: (name) => (seen.get(name) ?? []).filter((v) => v !== ''),
  };
}

/** A form-encoded POST body, as the token, device, and revocation endpoints take them. */
export async function readOAuthForm(req: IncomingMessage): Promise<OAuthParams> {
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded')
    throw new OAuthError(400, 'invalid_request', 'send the parameters as application/x-www-form-urlencoded');
  const body = await readBody(req);
  const text = body.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(body))
    throw new OAuthError(400, 'invalid_request', 'the body is not valid UTF-8');
  return paramsFrom(new URLSearchParams(text));
}

/** A string parameter of bounded length, or undefined. */
export function param(p: OAuthParams, name: string, max = 2048): string | undefined {
  const v = p.get(name);
  if (v !== undefined && v.length > max) throw new OAuthError(400, 'invalid_request', `"${name}" is too long`);
  return v;
}
