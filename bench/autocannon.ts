/**
 * autocannon in a process of its own (bench/run.ts starts it pinned to the load generator's
 * core): `node bench/autocannon.ts '<json options>'` prints autocannon's result as one JSON
 * line. Used for saturation when wrk is not installed.
 */
import { createRequire } from 'node:module';

interface Options {
  url: string;
  headers: Record<string, string>;
  connections: number;
  duration: number;
  workers?: number;
}

type Autocannon = (o: Record<string, unknown>) => Promise<Record<string, unknown>>;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
const o = JSON.parse(process.argv[2] ?? '{}') as Options;
const result = await autocannon({
  url: o.url,
  headers: o.headers,
  connections: o.connections,
  duration: o.duration,
  workers: o.workers,
  pipelining: 1,
  timeout: 10,
});
process.stdout.write(`${JSON.stringify(result)}\n`);
