/**
 * Run reports: one JSON file per run of an account, written by the manual `syncguard snapshot` and by
 * the daemon alike, in <reports dir>/<account>/<start time>-<random>.json. Status, alerts, metrics and
 * the daemon's catch-up are made from them. They hold no secret: counts, times, codes and messages.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { expandHome } from '../util.js';
import { snapshotId } from '../snapshot/layout.js';
import type { StaleSummary } from '../snapshot/manifest.js';
import type { TripwireAnalysis } from '../snapshot/tripwire.js';
import type { LockExtension } from '../snapshot/retention.js';
import { VERSION } from '../version.js';

/** ok: done; partial: done, some files unreadable; tripwire: done, the tripwire fired; failed: no
 *  snapshot, or one whose locks could not be kept; skipped: another run of the account held the lock;
 *  stopped: stopped by a signal, nothing written. */
export type RunResult = 'ok' | 'partial' | 'tripwire' | 'failed' | 'skipped' | 'stopped';
/** manual: `syncguard snapshot`; schedule: the daemon, on time; catch-up: the daemon, for a missed time. */
export type RunTrigger = 'manual' | 'schedule' | 'catch-up';

export interface RunReport {
  format: 'syncguard-run-report';
  version: 1;
  id: string;
  account: string;
  provider: string;
  trigger: RunTrigger;
  /** The scheduled time this run is for (daemon runs). */
  scheduledFor?: string;
  started: string;
  finished: string;
  durationMs: number;
  result: RunResult;
  snapshot?: {
    id: string;
    key: string;
    files: number;
    dirs: number;
    bytes: number;
    bytesAdded: number;
    filesRead: number;
    /** Of those, unchanged files read again because of `reread`. */
    filesReread?: number;
    bytesRead: number;
    failed: number;
    skipped: number;
    lockedUntil?: string;
    /** Files not read this run (previous version kept, or new and missing), by runs in a row. Absent in
     *  reports written before it existed. */
    stale?: StaleSummary;
  };
  tripwire?: TripwireAnalysis;
  locks?: LockExtension;
  error?: { code: string; message: string };
  /** A skipped run: how many runs of the account in a row were skipped, this one included. */
  skippedInARow?: number;
  warnings: string[];
  /** Objects of the store the run found damaged or planted and passed over (alerted as "partial"). */
  damaged?: Array<{ object: string; problem: string }>;
  /** Time the provider waited because it was throttled, and calls it retried. */
  throttledMs: number;
  retries: number;
  alerts: Array<{ channel: string; ok: boolean; error?: string }>;
  host: string;
  pid: number;
  tool: string;
}

const MAX_REPORT_BYTES = 4 * 1024 * 1024;

export function reportsDir(config: Pick<Config, 'reports' | 'stateDir'>, configDir: string): string {
  return config.reports.dir
    ? expandHome(config.reports.dir, configDir)
    : join(expandHome(config.stateDir, configDir), 'reports');
}

export function newReport(account: string, provider: string, trigger: RunTrigger, started: Date): RunReport {
  return {
    format: 'syncguard-run-report',
    version: 1,
    id: `${snapshotId(started)}-${randomBytes(3).toString('hex')}`,
    account,
    provider,
    trigger,
    started: started.toISOString(),
    finished: started.toISOString(),
    durationMs: 0,
    result: 'failed',
    warnings: [],
    throttledMs: 0,
    retries: 0,
    alerts: [],
    host: hostname(),
    pid: process.pid,
    tool: `syncguard ${VERSION}`,
  };
}

/** Writes a report (a temporary file renamed into place) and removes the account's oldest beyond `keep`. */
export async function writeReport(dir: string, report: RunReport, keep: number): Promise<string> {
  const folder = join(dir, report.account);
  await fsp.mkdir(folder, { recursive: true, mode: 0o700 });
  const file = join(folder, `${report.id}.json`);
  const tmp = `${file}.${process.pid}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify(report, null, 2) + '\n', { mode: 0o600 });
  await fsp.rename(tmp, file);
  const names = await reportNames(folder);
  for (const old of names.slice(0, Math.max(0, names.length - keep)))
    await fsp.rm(join(folder, old), { force: true });
  return file;
}

/** An account's reports, newest first; at most `limit`. Unreadable files are passed over. */
export async function readReports(
  dir: string,
  account: string,
  opts: { limit?: number; filter?: (r: RunReport) => boolean } = {},
): Promise<RunReport[]> {
  const folder = join(dir, account);
  const names = (await reportNames(folder)).reverse();
  const out: RunReport[] = [];
  for (const name of names) {
    if (opts.limit !== undefined && out.length >= opts.limit) break;
    try {
      // A report is a few kilobytes; a larger file is not one (and is not read into memory).
      if ((await fsp.stat(join(folder, name))).size > MAX_REPORT_BYTES) continue;
      const r = JSON.parse(await fsp.readFile(join(folder, name), 'utf8')) as RunReport;
      if (r?.format !== 'syncguard-run-report' || r.account !== account) continue;
      if (!opts.filter || opts.filter(r)) out.push(r);
    } catch {
      continue;
    }
  }
  return out;
}

export async function lastReport(
  dir: string,
  account: string,
  filter?: (r: RunReport) => boolean,
): Promise<RunReport | undefined> {
  return (await readReports(dir, account, { limit: 1, filter }))[0];
}

/** A run that took place: it produced a snapshot or failed trying (not skipped, not stopped). */
export function ran(r: RunReport): boolean {
  return r.result !== 'skipped' && r.result !== 'stopped';
}

async function reportNames(folder: string): Promise<string[]> {
  try {
    return (await fsp.readdir(folder)).filter((n) => /^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]+\.json$/.test(n)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
