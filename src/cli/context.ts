import { Accounts } from '../accounts/service.ts';
import { Throttle } from '../accounts/throttle.ts';
import { MemoryCache } from '../cache/memory.ts';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { openStore, type Store } from '../store/index.ts';
import { loadSecrets } from '../keys/secrets.ts';
import { AppEvents } from '../events/index.ts';
import { issuerOf, KeyRing, keyPolicy } from '../keys/keys.ts';
import { createLogger } from '../log/index.ts';

/** What operator commands need: the config's store and the account rules. */
export interface OperatorContext {
  config: Config;
  store: Store;
  accounts: Accounts;
  /**
   * Events for apps (src/events/): a command records them in the store's outbox; `tellApps()`
   * sends them at once, and what an app does not take, `gatehouse serve` retries.
   */
  events: AppEvents;
  close(): Promise<void>;
}

export async function operatorContext(configFile: string): Promise<OperatorContext> {
  const config = loadConfig(configFile);
  const store = await openStore(config.store);
  const cache = new MemoryCache();
  const secrets = await loadSecrets(config.secrets, store.kv);
  // The key ring is opened only when an event is signed: most commands never do.
  let ring: Promise<KeyRing> | undefined;
  const openRing = () => (ring ??= KeyRing.open(store, secrets, keyPolicy(config), { issuer: issuerOf(config) }));
  const events = AppEvents.forConfig(config, {
    store,
    ring: { sign: async (claims, options) => (await openRing()).sign(claims, options) },
    logger: createLogger('error', process.stderr),
    // Sent by the command itself once it is done (cli/events.ts: tellApps), which then says how it went.
    sendAtOnce: false,
  });
  const accounts = new Accounts(
    store,
    new Throttle(cache, secrets, config.accounts.rateLimits),
    config.accounts,
    events,
  );
  return {
    config,
    store,
    accounts,
    events,
    close: async () => {
      await events.close();
      (await ring?.catch(() => undefined))?.close();
      await cache.close();
      await store.close();
    },
  };
}
