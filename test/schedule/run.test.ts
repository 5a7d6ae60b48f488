import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { snapshot, type Context } from '../../src/api.js';
import { configSchema } from '../../src/config/schema.js';
import { sendAlerts } from '../../src/schedule/alerts.js';
import { newReport, readReports, type RunReport } from '../../src/schedule/reports.js';
import { prose, receiver, tempDir, writeFiles } from '../schedule/_helpers.js';

const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of closers) await c();
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

const SECRETS = ['RT-very-secret-refresh-token', 'Bearer header-secret-42', 'PATHTOKEN123'];

async function setup(alerts: Record<string, unknown>, reports: Record<string, unknown> = {}) {
  const dir = await tempDir('run');
  dirs.push(dir);
  await writeFiles(
    join(dir, 'tree'),
    Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`d/f${i}.txt`, prose(i, 800)])),
  );
  const config = configSchema.parse({
    store: { type: 'fs', path: join(dir, 'store') },
    stateDir: join(dir, 'state'),
    alerts,
    reports,
    accounts: [
      { name: 'docs', provider: 'local', path: join(dir, 'tree') },
      { name: 'family-dropbox', provider: 'dropbox', appKey: 'abc', refreshToken: SECRETS[0] },
    ],
  });
  const ctx: Context = { config, file: join(dir, 'syncguard.yaml'), dir };
  return { dir, ctx, reportsDir: join(dir, 'state', 'reports') };
}

type AlertJson = { event: string; result: string; summary: string };

function noSecrets(text: string): void {
  for (const s of SECRETS) expect(text).not.toContain(s);
}

describe('schedule: one run of an account', () => {
  it('writes a run report, pings the healthcheck at start and end, and posts the webhook', async () => {
    const rx = await receiver();
    closers.push(rx.close);
    const { ctx, reportsDir } = await setup({
      on: ['failure', 'success'],
      webhook: { url: `${rx.url}/hooks/${SECRETS[2]}`, headers: { Authorization: SECRETS[1] } },
      healthcheck: `${rx.url}/ping/check-1`,
    });
    const [run] = await snapshot(ctx, ['docs']);
    expect(run.ok).toBe(true);
    expect(run.report).toMatchObject({
      account: 'docs',
      trigger: 'manual',
      result: 'ok',
      snapshot: { files: 5, dirs: 1, failed: 0 },
    });
    expect(run.report.alerts.map((a) => [a.channel, a.ok])).toEqual([
      ['healthcheck start', true],
      ['webhook', true],
      ['healthcheck success', true],
    ]);

    const [start, hook, end] = rx.got;
    expect(start.url).toMatch(/^\/ping\/check-1\/start\?rid=[0-9a-f-]{36}$/);
    expect(end.url).toBe(start.url.replace('/start', ''));
    expect(end.body).toMatch(/^docs: snapshot \d{8}T\d{6}\.\d{3}Z: 5 files/);
    expect(hook).toMatchObject({ method: 'POST', url: `/hooks/${SECRETS[2]}` });
    expect(hook.headers.authorization).toBe(SECRETS[1]);
    expect(hook.headers['content-type']).toBe('application/json');
    const payload = JSON.parse(hook.body);
    expect(payload).toMatchObject({
      source: 'syncguard',
      event: 'success',
      account: 'docs',
      result: 'ok',
      snapshot: { id: run.report.snapshot!.id, files: 5 },
    });
    noSecrets(hook.body);

    const [report] = await readReports(reportsDir, 'docs');
    expect(report).toEqual(run.report);
    noSecrets(JSON.stringify(report));
  });

  it('alerts on a failure, retries the webhook after a 503, and pings /fail', async () => {
    const rx = await receiver((r, n) =>
      r.url.startsWith('/hook') && n <= 2
        ? { status: 503, headers: { 'retry-after': '0' } }
        : { status: 200 },
    );
    closers.push(rx.close);
    const { ctx, dir } = await setup({ webhook: `${rx.url}/hook`, healthcheck: `${rx.url}/ping` });
    await fsp.rm(join(dir, 'tree'), { recursive: true });
    const [run] = await snapshot(ctx, ['docs']);
    expect(run.ok).toBe(false);
    expect(run.report).toMatchObject({
      result: 'failed',
      error: { code: 'NOT_FOUND', message: expect.stringMatching(/check the account's path/) },
    });
    const hooks = rx.got.filter((r) => r.url === '/hook');
    expect(hooks).toHaveLength(2);
    expect(JSON.parse(hooks[1].body)).toMatchObject({
      event: 'failure',
      summary: expect.stringMatching(/^docs: the manual run failed: .*check the account's path/),
    });
    expect(rx.got.map((r) => r.url.split('?')[0])).toEqual(['/ping/start', '/hook', '/hook', '/ping/fail']);
  });

  it('records a run skipped because another run holds the account, and alerts nobody', async () => {
    const rx = await receiver();
    closers.push(rx.close);
    const { ctx, dir, reportsDir } = await setup({
      on: ['failure', 'success', 'partial', 'tripwire'],
      webhook: `${rx.url}/hook`,
    });
    await fsp.mkdir(join(dir, 'state', 'locks'), { recursive: true });
    // The parent of this test process is alive, and is not this process: its lock holds.
    await fsp.writeFile(join(dir, 'state', 'locks', 'docs.lock'), `${process.ppid}\n`);
    const [run] = await snapshot(ctx, ['docs']);
    expect(run).toMatchObject({ ok: false, error: { code: 'BUSY' }, report: { result: 'skipped' } });
    expect(rx.got).toEqual([]);
    expect((await readReports(reportsDir, 'docs'))[0].result).toBe('skipped');
  });

  it('alerts from the second run in a row skipped for a held lock, naming the lock file, its holder and how to clear it', async () => {
    const rx = await receiver();
    closers.push(rx.close);
    const { ctx, dir } = await setup({ webhook: `${rx.url}/hook`, healthcheck: `${rx.url}/ping` });
    const lock = join(dir, 'state', 'locks', 'docs.lock');
    await fsp.mkdir(join(dir, 'state', 'locks'), { recursive: true });
    await fsp.writeFile(lock, `${process.ppid}\n`);
    const hooks = () => rx.got.filter((r) => r.url === '/hook').map((r) => JSON.parse(r.body) as AlertJson);
    const [first] = await snapshot(ctx, ['docs']);
    expect(first.report).toMatchObject({ result: 'skipped', skippedInARow: 1 });
    expect(hooks()).toEqual([]);

    const [second] = await snapshot(ctx, ['docs']);
    expect(second.report).toMatchObject({ result: 'skipped', skippedInARow: 2 });
    expect(hooks()).toHaveLength(1);
    expect(hooks()[0]).toMatchObject({ event: 'failure', result: 'skipped' });
    expect(hooks()[0].summary).toContain('docs: skipped 2 runs in a row:');
    expect(hooks()[0].summary).toContain(`(pid ${process.ppid}, since `);
    expect(hooks()[0].summary).toContain(`delete ${lock}`);
    expect(rx.got.map((r) => r.url.split('?')[0])).toEqual([
      '/ping/start',
      '/ping/start',
      '/hook',
      '/ping/fail',
    ]);

    // A run that runs starts the count again.
    await fsp.rm(lock);
    expect((await snapshot(ctx, ['docs']))[0].ok).toBe(true);
    await fsp.writeFile(lock, `${process.ppid}\n`);
    expect((await snapshot(ctx, ['docs']))[0].report).toMatchObject({ result: 'skipped', skippedInARow: 1 });
    expect(hooks()).toHaveLength(1);
  });

  it('keeps the newest reports of each account, as many as the config says', async () => {
    const { ctx, reportsDir } = await setup({}, { keep: 2 });
    for (let i = 0; i < 3; i++) await snapshot(ctx, ['docs']);
    const left = await readReports(reportsDir, 'docs');
    expect(left).toHaveLength(2);
    expect(Date.parse(left[0].started)).toBeGreaterThan(Date.parse(left[1].started));
  });

  it('runs the alert command with the alert on its stdin', async () => {
    const { ctx, dir } = await setup({});
    const out = join(dir, 'alert.txt');
    const script =
      'let s="";process.stdin.on("data",(c)=>s+=c).on("end",()=>require("fs").writeFileSync(process.argv[1],process.env.SYNCGUARD_EVENT+"\\n"+s))';
    const report = failedReport();
    const outcomes = await sendAlerts(
      { ...ctx.config.alerts, command: [process.execPath, '-e', script, out] },
      report,
      { log: () => {} },
    );
    expect(outcomes).toEqual([{ channel: 'command', ok: true }]);
    const [event, json] = (await fsp.readFile(out, 'utf8')).split('\n');
    expect(event).toBe('failure');
    expect(JSON.parse(json)).toMatchObject({
      event: 'failure',
      account: 'docs',
      error: { code: 'STORE_UNAVAILABLE' },
    });
    const failing = await sendAlerts({ ...ctx.config.alerts, command: 'exit 3' }, report, { log: () => {} });
    expect(failing).toEqual([{ channel: 'command', ok: false, error: 'it exited with code 3' }]);
  });

  it("records an alert it could not deliver, naming only the receiver's origin, and gives up on a 4xx at once", async () => {
    const warnings: string[] = [];
    const log = (_l: string, m: string) => {
      warnings.push(m);
    };
    const gone = await receiver();
    await gone.close();
    const down = await sendAlerts(
      {
        on: ['failure'],
        webhook: { url: `${gone.url}/hooks/${SECRETS[2]}`, headers: {}, retries: 2, timeoutSeconds: 5 },
      },
      failedReport(),
      { log, sleep: async () => {} },
    );
    expect(down).toEqual([
      { channel: 'webhook', ok: false, error: `the webhook at ${gone.url} failed: ECONNREFUSED` },
    ]);
    noSecrets(warnings.join('\n'));
    const rx = await receiver(() => ({ status: 401 }));
    closers.push(rx.close);
    const refused = await sendAlerts(
      { on: ['failure'], webhook: { url: `${rx.url}/h`, headers: {}, retries: 3, timeoutSeconds: 5 } },
      failedReport(),
      { log, sleep: async () => {} },
    );
    expect(refused[0]).toMatchObject({ ok: false, error: expect.stringMatching(/HTTP 401$/) });
    expect(rx.got).toHaveLength(1);
  });

  it("waits between tries as the receiver's Retry-After says (seconds or an HTTP date, at most 60 s), else 1 s, 2 s, 4 s…", async () => {
    const answers: Array<{ status: number; headers?: Record<string, string> }> = [
      { status: 429, headers: { 'retry-after': '7' } },
      { status: 503, headers: { 'retry-after': new Date(Date.now() + 30_000).toUTCString() } },
      { status: 503, headers: { 'retry-after': '600' } },
      { status: 502 },
      { status: 200 },
    ];
    const rx = await receiver((_r, n) => answers[n - 1]);
    closers.push(rx.close);
    const waits: number[] = [];
    const sent = await sendAlerts(
      { on: ['failure'], webhook: { url: `${rx.url}/h`, headers: {}, retries: 4, timeoutSeconds: 5 } },
      failedReport(),
      {
        log: () => {},
        sleep: async (ms) => {
          waits.push(ms);
        },
      },
    );
    expect(sent).toEqual([{ channel: 'webhook', ok: true }]);
    expect(rx.got).toHaveLength(5);
    expect(waits[0]).toBe(7000);
    // An HTTP date has whole seconds: the wait is what is left until then.
    expect(waits[1]).toBeGreaterThan(25_000);
    expect(waits[1]).toBeLessThanOrEqual(30_000);
    expect(waits.slice(2)).toEqual([60_000, 8000]);
  });

  it('names no part of a webhook address it cannot parse, and tries it no more than configured', async () => {
    const warnings: string[] = [];
    const waits: number[] = [];
    const [out] = await sendAlerts(
      {
        on: ['failure'],
        webhook: { url: `hooks.example/${SECRETS[2]}`, headers: {}, retries: 2, timeoutSeconds: 5 },
      },
      failedReport(),
      {
        log: (_l, m) => {
          warnings.push(m);
        },
        sleep: async (ms) => {
          waits.push(ms);
        },
      },
    );
    expect(out).toMatchObject({
      channel: 'webhook',
      ok: false,
      error: expect.stringMatching(/^the webhook at \(an invalid URL\) failed: /),
    });
    expect(waits).toEqual([1000, 2000]);
    expect(warnings).toHaveLength(1);
    noSecrets(warnings.join('\n') + JSON.stringify(out));
  });
});

function failedReport(): RunReport {
  const r = newReport('docs', 'local', 'schedule', new Date('2026-11-27T02:00:00Z'));
  r.result = 'failed';
  r.error = { code: 'STORE_UNAVAILABLE', message: 'the store did not answer' };
  return r;
}
