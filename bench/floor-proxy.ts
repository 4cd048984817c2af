/**
 * The floor (`npm run bench -- --floor`, scenario z): the least a Node reverse proxy built
 * from the same parts as Gatehouse can do per request, node:http in, an undici Pool out,
 * streaming both ways, no auth, no header rewriting beyond hop-by-hop, no log. What
 * Gatehouse costs on top of this is Gatehouse; what this costs is Node and the kernel.
 *
 *   node bench/floor-proxy.ts <upstream origin>    → prints "READY <port>"
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

const server = http.createServer((req, res) => {
  const headers: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (!HOP_BY_HOP.has(req.rawHeaders[i]!.toLowerCase())) headers.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  }
  pool.stream(
    { path: req.url!, method: req.method!, headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req },
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
});
// 5 s as Gatehouse's default; bench/instructions.ts (valgrind: a hundred times slower) sets more.
server.keepAliveTimeout = Number(process.env.FLOOR_KEEP_ALIVE_MS ?? 5_000);
server.listen(0, '127.0.0.1', () => process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
