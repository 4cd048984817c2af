/**
 * Memory after bursts of connections (issue 12): starts `gatehouse serve` (SQLite, a tiny app
 * behind it), then, round after round, opens BURST connections at once, sends one request on each
 * (half /.auth/health, half a proxied GET of the app), closes them all, waits, and reads the
 * server's RSS from /proc. Prints RSS per round. Linux only.
 *
 *   node bench/bursts.ts [rounds=10] [burst=5000] [pauseMs=3000]
 * rounds may be a duration instead (`600s`): rounds until that many seconds have passed.
 * The server's NODE_OPTIONS are the environment's: run once as is and once with
 * GATEHOUSE_NO_V8_FLAGS=1 to compare.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import http from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

const [roundsArg = '10', burstArg = '5000', pauseArg = '3000'] = process.argv.slice(2);
const forSeconds = roundsArg.endsWith('s') ? Number(roundsArg.slice(0, -1)) : Infinity;
const rounds = roundsArg.endsWith('s') ? Infinity : Number(roundsArg);
const burst = Number(burstArg);
const pauseMs = Number(pauseArg);

const app = http.createServer((_req, res) => res.end('x'.repeat(2048)));
await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
const appPort = (app.address() as AddressInfo).port;
const probe = createServer();
await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
const port = (probe.address() as AddressInfo).port;
await new Promise<void>((r) => probe.close(() => r()));

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bursts-'));
const file = join(dir, 'gatehouse.yaml');
writeFileSync(
  file,
  `publicUrl: http://127.0.0.1:${port}\nlisten: {host: 127.0.0.1, port: ${port}}\nstore: {type: sqlite, path: ${join(dir, 'g.db')}}\nupstream: http://127.0.0.1:${appPort}\nroutes: [{path: /pub/**, access: public}]\nlog: {level: warn}\n`,
);
const child = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--config', file], {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: process.env,
});
const rss = () => {
  // The node that serves: the re-executed child when `serve` re-executes itself.
  const pids = [child.pid!, ...childrenOf(child.pid!)];
  return Math.max(
    ...pids.map((p) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) / 1024),
  );
};
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
for (;;) {
  const ok = await new Promise<boolean>((r) => {
    const s = connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
    s.on('error', () => r(false));
  });
  if (ok) break;
  await new Promise((r) => setTimeout(r, 100));
}
await new Promise((r) => setTimeout(r, 1000));
console.log(`start: RSS ${rss().toFixed(0)} MiB (NODE_OPTIONS=${process.env.NODE_OPTIONS ?? ''})`);

function one(i: number): Promise<Socket> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const path = process.env.BURSTS_PATH ?? (i % 2 ? '/.auth/health' : '/pub/x');
    s.on('error', () => resolve(s));
    s.once('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`));
    s.once('data', () => resolve(s));
  });
}

let peak = 0;
const t0 = Date.now();
for (let round = 1; round <= rounds && Date.now() - t0 < forSeconds * 1000; round++) {
  const sockets = await Promise.all(Array.from({ length: burst }, (_, i) => one(i)));
  peak = Math.max(peak, rss());
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, pauseMs));
  console.log(
    `round ${round} (+${((Date.now() - t0) / 1000).toFixed(0)} s): ${burst} connections; RSS after ${rss().toFixed(0)} MiB (peak so far ${peak.toFixed(0)}) [load ${loadavg()[0]!.toFixed(2)}]`,
  );
  if (process.env.BURSTS_SMAPS)
    for (const p of [child.pid!, ...childrenOf(child.pid!)]) {
      const heap = /[0-9a-f]+-[0-9a-f]+ [^\n]*\[heap\]\n(?:[^\n]*\n)*?Rss:\s+(\d+)/.exec(
        readFileSync(`/proc/${p}/smaps`, 'utf8'),
      );
      console.log(
        `  pid ${p}: [heap] (malloc's main arena) RSS ${heap ? (Number(heap[1]) / 1024).toFixed(0) : '?'} MiB`,
      );
    }
  if (process.env.BURSTS_SIGNAL) for (const p of [child.pid!, ...childrenOf(child.pid!)]) process.kill(p, 'SIGUSR2');
}
child.kill('SIGTERM');
app.close();
