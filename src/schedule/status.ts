/**
 * `syncguard status`: per account, the last run and its result (from this machine's run reports), the
 * last good snapshot, the next scheduled run, what is kept and until when it is locked, the tripwire,
 * and when the provider's sign-in expires where the provider can tell.
 */
import type { AccountConfig, Config } from '../config/schema.js';
import { describeError } from '../errors.js';
import { staleSummary, type StaleSummary } from '../snapshot/manifest.js';
import type { Repository } from '../snapshot/repository.js';
import { accountRetention } from '../snapshot/retention.js';
import type { TripwireState } from '../snapshot/tripwire.js';
import { nextRun, scheduleOf } from './cron.js';
import { readReports, reportsDir, type RunReport } from './reports.js';
import { policyOf } from './run.js';

export interface AccountStatus {
  account: string;
  provider: string;
  schedule: { cron: string; timezone: string | null; next: string | null; error?: string };
  lastRun: null | {
    id: string;
    trigger: RunReport['trigger'];
    started: string;
    finished: string;
    durationMs: number;
    result: RunReport['result'];
    snapshot: string | null;
    error: RunReport['error'] | null;
  };
  /** The newest snapshot whose tripwire did not fire. */
  lastGood: null | { id: string; time: string; files: number; bytes: number; failed: number };
  /** Snapshots in the store, and how many of them the policy keeps. */
  snapshots: number;
  kept: number;
  /** Files and bytes of the newest snapshot. */
  files: number | null;
  bytes: number | null;
  /** Files the newest snapshot could not read (previous version kept, or new and missing), by runs in a row. */
  stale: StaleSummary | null;
  /** Every snapshot the policy keeps is locked at least until then (null: the store has no lock). */
  lockedUntil: string | null;
  tripwire: TripwireState;
  /** When the provider's sign-in expires, where it can tell (null where it cannot). */
  token: null | { expiresAt: string | null; error?: string };
  /** Why the store's part could not be read, if it could not. */
  error?: string;
}

export interface StatusEnv {
  config: Config;
  configDir: string;
  repo: Repository;
}

/** Providers may export `tokenExpiry(account, configDir)` from their index module; status asks it. */
export type TokenExpiry = (account: AccountConfig, configDir: string) => Promise<Date | undefined>;

export async function accountStatus(
  env: StatusEnv,
  account: AccountConfig,
  signal?: AbortSignal,
): Promise<AccountStatus> {
  const { config, repo } = env;
  const st: AccountStatus = {
    account: account.name,
    provider: account.provider,
    schedule: {
      cron: account.schedule?.cron ?? config.schedule.cron,
      timezone: account.schedule?.timezone ?? config.schedule.timezone ?? null,
      next: null,
    },
    lastRun: null,
    lastGood: null,
    snapshots: 0,
    kept: 0,
    files: null,
    bytes: null,
    stale: null,
    lockedUntil: null,
    tripwire: { tripped: false, fired: [] },
    token: null,
  };
  try {
    st.schedule.next = nextRun(scheduleOf(config, account))?.toISOString() ?? null;
  } catch (e) {
    st.schedule.error = describeError(e);
  }
  const [last] = await readReports(reportsDir(config, env.configDir), account.name, {
    limit: 1,
    filter: (r) => r.result !== 'skipped',
  });
  if (last) {
    st.lastRun = {
      id: last.id,
      trigger: last.trigger,
      started: last.started,
      finished: last.finished,
      durationMs: last.durationMs,
      result: last.result,
      snapshot: last.snapshot?.id ?? null,
      error: last.error ?? null,
    };
  }
  const [token] = await Promise.all([
    tokenStatus(account, env.configDir),
    (async () => {
      try {
        const r = await accountRetention(repo, account.name, policyOf(config, account), signal);
        st.snapshots = r.snapshots.length;
        st.kept = r.kept.size;
        st.tripwire = r.tripwire;
        const newest = r.snapshots[r.snapshots.length - 1];
        if (newest) {
          st.files = newest.header.counts.files;
          st.bytes = newest.header.bytes;
          st.stale = staleSummary(newest.header);
        }
        const good = [...r.snapshots].reverse().find((s) => !s.header.tripwire?.fired);
        if (good)
          st.lastGood = {
            id: good.id,
            time: good.time.toISOString(),
            files: good.header.counts.files,
            bytes: good.header.bytes,
            failed: good.header.counts.failed,
          };
        const horizons = r.snapshots
          .filter((s) => r.kept.has(s.id))
          .map((s) => s.lockedUntil?.getTime() ?? 0);
        if (repo.lockDays && horizons.length > 0)
          st.lockedUntil = new Date(Math.min(...horizons)).toISOString();
      } catch (e) {
        st.error = describeError(e);
      }
    })(),
  ]);
  st.token = token;
  return st;
}

async function tokenStatus(account: AccountConfig, configDir: string): Promise<AccountStatus['token']> {
  if (account.provider === 'local') return null;
  try {
    const mod = (account.provider === 'dropbox'
      ? await import('../providers/dropbox/index.js')
      : await import('../providers/onedrive/index.js')) as unknown as { tokenExpiry?: TokenExpiry };
    if (typeof mod.tokenExpiry !== 'function') return null;
    const at = await mod.tokenExpiry(account, configDir);
    return { expiresAt: at?.toISOString() ?? null };
  } catch (e) {
    return { expiresAt: null, error: describeError(e) };
  }
}
