/**
 * Fixed-rate (open-loop) HTTP/1.1 load generator, run as its own process by bench/run.ts:
 *
 *   node bench/paced.ts '<json options>'     → one JSON line with the result on stdout
 *
 * Why not autocannon's --overallRate: it lets each connection fire its whole per-second
 * budget as fast as it can and then wait for the next second (bursts, not a rate), and it
 * records latency in whole milliseconds. A latency target of "within 2 ms" needs better.
 *
 * Here requests are issued on a fixed schedule (one every 1/rate s) whatever the server does,
 * over a pool of keep-alive connections. A request that finds no idle connection waits in a
 * queue and its wait counts in its latency, so a server stall shows up in the percentiles
 * instead of silently lowering the rate (coordinated omission). Latency runs from the moment
 * the generator issued the request to the last byte of the response, in microseconds. The
 * generator's own timer lateness ("lag": issue time minus scheduled time) is reported apart,
 * so a busy load-generator core is visible instead of being charged to the server.
 */
import net from 'node:net';

export interface PacedOptions {
  url: string;
  headers: [string, string][];
  /** Requests per second. */
  rate: number;
  /** Seconds measured, after `warmup` seconds at the same rate that are not recorded. */
  duration: number;
  warmup: number;
  connections: number;
}

export interface PacedResult {
  tool: 'paced';
  rate: number;
  seconds: number;
  issued: number;
  completed: number;
  errors: number;
  non2xx: number;
  /** Completed measured requests per second. */
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  lagMs: { p99: number; max: number };
  /** True when the backlog grew past two seconds of requests and the run was cut short. */
  overloaded: boolean;
}

interface Pending {
  issuedAt: number;
  measured: boolean;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('\r\n0\r\n\r\n');

class Connection {
  socket: net.Socket;
  current: Pending | null = null;
  private buf: Buffer | null = null;
  private inBody = false;
  private bodyLeft = 0;
  private chunked = false;
  private close = false;
  private status = 0;
  private readonly gen: PacedLoad;

  constructor(gen: PacedLoad) {
    this.gen = gen;
    this.socket = this.open();
  }

  private open(): net.Socket {
    const s = net.connect({ host: this.gen.host, port: this.gen.port, noDelay: true });
    s.on('connect', () => this.gen.ready(this));
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('error', () => {});
    s.on('close', () => this.onClose());
    return s;
  }

  send(p: Pending): void {
    this.current = p;
    this.socket.write(this.gen.request);
  }

  private onClose(): void {
    const lost = this.current;
    this.current = null;
    this.buf = null;
    this.inBody = false;
    if (lost) this.gen.failed(lost);
    if (!this.gen.stopped) this.socket = this.open();
  }

  private onData(chunk: Buffer): void {
    let buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (!this.inBody) {
        const end = buf.indexOf(HEADER_END);
        if (end === -1) break;
        const head = buf.toString('latin1', 0, end);
        this.status = Number(head.slice(9, 12));
        const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
        this.chunked = /\r\ntransfer-encoding:[ \t]*chunked/i.test(head);
        this.close = /\r\nconnection:[ \t]*close/i.test(head);
        if (!cl && !this.chunked && this.status !== 204 && this.status !== 304) {
          // A body delimited by the end of the connection: not something a keep-alive bench can time.
          this.socket.destroy();
          return;
        }
        this.bodyLeft = cl ? Number(cl[1]) : 0;
        this.inBody = true;
        buf = buf.subarray(end + 4);
      }
      if (this.chunked) {
        // Enough for the bench: small bodies, no trailers.
        const end = buf.indexOf(CHUNKED_END);
        if (end === -1) break;
        buf = buf.subarray(end + CHUNKED_END.length);
      } else {
        if (buf.length < this.bodyLeft) {
          this.bodyLeft -= buf.length;
          buf = buf.subarray(buf.length);
          break;
        }
        buf = buf.subarray(this.bodyLeft);
      }
      this.inBody = false;
      const done = this.current;
      this.current = null;
      if (done) this.gen.completed(done, this.status);
      if (this.close) {
        this.socket.destroy();
        return;
      }
      this.gen.ready(this);
      if (buf.length === 0) break;
    }
    this.buf = buf.length ? buf : null;
  }
}

class PacedLoad {
  readonly host: string;
  readonly port: number;
  readonly request: Buffer;
  stopped = false;
  private readonly o: PacedOptions;
  private readonly idle: Connection[] = [];
  private readonly queue: Pending[] = [];
  private readonly latencies: number[] = [];
  private readonly lags: number[] = [];
  private issued = 0;
  private errors = 0;
  private non2xx = 0;
  private outstanding = 0;
  private overloaded = false;
  private connected = 0;
  private onConnected: (() => void) | null = null;
  private onDrained: (() => void) | null = null;

  constructor(o: PacedOptions) {
    this.o = o;
    const u = new URL(o.url);
    this.host = u.hostname;
    this.port = Number(u.port || 80);
    const lines = [
      `GET ${u.pathname}${u.search} HTTP/1.1`,
      `Host: ${u.host}`,
      ...o.headers.map(([k, v]) => `${k}: ${v}`),
    ];
    this.request = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  }

  ready(c: Connection): void {
    if (this.onConnected) {
      if (++this.connected === this.o.connections) this.onConnected();
    }
    const next = this.queue.shift();
    if (next) c.send(next);
    else this.idle.push(c);
  }

  completed(p: Pending, status: number): void {
    this.outstanding--;
    if (p.measured) {
      this.latencies.push(performance.now() - p.issuedAt);
      if (status < 200 || status > 299) this.non2xx++;
    }
    if (this.outstanding === 0) this.onDrained?.();
  }

  failed(p: Pending): void {
    this.outstanding--;
    if (p.measured) this.errors++;
    if (this.outstanding === 0) this.onDrained?.();
  }

  private issue(now: number, scheduled: number, measured: boolean): void {
    const p: Pending = { issuedAt: now, measured };
    this.issued++;
    this.outstanding++;
    if (measured) this.lags.push(now - scheduled);
    // Oldest idle connection first: every connection stays in use, so none sits idle long
    // enough to meet the server's keep-alive timeout (a close racing a request is not a
    // server failure, but would count as one).
    const c = this.idle.shift();
    if (c) c.send(p);
    else this.queue.push(p);
  }

  async run(): Promise<PacedResult> {
    const conns: Connection[] = [];
    await new Promise<void>((resolve) => {
      this.onConnected = resolve;
      for (let i = 0; i < this.o.connections; i++) conns.push(new Connection(this));
    });
    this.onConnected = null;
    const interval = 1000 / this.o.rate;
    const total = Math.round(this.o.rate * (this.o.warmup + this.o.duration));
    const firstMeasured = Math.round(this.o.rate * this.o.warmup);
    const start = performance.now() + 5;
    let next = 0;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        while (next < total && start + next * interval <= now) {
          this.issue(now, start + next * interval, next >= firstMeasured);
          next++;
        }
        if (this.queue.length > this.o.rate * 2) {
          this.overloaded = true;
          return resolve();
        }
        if (next >= total) return resolve();
        setTimeout(tick, Math.max(0, start + next * interval - performance.now() - 0.5));
      };
      tick();
    });
    // Let the last requests finish (their latency counts), for at most 10 s.
    if (this.outstanding > 0 && !this.overloaded) {
      await new Promise<void>((resolve) => {
        this.onDrained = resolve;
        setTimeout(resolve, 10_000).unref();
      });
    }
    this.stopped = true;
    for (const c of conns) c.socket.destroy();
    const measuredIssued = Math.max(0, next - firstMeasured);
    const lost = Math.max(0, measuredIssued - this.latencies.length - this.errors);
    return {
      tool: 'paced',
      rate: this.o.rate,
      seconds: this.o.duration,
      issued: measuredIssued,
      completed: this.latencies.length,
      errors: this.errors + lost,
      non2xx: this.non2xx,
      rps: this.latencies.length / this.o.duration,
      latencyMs: summarize(this.latencies),
      lagMs: (({ p99, max }) => ({ p99, max }))(summarize(this.lags)),
      overloaded: this.overloaded,
    };
  }
}

function summarize(values: number[]): PacedResult['latencyMs'] {
  const v = Float64Array.from(values).sort();
  const at = (q: number) => (v.length ? v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))]! : NaN);
  let sum = 0;
  for (const x of v) sum += x;
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    p50: r3(at(0.5)),
    p90: r3(at(0.9)),
    p99: r3(at(0.99)),
    p999: r3(at(0.999)),
    max: r3(v.length ? v[v.length - 1]! : NaN),
    mean: r3(v.length ? sum / v.length : NaN),
  };
}

if (import.meta.main) {
  const options = JSON.parse(process.argv[2] ?? '{}') as PacedOptions;
  const result = await new PacedLoad(options).run();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
