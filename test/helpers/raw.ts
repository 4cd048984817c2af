import net from 'node:net';
import tls from 'node:tls';

/** A connection to Gatehouse on loopback: plain, or TLS trusting `ca` (ALPN offers HTTP/1.1 only). */
function connect(port: number, ca: string | undefined, onOpen: () => void): net.Socket {
  if (ca === undefined) return net.connect(port, '127.0.0.1', onOpen);
  return tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, onOpen);
}

/**
 * Sends bytes exactly as given and collects the reply until the server closes the
 * connection (or `waitMs` passes with nothing more). For requests an HTTP client library
 * would refuse to send or would rewrite. `ca`: over TLS (own TLS), trusting this certificate.
 */
export function rawRequest(
  port: number,
  text: string | Buffer,
  waitMs = 3000,
  o: { ca?: string } = {},
): Promise<{ text: string; status: number; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const t = Buffer.concat(chunks).toString('latin1');
      resolve({ text: t, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(t)?.[1] ?? 0), closed });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), waitMs);
    };
    const socket = connect(port, o.ca, () => {
      socket.write(text);
      arm();
    });
    socket.on('data', (c) => {
      chunks.push(c);
      arm();
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? finish(true) : reject(e)));
  });
}
