import { ConfigError, loadConfig } from '../config/load.ts';
import { lintConfig } from '../config/lint.ts';
import { createLogger } from '../log/index.ts';
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
    err(`gatehouse: cannot start: ${startupHint(e, config.store.type === 'postgres' ? 'store.url' : 'store.path')}`);
    return 1;
  }
  try {
    await gatehouse.listen();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const where = `${config.listen.host}:${config.listen.port}`;
    err(
      `gatehouse: cannot listen on ${where}: ${
        code === 'EADDRINUSE'
          ? 'the port is in use; stop the other process or set listen.port'
          : code === 'EACCES'
            ? 'permission denied; use a port above 1023 or grant the capability'
            : (e as Error).message
      }`,
    );
    await gatehouse.close();
    return 1;
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

export function startupHint(e: unknown, storeKey: string): string {
  const error = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = error.code ?? error.cause?.code;
  const message = error.message;
  // The cache first: its error carries the socket error (ECONNREFUSED) as its cause too.
  if (error.name === 'CacheUnavailableError') return `${message}; check cache.url and that Redis is running`;
  if (error.name === 'StoreUnavailableError' || code === 'ECONNREFUSED')
    return `the store is unreachable (${message}); check ${storeKey} and that the database is running`;
  if (code === 'ERR_SQLITE_ERROR' || /SQLITE/.test(String(code)))
    return `cannot open the SQLite store (${message}); check ${storeKey} and its directory's permissions`;
  return message;
}
