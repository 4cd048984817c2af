import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { ClusterCache } from '../cache/cluster.ts';
import { openCache } from '../cache/index.ts';
import { ConfigError, loadConfig, parseConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { lintConfig } from './lint.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { ClusterMetrics } from '../metrics/cluster.ts';
import { MetricsListener } from '../metrics/index.ts';
import { Gatehouse } from '../server/gatehouse.ts';
import { restartOnly } from '../server/wiring.ts';
import { CONFIG_ENV, isWorkerCommand, Supervisor, workerCount, workerId, workerPeers } from '../server/workers.ts';
import { err } from './io.ts';

/**
 * Starts a node and keeps it running until SIGTERM / SIGINT, then drains and exits. With
 * listen.workers > 1 this process becomes the primary of several workers (server/workers.ts),
 * and each worker runs this same function with the primary's configuration text.
 */
export async function serve(file: string): Promise<number> {
  const worker = workerId();
  // SIGHUP's default action ends the process. From here on it reloads, once the node serves (one
  // received while it starts is done then); a worker leaves it to the primary, which passes it on
  // (a terminal's hangup reaches every process of the group).
  const hangup = new Hangup();
  process.on('SIGHUP', () => {
    if (worker === undefined) hangup.received();
  });
  let text = worker !== undefined ? process.env[CONFIG_ENV] : undefined;
  delete process.env[CONFIG_ENV];
  let config;
  try {
    if (text === undefined) {
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        // loadConfig says why
      }
    }
    config = text !== undefined ? parseConfig(text, file) : loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`gatehouse: refusing to start.\n${e.message}`);
      return 2;
    }
    throw e;
  }
  const root = createLogger(config.log.level);
  // Each line of a worker says which one (and the primary's say worker 0).
  const count = workerCount(config);
  const logger = worker !== undefined ? root.child({ worker }) : count > 1 ? root.child({ worker: 0 }) : root;
  // The primary has logged the configuration's warnings already.
  if (worker === undefined) logFindings(config, logger);
  if (worker === undefined && count > 1) return primary(file, config, text!, logger, count, hangup);

  let gatehouse: Gatehouse | undefined;
  let stopping: string | undefined;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = signal;
    if (!gatehouse) return; // still starting: stopped once it has
    logger.info({ event: 'shutdown', signal }, 'draining');
    gatehouse.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  if (worker !== undefined) {
    // The primary asks for a drain or a reload. (If the primary dies, node:cluster ends its
    // workers at once, when their IPC channel closes.)
    process.on('message', (m) => {
      if (!isWorkerCommand(m)) return;
      if (m.gatehouse === 'drain') return stop('primary');
      if (!gatehouse) return; // still starting: the primary sends it again once this one listens
      gatehouse.reloadTls();
      if (m.refused !== undefined) return void gatehouse.reloadRefused(m.refused);
      // The primary has parsed and checked it: this cannot fail unless the environment differs.
      let next: Config;
      try {
        next = parseConfig(m.text, file);
      } catch (e) {
        return void gatehouse.reloadRefused((e as Error).message);
      }
      void gatehouse.reload(next);
    });
  }
  try {
    gatehouse = await Gatehouse.create(config, {
      logger,
      // The memory cache's counters are the primary's, shared by every worker.
      cache: worker !== undefined && config.cache.type === 'memory' ? new ClusterCache(process) : undefined,
    });
    // What one worker makes stale in the others' memory (an unlinked provider's tokens) is said.
    if (worker !== undefined) gatehouse.joinPeers(workerPeers());
  } catch (e) {
    const storeKey = config.store.type === 'postgres' ? 'store.url' : 'store.path';
    return fatal(logger, `cannot start: ${startupHint(e, storeKey)}`, errorCode(e));
  }
  try {
    await gatehouse.listen();
  } catch (e) {
    await gatehouse.close();
    return fatal(logger, listenHint(e, `${config.listen.host}:${config.listen.port}`), errorCode(e));
  }
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // SIGHUP re-reads listen.tls (a renewed certificate), each upstreamTls and the configuration
  // file, without dropping a connection (docs/operations.md "Reloading the configuration").
  if (worker === undefined)
    hangup.handle(() => {
      gatehouse.reloadTls();
      const next = reread(file, logger);
      if ('refused' in next) gatehouse.reloadRefused(next.refused);
      else void gatehouse.reload(next.config);
    });
  if (stopping) {
    const signal = stopping;
    stopping = undefined;
    stop(signal);
  }
  return new Promise(() => {});
}

/**
 * The primary of listen.workers > 1: does once what every worker would do first (migrations,
 * the master key, the first signing key, the TLS files, reaching the store and cache), so the
 * workers never race on them and a configuration that cannot start fails here, once, clearly;
 * checks the port is free; then forks the workers and keeps them running (server/workers.ts).
 */
async function primary(
  file: string,
  config: Config,
  text: string,
  logger: Logger,
  count: number,
  hangup: Hangup,
): Promise<number> {
  const storeKey = config.store.type === 'postgres' ? 'store.url' : 'store.path';
  try {
    const prepared = await Gatehouse.create(config, { logger, startJobs: false });
    await prepared.close();
  } catch (e) {
    return fatal(logger, `cannot start: ${startupHint(e, storeKey)}`, errorCode(e));
  }
  const where = `${config.listen.host}:${config.listen.port}`;
  try {
    await portFree(config.listen.port, config.listen.host);
  } catch (e) {
    return fatal(logger, listenHint(e, where), errorCode(e));
  }
  // metrics.listen is the primary's: each scrape asks every serving worker and sums (metrics/cluster.ts).
  let supervisor: Supervisor | undefined;
  const metrics = config.metrics ? new ClusterMetrics({ workers: () => supervisor?.serving() ?? [] }) : undefined;
  const metricsListener = metrics ? new MetricsListener(metrics) : undefined;
  if (metricsListener && config.metrics) {
    try {
      const at = await metricsListener.listen(config.metrics.listen);
      logger.info({ event: 'metrics_listening', listen: `http://${at.address}:${at.port}/metrics` }, 'metrics');
    } catch (e) {
      return fatal(logger, listenHint(e, config.metrics.listen), errorCode(e));
    }
  }
  const cache = config.cache.type === 'memory' ? await openCache(config.cache) : undefined;
  supervisor = new Supervisor({
    count,
    logger,
    drainMs: config.listen.timeouts.drain,
    cache,
    env: { [CONFIG_ENV]: text },
    metrics,
  });
  process.once('SIGTERM', () => supervisor.stop('SIGTERM'));
  process.once('SIGINT', () => supervisor.stop('SIGINT'));
  // SIGHUP: the file is read and checked here, once. Every worker is sent it (and says what it
  // did: reloaded, or a restart needed) or why it was refused; the workers started from now on get
  // it unless it needs a restart.
  hangup.handle(() => {
    const next = reread(file, logger);
    if ('refused' in next) return supervisor.reload({ text, refused: next.refused });
    const adopt = restartOnly(config, next.config).length === 0;
    if (adopt) [config, text] = [next.config, next.text];
    supervisor.reload({ text: next.text }, adopt);
  });
  const code = await supervisor.run();
  await metricsListener?.close();
  await cache?.close();
  logger.info({ event: 'exit', code }, 'every worker has stopped');
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  process.exit(code);
}

/** SIGHUP from the start of serve: acted on by handle()'s reload, one received before it then. */
class Hangup {
  private reload: (() => void) | undefined;
  private missed = false;

  received(): void {
    if (this.reload) this.reload();
    else this.missed = true;
  }

  handle(reload: () => void): void {
    this.reload = reload;
    if (this.missed) reload();
  }
}

/** The configuration's findings (lintConfig), logged as at start. Returns whether one is an error. */
function logFindings(config: Config, logger: Logger): boolean {
  let errors = false;
  for (const w of lintConfig(config)) {
    if (w.severity === 'error') {
      errors = true;
      logger.error({ event: 'config_error', key: w.key }, w.message);
    } else logger.warn({ event: 'config_warning', key: w.key }, w.message);
  }
  return errors;
}

/**
 * The configuration file read again for a reload (SIGHUP), with its findings logged as at start;
 * or why it must not be served: the error that names the key and line, or that `gatehouse check`
 * fails it.
 */
function reread(file: string, logger: Logger): { config: Config; text: string } | { refused: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { refused: `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
  let config: Config;
  try {
    config = parseConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigError) return { refused: e.message };
    throw e;
  }
  if (logFindings(config, logger)) return { refused: 'the configuration has errors (config_error above)' };
  return { config, text };
}

/** Listens on the port for a moment: a port in use is said once, before any worker starts. */
function portFree(port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

/**
 * A node that cannot start says so last: a JSON `fatal` event after every line logged before
 * it (the log is written asynchronously, so it is flushed first), for log collectors that read
 * stdout, then one line on stderr for the operator at the terminal.
 */
async function fatal(logger: Logger, reason: string, code: string | undefined): Promise<number> {
  logger.fatal({ event: 'fatal', code }, reason);
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  err(`gatehouse: ${reason}`);
  // A worker's IPC channel would keep it alive: it exits, and the primary counts a failed start.
  if (workerId() !== undefined) process.exit(1);
  return 1;
}

function listenHint(e: unknown, where: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  return `cannot listen on ${where}: ${
    code === 'EADDRINUSE'
      ? 'the port is in use; stop the other process or set listen.port'
      : code === 'EACCES'
        ? 'permission denied; use a port above 1023 or grant the capability'
        : (e as Error).message
  }`;
}

/** The error's code, or its cause's (a store's error wraps the socket's ECONNREFUSED). */
function errorCode(e: unknown): string | undefined {
  const error = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  return error.code ?? error.cause?.code;
}

export function startupHint(e: unknown, storeKey: string): string {
  const error = e as Error;
  const code = errorCode(e);
  const message = error.message;
  // The cache first: its error carries the socket error (ECONNREFUSED) as its cause too.
  if (error.name === 'CacheUnavailableError') return `${message}; check cache.url and that Redis is running`;
  if (error.name === 'StoreUnavailableError' || code === 'ECONNREFUSED')
    return `the store is unreachable (${message}); check ${storeKey} and that the database is running`;
  if (code === 'ERR_SQLITE_ERROR' || /SQLITE/.test(String(code)))
    return `cannot open the SQLite store (${message}); check ${storeKey} and its directory's permissions`;
  return message;
}
