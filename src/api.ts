/**
 * The library API, one function per command: each takes a loaded config and plain options
 * ({ signal, onProgress }) and returns a plain result. Nothing here prints or exits.
 */
import type { LoadedConfig } from './config/load.js';
import type { AccountConfig, Config } from './config/schema.js';
import { SyncguardError, describeError, isSyncguardError } from './errors.js';
import { acquireRunLock } from './lock.js';
import { silentLog, type Log } from './log.js';
import { expandHome } from './providers/local.js';
import { createProvider } from './providers/registry.js';
import type { Provider } from './providers/types.js';
import { diff, listSnapshots, ls, type DiffResult, type LsResult, type SnapshotSummary } from './snapshot/browse.js';
import { Repository } from './snapshot/repository.js';
import { restore, type RestoreResult } from './snapshot/restore.js';
import { takeSnapshot, type SnapshotProgress, type SnapshotResult, type TakeOptions } from './snapshot/take.js';
import { verify, type VerifyOptions, type VerifyResult } from './snapshot/verify.js';
import { createStore } from './store/index.js';
import type { PrepareReport, Store } from './store/types.js';

export interface Context extends LoadedConfig {
  log?: Log;
  /** fetch for providers' HTTP calls (tests count or fail calls with it). */
  fetch?: typeof fetch;
  /** A store to use instead of the configured one (tests). */
  store?: Store;
}

export function openRepository(ctx: Context): Repository {
  const { config } = ctx;
  const store = ctx.store ?? createStore(config.store, { configDir: ctx.dir });
  const lock = config.store.type === 's3' ? config.store.objectLock : 'off';
  return new Repository({
    store,
    lockDays: lock === 'off' ? undefined : lock.days,
    packThreshold: config.packThreshold,
    packSize: config.packSize,
    log: ctx.log,
  });
}

export function stateDir(ctx: Pick<Context, 'config' | 'dir'>): string {
  return expandHome(ctx.config.stateDir, ctx.dir);
}

export function findAccount(config: Config, name: string): AccountConfig {
  const a = config.accounts.find((x) => x.name === name);
  if (!a) throw new SyncguardError('USAGE', `no account "${name}" in the config; the accounts are: ${config.accounts.map((x) => x.name).join(', ')}`);
  return a;
}

export async function openProvider(ctx: Context, account: AccountConfig): Promise<Provider> {
  return createProvider(account, { configDir: ctx.dir, log: ctx.log ?? silentLog, fetch: ctx.fetch, stateDir: stateDir(ctx) });
}

/** `syncguard init`: create the bucket or folder (with Object Lock and versioning), or check it. */
export async function init(ctx: Context): Promise<PrepareReport & { store: string }> {
  const repo = openRepository(ctx);
  const report = await repo.store.prepare({ create: true });
  return { ...report, store: repo.store.description };
}

export type AccountRun =
  | { account: string; ok: true; result: SnapshotResult }
  | { account: string; ok: false; error: SyncguardError };

export interface SnapshotRunOptions {
  signal?: AbortSignal;
  onProgress?: (account: string, p: SnapshotProgress) => void;
  inspect?: (account: AccountConfig) => TakeOptions['inspect'];
}

/** `syncguard snapshot [account…]`: one snapshot per account, one account after the other. An
 *  account that fails does not stop the others. */
export async function snapshot(ctx: Context, accounts: string[] = [], opts: SnapshotRunOptions = {}): Promise<AccountRun[]> {
  const chosen = accounts.length ? accounts.map((n) => findAccount(ctx.config, n)) : ctx.config.accounts;
  const repo = openRepository(ctx);
  const runs: AccountRun[] = [];
  for (const account of chosen) {
    try {
      runs.push({ account: account.name, ok: true, result: await snapshotAccount(ctx, repo, account, opts) });
    } catch (e) {
      if (isSyncguardError(e, 'ABORTED')) throw e;
      runs.push({ account: account.name, ok: false, error: isSyncguardError(e) ? e : new SyncguardError('INTERNAL', describeError(e), { cause: e }) });
    }
  }
  return runs;
}

export async function snapshotAccount(ctx: Context, repo: Repository, account: AccountConfig, opts: SnapshotRunOptions = {}): Promise<SnapshotResult> {
  const lock = await acquireRunLock(stateDir(ctx), account.name);
  let provider: Provider | undefined;
  try {
    provider = await openProvider(ctx, account);
    return await takeSnapshot({
      repo, provider, signal: opts.signal,
      account: { name: account.name, provider: account.provider, include: account.include, exclude: account.exclude },
      concurrency: account.concurrency ?? ctx.config.concurrency,
      onProgress: opts.onProgress && ((p) => opts.onProgress!(account.name, p)),
      inspect: opts.inspect?.(account),
    });
  } finally {
    await provider?.close?.().catch(() => {});
    await lock.release();
  }
}

/** `syncguard snapshots [account]`. */
export async function snapshots(ctx: Context, account?: string, signal?: AbortSignal): Promise<SnapshotSummary[]> {
  if (account) findAccount(ctx.config, account);
  return listSnapshots(openRepository(ctx), account, signal);
}

/** `syncguard ls <account> [path] --at D`. */
export async function list(ctx: Context, account: string, opts: { at?: string; path?: string; recursive?: boolean; signal?: AbortSignal }): Promise<LsResult> {
  findAccount(ctx.config, account);
  return ls(openRepository(ctx), account, opts);
}

/** `syncguard diff <account> <D1> <D2>`. */
export async function compare(ctx: Context, account: string, at1: string, at2: string, signal?: AbortSignal): Promise<DiffResult> {
  findAccount(ctx.config, account);
  return diff(openRepository(ctx), account, at1, at2, signal);
}

export interface RestoreCommandOptions {
  at?: string;
  path?: string;
  /** A folder on disk, or "provider" (or the provider's name) to put the files back into the account. */
  to: string;
  /** With a provider target: the folder in the account ('' = where they were). Default "Restored <date>". */
  into?: string;
  overwrite?: boolean;
  dryRun?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: { filesDone: number; files: number; bytesDone: number; bytes: number }) => void;
}

/** `syncguard restore <account> --at D [--path P] --to DIR|provider`. */
export async function restoreAccount(ctx: Context, accountName: string, opts: RestoreCommandOptions): Promise<RestoreResult> {
  const account = findAccount(ctx.config, accountName);
  const repo = openRepository(ctx);
  const back = opts.to === 'provider' || opts.to === account.provider;
  if (!back) {
    return restore({ repo, account: account.name, at: opts.at, path: opts.path, to: { kind: 'dir', dir: opts.to }, overwrite: opts.overwrite, dryRun: opts.dryRun, signal: opts.signal, onProgress: opts.onProgress });
  }
  if (account.provider === 'local') {
    throw new SyncguardError('USAGE', `"${account.name}" is a local folder: restore it with --to <dir> (a folder on disk), then move the files where you want them`);
  }
  const snapshot = await repo.findSnapshot(account.name, opts.at, opts.signal);
  const folder = opts.into ?? `Restored ${localDate(snapshot.time)}`;
  const provider = await openProvider(ctx, account);
  try {
    return await restore({ repo, account: account.name, at: snapshot.id, path: opts.path, to: { kind: 'provider', provider, folder }, overwrite: opts.overwrite, dryRun: opts.dryRun, signal: opts.signal, onProgress: opts.onProgress });
  } finally {
    await provider.close?.().catch(() => {});
  }
}

function localDate(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** `syncguard verify [account] [--sample N%]`. */
export async function verifyStore(ctx: Context, opts: VerifyOptions = {}): Promise<VerifyResult> {
  if (opts.account) findAccount(ctx.config, opts.account);
  return verify(openRepository(ctx), opts);
}
