import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import {
  LogLevel,
  PublicClientApplication,
  type AccountInfo,
  type ICachePlugin,
  type INetworkModule,
  type NetworkRequestOptions,
  type NetworkResponse,
} from '@azure/msal-node';
import type { OnedriveAccountConfig } from '../../config/schema.js';
import { SyncguardError, abortError, throwIfAborted } from '../../errors.js';
import { expandHome } from '../../util.js';
import { classify } from './classify.js';

/** The host MSAL knows without discovery (it carries hard-coded metadata for it). */
const LOGIN_HOST = 'login.microsoftonline.com';

/** Microsoft's refresh tokens expire after 90 days without use; each refresh starts a new 90 days. */
export const REFRESH_TOKEN_LIFETIME_MS = 90 * 24 * 3600 * 1000;

/** Delegated permissions: reading every file the user can open; SharePoint sites need Sites.Read.All
 *  to be found by name; writing back (restore into OneDrive) needs Files.ReadWrite.All. */
export function scopesFor(
  account: Pick<OnedriveAccountConfig, 'drive'>,
  opts: { write?: boolean } = {},
): string[] {
  const scopes = ['Files.Read.All'];
  if (typeof account.drive === 'object' && 'site' in account.drive) scopes.push('Sites.Read.All');
  if (opts.write) scopes.push('Files.ReadWrite.All');
  return scopes;
}

export function credentialsPath(
  account: Pick<OnedriveAccountConfig, 'credentials'>,
  configDir: string,
): string {
  return expandHome(account.credentials, configDir);
}

function authHint(account: string): string {
  return `run \`syncguard auth onedrive --account ${account}\` again`;
}

/** Writes a file that only its owner can read, atomically: temp file, fsync, rename. */
export async function writeSecretFile(path: string, data: string): Promise<void> {
  await fsp.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await fsp.open(tmp, 'wx', 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } catch (e) {
    await handle.close();
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await handle.close();
  try {
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  const dir = await fsp.open(dirname(path), 'r').catch(() => undefined);
  await dir?.sync().catch(() => undefined);
  await dir?.close();
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * MSAL's token cache in the account's credentials file. The cache holds the refresh token, which
 * Microsoft rotates on every refresh, so every change is written back at once (atomically, 0600).
 * `fresh` starts from an empty cache: a new sign-in replaces the old one.
 */
class FileCachePlugin implements ICachePlugin {
  constructor(
    private readonly path: string,
    private fresh = false,
  ) {}

  async beforeCacheAccess(ctx: Parameters<ICachePlugin['beforeCacheAccess']>[0]): Promise<void> {
    if (this.fresh) return;
    let text: string | undefined;
    try {
      text = await readIfExists(this.path);
    } catch (e) {
      throw new SyncguardError(
        'PROVIDER_AUTH',
        `the OneDrive credentials file ${this.path} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
        { cause: e },
      );
    }
    if (text === undefined) return;
    try {
      ctx.tokenCache.deserialize(text);
    } catch (e) {
      throw new SyncguardError(
        'PROVIDER_AUTH',
        `the OneDrive credentials file ${this.path} is not a token cache`,
        { cause: e },
      );
    }
  }

  async afterCacheAccess(ctx: Parameters<ICachePlugin['afterCacheAccess']>[0]): Promise<void> {
    if (!ctx.cacheHasChanged) return;
    await writeSecretFile(this.path, ctx.tokenCache.serialize());
    this.fresh = false;
  }
}

/** Where MSAL sends sign-in requests. `authority` http://… (an emulator) keeps MSAL's own https
 *  authority, which it insists on, and rewrites the requests in the network client. */
function loginTarget(account: Pick<OnedriveAccountConfig, 'authority' | 'tenant'>): {
  authority: string;
  rewriteTo?: string;
} {
  const tenant = encodeURIComponent(account.tenant);
  if (!account.authority) return { authority: `https://${LOGIN_HOST}/${tenant}` };
  const url = new URL(account.authority);
  if (url.protocol === 'http:')
    return {
      authority: `https://${LOGIN_HOST}/${tenant}`,
      rewriteTo: url.origin + url.pathname.replace(/\/+$/, ''),
    };
  return { authority: `${url.origin}${url.pathname.replace(/\/+$/, '')}/${tenant}` };
}

/** MSAL's network module on top of fetch, so that a test's fetch sees sign-in calls too. */
function networkClient(fetchImpl: typeof fetch, rewriteTo?: string): INetworkModule {
  const send = async <T>(
    method: 'GET' | 'POST',
    url: string,
    options?: NetworkRequestOptions,
  ): Promise<NetworkResponse<T>> => {
    let target = url;
    if (rewriteTo) {
      const u = new URL(url);
      if (u.hostname === LOGIN_HOST) target = rewriteTo + u.pathname + u.search;
    }
    const res = await fetchImpl(target, {
      method,
      headers: options?.headers,
      body: method === 'POST' ? options?.body : undefined,
    });
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      body = {
        error: res.status >= 500 ? 'temporarily_unavailable' : 'invalid_response',
        error_description: `HTTP ${res.status} from the sign-in service`,
      };
    }
    const headers: Record<string, string> = {};
    res.headers.forEach((v, k) => {
      headers[k] = v;
    });
    return { status: res.status, headers, body: body as T };
  };
  return {
    sendGetRequestAsync: (url, options) => send('GET', url, options),
    sendPostRequestAsync: (url, options) => send('POST', url, options),
  };
}

export interface MsalAppOptions {
  cachePath: string;
  fetch?: typeof fetch;
  /** Start from an empty cache (a new sign-in). */
  fresh?: boolean;
}

export function createMsalApp(
  account: Pick<OnedriveAccountConfig, 'clientId' | 'tenant' | 'authority'>,
  opts: MsalAppOptions,
): PublicClientApplication {
  const { authority, rewriteTo } = loginTarget(account);
  const fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
  return new PublicClientApplication({
    auth: { clientId: account.clientId, authority },
    cache: { cachePlugin: new FileCachePlugin(opts.cachePath, opts.fresh) },
    system: {
      networkClient: networkClient(fetchImpl, rewriteTo),
      // MSAL's own log lines can hold personal data; we report what matters ourselves.
      loggerOptions: { loggerCallback: () => {}, piiLoggingEnabled: false, logLevel: LogLevel.Error },
    },
  });
}

/**
 * Access tokens for one set of scopes, from the cached sign-in. Keeps the current token in memory,
 * and lets one refresh run at a time: Microsoft rotates refresh tokens, and two refreshes racing with
 * the same one would lose the sign-in.
 */
export class TokenSource {
  private token?: { value: string; expiresOn: number };
  private inFlight?: Promise<string>;

  constructor(
    private readonly app: PublicClientApplication,
    private readonly scopes: string[],
    private readonly account: { name: string; credentialsPath: string },
    private readonly write = false,
  ) {}

  /** A valid access token. Throws PROVIDER_AUTH when the sign-in is gone. */
  async get(signal?: AbortSignal): Promise<string> {
    throwIfAborted(signal);
    if (this.token && this.token.expiresOn - Date.now() > 120_000) return this.token.value;
    return this.acquire(false);
  }

  /** A new access token after `stale` was refused; one refresh however many callers saw the refusal. */
  async refresh(stale: string | undefined): Promise<string> {
    // A silent acquisition already on its way may bring back the very token that was refused.
    if (this.inFlight) await this.inFlight.catch(() => undefined);
    if (this.token && this.token.value !== stale && this.token.expiresOn - Date.now() > 120_000)
      return this.token.value;
    return this.acquire(true);
  }

  private acquire(forceRefresh: boolean): Promise<string> {
    if (this.inFlight) return this.inFlight;
    const p = (async () => {
      try {
        const accounts = await this.app.getTokenCache().getAllAccounts();
        const acct: AccountInfo | undefined = accounts[0];
        if (!acct) {
          throw new SyncguardError(
            'PROVIDER_AUTH',
            `no OneDrive sign-in is saved in ${this.account.credentialsPath}: run \`syncguard auth onedrive --account ${this.account.name}\``,
          );
        }
        const r = await this.app.acquireTokenSilent({ account: acct, scopes: this.scopes, forceRefresh });
        if (!r?.accessToken)
          throw new SyncguardError(
            'PROVIDER_AUTH',
            `the OneDrive sign-in of account "${this.account.name}" gave no access token: ${authHint(this.account.name)}`,
          );
        this.token = { value: r.accessToken, expiresOn: r.expiresOn?.getTime() ?? Date.now() + 600_000 };
        return r.accessToken;
      } catch (e) {
        throw classify(e, {
          account: this.account.name,
          write: this.write,
          what: 'refreshing the access token',
        });
      }
    })();
    this.inFlight = p;
    p.then(
      () => {
        this.inFlight = undefined;
      },
      () => {
        this.inFlight = undefined;
      },
    );
    return p;
  }
}

export interface OnedriveAuthOptions {
  account: OnedriveAccountConfig;
  configDir: string;
  /** Told what the user must do: the page to open and the code to enter. */
  print: (line: string) => void;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Also allow writing, for restoring back into OneDrive (Files.ReadWrite.All). */
  write?: boolean;
}

/**
 * Signs in with the device code flow (RFC 8628): prints a code and the page to enter it on, waits
 * until the user has signed in there, and saves MSAL's token cache (mode 0600) at the account's
 * `credentials` path, replacing any earlier sign-in. Throws PROVIDER_AUTH when the sign-in is declined
 * or the code expires, ABORTED when the signal fires.
 */
export async function runOnedriveAuth(
  opts: OnedriveAuthOptions,
): Promise<{ credentialsPath: string; username?: string }> {
  const { account } = opts;
  throwIfAborted(opts.signal);
  const path = credentialsPath(account, opts.configDir);
  const app = createMsalApp(account, { cachePath: path, fetch: opts.fetch, fresh: true });
  const request = {
    scopes: scopesFor(account, { write: opts.write }),
    cancel: false,
    deviceCodeCallback: (r: { verificationUri: string; userCode: string; expiresIn: number }) => {
      opts.print(
        `To sign in to OneDrive for account "${account.name}", open ${r.verificationUri} and enter the code ${r.userCode}`,
      );
      opts.print(
        `Waiting for the sign-in to finish (the code is valid for ${Math.round(r.expiresIn / 60)} minutes)…`,
      );
    },
  };
  const aborted = new Promise<never>((_, reject) => {
    if (!opts.signal) return;
    opts.signal.addEventListener(
      'abort',
      () => {
        request.cancel = true;
        reject(abortError(opts.signal));
      },
      { once: true },
    );
  });
  aborted.catch(() => {});
  let result;
  try {
    result = await Promise.race([app.acquireTokenByDeviceCode(request), aborted]);
  } catch (e) {
    if (opts.signal?.aborted) throw abortError(opts.signal);
    throw classify(e, { account: account.name, write: opts.write, what: 'signing in' });
  }
  if (!result?.account)
    throw new SyncguardError(
      'PROVIDER_AUTH',
      `the Microsoft sign-in for account "${account.name}" returned no account: try again`,
    );
  return { credentialsPath: path, username: result.account.username || undefined };
}

interface SerializedCache {
  AccessToken?: Record<string, { cached_at?: string }>;
  RefreshToken?: Record<string, unknown>;
}

/**
 * When the saved sign-in stops working unless it is used before then: the last token refresh
 * (MSAL's `cached_at`) plus the refresh token's 90-day lifetime. Undefined when nothing is saved.
 * Tenant policies can end a sign-in earlier; this is the latest it can last.
 */
export async function tokenExpiry(
  account: Pick<OnedriveAccountConfig, 'credentials'>,
  configDir: string,
): Promise<Date | undefined> {
  const path = credentialsPath(account, configDir);
  const text = await readIfExists(path).catch(() => undefined);
  if (!text) return undefined;
  let cache: SerializedCache;
  try {
    cache = JSON.parse(text) as SerializedCache;
  } catch {
    return undefined;
  }
  if (!cache.RefreshToken || Object.keys(cache.RefreshToken).length === 0) return undefined;
  let last = 0;
  for (const at of Object.values(cache.AccessToken ?? {}))
    last = Math.max(last, Number(at.cached_at ?? 0) * 1000);
  if (!last) last = (await fsp.stat(path)).mtimeMs;
  return new Date(last + REFRESH_TOKEN_LIFETIME_MS);
}
