/**
 * The bench's app: node:http answering every request with the same small JSON body, so the
 * measurement is about the hop in front of it, not about the app. Run as its own process by
 * bench/run.ts: `node bench/upstream.ts <port>` prints "READY <port>" once listening.
 *
 * A request whose URL ends in "?echo" is answered with the request headers it received; run.ts uses it once per
 * scenario, before measuring, to prove the scenario is what it claims (identity header there
 * or not). It is never part of the measured load.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const BODY = Buffer.from('{"ok":true,"message":"hello from the bench upstream"}\n');
const HEADERS = { 'content-type': 'application/json', 'content-length': String(BODY.length) };

const server = http.createServer((req, res) => {
  if (req.url!.endsWith('?echo')) {
    const echo = Buffer.from(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(echo.length) });
    res.end(echo);
    return;
  }
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
// Longer than any client's idle time here, so the app never closes a pooled connection first.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
