// log/ (base): the pino logger: JSON lines written in batches, with secret fields censored by the
// formatter.
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Field names censored wherever they appear at the top level or one level down. */
const SECRET_KEYS = new Set(['password', 'token', 'cookie', 'authorization', 'secret']);
const CENSOR = '[redacted]';

function copyOf(v: object): Record<string, unknown> {
  if (!(v instanceof Error)) return { ...(v as Record<string, unknown>) };
  // Keep what pino's err serializer reads: the class, message and stack.
  const e = Object.assign(Object.create(Object.getPrototypeOf(v) as object) as Record<string, unknown>, v);
  e.message = v.message;
  e.stack = v.stack;
  return e;
}

/**
 * The redact list as a log formatter: `password`, `token`, `cookie`, `authorization` and
 * `secret`, as a top-level field or inside one (`*.password`, `headers.cookie`, ...), become
 * "[redacted]". The caller's object is never changed; a copy is made only when something is
 * censored. pino's own `redact` option did the same at about 9 µs per line, more than the
 * rest of writing a request line; this costs a key lookup per field (bench/README.md).
 */
export function redact(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in obj) {
    if (SECRET_KEYS.has(key)) {
      (out ??= { ...obj })[key] = CENSOR;
      continue;
    }
    const v = obj[key];
    if (v === null || typeof v !== 'object' || Array.isArray(v)) continue;
    let inner: Record<string, unknown> | undefined;
    for (const k in v) if (SECRET_KEYS.has(k)) (inner ??= copyOf(v))[k] = CENSOR;
    if (inner) (out ??= { ...obj })[key] = inner;
  }
  return out ?? obj;
}

let lastMs = -1;
let lastTime = '';

/** pino's isoTime, formatted once per millisecond: under load many lines share one. */
function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

/** Log output is handed to the writer once this much has gathered, or after FLUSH_MS. */
const BATCH_CHARS = 16 * 1024;
const FLUSH_MS = 10;
/** The longest logger.flush() waits for stdout to take what was logged. */
const FLUSH_WAIT_MS = 2000;

type Batcher = DestinationStream & { flush(cb?: (err?: Error) => void): void; flushSync(): void };
/** What the batcher needs of sonic-boom (a test hands it a stand-in). */
type Writer = Pick<ReturnType<typeof pino.destination>, 'write' | 'flushSync' | 'on' | 'once' | 'off'>;
/** How each batcher writes out what is left of it when the process exits. */
const atExit: (() => void)[] = [];
let exitHook = false;

/**
 * stdout through pino's asynchronous writer (sonic-boom), in batches: a line waits at most
 * FLUSH_MS, or until BATCH_CHARS have gathered, so a busy node makes about a hundred writes
 * a second instead of one per request or two (bench/README.md). logger.flush(cb) calls back
 * once what is pending is written; process exit writes what is left.
 */
export function batchedStdout(fd = 1, stream: Writer = pino.destination({ dest: fd, sync: false })): Batcher {
  let pending = '';
  let timer: NodeJS.Timeout | null = null;
  // sonic-boom's own flush(cb) calls back at once (without minLength it waits for nothing):
  // whether a write is under way is tracked here; sonic-boom says 'drain' when all is written.
  let writing = false;
  stream.on('drain', () => {
    writing = false;
  });
  const push = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (pending.length === 0) return;
    const batch = pending;
    pending = '';
    writing = true;
    stream.write(batch);
  };
  const batcher: Batcher = {
    write(line: string) {
      pending += line;
      if (pending.length >= BATCH_CHARS) push();
      else if (timer === null) {
        timer = setTimeout(push, FLUSH_MS);
        timer.unref();
      }
    },
    /**
     * Calls back once everything logged so far has been written to the file descriptor, or
     * after FLUSH_WAIT_MS: a stdout nobody reads must not hold a shutdown forever.
     */
    flush(cb?: (err?: Error) => void) {
      push();
      if (!writing || !cb) return void cb?.();
      const done = (err?: Error) => {
        clearTimeout(deadline);
        stream.off('drain', done);
        stream.off('error', done);
        cb(err);
      };
      const deadline = setTimeout(done, FLUSH_WAIT_MS);
      stream.once('drain', done);
      stream.once('error', done);
    },
    /**
     * pino calls this after every fatal line. sonic-boom's flushSync writes its queue at once,
     * ahead of a write still under way: the fatal line would come out before lines logged
     * earlier (a node that cannot start must say so last). While a write is under way, what is
     * pending is queued behind it instead, in order; logger.flush(cb) waits for both.
     */
    flushSync() {
      const underWay = writing;
      push();
      if (!underWay) stream.flushSync();
    },
  };
  atExit.push(() => {
    push();
    stream.flushSync();
  });
  if (!exitHook) {
    exitHook = true;
    // At exit nothing more runs: whatever is left is written synchronously.
    process.once('exit', () => {
      for (const writeRest of atExit) {
        try {
          writeRest();
        } catch {
          // stdout already gone: nothing more can be written
        }
      }
    });
  }
  return batcher;
}

/**
 * Structured JSON logs on stdout, written asynchronously so a request never waits on the
 * terminal. Request lines carry method, path (never the query: it may hold codes and
 * tokens), status, duration, user id and request id. Secrets, cookies and tokens are never
 * passed to the logger; the redaction is a second line of defence.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }), bindings: redact, log: redact },
    },
    destination ?? batchedStdout(),
  );
}

/** What request lines may carry unescaped (ids, methods, paths); anything else goes through JSON.stringify. */
const PLAIN = /^[\x20-\x7e]*$/;
const NEEDS_ESCAPE = /["\\]/;
const str = (v: string) => (PLAIN.test(v) && !NEEDS_ESCAPE.test(v) ? `"${v}"` : JSON.stringify(v));

/** log.requests: which requests get their line. */
export type RequestLines = 'all' | 'errors' | 'none';

/** The lowest status that gets a request line under log.requests (Infinity: none does). */
export function lowestLogged(which: RequestLines): number {
  return which === 'all' ? 0 : which === 'errors' ? 400 : Infinity;
}

export type RequestLine = (
  id: string,
  method: string | undefined,
  path: string,
  status: number,
  ms: number,
  user: string | undefined,
  trace: string | undefined,
) => void;

/**
 * The one line per request, built as a string with pino's own pre-serialized parts (the level
 * label, the timestamp, the logger's bindings: pid and whatever a child adds) and written to
 * the logger's destination: the same JSON as `logger.info({req: {id, method, path}, status,
 * ms, user, trace}, 'request')`, without pino's generic path (an object per line, its keys walked by
 * the redaction formatter, JSON.stringify of the nested req). Its fields are fixed and carry
 * no secret (the path never has the query). Off below level info, like logger.info; `which`
 * (log.requests) leaves out successful requests ('errors': a line from status 400 on) or all.
 */
export function requestLine(logger: Logger, which: RequestLines = 'all'): RequestLine {
  const l = logger as unknown as Record<symbol, unknown>;
  const stream = l[pino.symbols.streamSym] as { write(s: string): void };
  const from = lowestLogged(which);
  return (id, method, path, status, ms, user, trace) => {
    if (logger.levelVal > 30 || status < from) return;
    const chindings = l[pino.symbols.chindingsSym] as string;
    stream.write(
      `{"level":"info"${isoTime()}${chindings},"req":{"id":${str(id)},${method === undefined ? '' : `"method":${str(method)},`}"path":${str(path)}},"status":${status},"ms":${ms}${user === undefined ? '' : `,"user":${str(user)}`}${trace === undefined ? '' : `,"trace":${str(trace)}`},"msg":"request"}\n`,
    );
  };
}
