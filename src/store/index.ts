// store/ (model): the Store interface and its one SQL implementation over SQLite or PostgreSQL, with
// migrations; openStore picks the driver from the config.
import type { Config } from '../config/schema.ts';
import { migrate } from './migrations.ts';
import { createPostgresDriver } from './postgres.ts';
import { SqliteDriver } from './sqlite.ts';
import { SqlStore } from './sql-store.ts';
import type { Store } from './types.ts';

export type { Store, User, Session, NewUser, UserPatch, SigningKey, ProviderSessionLink } from './types.ts';
export { StoreConflictError, StoreUnavailableError } from './types.ts';
export type { Identity, LoginState, ProviderTokenRecord } from './provider-types.ts';
export type {
  OAuthStore,
  Grant,
  GrantKind,
  DeviceAuthorization,
  AuthorizationCode,
  StoredClient,
  CodeRedemption,
} from './oauth-types.ts';
export type { EmailToken, EmailTokenPurpose } from './email-token-types.ts';
export type { AuditEvent, AuditQuery, AuditStore } from './audit-types.ts';
export type { AppEventRecord, AppEventStore, OutboxWrite } from './app-event-types.ts';
export type { TransferStore } from './transfer.ts';
export type { MfaPending, MfaStore, Passkey, PendingPurpose, TotpFactor } from './mfa-types.ts';

/** Opens the configured store and brings its schema up to date. */
export async function openStore(
  config: Config['store'],
  options: { schema?: string; queryTimeoutMs?: number } = {},
): Promise<Store> {
  if (config.type === 'sqlite') {
    const driver = new SqliteDriver(config.path);
    await migrate(driver);
    return new SqlStore(driver);
  }
  const driver = createPostgresDriver({
    url: config.url,
    poolSize: config.poolSize,
    schema: options.schema,
    queryTimeoutMs: options.queryTimeoutMs,
  });
  try {
    await driver.withLock((db) => migrate(db));
  } catch (err) {
    await driver.close().catch(() => {});
    throw err;
  }
  return new SqlStore(driver);
}
