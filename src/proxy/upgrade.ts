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
  track: (sockets: Duplex[]) => void,
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
        if (upHead.length) socket.write(upHead);
        if (head.length) upSocket.write(head);
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
        track([socket, upSocket]);
        resolve(101);
      });
      outgoing.end();
    };
    attempt(replicas.shift()!);
  });
}
