import { statSync } from 'node:fs';
import { loadConfig } from '../config/load.ts';
import { backupSqlite } from '../store/sqlite.ts';
import { out, UsageError } from './io.ts';

/**
 * `gatehouse backup <file>`: a consistent copy of the SQLite store, taken while Gatehouse
 * runs (SQLite's online backup). The file is 0600 and never replaces another unless --force.
 * Restoring is copying it back while Gatehouse is stopped (README: Backup and restore).
 */
export async function backup(configFile: string, args: string[], flags: { force?: boolean }): Promise<number> {
  const [target, ...extra] = args;
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const config = loadConfig(configFile);
  if (config.store.type !== 'sqlite')
    throw new UsageError(
      'the store is PostgreSQL: back it up with pg_dump (pg_dump --format=custom --file=gatehouse.dump "$DATABASE_URL"), restore with pg_restore',
    );
  if (!flags.force && statSync(target!, { throwIfNoEntry: false }))
    throw new UsageError(`${target} exists; use --force to replace it`);
  const pages = await backupSqlite(config.store.path, target!);
  out(`${target}: a consistent copy of ${config.store.path} (${pages} pages), readable only by you (0600)`);
  out(
    config.secrets.key
      ? 'It holds password hashes and sessions, and restoring it needs the same secrets.key: keep both private.'
      : 'It holds the master key Gatehouse generated (secrets.key is not set), and so every signing key and provider token: keep it as secret as that key.',
  );
  return 0;
}
