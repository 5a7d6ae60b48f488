/**
 * One run of one account, the same for `syncguard snapshot` and the daemon: the healthcheck's start
 * ping, the snapshot with the tripwire looking at it, the locks of the snapshots kept extended, then
 * the run report, the alerts and the healthcheck's end ping.
 */
import { randomUUID } from 'node:crypto';
import type { AccountConfig, Config, TripwireConfig } from '../config/schema.js';
import { SyncguardError, describeError, isSyncguardError } from '../errors.js';
import type { Log } from '../log.js';
import type { ProviderStats } from '../providers/types.js';
import { staleSummary } from '../snapshot/manifest.js';
import type { Repository } from '../snapshot/repository.js';
import { accountRetention, extendKeptLocks, type Policy } from '../snapshot/retention.js';
import type { SnapshotResult, TakeOptions } from '../snapshot/take.js';
import { createTripwire } from '../snapshot/tripwire.js';
import { alertEvent, pingHealthcheck, sendAlerts, summarize, type AlertDeps } from './alerts.js';
import {
  lastReport,
  newReport,
  reportsDir,
  writeReport,
  type RunReport,
  type RunTrigger,
} from './reports.js';

export interface RunEnv {
  config: Config;
  /** The config file's folder (relative paths in the config start there). */
  configDir: string;
  repo: Repository;
  log: Log;
  /** fetch for alerts and healthcheck pings (tests point it at a receiver of their own). */
  fetch?: typeof fetch;
  /** Waits between alert retries (tests pass one that does not wait). */
  alertSleep?: (ms: number) => Promise<void>;
}

export interface RunOptions {
  trigger?: RunTrigger;
  /** The scheduled time a daemon run is for. */
  scheduledFor?: Date;
  signal?: AbortSignal;
  /** Inspects the snapshot instead of the configured tripwire. */
  inspect?: TakeOptions['inspect'];
  /** Told of the run's report once it is written. */
  onReport?: (report: RunReport) => void;
}

/** Takes the snapshot: the account's run lock, its provider, takeSnapshot; fills in `stats`. */
export type Take = (inspect: TakeOptions['inspect'], stats: ProviderStats) => Promise<SnapshotResult>;

export type RunOutcome =
  | { account: string; ok: true; result: SnapshotResult; report: RunReport }
  | { account: string; ok: false; error: SyncguardError; result?: SnapshotResult; report: RunReport };

export function tripwireSettings(config: Config, account: AccountConfig): TripwireConfig {
  return { ...config.tripwire, ...account.tripwire };
}

/** The keep policy of an account: days are the days of its schedule's timezone. */
export function policyOf(config: Config, account: AccountConfig): Policy {
  return { keep: config.keep, timeZone: account.schedule?.timezone ?? config.schedule.timezone };
}

/** Runs one account. Rejects only with ABORTED (after writing a "stopped" report); every other
 *  failure is in the outcome and its report. */
export async function runAccount(
  env: RunEnv,
  account: AccountConfig,
  take: Take,
  opts: RunOptions = {},
): Promise<RunOutcome> {
  const { repo, config, log } = env;
  const report = newReport(account.name, account.provider, opts.trigger ?? 'manual', repo.now());
  if (opts.scheduledFor) report.scheduledFor = opts.scheduledFor.toISOString();
  const deps: AlertDeps = { log, fetch: env.fetch, sleep: env.alertSleep };
  const healthcheck = account.healthcheck ?? config.alerts.healthcheck;
  const rid = randomUUID();
  if (healthcheck) report.alerts.push(await pingHealthcheck(healthcheck, 'start', { rid }, deps));

  const settings = tripwireSettings(config, account);
  const tripwire =
    !opts.inspect && settings.enabled ? createTripwire(settings, repo.store, opts.signal) : undefined;
  const stats: ProviderStats = { throttledMs: 0, retries: 0 };
  let result: SnapshotResult | undefined;
  let error: SyncguardError | undefined;
  try {
    result = await take(opts.inspect ?? (tripwire && ((input) => tripwire.inspect(input))), stats);
  } catch (e) {
    error = isSyncguardError(e) ? e : new SyncguardError('INTERNAL', describeError(e), { cause: e });
  }
  report.throttledMs = Math.round(stats.throttledMs);
  report.retries = stats.retries;
  report.tripwire = tripwire?.analysis();

  if (error?.code === 'ABORTED' || error?.code === 'BUSY') {
    report.result = error.code === 'ABORTED' ? 'stopped' : 'skipped';
    report.error = { code: error.code, message: error.message };
    if (error.code === 'BUSY') {
      // One skip is a run that overlapped another; a second in a row is an account nobody backs up
      // (a lock whose holder hangs, or that nobody can judge stale): alert, naming the lock.
      const previous = await lastReport(reportsDir(config, env.configDir), account.name).catch(
        () => undefined,
      );
      report.skippedInARow = previous?.result === 'skipped' ? (previous.skippedInARow ?? 1) + 1 : 1;
      report.alerts.push(...(await sendAlerts(config.alerts, report, deps)));
      if (healthcheck && alertEvent(report))
        report.alerts.push(
          await pingHealthcheck(healthcheck, 'fail', { rid, body: summarize(report) }, deps),
        );
    }
    await finish(env, report, opts);
    if (error.code === 'ABORTED') throw error;
    return { account: account.name, ok: false, error, report };
  }

  if (result) {
    const h = result.header;
    report.snapshot = {
      id: result.id,
      key: result.key,
      files: h.counts.files,
      dirs: h.counts.dirs,
      bytes: h.bytes,
      bytesAdded: result.bytesAdded,
      filesRead: result.filesRead,
      filesReread: result.filesReread,
      bytesRead: result.bytesRead,
      failed: h.counts.failed,
      skipped: h.counts.skipped,
      lockedUntil: h.lockedUntil,
      stale: staleSummary(h),
    };
    report.result = h.tripwire?.fired ? 'tripwire' : h.counts.failed > 0 ? 'partial' : 'ok';
    if (result.damaged.length > 0) {
      report.damaged = result.damaged;
      for (const d of result.damaged)
        report.warnings.push(
          `the store holds a damaged or planted object, passed over: ${d.object}: ${d.problem}`,
        );
    }
    report.warnings.push(...result.warnings);
    if (repo.lockDays) {
      try {
        report.locks = await extendKeptLocks(
          repo,
          await accountRetention(repo, account.name, policyOf(config, account), opts.signal, {
            skipDamaged: true,
          }),
          opts.signal,
        );
      } catch (e) {
        if (isSyncguardError(e, 'ABORTED')) {
          report.warnings.push(
            'stopped before the locks of the snapshots kept were extended; the next run extends them',
          );
        } else {
          error = new SyncguardError(
            isSyncguardError(e) ? e.code : 'INTERNAL',
            `the snapshot ${result.id} was stored, but the locks of the snapshots kept could not be extended: ${describeError(e)}; the next run tries again`,
            { cause: e },
          );
        }
      }
    }
  }
  if (error) {
    report.result = 'failed';
    report.error = { code: error.code, message: error.message };
  }

  report.alerts.push(...(await sendAlerts(config.alerts, report, deps)));
  if (healthcheck) {
    const kind = report.result === 'ok' || report.result === 'partial' ? 'success' : 'fail';
    report.alerts.push(await pingHealthcheck(healthcheck, kind, { rid, body: summarize(report) }, deps));
  }
  await finish(env, report, opts);
  return error
    ? { account: account.name, ok: false, error, result, report }
    : { account: account.name, ok: true, result: result!, report };
}

async function finish(env: RunEnv, report: RunReport, opts: RunOptions): Promise<void> {
  const end = env.repo.now();
  report.finished = end.toISOString();
  report.durationMs = Math.max(0, end.getTime() - Date.parse(report.started));
  try {
    await writeReport(reportsDir(env.config, env.configDir), report, env.config.reports.keep);
  } catch (e) {
    env.log('warn', `${report.account}: the run report could not be written: ${describeError(e)}`);
  }
  opts.onReport?.(report);
}
