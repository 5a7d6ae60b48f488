import { describe, expect, it } from 'vitest';
import { alertsSchema } from '../../src/config/schema.js';
import { alertEvent, sendAlerts, summarize } from '../../src/schedule/alerts.js';
import { Metrics } from '../../src/schedule/metrics.js';
import { newReport, type RunReport } from '../../src/schedule/reports.js';

/** A partial run whose snapshot holds one file not read for `runs` runs in a row. */
function partial(runs: number): RunReport {
  const r = newReport('docs', 'dropbox', 'schedule', new Date('2026-11-23T02:00:00.000Z'));
  r.result = 'partial';
  r.snapshot = {
    id: '20261123T020000.000Z',
    key: 'snapshots/docs/20261123T020000.000Z.ndjson.gz',
    files: 2,
    dirs: 0,
    bytes: 10,
    bytesAdded: 0,
    filesRead: 0,
    bytesRead: 0,
    failed: 1,
    skipped: 0,
    stale: { files: 1, maxRuns: runs, since: '20261121T020000.000Z', byRuns: [{ runs, files: 1 }] },
  };
  return r;
}

describe('schedule: files stale for runs in a row (issue 8, point 1)', () => {
  it('a partial run is a `stale` alert once a file has not been read for 3 runs in a row', () => {
    expect(alertEvent(partial(2))).toBe('partial');
    expect(alertEvent(partial(3))).toBe('stale');
    expect(summarize(partial(3))).toBe(
      'docs: snapshot 20261123T020000.000Z: 2 files, 10 bytes, 0 bytes added; 1 files could not be read; 1 file not read: 1 for 3 runs (since 20261121T020000.000Z); the last version read is kept and each is read again every run',
    );
  });

  it('sends it by default, and to whoever asked for partial runs, and not to who asked for neither', async () => {
    const sent: string[] = [];
    const fetch = ((_url: string, init: { body: string }) => {
      sent.push((JSON.parse(init.body) as { event: string }).event);
      return Promise.resolve(new Response('ok'));
    }) as unknown as typeof globalThis.fetch;
    const deps = { log: () => {}, fetch, sleep: () => Promise.resolve() };
    const hook = 'http://127.0.0.1:9/hook';
    await sendAlerts(alertsSchema.parse({ webhook: hook }), partial(3), deps);
    await sendAlerts(alertsSchema.parse({ webhook: hook, on: ['partial'] }), partial(4), deps);
    await sendAlerts(alertsSchema.parse({ webhook: hook, on: ['failure', 'tripwire'] }), partial(5), deps);
    expect(sent).toEqual(['stale', 'stale']);
  });

  it("the daemon's metrics say how many files are stale and for how many runs at most", async () => {
    const m = new Metrics(['docs']);
    m.observe(partial(4));
    const text = await m.render({ running: new Set(), next: new Map() });
    expect(text).toMatch(/^syncguard_stale_files\{account="docs"\} 1$/m);
    expect(text).toMatch(/^syncguard_stale_max_runs\{account="docs"\} 4$/m);
  });
});
