import type { DropboxAccountConfig } from '../../config/schema.js';
import { SyncguardError } from '../../errors.js';
import type { ProviderContext } from '../registry.js';
import type { Provider } from '../types.js';

export async function createDropboxProvider(_account: DropboxAccountConfig, _ctx: ProviderContext): Promise<Provider> {
  throw new SyncguardError('CONFIG', 'the dropbox provider is not built yet');
}
