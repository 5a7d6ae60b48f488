import type { OnedriveAccountConfig } from '../../config/schema.js';
import type { ProviderContext } from '../registry.js';
import type { Provider } from '../types.js';
import { REFRESH_TOKEN_LIFETIME_MS, tokenExpiry } from './auth.js';
import { OnedriveProvider, type OnedriveProviderOptions } from './provider.js';

export { runOnedriveAuth, tokenExpiry, type OnedriveAuthOptions } from './auth.js';
export { QuickXorHash, quickXorHash } from './quickxor.js';
export type { OnedriveProviderOptions } from './provider.js';

/** A sign-in that ends within this time is reported when a provider is created. */
const EXPIRY_WARNING_MS = 14 * 24 * 3600 * 1000;

/**
 * The provider for a `provider: onedrive` account. Warns (through ctx.log) when the saved sign-in
 * ends within two weeks unless it is used; the sign-in itself is checked at the first call.
 */
export async function createOnedriveProvider(
  account: OnedriveAccountConfig,
  ctx: ProviderContext,
  opts: OnedriveProviderOptions = {},
): Promise<Provider> {
  const expiry = await tokenExpiry(account, ctx.configDir);
  if (expiry && expiry.getTime() - Date.now() < EXPIRY_WARNING_MS) {
    const past = expiry.getTime() <= Date.now();
    ctx.log(
      'warn',
      past
        ? `the OneDrive sign-in of account "${account.name}" has probably expired (unused since ${new Date(expiry.getTime() - REFRESH_TOKEN_LIFETIME_MS).toISOString().slice(0, 10)}): run \`syncguard auth onedrive --account ${account.name}\` if the run fails`
        : `the OneDrive sign-in of account "${account.name}" expires on ${expiry.toISOString().slice(0, 10)} unless it is used before: a snapshot renews it`,
    );
  }
  return new OnedriveProvider(account, ctx, opts);
}
