/**
 * The floor (`npm run bench -- --floor`, scenario z): the least a Node reverse proxy built
 * from the same parts as Gatehouse can do per request, node:http in, an undici Pool out,
 * streaming both ways, no auth, no header rewriting beyond hop-by-hop, no log. What
 * Gatehouse costs on top of this is Gatehouse; what this costs is Node and the kernel. With
 * `dispatch` (scenario y) it hands requests to undici as Gatehouse does, through dispatch() rather
 * than the peer bench's stream(): what the floor would be with Gatehouse's own way of calling undici.
 *
 *   node bench/floor-proxy.ts <upstream origin> [dispatch]    → prints "READY <port>"
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
]);
const pool = new Pool(process.argv[2]!, { connections: 512, pipelining: 1 });

const hopFree = (req: http.IncomingMessage): string[] => {
  const headers: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (!HOP_BY_HOP.has(req.rawHeaders[i]!.toLowerCase())) headers.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  }
  return headers;
};
const bodyOf = (req: http.IncomingMessage) => (req.method === 'GET' || req.method === 'HEAD' ? null : req);

/** pool.stream(), as the peer bench's node-floor.mjs: scenario z. */
const viaStream = (req: http.IncomingMessage, res: http.ServerResponse) =>
  pool.stream(
    { path: req.url!, method: req.method!, headers: hopFree(req), body: bodyOf(req) },
    ({ statusCode, headers: h }) => {
      const out: Record<string, string | string[]> = {};
      for (const k in h) if (!HOP_BY_HOP.has(k)) out[k] = h[k] as string | string[];
      res.writeHead(statusCode, out);
      return res;
    },
    (err) => {
      if (!err) return;
      if (res.headersSent) res.destroy();
      else res.writeHead(502).end();
    },
  );

type Controller = { abort(reason: Error): void; pause(): void; resume(): void };

/**
 * pool.dispatch() with a handler of its own, as Gatehouse's forward() (src/proxy/forward.ts):
 * scenario y, `bench/floor-proxy.ts <origin> dispatch`. The same work without undici's stream()
 * wrapping (an AsyncResource, an abort signal, lifecycle listeners on the response).
 */
class Relay {
  res: http.ServerResponse;
  controller: Controller | null = null;
  constructor(res: http.ServerResponse) {
    this.res = res;
    res.on('close', () => {
      if (!res.writableFinished) this.controller?.abort(new Error('client closed'));
    });
  }
  onRequestStart(controller: Controller): void {
    this.controller = controller;
  }
  onResponseStart(_c: Controller, statusCode: number, h: Record<string, string | string[]>): void {
    if (statusCode < 200) return;
    const out: Record<string, string | string[]> = {};
    for (const k in h) if (!HOP_BY_HOP.has(k)) out[k] = h[k]!;
    this.res.writeHead(statusCode, out);
  }
  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.res.write(chunk)) return;
    controller.pause();
    this.res.once('drain', () => controller.resume());
  }
  onResponseEnd(): void {
    this.res.end();
  }
  onResponseError(): void {
    if (this.res.headersSent) this.res.destroy();
    else this.res.writeHead(502).end();
  }
}
const viaDispatch = (req: http.IncomingMessage, res: http.ServerResponse) =>
  pool.dispatch({ path: req.url!, method: req.method!, headers: hopFree(req), body: bodyOf(req) }, new Relay(res));

const server = http.createServer(process.argv[3] === 'dispatch' ? viaDispatch : viaStream);
// 5 s as Gatehouse's default; bench/instructions.ts (valgrind: a hundred times slower) sets more.
server.keepAliveTimeout = Number(process.env.FLOOR_KEEP_ALIVE_MS ?? 5_000);
server.listen(0, '127.0.0.1', () => process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
