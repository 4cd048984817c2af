import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ConfigSchema, type Config, type ConfigInput } from '../../src/config/schema.ts';
import { createLogger } from '../../src/log/index.ts';
import { Gatehouse } from '../../src/server/gatehouse.ts';
import type { TestCert } from './tls.ts';
import { startUpstream, type TestUpstream } from './upstream.ts';

const handedOut = new Set<number>();

/**
 * A port for a server that must be named before it starts (an IdP's redirect URI names
 * Gatehouse's). Picked at random below the kernel's ephemeral range (32768-60999 on Linux,
 * 49152-65535 elsewhere), where no `listen(0)` and no outgoing connection of a test running
 * beside this one can take it between this check and the server's own bind.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port)) continue;
    const s = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    handedOut.add(port);
    return port;
  }
}

export interface TestGatehouse {
  url: string;
  port: number;
  gatehouse: Gatehouse;
  config: Config;
  upstream: TestUpstream;
  /** Every log line Gatehouse wrote, parsed. */
  logs: Record<string, unknown>[];
  /** The raw log text, to search for leaked secrets. */
  logText(): string;
  dir: string;
  close(): Promise<void>;
}

/**
 * A real Gatehouse on a loopback port in front of a real upstream, with its own SQLite file.
 * `configure` gets the ports and returns config overrides (anything in gatehouse.yaml).
 */
export async function startGatehouse(
  configure: (ctx: { port: number; upstream: string; dir: string }) => Partial<ConfigInput> = () => ({}),
  options: {
    upstream?: TestUpstream;
    logLevel?: string;
    tls?: TestCert;
    port?: number;
    clock?: () => number;
    /**
     * Start the background jobs' timer. Default false: a purge 5-30 s into a test (one that moves
     * the OAuth server's clock, say) would delete what it looks at; tests run them with runJobs().
     */
    startJobs?: boolean;
  } = {},
): Promise<TestGatehouse> {
  const upstream = options.upstream ?? (await startUpstream());
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-test-'));
  const overrides = configure({ port, upstream: upstream.url, dir });
  const scheme = options.tls ? 'https' : 'http';
  const input: ConfigInput = {
    publicUrl: `${scheme}://127.0.0.1:${port}`,
    listen: {
      host: '127.0.0.1',
      port,
      ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
    },
    store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
    ...(overrides.apps ? {} : { upstream: upstream.url }),
    ...overrides,
  };
  const config = ConfigSchema.parse(input);
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger(options.logLevel ?? 'debug', sink);
  let gatehouse: Gatehouse | undefined;
  try {
    gatehouse = await Gatehouse.create(config, {
      logger,
      clock: options.clock,
      startJobs: options.startJobs ?? false,
    });
    await gatehouse.listen(port, '127.0.0.1');
  } catch (err) {
    // A Gatehouse that did not start leaves nothing open: a listening upstream or an open store
    // would keep the test file's process alive after its tests were cancelled.
    await gatehouse?.close().catch(() => {});
    if (!options.upstream) await upstream.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const logText = () => chunks.join('');
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    gatehouse,
    config,
    upstream,
    get logs() {
      return logText()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    logText,
    dir,
    close: async () => {
      await gatehouse.close();
      if (!options.upstream) await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
