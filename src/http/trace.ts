// W3C Trace Context (https://www.w3.org/TR/trace-context/): a client's traceparent and tracestate go to
// the app unchanged; without a valid traceparent Gatehouse starts a trace, so the app's logs and
// Gatehouse's request line share one trace id.
import { randomFillSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** version 00 (or a later one, read as 00), 32 hex trace id, 16 hex parent id, 2 hex flags. */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_PARENT = '0000000000000000';

export interface Trace {
  /** The trace id, for the log line. */
  id: string;
  /**
   * A traceparent Gatehouse made (the client sent none, or one that is not valid): it replaces
   * whatever the client sent, and its tracestate is dropped. Undefined: the client's go on unchanged.
   */
  started?: string;
}

/** The client's trace, when its traceparent is valid (one field, lower-case hex, no all-zero ids). */
function given(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string' || value.length < 55 || value.length > 512 || !TRACEPARENT.test(value)) return;
  if (value.startsWith('ff')) return;
  // Version 00 has exactly four fields; a later version may add fields after them.
  if (value.startsWith('00') && value.length !== 55) return;
  const id = value.slice(3, 35);
  if (id === ZERO_TRACE || value.slice(36, 52) === ZERO_PARENT) return;
  return id;
}

/** Random bytes fetched from the CSPRNG in blocks, as randomUUID does: a new trace takes 16. */
const POOL = Buffer.alloc(4096);
let used = POOL.length;

/** The request's trace: the client's, or one started here (random ids, not sampled). */
export function traceOf(req: IncomingMessage): Trace {
  const id = given(req.headers.traceparent);
  if (id) return { id };
  if (used === POOL.length) {
    randomFillSync(POOL);
    used = 0;
  }
  // 32 hex digits for the trace and, as the parent id, its second half: never all zeros, since the
  // first byte of that half always has its top bit set.
  POOL[used + 8]! |= 0x80;
  const trace = POOL.toString('hex', used, used + 16);
  used += 16;
  return { id: trace, started: `00-${trace}-${trace.slice(16)}-00` };
}
