/**
 * The daemon: each account's schedule (croner, see cron.ts) until stopped. Never two runs of one account at
 * once: a time that comes while the account's run is still going is skipped (and counted), and a run
 * another process holds the account's lock for (a manual `syncguard snapshot`) is skipped by that lock.
 * A run missed while the machine was off or asleep is caught up: at start, and whenever the clock
 * jumps, an account whose last scheduled time is later than its last run runs at once. Its prune
 * never runs beside its own snapshots: it waits for the runs going, and runs due meanwhile wait for it.
 *
 * It only decides when; what a run does is `run`, the same code path as `syncguard snapshot`.
 */
import type { Cron } from 'croner';
import type { Config } from '../config/schema.js';
import { describeError, isSyncguardError, throwIfAborted } from '../errors.js';
import type { Log } from '../log.js';
import { sleep } from '../providers/_pacer.js';
import type { PruneResult } from '../snapshot/retention.js';
import { summarize } from './alerts.js';
import { cronOf, lastScheduled, nextRun, scheduleOf, checkSchedule, type Schedule } from './cron.js';
import { startStatusServer, type StatusServer } from './http.js';
import { Metrics } from './metrics.js';
import type { RunReport, RunTrigger } from './reports.js';

export interface DaemonDeps {
  config: Config;
  log: Log;
  /** One run of one account (api.snapshot); resolves when its report is written. */
  run(
    account: string,
    opts: { trigger: RunTrigger; scheduledFor?: Date; signal: AbortSignal; onReport: (r: RunReport) => void },
  ): Promise<unknown>;
  /** When the account last ran (its reports, its newest snapshot); undefined when never. */
  lastRun(account: string): Promise<Date | undefined>;
  /** The account's newest report, to start the metrics from. */
  lastReport?(account: string): Promise<RunReport | undefined>;
  /** Applies the retention policy (with `prune.cron`). */
  prune?(signal: AbortSignal): Promise<PruneResult>;
  /** How often the daemon looks for a jump of the clock (the machine slept); default 30 s. */
  watchMs?: number;
}

interface Running {
  promise: Promise<void>;
  abort: AbortController;
}

export class Daemon {
  private readonly schedules = new Map<string, Schedule>();
  private readonly tasks: Cron[] = [];
  private readonly running = new Map<string, Running>();
  private readonly metrics: Metrics;
  private pruning?: Running;
  private server?: StatusServer;
  private watch?: NodeJS.Timeout;
  private stopping = false;

  constructor(private readonly deps: DaemonDeps) {
    for (const a of deps.config.accounts) this.schedules.set(a.name, scheduleOf(deps.config, a));
    if (deps.config.prune.cron)
      checkSchedule({
        cron: deps.config.prune.cron,
        timezone: deps.config.schedule.timezone,
        where: 'prune',
      });
    this.metrics = new Metrics([...this.schedules.keys()]);
  }

  /** Starts the schedules, the status endpoint, and the catch-up of missed runs. */
  async start(): Promise<{ port?: number; next: Map<string, Date | undefined> }> {
    const { config, log } = this.deps;
    if (config.status) {
      this.server = await startStatusServer(config.status.host, config.status.port, {
        health: () => this.health(),
        metrics: async () => ({
          text: await this.metrics.render({ running: new Set(this.running.keys()), next: this.next() }),
          contentType: this.metrics.contentType,
        }),
      });
      log('info', `status: http://${config.status.host}:${this.server.port}/healthz and /metrics`);
    }
    for (const account of this.schedules.keys()) {
      const last = await this.deps.lastReport?.(account).catch(() => undefined);
      if (last) this.metrics.seed(last);
    }
    const catchError = (e: unknown) => log('error', `the scheduler: ${describeError(e)}`);
    for (const [account, s] of this.schedules) {
      const job: Cron = cronOf(s, { name: `syncguard ${account}`, catch: catchError }, () =>
        this.trigger(account, 'schedule', job.currentRun() ?? new Date()),
      );
      this.tasks.push(job);
    }
    if (config.prune.cron && this.deps.prune) {
      const prune = { cron: config.prune.cron, timezone: config.schedule.timezone, where: 'prune' };
      this.tasks.push(cronOf(prune, { name: 'syncguard prune', catch: catchError }, () => this.prune()));
    }
    const next = this.next();
    for (const [account, s] of this.schedules)
      log(
        'info',
        `${account}: scheduled "${s.cron}"${s.timezone ? ` (${s.timezone})` : ''}; next run ${next.get(account)?.toISOString() ?? 'never'}`,
      );
    await this.catchUp();
    const watchMs = this.deps.watchMs ?? 30_000;
    let beat = Date.now();
    this.watch = setInterval(() => {
      const now = Date.now();
      if (now - beat > watchMs * 3) {
        log(
          'info',
          `the clock jumped ${Math.round((now - beat) / 1000)} s (the machine slept?): looking for missed runs`,
        );
        void this.catchUp();
      }
      beat = now;
    }, watchMs);
    return { port: this.server?.port, next };
  }

  /** Stops scheduling; lets running snapshots finish for up to graceMs, then stops them cleanly (a
   *  stopped run writes nothing: no half snapshot). */
  async stop(graceMs = 0): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const { log } = this.deps;
    clearInterval(this.watch);
    for (const t of this.tasks) t.stop();
    const all = [...this.running.values(), ...(this.pruning ? [this.pruning] : [])];
    if (all.length > 0) {
      if (graceMs > 0) {
        log(
          'info',
          `stopping: waiting up to ${Math.round(graceMs / 1000)} s for ${[...this.running.keys()].join(', ') || 'prune'} to finish`,
        );
        const timeout = new AbortController();
        await Promise.race([
          Promise.allSettled(all.map((r) => r.promise)),
          sleep(graceMs, timeout.signal).catch(() => {}),
        ]);
        timeout.abort();
      }
      const left = [...this.running.values(), ...(this.pruning ? [this.pruning] : [])];
      for (const r of left) r.abort.abort(new Error('the daemon is stopping'));
      await Promise.allSettled(left.map((r) => r.promise));
    }
    await this.server?.close();
    log('info', 'stopped');
  }

  private next(): Map<string, Date | undefined> {
    const out = new Map<string, Date | undefined>();
    for (const [account, s] of this.schedules) out.set(account, this.stopping ? undefined : nextRun(s));
    return out;
  }

  private health(): unknown {
    const next = this.next();
    return {
      status: this.stopping ? 'stopping' : 'ok',
      accounts: Object.fromEntries(
        [...this.schedules.keys()].map((a) => [
          a,
          {
            running: this.running.has(a),
            next: next.get(a)?.toISOString() ?? null,
            lastResult: this.metrics.lastResult(a) ?? null,
          },
        ]),
      ),
    };
  }

  /** Runs every account whose last scheduled time is later than its last run. */
  private async catchUp(): Promise<void> {
    for (const [account, s] of this.schedules) {
      if (this.stopping || this.running.has(account)) continue;
      let last: Date | undefined;
      try {
        last = await this.deps.lastRun(account);
      } catch (e) {
        this.deps.log('warn', `${account}: cannot tell when it last ran (${describeError(e)}); no catch-up`);
        continue;
      }
      if (!last) continue;
      const missed = lastScheduled(s, new Date(), last);
      if (missed) {
        this.deps.log(
          'info',
          `${account}: the run of ${missed.toISOString()} was missed (the last run started ${last.toISOString()}): running it now`,
        );
        this.trigger(account, 'catch-up', missed);
      }
    }
  }

  private trigger(account: string, trigger: RunTrigger, at: Date | undefined): void {
    const { log } = this.deps;
    if (this.stopping) return;
    if (this.running.has(account)) {
      log(
        'warn',
        `${account}: the run ${at ? `of ${at.toISOString()} ` : ''}is skipped: the previous run of this account is still going`,
      );
      this.metrics.overlap(account);
      return;
    }
    const abort = new AbortController();
    // A prune of this daemon is going: the run waits for it (the lock would refuse it; see prune()).
    const pruning = this.pruning?.promise;
    if (pruning) log('info', `${account}: waits for the prune to finish`);
    const start = async () => {
      await pruning;
      throwIfAborted(abort.signal);
      log('info', `${account}: ${trigger === 'catch-up' ? 'catch-up' : 'scheduled'} snapshot starts`);
    };
    const promise = start()
      .then(() =>
        this.deps.run(account, {
          trigger,
          scheduledFor: at,
          signal: abort.signal,
          onReport: (r) => {
            this.metrics.observe(r);
            const level =
              r.result === 'ok' || r.result === 'skipped' || r.result === 'stopped'
                ? 'info'
                : r.result === 'failed'
                  ? 'error'
                  : 'warn';
            log(level, `${summarize(r)} (${r.result}, ${Math.round(r.durationMs / 100) / 10} s)`);
          },
        }),
      )
      .then(
        () => {},
        (e) => {
          if (!isSyncguardError(e, 'ABORTED'))
            log('error', `${account}: the run failed: ${describeError(e)}`);
        },
      )
      .finally(() => this.running.delete(account));
    this.running.set(account, { promise, abort });
  }

  private prune(): void {
    const { log } = this.deps;
    if (this.stopping || this.pruning || !this.deps.prune) return;
    const abort = new AbortController();
    // Never beside a snapshot of this daemon: it would delete what that snapshot is reusing. The
    // runs going now finish first; runs due meanwhile wait for the prune (trigger()).
    const going = [...this.running];
    if (going.length > 0)
      log('info', `prune waits for the running snapshots of ${going.map(([a]) => a).join(', ')} to finish`);
    const prune = this.deps.prune.bind(this.deps);
    const start = async () => {
      await Promise.allSettled(going.map(([, r]) => r.promise));
      throwIfAborted(abort.signal);
      log('info', 'prune starts');
    };
    const promise = start()
      .then(() => prune(abort.signal))
      .then(
        (r) => {
          const removed = r.snapshots.filter((s) => s.action === 'remove').length;
          log(
            'info',
            `prune: removed ${removed} snapshots and ${r.objects.deleted.length} objects (${r.objects.bytesDeleted} bytes)${r.blocked.length ? `; ${r.blocked.map((b) => b.account).join(', ')} not pruned: the tripwire fired and nobody acknowledged it` : ''}`,
          );
        },
        (e) => {
          if (!isSyncguardError(e, 'ABORTED')) log('warn', `prune failed: ${describeError(e)}`);
        },
      )
      .finally(() => {
        this.pruning = undefined;
      });
    this.pruning = { promise, abort };
  }
}
