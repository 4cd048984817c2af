import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.ts';

/** Gatehouse's own forms and JSON bodies are small; anything larger is refused at once. */
export const OWN_BODY_LIMIT = 16 * 1024;

export type Input = { kind: 'form' | 'json'; data: Record<string, unknown> };

/**
 * Reads a request body up to `limit` bytes. A declared Content-Length over the limit is
 * refused before reading a byte (413); a body that grows past it is cut off.
 */
export function readBody(req: IncomingMessage, limit = OWN_BODY_LIMIT): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(
      new HttpError(413, 'payload_too_large', `Request body over ${limit} bytes`, { connection: 'close' }),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume();
        reject(new HttpError(413, 'payload_too_large', `Request body over ${limit} bytes`, { connection: 'close' }));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new HttpError(400, 'bad_request', `Could not read the request body (${err.message})`));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function mediaType(req: IncomingMessage): string {
  const ct = req.headers['content-type'] ?? '';
  return ct.split(';', 1)[0]!.trim().toLowerCase();
}

/** A form (`application/x-www-form-urlencoded`) or a JSON object; anything else is 415. */
export async function readInput(req: IncomingMessage, limit = OWN_BODY_LIMIT): Promise<Input> {
  const type = mediaType(req);
  if (type !== 'application/x-www-form-urlencoded' && type !== 'application/json') {
    throw new HttpError(415, 'unsupported_media_type', 'Send application/x-www-form-urlencoded or application/json');
  }
  const body = await readBody(req, limit);
  const text = body.toString('utf8');
  if (text.includes('\uFFFD') && !Buffer.from(text, 'utf8').equals(body))
    throw new HttpError(400, 'bad_request', 'The body is not valid UTF-8');
  if (type === 'application/json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new HttpError(400, 'invalid_json', 'The body is not valid JSON');
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data))
      throw new HttpError(400, 'invalid_json', 'The JSON body must be an object');
    return { kind: 'json', data: data as Record<string, unknown> };
  }
  const data: Record<string, unknown> = Object.create(null);
  for (const [k, v] of new URLSearchParams(text)) {
    if (k in data) throw new HttpError(400, 'bad_request', `The field "${k}" appears more than once`);
    data[k] = v;
  }
  return { kind: 'form', data };
}

/** A string field, or undefined; any other type is a client error. */
export function field(input: Input, name: string, maxLength = 4096): string | undefined {
  const v = input.data[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, 'bad_request', `"${name}" must be a string`);
  if (v.length > maxLength) throw new HttpError(400, 'bad_request', `"${name}" is too long`);
  return v;
}
