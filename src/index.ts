/**
 * Gatehouse as a library: run it inside your own Node process instead of `gatehouse serve`.
 *
 *   import { Gatehouse, loadConfig } from 'gatehouse';
 *   const gatehouse = await Gatehouse.create(loadConfig('gatehouse.yaml'));
 *   await gatehouse.listen();
 *   process.on('SIGTERM', () => gatehouse.close());
 *
 * Apps that verify the identity assertion import `gatehouse/verify` instead (jose only).
 */
export { Gatehouse, type GatehouseOptions } from './server/gatehouse.ts';
export { ConfigError, loadConfig, parseConfig } from './config/load.ts';
export { ConfigSchema, type Config, type ConfigInput } from './config/schema.ts';
export { lintConfig } from './cli/lint.ts';
export type { Warning } from './config/warning.ts';
export { createLogger, type Logger } from './log/index.ts';
export { openStore, StoreConflictError, StoreUnavailableError, type Store } from './store/index.ts';
