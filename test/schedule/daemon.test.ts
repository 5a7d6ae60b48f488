import { afterEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { abortError } from '../../src/errors.js';
import { Daemon, type DaemonDeps } from '../../src/schedule/daemon.js';
import { newReport, type RunReport, type RunTrigger } from '../../src/schedule/reports.js';

const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
});

function config(cron: string, extra: Record<string, unknown> = {}) {
  const c = configSchema.parse({
    store: { type: 'fs', path: '/tmp/unused' },
    schedule: { timezone: 'UTC' },
    status: { port: 0 },
    accounts: [{ name: 'docs', provider: 'local', path: '/tmp/unused' }],
    ...extra,
  });
  // Set after parsing: the schema refuses a wrong one first, and the daemon checks again for a
  // program that builds its config without the schema.
  c.schedule.cron = cron;
  return c;
}

interface Call {
  account: string;
  trigger: RunTrigger;
  scheduledFor?: Date;
  signal: AbortSignal;
  onReport: (r: RunReport) => void;
}

/** A daemon whose runs the test controls: each call waits until the test ends it. */
function daemon(cron: string, deps: Partial<DaemonDeps> = {}) {
  const calls: Call[] = [];
  const ends: Array<(result?: RunReport['result']) => void> = [];
  const logs: string[] = [];
  const d = new Daemon({
    config: config(cron),
    log: (level, m) => logs.push(`${level}: ${m}`),
    lastRun: async () => undefined,
    run: (account, o) =>
      new Promise((resolve, reject) => {
        calls.push({ account, ...o });
        o.signal.addEventListener('abort', () => reject(abortError(o.signal)), { once: true });
        ends.push((result = 'ok') => {
          const r = newReport(account, 'local', o.trigger, new Date());
          r.result = result;
          r.durationMs = 1500;
          r.snapshot = {
            id: 'x',
            key: 'k',
            files: 7,
            dirs: 1,
            bytes: 700,
            bytesAdded: 70,
            filesRead: 3,
            bytesRead: 300,
            failed: 0,
            skipped: 0,
          };
          o.onReport(r);
          resolve(r);
        });
      }),
    ...deps,
  });
  daemons.push(d);
  return { d, calls, ends, logs };
}

async function until(cond: () => boolean, what: string, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('schedule: the daemon', () => {
  it('runs an account on its schedule, skips a time that comes while its run is still going, and counts it', async () => {
    const { d, calls, ends, logs } = daemon('* * * * * *');
    const { port } = await d.start();
    await until(() => calls.length === 1, 'the first run');
    expect(calls[0]).toMatchObject({ account: 'docs', trigger: 'schedule' });
    await until(
      () =>
        logs.some((l) =>
          /docs: the run of .* is skipped: the previous run of this account is still going/.test(l),
        ),
      'a skipped time',
    );
    expect(calls).toHaveLength(1);

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^syncguard_runs_skipped_total\{account="docs"\} [1-9]/m);
    expect(metrics).toMatch(/^syncguard_run_in_progress\{account="docs"\} 1$/m);
    const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    expect(health).toMatchObject({ status: 'ok', accounts: { docs: { running: true, lastResult: null } } });

    ends[0]('ok');
    await until(() => calls.length === 2, 'the next run');
    const after = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(after).toContain('syncguard_runs_total{account="docs",result="ok"} 1');
    expect(after).toContain('syncguard_bytes_added_total{account="docs"} 70');
    expect(after).toContain('syncguard_run_duration_seconds_sum{account="docs"} 1.5');
    expect(after).toContain('syncguard_snapshot_files{account="docs"} 7');
    expect(after).toMatch(/^syncguard_next_run_timestamp_seconds\{account="docs"\} \d+$/m);
    expect((await fetch(`http://127.0.0.1:${port}/nothing`)).status).toBe(404);
  });

  it('catches up, at start, a scheduled time that passed after the last run', async () => {
    const lastRun = new Date(Date.now() - 2 * 86_400_000);
    const { d, calls } = daemon('0 3 * * *', { lastRun: async () => lastRun });
    await d.start();
    await until(() => calls.length === 1, 'the catch-up run');
    expect(calls[0].trigger).toBe('catch-up');
    expect(calls[0].scheduledFor!.toISOString()).toMatch(/T03:00:00\.000Z$/);
    expect(calls[0].scheduledFor!.getTime()).toBeGreaterThan(lastRun.getTime());
    expect(calls[0].scheduledFor!.getTime()).toBeLessThanOrEqual(Date.now());
  });

  it('does not catch up when the last run is later than the last scheduled time, or when there was none', async () => {
    for (const lastRun of [new Date(), undefined]) {
      const { d, calls, logs } = daemon('0 3 * * *', { lastRun: async () => lastRun });
      await d.start();
      await new Promise((r) => setTimeout(r, 300));
      expect(calls).toEqual([]);
      expect(logs.join('\n')).toMatch(
        /docs: scheduled "0 3 \* \* \*" \(UTC\); next run \d{4}-\d\d-\d\dT03:00:00\.000Z/,
      );
      await d.stop();
    }
  });

  it('on stop, lets a running snapshot finish within the grace period', async () => {
    const { d, calls, ends } = daemon('* * * * * *');
    await d.start();
    await until(() => calls.length === 1, 'a run');
    setTimeout(() => ends[0]('ok'), 200);
    await d.stop(10_000);
    expect(calls[0].signal.aborted).toBe(false);
  });

  it('on stop, stops a running snapshot cleanly when the grace period is over, and starts no other', async () => {
    const { d, calls, logs } = daemon('* * * * * *');
    await d.start();
    await until(() => calls.length === 1, 'a run');
    await d.stop(100);
    expect(calls[0].signal.aborted).toBe(true);
    expect(logs[logs.length - 1]).toBe('info: stopped');
    await new Promise((r) => setTimeout(r, 1200));
    expect(calls).toHaveLength(1);
  });

  it('refuses a config whose schedule is not valid, naming the key', () => {
    expect(() => daemon('every night')).toThrow(
      /schedule\.cron: "every night" is not a valid cron expression/,
    );
  });
});
