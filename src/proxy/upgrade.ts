import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { isIP } from 'node:net';
import { unreached, type Upstream } from './forward.ts';

/** Writes a minimal HTTP/1.1 response on a raw socket and closes it; `headers`: more, of Gatehouse's own making. */
export function rejectUpgrade(
  socket: Duplex,
  status: number,
  reason: string,
  body = '',
  headers: Record<string, string> = {},
): void {
  if (!socket.writable) return void socket.destroy();
  let more = '';
  for (const name in headers) more += `${name}: ${headers[name]}\r\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n${more}\r\n${body}`,
  );
}

/**
 * A WebSocket Close frame from the server (RFC 6455 §5.5.1): the code and a reason of at most
 * 123 bytes (ASCII text of Gatehouse's own), which a browser's CloseEvent shows the page.
 */
export function closeFrame(code: number, reason = ''): Buffer {
  const text = Buffer.from(reason.slice(0, 123), 'latin1');
  const frame = Buffer.alloc(4 + text.length);
  frame[0] = 0x88;
  frame[1] = 2 + text.length;
  frame.writeUInt16BE(code, 2);
  text.copy(frame, 4);
  return frame;
}

/**
 * Where the app's side of a tunnel is between WebSocket frames (RFC 6455 §5.2), so that a Close
 * frame of Gatehouse's own goes in between two of the app's, never inside one. Fed every chunk the
 * app sends as it passes (the header is read, the payload only counted: a few operations per frame).
 */
export class FrameBoundary {
  /** Payload bytes of the frame under way still to come. */
  private left = 0;
  /** A header split between chunks: its bytes so far. */
  private partial: Buffer | null = null;

  get atBoundary(): boolean {
    return this.left === 0 && this.partial === null;
  }

  /** Payload bytes of the frame under way still to come (0 between frames, or within a header). */
  get pending(): number {
    return this.left;
  }

  /**
   * Counts `chunk`. With `stop`, stops at the first frame boundary it reaches: returns how many of
   * its bytes that took (chunk.length when it reaches none, or ends at one).
   */
  feed(chunk: Buffer, stop = false): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.left > 0) {
        const n = Math.min(this.left, chunk.length - i);
        this.left -= n;
        i += n;
        if (stop && this.left === 0) return i;
        continue;
      }
      let head = chunk;
      let at = i;
      if (this.partial) {
        head = Buffer.concat([this.partial, chunk.subarray(i, i + 14)]);
        at = 0;
      }
      const size = headerSize(head, at);
      if (size === undefined || head.length - at < size) {
        // The header goes on in the next chunk.
        this.partial = Buffer.from(head.subarray(at));
        return chunk.length;
      }
      i += size - (this.partial?.length ?? 0);
      this.partial = null;
      this.left = payloadLength(head, at);
      if (stop && this.left === 0) return i;
    }
    return i;
  }
}

/** A frame header's length from its first bytes at `at`: undefined until its second byte is there. */
function headerSize(b: Buffer, at: number): number | undefined {
  if (b.length - at < 2) return undefined;
  const len = b[at + 1]! & 0x7f;
  return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (b[at + 1]! & 0x80 ? 4 : 0);
}

function payloadLength(b: Buffer, at: number): number {
  const len = b[at + 1]! & 0x7f;
  return len === 126 ? b.readUInt16BE(at + 2) : len === 127 ? Number(b.readBigUInt64BE(at + 2)) : len;
}

/**
 * How long a tunnel being closed waits for the app to finish the frame under way, and how much of
 * it is still passed on: past either, it is cut (the client sees the connection drop, as when the
 * app fails mid-frame).
 */
export const BOUNDARY_WAIT_MS = 2_000;
const BOUNDARY_MAX_BYTES = 1024 * 1024;

/** An open tunnel: the client's socket, the app's, and how to end it (Tunnels, pipeline/tunnels.ts). */
export interface OpenTunnel {
  client: Duplex;
  upstream: Duplex;
  /**
   * Ends the tunnel: `frame` (a Close) to the client once the app's frame under way is whole (at
   * most BOUNDARY_WAIT_MS and BOUNDARY_MAX_BYTES more; else the connection is cut), then both
   * sides closed. Nothing more of the app's is passed on after that frame.
   */
  close(frame: Buffer): void;
}

/** The most of an app's answer that declines an upgrade Gatehouse holds to relay it; a larger one is a 502. */
const MAX_DECLINE_BYTES = 1024 * 1024;

/**
 * Tunnels an authorized WebSocket upgrade to the app. `headers` is the same rebuilt list a
 * normal request gets (identity added, spoofed copies gone); only the upgrade pair is put
 * back. The 101 is relayed only when the app itself switches protocols; any other answer
 * is passed on and the connection closed. Resolves with the socket pair while it lives.
 */
export function tunnelWebSocket(
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  upstream: Upstream,
  path: string,
  headers: string[],
  track: (tunnel: OpenTunnel) => void,
  passedOver?: (cause: string, at?: string) => void,
  affinity?: string,
): Promise<number> {
  return new Promise((resolve) => {
    const secure = upstream.url.protocol === 'https:';
    // Replicas in turn from the next one (or as the affinity key prefers them); one that refuses
    // the connection is passed over.
    const replicas = affinity === undefined ? upstream.replicasInTurn() : upstream.preferred(affinity);
    let settled = false;
    const fail = (status: number, reason: string) => {
      if (settled) return;
      settled = true;
      rejectUpgrade(socket, status, reason, `${reason}\n`);
      resolve(status);
    };
    // One replica tried: a connection it refuses goes on to the next (attempt() again).
    const attempt = (replica: URL): void => {
      const outgoing = (secure ? https : http).request({
        host: replica.hostname,
        port: replica.port || (secure ? 443 : 80),
        method: 'GET',
        path: upstream.basePath + path,
        headers: [...headers, 'connection', 'Upgrade', 'upgrade', 'websocket'],
        agent: false,
        timeout: upstream.timeouts.response,
        // The name every replica's certificate is checked against: the first's, as for requests.
        ...(secure && replica !== upstream.url && !isIP(upstream.url.hostname)
          ? { servername: upstream.url.hostname }
          : {}),
        ...upstream.tls.options,
      });
      outgoing.on('timeout', () => {
        outgoing.destroy();
        fail(504, 'Gateway Timeout');
      });
      outgoing.on('error', (err) => {
        if (settled) return;
        const next = replicas.shift();
        const missed = unreached(err);
        if (!next || !missed) return fail(502, 'Bad Gateway');
        passedOver?.(missed.cause, missed.at);
        attempt(next);
      });
      outgoing.on('response', (upRes) => {
        // The app declined the upgrade: relay its answer and close.
        let text = `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage}\r\n`;
        for (let i = 0; i < upRes.rawHeaders.length; i += 2) {
          const n = upRes.rawHeaders[i]!.toLowerCase();
          if (n !== 'connection' && n !== 'transfer-encoding' && n !== 'keep-alive')
            text += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        upRes.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_DECLINE_BYTES) return void chunks.push(c);
          outgoing.destroy();
          fail(502, 'Bad Gateway');
        });
        upRes.on('end', () => {
          if (settled) return;
          settled = true;
          const body = Buffer.concat(chunks);
          socket.end(
            Buffer.concat([
              Buffer.from(
                `${text.replace(/content-length:[^\r]*\r\n/gi, '')}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
              ),
              body,
            ]),
          );
          resolve(upRes.statusCode ?? 502);
        });
        upRes.on('error', () => fail(502, 'Bad Gateway'));
      });
      outgoing.on('upgrade', (upRes, upSocket, upHead) => {
        settled = true;
        let text = 'HTTP/1.1 101 Switching Protocols\r\n';
        for (let i = 0; i < upRes.rawHeaders.length; i += 2)
          text += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`;
        socket.write(text + '\r\n');
        const frames = new FrameBoundary();
        if (upHead.length) {
          frames.feed(upHead);
          socket.write(upHead);
        }
        if (head.length) upSocket.write(head);
        const count = (chunk: Buffer) => void frames.feed(chunk);
        upSocket.on('data', count);
        upSocket.pipe(socket);
        socket.pipe(upSocket);
        const end = () => {
          upSocket.destroy();
          socket.destroy();
        };
        upSocket.on('error', end);
        socket.on('error', end);
        upSocket.on('close', end);
        socket.on('close', end);
        track({
          client: socket,
          upstream: upSocket,
          close: (frame) => {
            upSocket.unpipe(socket);
            upSocket.off('data', count);
            let timer: NodeJS.Timeout | undefined;
            const finish = () => {
              clearTimeout(timer);
              // The app's side goes now; the client's once the Close has been written out.
              upSocket.off('close', end);
              upSocket.destroy();
              if (socket.writable) socket.end(frame, () => socket.destroy());
              else socket.destroy();
            };
            if (frames.atBoundary) return finish();
            if (frames.pending > BOUNDARY_MAX_BYTES) return end();
            // The rest of the frame under way, then the Close; a frame that does not end in time is cut.
            timer = setTimeout(end, BOUNDARY_WAIT_MS).unref();
            upSocket.on('data', (chunk: Buffer) => {
              const n = frames.feed(chunk, true);
              socket.write(n === chunk.length ? chunk : chunk.subarray(0, n));
              if (frames.atBoundary) finish();
            });
            upSocket.resume();
          },
        });
        resolve(101);
      });
      outgoing.end();
    };
    attempt(replicas.shift()!);
  });
}
