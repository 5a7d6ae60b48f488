/** The daemon's counters, gauges and histogram, made from run reports, served through prom-client
 *  (each daemon has a registry of its own), with the process's own metrics beside them. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RunReport } from './reports.js';

interface AccountMetrics {
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
  private readonly registry = new Registry();
  private runs!: Counter<'account' | 'result'>;
  private failures!: Counter<'account'>;
  private skipped!: Counter<'account'>;
  private duration!: Histogram<'account'>;
  private bytesAdded!: Counter<'account'>;
  private filesRead!: Counter<'account'>;
  private throttled!: Counter<'account'>;

  constructor(accounts: string[]) {
    this.register();
    for (const a of accounts) this.of(a);
  }

  private of(account: string): AccountMetrics {
    let m = this.accounts.get(account);
    if (!m) {
      m = { tripwire: 0 };
      this.accounts.set(account, m);
      // Every account's counters are there from the start, at 0, so that rate() sees the first run.
      for (const c of [this.failures, this.skipped, this.bytesAdded, this.filesRead, this.throttled])
        c.inc({ account }, 0);
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
    const account = r.account;
    this.runs.inc({ account, result: r.result });
    if (r.result === 'skipped') {
      this.skipped.inc({ account });
      return;
    }
    if (r.result === 'failed') this.failures.inc({ account });
    this.duration.observe({ account }, r.durationMs / 1000);
    this.bytesAdded.inc({ account }, r.snapshot?.bytesAdded ?? 0);
    this.filesRead.inc({ account }, r.snapshot?.filesRead ?? 0);
    this.throttled.inc({ account }, r.throttledMs / 1000);
    this.gauges(m, r);
  }

  /** A scheduled time passed while the account's previous run was still going. */
  overlap(account: string): void {
    this.of(account);
    this.skipped.inc({ account });
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

  /** The Prometheus text: the families below, from this daemon's runs, and the process's own. */
  async render(live: LiveState): Promise<string> {
    this.live = live;
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private live: LiveState = { running: new Set(), next: new Map() };

  private register(): void {
    const registry = this.registry;
    const labelNames = ['account'] as const;
    const each = (g: Gauge<'account'>, f: (m: AccountMetrics, account: string) => number | undefined) => {
      g.reset();
      for (const [account, m] of this.accounts) {
        const v = f(m, account);
        if (v !== undefined && Number.isFinite(v)) g.set({ account }, v);
      }
    };
    const gauge = (
      name: string,
      help: string,
      f: (m: AccountMetrics, account: string) => number | undefined,
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          each(this, f);
        },
      });
    this.runs = new Counter({
      name: 'syncguard_runs_total',
      help: 'Snapshot runs since the daemon started, by result (ok, partial, tripwire, failed, skipped, stopped).',
      labelNames: ['account', 'result'],
      registers: [registry],
    });
    this.failures = new Counter({
      name: 'syncguard_run_failures_total',
      help: 'Snapshot runs that failed.',
      labelNames,
      registers: [registry],
    });
    this.skipped = new Counter({
      name: 'syncguard_runs_skipped_total',
      help: 'Scheduled runs skipped because a run of the account was still going.',
      labelNames,
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'syncguard_run_duration_seconds',
      help: 'How long snapshot runs took (skipped runs are not counted).',
      labelNames,
      // From a quick incremental run to a first full copy of a large account.
      buckets: [1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200],
      registers: [registry],
    });
    this.bytesAdded = new Counter({
      name: 'syncguard_bytes_added_total',
      help: 'Bytes written to the store (new content).',
      labelNames,
      registers: [registry],
    });
    this.filesRead = new Counter({
      name: 'syncguard_files_read_total',
      help: 'Files read from the provider.',
      labelNames,
      registers: [registry],
    });
    this.throttled = new Counter({
      name: 'syncguard_throttle_wait_seconds_total',
      help: 'Time spent waiting because the provider throttled us.',
      labelNames,
      registers: [registry],
    });
    gauge('syncguard_last_run_duration_seconds', 'How long the last run took.', (m) => m.lastDuration);
    gauge('syncguard_last_run_timestamp_seconds', 'When the last run finished.', (m) => m.lastRun);
    gauge(
      'syncguard_last_success_timestamp_seconds',
      'When the last run that took a snapshot without the tripwire firing finished.',
      (m) => m.lastSuccess,
    );
    gauge('syncguard_snapshot_files', 'Files in the last snapshot.', (m) => m.files);
    gauge('syncguard_snapshot_bytes', 'Bytes of the files in the last snapshot.', (m) => m.bytes);
    gauge(
      'syncguard_stale_files',
      'Files the last snapshot could not read (their last version read is kept; each run reads them again).',
      (m) => m.staleFiles,
    );
    gauge(
      'syncguard_stale_max_runs',
      'The most runs in a row a file of the last snapshot has gone unread (an alert goes out at 3).',
      (m) => m.staleMaxRuns,
    );
    gauge(
      'syncguard_tripwire_fired',
      "1 when the last snapshot's ransomware tripwire fired.",
      (m) => m.tripwire,
    );
    gauge('syncguard_run_in_progress', '1 while a run of the account is going.', (_m, account) =>
      this.live.running.has(account) ? 1 : 0,
    );
    gauge('syncguard_next_run_timestamp_seconds', 'When the next scheduled run starts.', (_m, account) => {
      const next = this.live.next.get(account);
      return next ? next.getTime() / 1000 : undefined;
    });
    // The process: resident memory, heap, event-loop lag, open handles and requests, file descriptors.
    collectDefaultMetrics({ register: registry });
  }
}
