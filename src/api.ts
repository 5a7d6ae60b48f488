/**
 * The library API, one function per command: each takes a loaded config and plain options
 * ({ signal, onProgress }) and returns a plain result. Nothing here prints or exits.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { LoadedConfig } from './config/load.js';
import type { AccountConfig, Config } from './config/schema.js';
import { SyncguardError, isSyncguardError } from './errors.js';
import { acquireRunLock, type RunLock } from './lock.js';
import { silentLog, type Log } from './log.js';
import { normaliseFolder, showPath } from './paths.js';
import { expandHome } from './util.js';
import { createProvider, type ProviderContext } from './providers/registry.js';
import type { Provider, ProviderStats } from './providers/types.js';
import { diff, ls, type DiffResult, type LsResult, type SnapshotSummary } from './snapshot/browse.js';
import { Repository, datedAhead } from './snapshot/repository.js';
import { restore, type RestoreResult } from './snapshot/restore.js';
import {
  startProgress,
  takeSnapshot,
  type SnapshotProgress,
  type SnapshotResult,
  type TakeOptions,
} from './snapshot/take.js';
import { verify, type VerifyOptions, type VerifyResult } from './snapshot/verify.js';
import { createStore } from './store/index.js';
import type { PrepareReport, Store } from './store/types.js';
import { accountRetention, prune, readSnapshotLocks, type PruneResult } from './snapshot/retention.js';
import { acknowledge, type TripwireState } from './snapshot/tripwire.js';
import { checkPruneAlone, takePruneLease, takeSnapshotLease, type Lease } from './snapshot/lease.js';
import { lastReport, ran, reportsDir, type RunReport, type RunTrigger } from './schedule/reports.js';
import { policyOf, runAccount, type RunEnv, type RunOutcome } from './schedule/run.js';
import { accountStatus, type AccountStatus } from './schedule/status.js';

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
    damagedFile: join(stateDir(ctx), 'damaged', `${storeTag(store)}.json`),
    indexCacheFile: join(stateDir(ctx), 'index', `${storeTag(store)}.json`),
  });
}

/** A short name for a store, for the state files kept per store. */
function storeTag(store: Store): string {
  return createHash('sha256').update(store.description).digest('hex').slice(0, 16);
}

export function stateDir(ctx: Pick<Context, 'config' | 'dir'>): string {
  return expandHome(ctx.config.stateDir, ctx.dir);
}

export function findAccount(config: Config, name: string): AccountConfig {
  const a = config.accounts.find((x) => x.name === name);
  if (!a)
    throw new SyncguardError(
      'USAGE',
      `no account "${name}" in the config; the accounts are: ${config.accounts.map((x) => x.name).join(', ')}`,
    );
  return a;
}

export async function openProvider(
  ctx: Context,
  account: AccountConfig,
  opts: Pick<ProviderContext, 'onThrottle'> = {},
): Promise<Provider> {
  return createProvider(account, {
    configDir: ctx.dir,
    log: ctx.log ?? silentLog,
    fetch: ctx.fetch,
    stateDir: stateDir(ctx),
    ...opts,
  });
}

/** `syncguard init`: create the bucket or folder (with Object Lock and versioning), or check it. */
export async function init(ctx: Context): Promise<PrepareReport & { store: string }> {
  const repo = openRepository(ctx);
  const report = await repo.store.prepare({ create: true });
  return { ...report, store: repo.store.description };
}

/** One account's run: its snapshot, or why there is none; and its run report. */
export type AccountRun = RunOutcome;

export interface SnapshotRunOptions {
  signal?: AbortSignal;
  /** A full listing instead of the changes since the last snapshot (stored content is still reused). */
  full?: boolean;
  onProgress?: (account: string, p: SnapshotProgress) => void;
  inspect?: (account: AccountConfig) => TakeOptions['inspect'];
  /** Why the run happens, for its report (default "manual"). */
  trigger?: RunTrigger;
  /** The scheduled time a daemon run is for. */
  scheduledFor?: Date;
  /** Told of each account's run report once it is written. */
  onReport?: (report: RunReport) => void;
  /** Filled in by snapshotAccount with the provider's counters. */
  stats?: ProviderStats;
}

/** `syncguard snapshot [account…]`: one run per account, one account after the other. An account
 *  that fails does not stop the others. Each run checks the tripwire, extends the locks of the
 *  snapshots kept, writes a run report and sends the alerts asked for: the daemon runs this too. */
export async function snapshot(
  ctx: Context,
  accounts: string[] = [],
  opts: SnapshotRunOptions = {},
): Promise<AccountRun[]> {
  const chosen = accounts.length ? accounts.map((n) => findAccount(ctx.config, n)) : ctx.config.accounts;
  const repo = openRepository(ctx);
  const env = runEnv(ctx, repo);
  const runs: AccountRun[] = [];
  for (const account of chosen) {
    runs.push(
      await runAccount(
        env,
        account,
        (inspect, stats) => snapshotAccount(ctx, repo, account, { ...opts, inspect: () => inspect, stats }),
        {
          trigger: opts.trigger,
          scheduledFor: opts.scheduledFor,
          signal: opts.signal,
          inspect: opts.inspect?.(account),
          onReport: opts.onReport,
        },
      ),
    );
  }
  return runs;
}

function runEnv(ctx: Context, repo: Repository): RunEnv {
  return { config: ctx.config, configDir: ctx.dir, repo, log: ctx.log ?? silentLog, fetch: ctx.fetch };
}

export async function snapshotAccount(
  ctx: Context,
  repo: Repository,
  account: AccountConfig,
  opts: SnapshotRunOptions = {},
): Promise<SnapshotResult> {
  const lock = await acquireRunLock(stateDir(ctx), account.name);
  let lease: Lease | undefined;
  let provider: Provider | undefined;
  // The progress line shows a throttling pause as it counts down (a report each second while it
  // lasts), since the engine has nothing to report meanwhile.
  let last = startProgress();
  let waiting: SnapshotProgress['waiting'];
  let ticker: NodeJS.Timeout | undefined;
  const report = (p: SnapshotProgress) => {
    last = p;
    if (waiting && waiting.until.getTime() <= Date.now()) waiting = undefined;
    opts.onProgress?.(account.name, waiting ? { ...p, waiting } : p);
  };
  const onThrottle = (until: Date, reason: string) => {
    waiting = { until, reason };
    if (!opts.onProgress) return;
    report(last);
    ticker ??= setInterval(() => {
      report(last);
      if (!waiting) {
        clearInterval(ticker);
        ticker = undefined;
      }
    }, 1000).unref();
  };
  try {
    // On every machine: no prune runs while this snapshot does (it waits for one that does).
    lease = await takeSnapshotLease(repo, account.name, { signal: opts.signal });
    provider = await openProvider(ctx, account, { onThrottle });
    return await takeSnapshot({
      repo,
      provider,
      signal: opts.signal,
      account: {
        name: account.name,
        provider: account.provider,
        include: account.include,
        exclude: account.exclude,
      },
      concurrency: account.concurrency ?? ctx.config.concurrency,
      full: opts.full,
      rereadDays: account.provider === 'local' ? (account.reread ?? ctx.config.reread) : undefined,
      onProgress: opts.onProgress && report,
      inspect: opts.inspect?.(account),
    });
  } finally {
    clearInterval(ticker);
    if (opts.stats && provider?.stats) Object.assign(opts.stats, provider.stats());
    await provider?.close?.().catch(() => {});
    await lease?.release();
    await lock.release();
  }
}

/** `syncguard snapshots [account]`. `lockedUntil` is the lock now, extensions included (the header's
 *  is the lock the snapshot was written with). */
export async function snapshots(
  ctx: Context,
  account?: string,
  signal?: AbortSignal,
): Promise<Array<SnapshotSummary & { lockedUntil?: string; datedAhead?: string }>> {
  if (account) findAccount(ctx.config, account);
  const repo = openRepository(ctx);
  const now = repo.now();
  return (await readSnapshotLocks(repo, account, signal, { skipDamaged: true })).map((s) => ({
    ...s,
    lockedUntil: s.lockedUntil?.toISOString(),
    // Dated in the future: never a run's previous snapshot (see datedAhead).
    datedAhead: datedAhead(s.time, now),
  }));
}

/** A folder given on the command line (`--path`, `ls <path>`): one that could leave the snapshot or
 *  the target ("..", a NUL) is a usage error, before anything is read or written. */
function checkFolder(folder: string | undefined, what: string): void {
  try {
    normaliseFolder(folder);
  } catch (e) {
    if (!isSyncguardError(e, 'UNSAFE_PATH')) throw e;
    throw new SyncguardError(
      'USAGE',
      `${what} ${showPath(folder!)}: ${e.message.replace(/^refused [^:]*: /, '')}; give a folder as the snapshot names it, such as Documents/Taxes (see \`syncguard ls\`)`,
    );
  }
}

/** `syncguard ls <account> [path] --at D`. */
export async function list(
  ctx: Context,
  account: string,
  opts: { at?: string; path?: string; recursive?: boolean; signal?: AbortSignal },
): Promise<LsResult> {
  findAccount(ctx.config, account);
  checkFolder(opts.path, 'the path');
  return ls(openRepository(ctx), account, opts);
}

/** `syncguard diff <account> <D1> <D2>`. */
export async function compare(
  ctx: Context,
  account: string,
  at1: string,
  at2: string,
  signal?: AbortSignal,
): Promise<DiffResult> {
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
export async function restoreAccount(
  ctx: Context,
  accountName: string,
  opts: RestoreCommandOptions,
): Promise<RestoreResult> {
  const account = findAccount(ctx.config, accountName);
  checkFolder(opts.path, '--path');
  if (opts.into) checkFolder(opts.into, '--into');
  const repo = openRepository(ctx);
  const back = opts.to === 'provider' || opts.to === account.provider;
  if (!back) {
    return restore({
      repo,
      account: account.name,
      at: opts.at,
      path: opts.path,
      to: { kind: 'dir', dir: opts.to },
      overwrite: opts.overwrite,
      dryRun: opts.dryRun,
      signal: opts.signal,
      onProgress: opts.onProgress,
    });
  }
  if (account.provider === 'local') {
    throw new SyncguardError(
      'USAGE',
      `"${account.name}" is a local folder: restore it with --to <dir> (a folder on disk), then move the files where you want them`,
    );
  }
  const snapshot = await repo.findSnapshot(account.name, opts.at, opts.signal);
  const folder = opts.into ?? `Restored ${localDate(snapshot.time)}`;
  const provider = await openProvider(ctx, account);
  try {
    return await restore({
      repo,
      account: account.name,
      at: snapshot.id,
      path: opts.path,
      to: { kind: 'provider', provider, folder },
      overwrite: opts.overwrite,
      dryRun: opts.dryRun,
      signal: opts.signal,
      onProgress: opts.onProgress,
    });
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

/** `syncguard prune [--dry-run]`: the keep policy applied to every account of the config. It never
 *  runs beside a snapshot: on this machine it holds every account's run lock, and on every machine
 *  a lease in the store (BUSY while a snapshot holds one). */
export async function pruneStore(
  ctx: Context,
  opts: { dryRun?: boolean; signal?: AbortSignal } = {},
): Promise<PruneResult> {
  const { config } = ctx;
  const repo = openRepository(ctx);
  const dir = stateDir(ctx);
  const locks: RunLock[] = [];
  let lease: Lease | undefined;
  try {
    if (!opts.dryRun) {
      for (const a of config.accounts) {
        try {
          locks.push(await acquireRunLock(dir, a.name, { purpose: 'prune' }));
        } catch (e) {
          if (!isSyncguardError(e, 'BUSY')) throw e;
          throw busyPrune(e);
        }
      }
      try {
        lease = await takePruneLease(repo, { signal: opts.signal });
      } catch (e) {
        if (!isSyncguardError(e, 'BUSY')) throw e;
        throw busyPrune(e);
      }
    }
    const held = lease;
    return await prune(repo, {
      policies: new Map(config.accounts.map((a) => [a.name, policyOf(config, a)])),
      graceMs: config.prune.graceHours * 3_600_000,
      dryRun: opts.dryRun,
      marksFile: join(dir, 'prune', `${storeTag(repo.store)}.json`),
      beforeDelete: held && ((signal) => checkPruneAlone(held, signal)),
      stillHeld: held && (() => held.assertHeld()),
      signal: opts.signal,
    });
  } finally {
    await lease?.release();
    for (const l of locks) await l.release();
  }
}

function busyPrune(e: SyncguardError): SyncguardError {
  return new SyncguardError('BUSY', `cannot prune now: ${e.message}; prune again when it has ended`, {
    cause: e,
  });
}

/** `syncguard status [account]`. */
export async function status(
  ctx: Context,
  account?: string,
  signal?: AbortSignal,
): Promise<{ time: string; store: string; accounts: AccountStatus[] }> {
  const chosen = account ? [findAccount(ctx.config, account)] : ctx.config.accounts;
  const repo = openRepository(ctx);
  const env = { config: ctx.config, configDir: ctx.dir, repo };
  const accounts = await Promise.all(chosen.map((a) => accountStatus(env, a, signal)));
  return { time: new Date().toISOString(), store: repo.store.description, accounts };
}

export interface AckResult {
  account: string;
  /** The fired snapshots this acknowledged; empty when nothing was waiting (and nothing was written). */
  acknowledged: TripwireState['fired'];
  key?: string;
  time?: string;
}

/** `syncguard ack <account>`: acknowledges the account's tripwire alarms, so pruning may resume. */
export async function ack(
  ctx: Context,
  accountName: string,
  opts: { note?: string; signal?: AbortSignal } = {},
): Promise<AckResult> {
  const account = findAccount(ctx.config, accountName);
  const repo = openRepository(ctx);
  const r = await accountRetention(repo, account.name, policyOf(ctx.config, account), opts.signal);
  const done = await acknowledge(repo, account.name, r.tripwire, opts);
  return {
    account: account.name,
    acknowledged: done ? r.tripwire.fired : [],
    key: done?.key,
    time: done?.record.time,
  };
}

export interface DaemonOptions {
  /** Stops the daemon. */
  signal: AbortSignal;
  /** On stop, running snapshots may finish for this long before they are stopped (default 0). */
  graceMs?: number;
  /** Told once the schedules run: the status port, and each account's next run. */
  onReady?: (info: { port?: number; next: Map<string, Date | undefined> }) => void;
  /** How often to look for a jump of the clock (tests). */
  watchMs?: number;
}

/** `syncguard daemon`: runs the configured schedules until `signal` fires. */
export async function daemon(ctx: Context, opts: DaemonOptions): Promise<void> {
  // One store for the daemon's life: its connections are reused from run to run.
  const dctx: Context = { ...ctx, store: ctx.store ?? createStore(ctx.config.store, { configDir: ctx.dir }) };
  const repo = openRepository(dctx);
  const reports = reportsDir(ctx.config, ctx.dir);
  // The daemon's scheduler and metrics (croner, prom-client) load only for the daemon.
  const { Daemon } = await import('./schedule/daemon.js');
  const d = new Daemon({
    config: ctx.config,
    log: ctx.log ?? silentLog,
    watchMs: opts.watchMs,
    run: (account, o) => snapshot(dctx, [account], o),
    prune: (signal) => pruneStore(dctx, { signal }),
    lastReport: (account) => lastReport(reports, account),
    lastRun: async (account) => {
      const report = await lastReport(reports, account, ran);
      const snaps = await repo.listSnapshots(account).catch(() => []);
      const times = [report && Date.parse(report.started), snaps[snaps.length - 1]?.time.getTime()].filter(
        (t): t is number => !!t,
      );
      return times.length ? new Date(Math.max(...times)) : undefined;
    },
  });
  if (opts.signal.aborted) return;
  const info = await d.start();
  opts.onReady?.(info);
  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) return resolve();
    opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await d.stop(opts.graceMs ?? 0);
  if (!ctx.store) (dctx.store as Store & { close?: () => void }).close?.();
}

export type { RunReport, RunResult, RunTrigger } from './schedule/reports.js';
export type { PruneResult, PrunedSnapshot, LockExtension } from './snapshot/retention.js';
export type { TripwireAnalysis, TripwireState } from './snapshot/tripwire.js';
export type { AccountStatus } from './schedule/status.js';
export { staleText } from './schedule/alerts.js';
export { staleSummary, type StaleSummary } from './snapshot/manifest.js';
