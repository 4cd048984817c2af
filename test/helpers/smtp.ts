import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import type { TestCert } from './tls.ts';

/**
 * A real SMTP server (the smtp-server package) on a loopback port that keeps every message
 * it accepts, for Gatehouse's nodemailer client to deliver to. Messages are decoded just
 * enough for tests: headers, the text/plain and text/html parts, the links in them.
 */

export interface ReceivedMail {
  envelopeFrom: string;
  to: string[];
  headers: Map<string, string>;
  subject: string;
  text: string;
  html: string;
  raw: string;
  /** Whether the SMTP session was TLS (implicit or STARTTLS) and authenticated as whom. */
  secure: boolean;
  user?: string;
}

export interface TestSmtp {
  host: string;
  port: number;
  messages: ReceivedMail[];
  /** Resolves with the first message (already here or still to come) that matches. */
  waitFor(match: (m: ReceivedMail) => boolean, timeoutMs?: number): Promise<ReceivedMail>;
  /** Messages to this address. */
  to(address: string): ReceivedMail[];
  /** Answer the next n deliveries (DATA) with this reply, e.g. 451 (temporary) or 550 (permanent). */
  failNext(n: number, code: number): void;
  /** Connections the server saw (including failed ones). */
  connections: number;
  close(): Promise<void>;
}

export async function startSmtp(
  o: {
    tls?: TestCert;
    implicitTls?: boolean;
    auth?: { user: string; pass: string };
    noStartTls?: boolean;
    port?: number;
  } = {},
): Promise<TestSmtp> {
  const messages: ReceivedMail[] = [];
  const waiters: { match: (m: ReceivedMail) => boolean; resolve: (m: ReceivedMail) => void }[] = [];
  let failures: { n: number; code: number } = { n: 0, code: 0 };
  let connections = 0;
  const server = new SMTPServer({
    secure: Boolean(o.implicitTls),
    ...(o.tls ? { key: readFileSync(o.tls.key), cert: readFileSync(o.tls.cert) } : {}),
    disabledCommands: [...(o.auth ? [] : ['AUTH']), ...(o.tls && !o.noStartTls ? [] : ['STARTTLS'])],
    authOptional: !o.auth,
    allowInsecureAuth: false,
    logger: false,
    onConnect(_session, cb) {
      connections++;
      cb();
    },
    onAuth(auth, _session, cb) {
      if (o.auth && auth.username === o.auth.user && auth.password === o.auth.pass)
        return cb(null, { user: auth.username });
      cb(new Error('Invalid username or password'));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (failures.n > 0) {
          failures.n--;
          // Like real servers, the reply names the recipient.
          const rcpt = session.envelope.rcptTo[0]?.address ?? '';
          const err = Object.assign(
            new Error(failures.code >= 500 ? `Message for <${rcpt}> rejected` : `Try again later (${rcpt})`),
            { responseCode: failures.code },
          );
          return cb(err);
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        const mail = parse(raw);
        const m: ReceivedMail = {
          ...mail,
          raw,
          envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          secure: session.secure,
          user: typeof session.user === 'string' ? session.user : undefined,
        };
        messages.push(m);
        for (const w of waiters.splice(0)) {
          if (w.match(m)) w.resolve(m);
          else waiters.push(w);
        }
        cb();
      });
    },
  });
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(o.port ?? 0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    messages,
    get connections() {
      return connections;
    },
    to: (address) => messages.filter((m) => m.to.includes(address)),
    waitFor(match, timeoutMs = 10_000) {
      const found = messages.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching message within ${timeoutMs} ms (${messages.length} received)`)),
          timeoutMs,
        );
        waiters.push({ match, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      });
    },
    failNext(n, code) {
      failures = { n, code };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The link to Gatehouse's `route` in a message (its text part; the HTML part must carry the same). */
export function linkIn(mail: ReceivedMail, route: string): string {
  const m = new RegExp(
    `https?://[^\\s"<>]+${route.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\?token=[A-Za-z0-9_-]+(?:&rd=[^\\s"<>]+)?`,
  ).exec(mail.text);
  if (!m) throw new Error(`no ${route} link in: ${mail.text}`);
  return m[0];
}

// ---- a small MIME reader: enough for nodemailer's output ----------------------------------

function splitHead(raw: string): { headers: Map<string, string>; body: string } {
  const at = raw.indexOf('\r\n\r\n');
  const head = at === -1 ? raw : raw.slice(0, at);
  const body = at === -1 ? '' : raw.slice(at + 4);
  const headers = new Map<string, string>();
  for (const line of head.replace(/\r\n[ \t]+/g, ' ').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, body };
}

function decodeBody(body: string, encoding: string | undefined, contentType: string | undefined): string {
  const charset = /charset="?([^";]+)"?/i.exec(contentType ?? '')?.[1]?.toLowerCase() ?? 'utf-8';
  let bytes: Buffer;
  switch ((encoding ?? '7bit').toLowerCase()) {
    case 'base64':
      bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
      break;
    case 'quoted-printable':
      bytes = Buffer.from(
        body
          .replace(/=\r\n/g, '')
          .replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
        'latin1',
      );
      break;
    default:
      bytes = Buffer.from(body, 'utf8');
  }
  return new TextDecoder(charset === 'us-ascii' ? 'utf-8' : charset).decode(bytes).replace(/\r\n/g, '\n');
}

/** RFC 2047 encoded words (=?UTF-8?Q?...?= / =?UTF-8?B?...?=). */
function decodeWords(value: string): string {
  return value
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_m, charset: string, enc: string, text: string) => {
      const bytes =
        enc.toUpperCase() === 'B'
          ? Buffer.from(text, 'base64')
          : Buffer.from(
              text
                .replace(/_/g, ' ')
                .replace(/=([0-9A-Fa-f]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))),
              'latin1',
            );
      return new TextDecoder(charset).decode(bytes);
    });
}

function parse(raw: string): { headers: Map<string, string>; subject: string; text: string; html: string } {
  const { headers, body } = splitHead(raw);
  const parts: { type: string; content: string }[] = [];
  const walk = (h: Map<string, string>, b: string) => {
    const type = h.get('content-type') ?? 'text/plain';
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
    if (/^multipart\//i.test(type) && boundary) {
      for (const chunk of b.split(`--${boundary}`).slice(1)) {
        if (chunk.startsWith('--')) break;
        const sub = splitHead(chunk.replace(/^\r\n/, ''));
        walk(sub.headers, sub.body);
      }
      return;
    }
    parts.push({
      type: type.split(';')[0]!.trim().toLowerCase(),
      content: decodeBody(b, h.get('content-transfer-encoding'), type),
    });
  };
  walk(headers, body);
  return {
    headers,
    subject: decodeWords(headers.get('subject') ?? ''),
    text: parts.find((p) => p.type === 'text/plain')?.content ?? '',
    html: parts.find((p) => p.type === 'text/html')?.content ?? '',
  };
}
