import type { AccountConfig } from '../config/schema.js';
import type { Log } from '../log.js';
import type { Provider } from './types.js';

export interface ProviderContext {
  /** The config file's folder: relative paths in an account are resolved against it. */
  configDir: string;
  log: Log;
  /** fetch for every HTTP call a provider makes; a test may pass one that counts or fails calls. */
  fetch?: typeof fetch;
  /** Where a provider may keep caches (never secrets). */
  stateDir?: string;
  /** Told each time the service throttles the account: every call waits until `until`. For the
   *  progress line: a 300 s Retry-After should not look like a hang. */
  onThrottle?: (until: Date, reason: string) => void;
}

/** The provider for an account. Loads only the SDK that account needs. */
export async function createProvider(account: AccountConfig, ctx: ProviderContext): Promise<Provider> {
  switch (account.provider) {
    case 'local': {
      const { LocalProvider } = await import('./local.js');
      return new LocalProvider(account, ctx);
    }
    case 'dropbox': {
      const { createDropboxProvider } = await import('./dropbox/index.js');
      return createDropboxProvider(account, ctx);
    }
    case 'onedrive': {
      const { createOnedriveProvider } = await import('./onedrive/index.js');
      return createOnedriveProvider(account, ctx);
    }
  }
}
