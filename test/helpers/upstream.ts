import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
}

/**
 * A real upstream app on loopback that records what it receives. Paths:
 *   /slow?ms=N        answers after N ms
 *   /bytes?n=N        streams N bytes
 *   /upload           counts the streamed request body
 *   /status/N         answers with status N
 *   /redirect?to=X    302 to X; "{self}" in X is this app's URL as its Host header makes it
 *   /ws               WebSocket echo (also reports the upgrade request's headers)
 *   /ws-declined      declines the upgrade with 403 (?bytes=N: an N-byte body)
 *   anything else     JSON echo of method, url and headers
 */
export interface TestUpstream {
  url: string;
  port: number;
  requests: SeenRequest[];
  last(): SeenRequest;
  server: http.Server | https.Server;
  close(): Promise<void>;
}

export async function startUpstream(o: { tls?: https.ServerOptions } = {}): Promise<TestUpstream> {
  const requests: SeenRequest[] = [];
  /** With tls: the CN of the client certificate the request came with (null: none). */
  const peer = (req: http.IncomingMessage) =>
    o.tls ? { clientCn: (req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? null } : {};
  const handler: http.RequestListener = (req, res) => {
    const seen: SeenRequest = {
      method: req.method!,
      url: req.url!,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyBytes: 0,
    };
    requests.push(seen);
    req.on('data', (c: Buffer) => (seen.bodyBytes += c.length));
    req.on('end', () => {
      const u = new URL(req.url!, 'http://x');
      if (u.pathname === '/slow') {
        const t = setTimeout(() => res.end('slow'), Number(u.searchParams.get('ms') ?? 1000));
        res.on('close', () => clearTimeout(t));
        return;
      }
      if (u.pathname === '/bytes') {
        let left = Number(u.searchParams.get('n') ?? 0);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
        const chunk = Buffer.alloc(64 * 1024, 120);
        const pump = () => {
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            left -= n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
          }
          res.end();
        };
        return pump();
      }
      if (u.pathname === '/redirect' || u.pathname.endsWith('/redirect')) {
        const to = (u.searchParams.get('to') ?? '/').replace(
          '{self}',
          `${o.tls ? 'https' : 'http'}://${req.headers.host}`,
        );
        res.writeHead(302, { location: to, 'content-length': 0 });
        return res.end();
      }
      if (u.pathname.endsWith('/app-ratelimit')) {
        // An app that states a rate limit policy of its own (draft-ietf-httpapi-ratelimit-headers).
        res.writeHead(200, {
          'content-type': 'text/plain',
          'ratelimit-policy': '"app";q=1000;w=3600',
          ratelimit: '"app";r=999;t=3600',
        });
        return res.end('app');
      }
      if (u.pathname.startsWith('/status/')) {
        res.writeHead(Number(u.pathname.slice(8)), { 'content-type': 'text/plain' });
        return res.end('status');
      }
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        bodyBytes: seen.bodyBytes,
        ...peer(req),
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'set-cookie': 'app=1; Path=/',
        connection: 'keep-alive, x-app-private',
        'x-app-private': 'hop',
        'keep-alive': 'timeout=5',
      });
      res.end(body);
    });
  };
  const server = o.tls ? https.createServer(o.tls, handler) : http.createServer(handler);
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    requests.push({
      method: req.method!,
      url: req.url!,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyBytes: 0,
    });
    // An app that declines the upgrade, with a short answer or one of `?bytes=` bytes.
    if (req.url!.startsWith('/ws-declined')) {
      const bytes = Number(new URL(req.url!, 'http://x').searchParams.get('bytes') ?? 0) || 0;
      const body = bytes ? Buffer.alloc(bytes, 'x') : Buffer.from('no websockets here');
      socket.on('error', () => {});
      return void socket.end(
        Buffer.concat([
          Buffer.from(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n`),
          body,
        ]),
      );
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ hello: true, headers: req.headers, ...peer(req) }));
      ws.on('message', (m) => ws.send(String(m)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${o.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    server,
    last: () => requests[requests.length - 1]!,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
