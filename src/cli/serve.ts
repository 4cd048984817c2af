import { ConfigError, loadConfig } from '../config/load.ts';
import { lintConfig } from './lint.ts';
import { createLogger, type Logger } from '../log/index.ts';
import { Gatehouse } from '../server/gatehouse.ts';
import { err } from './io.ts';

/** Starts a node and keeps it running until SIGTERM / SIGINT, then drains and exits. */
export async function serve(file: string): Promise<number> {
  let config;
  try {
    config = loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`gatehouse: refusing to start.\n${e.message}`);
      return 2;
    }
    throw e;
  }
  const logger = createLogger(config.log.level);
  for (const w of lintConfig(config)) {
    if (w.severity === 'error') logger.error({ event: 'config_error', key: w.key }, w.message);
    else logger.warn({ event: 'config_warning', key: w.key }, w.message);
  }
  let gatehouse: Gatehouse;
  try {
    gatehouse = await Gatehouse.create(config, { logger });
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
  const stop = (signal: string) => {
    logger.info({ event: 'shutdown', signal }, 'draining');
    gatehouse.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // SIGHUP re-reads listen.tls (a renewed certificate) without dropping a connection.
  process.on('SIGHUP', () => gatehouse.reloadTls());
  return new Promise(() => {});
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
