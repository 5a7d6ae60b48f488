/** The daemon's counters and gauges, made from run reports, in the Prometheus text format. */
import type { RunReport } from './reports.js';

interface AccountMetrics {
  runs: Map<string, number>;
  failures: number;
  skipped: number;
  durationSum: number;
  durationCount: number;
  bytesAdded: number;
  filesRead: number;
  throttledMs: number;
  lastRun?: number;
  lastDuration?: number;
  lastSuccess?: number;
  lastResult?: RunReport['result'];
  files?: number;
  bytes?: number;
  /** Files the last snapshot could not read, and the most runs in a row one of them went unread. */
  staleFiles?: number;
  staleMaxRuns?: number;
  tripwire: number;
}

export interface LiveState {
  running: ReadonlySet<string>;
  next: ReadonlyMap<string, Date | undefined>;
}

export class Metrics {
  private readonly accounts = new Map<string, AccountMetrics>();

  constructor(accounts: string[]) {
    for (const a of accounts) this.of(a);
  }

  private of(account: string): AccountMetrics {
    let m = this.accounts.get(account);
    if (!m) {
      m = {
        runs: new Map(),
        failures: 0,
        skipped: 0,
        durationSum: 0,
        durationCount: 0,
        bytesAdded: 0,
        filesRead: 0,
        throttledMs: 0,
        tripwire: 0,
      };
      this.accounts.set(account, m);
    }
    return m;
  }

  /** The gauges from a report written before the daemon started (counters start at 0). */
  seed(r: RunReport): void {
    const m = this.of(r.account);
    this.gauges(m, r);
  }

  /** A run finished. */
  observe(r: RunReport): void {
    const m = this.of(r.account);
    m.runs.set(r.result, (m.runs.get(r.result) ?? 0) + 1);
    if (r.result === 'skipped') {
      m.skipped++;
      return;
    }
    if (r.result === 'failed') m.failures++;
    m.durationSum += r.durationMs / 1000;
    m.durationCount++;
    m.bytesAdded += r.snapshot?.bytesAdded ?? 0;
    m.filesRead += r.snapshot?.filesRead ?? 0;
    m.throttledMs += r.throttledMs;
    this.gauges(m, r);
  }

  /** A scheduled time passed while the account's previous run was still going. */
  overlap(account: string): void {
    this.of(account).skipped++;
  }

  lastResult(account: string): RunReport['result'] | undefined {
    return this.accounts.get(account)?.lastResult;
  }

  private gauges(m: AccountMetrics, r: RunReport): void {
    if (r.result === 'skipped') return;
    m.lastRun = Date.parse(r.finished) / 1000;
    m.lastDuration = r.durationMs / 1000;
    m.lastResult = r.result;
    if (r.snapshot) {
      m.files = r.snapshot.files;
      m.bytes = r.snapshot.bytes;
      m.staleFiles = r.snapshot.stale?.files;
      m.staleMaxRuns = r.snapshot.stale?.maxRuns;
      m.tripwire = r.result === 'tripwire' ? 1 : 0;
    }
    if (r.result === 'ok' || r.result === 'partial') m.lastSuccess = Date.parse(r.finished) / 1000;
  }

  render(live: LiveState): string {
    const out: string[] = [];
    type Row = [string, Record<string, string>, number | undefined];
    const r = (suffix: string, labels: Record<string, string>, v: number | undefined): Row => [
      suffix,
      labels,
      v,
    ];
    const family = (name: string, type: 'counter' | 'gauge' | 'summary', help: string, rows: Row[]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [suffix, labels, v] of rows)
        if (v !== undefined && Number.isFinite(v)) out.push(`${name}${suffix}${fmtLabels(labels)} ${v}`);
    };
    const each = <T>(f: (m: AccountMetrics, account: string) => T) =>
      [...this.accounts].map(([a, m]) => f(m, a));
    family(
      'syncguard_runs_total',
      'counter',
      'Snapshot runs since the daemon started, by result (ok, partial, tripwire, failed, skipped, stopped).',
      each((m, account) => [...m.runs].map(([result, n]) => r('', { account, result }, n))).flat(),
    );
    family(
      'syncguard_run_failures_total',
      'counter',
      'Snapshot runs that failed.',
      each((m, account) => r('', { account }, m.failures)),
    );
    family(
      'syncguard_runs_skipped_total',
      'counter',
      'Scheduled runs skipped because a run of the account was still going.',
      each((m, account) => r('', { account }, m.skipped)),
    );
    family(
      'syncguard_run_duration_seconds',
      'summary',
      'How long snapshot runs took.',
      each((m, account) => [
        r('_sum', { account }, m.durationSum),
        r('_count', { account }, m.durationCount),
      ]).flat(),
    );
    family(
      'syncguard_last_run_duration_seconds',
      'gauge',
      'How long the last run took.',
      each((m, account) => r('', { account }, m.lastDuration)),
    );
    family(
      'syncguard_last_run_timestamp_seconds',
      'gauge',
      'When the last run finished.',
      each((m, account) => r('', { account }, m.lastRun)),
    );
    family(
      'syncguard_last_success_timestamp_seconds',
      'gauge',
      'When the last run that took a snapshot without the tripwire firing finished.',
      each((m, account) => r('', { account }, m.lastSuccess)),
    );
    family(
      'syncguard_snapshot_files',
      'gauge',
      'Files in the last snapshot.',
      each((m, account) => r('', { account }, m.files)),
    );
    family(
      'syncguard_snapshot_bytes',
      'gauge',
      'Bytes of the files in the last snapshot.',
      each((m, account) => r('', { account }, m.bytes)),
    );
    family(
      'syncguard_bytes_added_total',
      'counter',
      'Bytes written to the store (new content).',
      each((m, account) => r('', { account }, m.bytesAdded)),
    );
    family(
      'syncguard_files_read_total',
      'counter',
      'Files read from the provider.',
      each((m, account) => r('', { account }, m.filesRead)),
    );
    family(
      'syncguard_throttle_wait_seconds_total',
      'counter',
      'Time spent waiting because the provider throttled us.',
      each((m, account) => r('', { account }, m.throttledMs / 1000)),
    );
    family(
      'syncguard_stale_files',
      'gauge',
      'Files the last snapshot could not read (their last version read is kept; each run reads them again).',
      each((m, account) => r('', { account }, m.staleFiles)),
    );
    family(
      'syncguard_stale_max_runs',
      'gauge',
      'The most runs in a row a file of the last snapshot has gone unread (an alert goes out at 3).',
      each((m, account) => r('', { account }, m.staleMaxRuns)),
    );
    family(
      'syncguard_tripwire_fired',
      'gauge',
      "1 when the last snapshot's ransomware tripwire fired.",
      each((m, account) => r('', { account }, m.tripwire)),
    );
    family(
      'syncguard_run_in_progress',
      'gauge',
      '1 while a run of the account is going.',
      each((_m, account) => r('', { account }, live.running.has(account) ? 1 : 0)),
    );
    family(
      'syncguard_next_run_timestamp_seconds',
      'gauge',
      'When the next scheduled run starts.',
      each((_m, account) =>
        r('', { account }, live.next.get(account) ? live.next.get(account)!.getTime() / 1000 : undefined),
      ),
    );
    return out.join('\n') + '\n';
  }
}

function fmtLabels(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`,
  );
  return parts.length ? `{${parts.join(',')}}` : '';
}
