import type { OnedriveAccountConfig } from '../../config/schema.js';
import { SyncguardError } from '../../errors.js';
import type { ProviderContext } from '../registry.js';
import type { Provider } from '../types.js';

export async function createOnedriveProvider(_account: OnedriveAccountConfig, _ctx: ProviderContext): Promise<Provider> {
  throw new SyncguardError('CONFIG', 'the onedrive provider is not built yet');
}
