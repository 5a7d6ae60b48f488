import type { DropboxAccountConfig } from '../../config/schema.js';
import type { ProviderContext } from '../registry.js';
import type { Provider } from '../types.js';
import { loadRefreshToken } from './credentials.js';
import { configuredFolders, DropboxProvider, type DropboxProviderOptions } from './provider.js';

/**
 * The provider of a `provider: dropbox` account. Checks the account's folders (CONFIG), then finds its
 * refresh token: `refreshToken` from the config, else the credentials file (PROVIDER_AUTH, saying to run
 * `syncguard auth dropbox --account NAME`, when there is none). Makes no call to Dropbox yet.
 */
export async function createDropboxProvider(
  account: DropboxAccountConfig,
  ctx: ProviderContext,
  opts: DropboxProviderOptions = {},
): Promise<Provider> {
  configuredFolders(account);
  const refreshToken = await loadRefreshToken(account, ctx.configDir, ctx.log);
  return new DropboxProvider(account, ctx, refreshToken, opts);
}

export { runDropboxAuth, type DropboxAuthOptions } from './auth.js';
export { credentialsPath, type DropboxCredentials } from './credentials.js';
export { DropboxContentHasher, dropboxContentHash } from './content-hash.js';
export { classify } from './classify.js';
export type { DropboxProviderOptions } from './provider.js';
