import { Accounts } from '../accounts/service.ts';
import { Throttle } from '../accounts/throttle.ts';
import { MemoryCache } from '../cache/memory.ts';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { openStore, type Store } from '../store/index.ts';
import { loadSecrets } from '../keys/secrets.ts';

/** What operator commands need: the config's store and the account rules. */
export interface OperatorContext {
  config: Config;
  store: Store;
  accounts: Accounts;
  close(): Promise<void>;
}

export async function operatorContext(configFile: string): Promise<OperatorContext> {
  const config = loadConfig(configFile);
  const store = await openStore(config.store);
  const cache = new MemoryCache();
  const secrets = await loadSecrets(config.secrets, store.kv);
  const accounts = new Accounts(store, new Throttle(cache, secrets, config.accounts.rateLimits), config.accounts);
  return {
    config,
    store,
    accounts,
    close: async () => {
      await cache.close();
      await store.close();
    },
  };
}
