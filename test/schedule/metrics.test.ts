import { promises as fsp } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { Daemon } from '../../src/schedule/daemon.js';
import { Metrics } from '../../src/schedule/metrics.js';
import { newReport, type RunReport } from '../../src/schedule/reports.js';

const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
});

function report(account: string, result: RunReport['result'], seconds: number): RunReport {
  const r = newReport(account, 'local', 'schedule', new Date());
  r.result = result;
  r.durationMs = seconds * 1000;
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
    stale: { files: 2, maxRuns: 3, byRuns: [{ runs: 3, files: 2 }] },
  };
  return r;
}

/** The names of the samples a scrape holds (`name{labels} value` and `name value` lines). */
function sampleNames(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]),
  );
}

const PROMQL_WORDS = new Set(
  'sum avg min max count by without on ignoring group_left group_right rate irate increase delta time histogram_quantile label_values bool and or unless offset topk bottomk abs clamp_min clamp_max'.split(
    ' ',
  ),
);

/** The metric names a PromQL expression reads: its identifiers less functions, keywords, label names
 *  (inside {…} and by/without (…)), strings, durations and numbers. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/label_values\(\s*([^,)]+),[^)]*\)/g, '$1')
    .replace(/"(?:[^"\\]|\\.)*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '')
    .replace(/\[[^\]]*\]/g, '');
  return [...bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
    .map((m) => m[0])
    .filter((w) => !PROMQL_WORDS.has(w) && !/^\d/.test(w));
}

describe('schedule: metrics', () => {
  it('keeps the families, adds a run-duration histogram and the process metrics', async () => {
    const m = new Metrics(['docs', 'photos']);
    m.observe(report('docs', 'ok', 2));
    m.observe(report('docs', 'partial', 400));
    m.overlap('docs');
    const text = await m.render({ running: new Set(['photos']), next: new Map([['docs', new Date(5e12)]]) });
    for (const family of [
      'syncguard_runs_total counter',
      'syncguard_run_failures_total counter',
      'syncguard_runs_skipped_total counter',
      'syncguard_run_duration_seconds histogram',
      'syncguard_last_run_duration_seconds gauge',
      'syncguard_last_run_timestamp_seconds gauge',
      'syncguard_last_success_timestamp_seconds gauge',
      'syncguard_snapshot_files gauge',
      'syncguard_snapshot_bytes gauge',
      'syncguard_bytes_added_total counter',
      'syncguard_files_read_total counter',
      'syncguard_throttle_wait_seconds_total counter',
      'syncguard_stale_files gauge',
      'syncguard_stale_max_runs gauge',
      'syncguard_tripwire_fired gauge',
      'syncguard_run_in_progress gauge',
      'syncguard_next_run_timestamp_seconds gauge',
    ])
      expect(text).toContain(`# TYPE ${family}\n`);
    expect(text).toContain('syncguard_runs_total{account="docs",result="partial"} 1');
    expect(text).toContain('syncguard_run_duration_seconds_bucket{le="5",account="docs"} 1');
    expect(text).toContain('syncguard_run_duration_seconds_bucket{le="900",account="docs"} 2');
    expect(text).toContain('syncguard_run_duration_seconds_sum{account="docs"} 402');
    expect(text).toContain('syncguard_runs_skipped_total{account="docs"} 1');
    expect(text).toContain('syncguard_run_failures_total{account="photos"} 0');
    expect(text).toContain('syncguard_stale_files{account="docs"} 2');
    expect(text).toContain('syncguard_run_in_progress{account="photos"} 1');
    expect(text).toContain('syncguard_next_run_timestamp_seconds{account="docs"} 5000000000');
    expect(text).not.toMatch(/syncguard_snapshot_files\{account="photos"\}/);
    const names = sampleNames(text);
    for (const p of [
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_active_handles_total',
    ])
      expect(names).toContain(p);
    // Each daemon has its own registry: a second one neither fails nor shares the counts.
    const other = await new Metrics(['docs']).render({ running: new Set(), next: new Map() });
    expect(other).toContain('syncguard_run_failures_total{account="docs"} 0');
    expect(other).not.toContain('result="partial"');
  });

  it('contrib/grafana: every metric the dashboard queries is in a live /metrics scrape', async () => {
    const dashboard = JSON.parse(
      await fsp.readFile(new URL('../../contrib/grafana/syncguard-dashboard.json', import.meta.url), 'utf8'),
    ) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
      templating: { list: Array<{ query?: unknown }> };
    };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    for (const v of dashboard.templating.list)
      if (typeof v.query === 'object' && v.query) exprs.push((v.query as { query: string }).query);
    expect(exprs.length).toBeGreaterThan(10);

    const config = configSchema.parse({
      store: { type: 'fs', path: '/tmp/unused' },
      schedule: { cron: '*/1 * * * * *', timezone: 'UTC' },
      status: { port: 0 },
      accounts: [{ name: 'docs', provider: 'local', path: '/tmp/unused' }],
    });
    let runs = 0;
    const d = new Daemon({
      config,
      log: () => {},
      lastRun: async () => undefined,
      run: async (account, o) => {
        runs++;
        o.onReport(report(account, 'ok', 3));
      },
    });
    daemons.push(d);
    const { port } = await d.start();
    while (runs === 0) await new Promise((r) => setTimeout(r, 50));
    const scrape = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain/);
    const names = sampleNames(await scrape.text());

    const asked = new Set(exprs.flatMap(metricNames));
    expect(asked).toContain('syncguard_run_duration_seconds_bucket');
    expect(asked).toContain('process_resident_memory_bytes');
    const missing = [...asked].filter((n) => !names.has(n));
    expect(missing, `queried by the dashboard, not served: ${missing.join(', ')}`).toEqual([]);
  });

  it('the name extraction sees through functions, labels and ranges', () => {
    expect(
      metricNames(
        'histogram_quantile(0.9, sum by (le, account) (rate(foo_bucket{account=~"$a"}[1d]))) - bar',
      ),
    ).toEqual(['foo_bucket', 'bar']);
    expect(metricNames('label_values(syncguard_snapshot_files, account)')).toEqual([
      'syncguard_snapshot_files',
    ]);
  });
});
