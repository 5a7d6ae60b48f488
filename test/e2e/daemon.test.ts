import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { snapshotId } from '../../src/snapshot/layout.js';
import { startDropboxEmulator } from '../emulators/dropbox.js';
import {
  holdingProxy,
  leftovers,
  prose,
  receiver,
  runCli,
  s3Bucket,
  startCli,
  tempDir,
  writeFiles,
  type CliRun,
} from '../schedule/_helpers.js';
import { configYaml, writeConfig } from '../helpers/cli.js';

/** `syncguard daemon` as a process, as systemd runs it. */
const s3 = inject('s3');
const { dirs, children } = leftovers();

async function folder(label: string, store: string, schedule: string, extra: string[] = []): Promise<string> {
  const dir = await tempDir(label);
  dirs.push(dir);
  await writeFiles(
    join(dir, 'tree'),
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`notes/n${i}.txt`, prose(i, 2000)])),
  );
  await writeConfig(
    dir,
    configYaml({
      store,
      settings: [`schedule: { cron: "${schedule}", timezone: UTC }`, ...extra],
      accounts: [{ name: 'docs', provider: 'local', path: './tree' }],
    }),
  );
  return dir;
}

function daemon(dir: string): CliRun {
  const d = startCli(['daemon'], dir);
  children.push(d);
  return d;
}

const snapshotsOf = async (dir: string) =>
  JSON.parse((await runCli(['snapshots', '--json'], dir)).stdout) as Array<{ id: string }>;

describe('e2e: the daemon', () => {
  it('runs the schedule, skips while a manual run holds the account, serves /metrics, and stops on SIGTERM', async () => {
    const dir = await folder('daemon', 'store: { type: fs, path: ./store }', '*/2 * * * * *', [
      'status: { port: 0 }',
    ]);
    const d = daemon(dir);
    await d.waitFor(/status: http:\/\/127\.0\.0\.1:(\d+)\/healthz/);
    const port = Number(/status: http:\/\/127\.0\.0\.1:(\d+)\//.exec(d.stderr())![1]);
    await d.waitFor(
      /docs: snapshot \S+: 20 files[^\n]*\(ok,[^\n]*\n[\s\S]*docs: snapshot \S+: 20 files[^\n]*\(ok,/,
    );

    // A manual run holds the account's lock (this test process plays it): the daemon leaves it alone.
    await fsp.writeFile(join(dir, 'state', 'locks', 'docs.lock'), `${process.pid}\n`);
    const mark = d.stderr().length;
    await d.waitFor(/docs: skipped: a snapshot of "docs" is already running on this machine/);
    const during = (await snapshotsOf(dir)).length;
    await fsp.rm(join(dir, 'state', 'locks', 'docs.lock'));
    await d.waitFor(
      new RegExp(`[\\s\\S]{${mark}}[\\s\\S]*skipped[\\s\\S]*docs: snapshot \\S+: 20 files[^\\n]*\\(ok,`),
    );
    expect((await snapshotsOf(dir)).length).toBeGreaterThan(during);

    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^syncguard_runs_total\{account="docs",result="ok"\} [2-9]/m);
    expect(metrics).toMatch(/^syncguard_runs_total\{account="docs",result="skipped"\} [1-9]/m);
    expect(metrics).toMatch(/^syncguard_snapshot_files\{account="docs"\} 20$/m);

    d.child.kill('SIGTERM');
    const { code } = await d.exited;
    expect(code, d.stderr()).toBe(0);
    expect(d.stderr()).toMatch(/stopped\n$/);
    const st = JSON.parse((await runCli(['status', '--json'], dir)).stdout);
    expect(st.accounts[0].lastRun).toMatchObject({ trigger: 'schedule' });
  }, 120_000);

  it('catches up at start a run missed while the machine was off', async () => {
    const dir = await folder('daemon-catchup', 'store: { type: fs, path: ./store }', '0 3 * * *');
    // The last run was two days ago: a 03:00 has passed since.
    const started = new Date(Date.now() - 2 * 86_400_000);
    const report = {
      format: 'syncguard-run-report',
      version: 1,
      id: `${snapshotId(started)}-abcdef`,
      account: 'docs',
      provider: 'local',
      trigger: 'schedule',
      started: started.toISOString(),
      finished: started.toISOString(),
      durationMs: 1000,
      result: 'ok',
      warnings: [],
      throttledMs: 0,
      retries: 0,
      alerts: [],
      host: 'h',
      pid: 1,
      tool: 'syncguard',
    };
    await writeFiles(join(dir, 'state', 'reports', 'docs'), {
      [`${report.id}.json`]: JSON.stringify(report),
    });
    const d = daemon(dir);
    await d.waitFor(
      /docs: the run of \S+T03:00:00\.000Z was missed \(the last run started [^)]+\): running it now/,
    );
    await d.waitFor(/docs: snapshot \S+: 20 files[^\n]*\(ok,/);
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    expect(await snapshotsOf(dir)).toHaveLength(1);
    const st = JSON.parse((await runCli(['status', '--json'], dir)).stdout);
    expect(st.accounts[0].lastRun).toMatchObject({ trigger: 'catch-up', result: 'ok' });

    // Started again now, it has nothing to catch up.
    const again = daemon(dir);
    await again.waitFor(/docs: scheduled "0 3 \* \* \*"/);
    await new Promise((r) => setTimeout(r, 500));
    again.child.kill('SIGTERM');
    expect((await again.exited).code).toBe(0);
    expect(again.stderr()).not.toMatch(/was missed/);
  }, 120_000);

  it.skipIf(!s3)(
    'stops a run cleanly on SIGTERM in the middle of it: no snapshot, no lock left, a "stopped" report',
    async () => {
      const { store, bucket } = await s3Bucket(s3!, 'daemon-stop');
      const proxy = await holdingProxy(s3!.endpoint);
      try {
        const dir = await folder(
          'daemon-stop',
          [
            'store:',
            '  type: s3',
            `  bucket: ${bucket}`,
            `  endpoint: ${proxy.url}`,
            '  forcePathStyle: true',
            '  accessKeyId: ${AWS_ACCESS_KEY_ID}',
            '  secretAccessKey: ${AWS_SECRET_ACCESS_KEY}',
            '  objectLock: { mode: GOVERNANCE, days: 1 }',
          ].join('\n'),
          '*/2 * * * * *',
        );
        const d = startCli(['daemon'], dir, {
          AWS_ACCESS_KEY_ID: s3!.accessKeyId,
          AWS_SECRET_ACCESS_KEY: s3!.secretAccessKey,
        });
        children.push(d);
        await proxy.heldOnce; // a pack is on its way: the run is in the middle
        d.child.kill('SIGTERM');
        const { code } = await d.exited;
        expect(code, d.stderr()).toBe(0);
        expect(d.stderr()).toMatch(/docs: stopped before it finished; nothing was written \(stopped,/);
        expect(d.stderr()).not.toContain(s3!.secretAccessKey);
        const manifests: string[] = [];
        for await (const o of store.list('snapshots/')) manifests.push(o.key);
        expect(manifests).toEqual([]);
        expect(await fsp.readdir(join(dir, 'state', 'locks'))).toEqual([]);
        const reports = await fsp.readdir(join(dir, 'state', 'reports', 'docs'));
        const last = JSON.parse(
          await fsp.readFile(join(dir, 'state', 'reports', 'docs', reports.sort().pop()!), 'utf8'),
        );
        expect(last).toMatchObject({ result: 'stopped', trigger: 'schedule', error: { code: 'ABORTED' } });
      } finally {
        proxy.release();
        await proxy.close();
        store.close();
      }
    },
    120_000,
  );
});

describe('e2e: the daemon log', () => {
  it('writes JSON lines with time and level, and no secret, through a run that fails on a revoked token', async () => {
    const emu = await startDropboxEmulator();
    try {
      const dir = await tempDir('daemon-log');
      dirs.push(dir);
      const token = emu.issueRefreshToken();
      emu.revokeRefreshToken(token);
      const hook = await receiver(() => ({ status: 500 }));
      const hookUrl = `${hook.url}/hooks/T0001/B0002/secret-path-of-the-webhook`;
      await fsp.writeFile(
        join(dir, 'syncguard.yaml'),
        [
          'store: { type: fs, path: ./store }',
          'stateDir: ./state',
          'schedule: { cron: "*/2 * * * * *", timezone: UTC }',
          `alerts: { webhook: { url: "${hookUrl}", headers: { Authorization: "Bearer \${ALERT_TOKEN}" }, retries: 0 } }`,
          'accounts:',
          '  - name: family',
          '    provider: dropbox',
          `    appKey: ${emu.appKey}`,
          '    refreshToken: ${DROPBOX_REFRESH_TOKEN}',
          `    endpoint: ${emu.url}`,
          '',
        ].join('\n'),
      );
      const alertToken = 'alert-token-0123456789abcdef';
      const d = startCli(['daemon', '--log-format', 'json'], dir, {
        DROPBOX_REFRESH_TOKEN: token,
        ALERT_TOKEN: alertToken,
      });
      children.push(d);
      await d.waitFor(/"level":"error"[^\n]*family: the schedule run failed/);
      await d.waitFor(/the webhook alert could not be sent/);
      d.child.kill('SIGTERM');
      expect((await d.exited).code, d.stderr()).toBe(0);
      const lines = d.stderr().trimEnd().split('\n');
      const docs = lines.map((l) => JSON.parse(l) as { time: string; level: string; msg: string });
      for (const doc of docs) {
        expect(Date.parse(doc.time)).not.toBeNaN();
        expect(['debug', 'info', 'warn', 'error']).toContain(doc.level);
      }
      expect(docs.find((x) => x.level === 'error')!.msg).toMatch(/revoked|invalid_grant/);
      // The token was sent to the emulator (and refused), the alert went out with its header.
      expect(emu.count('oauth2/token')).toBeGreaterThan(0);
      for (const secret of [token, alertToken, hookUrl, '/hooks/T0001'])
        expect(d.stderr()).not.toContain(secret);
      expect(hook.got[0].headers.authorization).toBe(`Bearer ${alertToken}`);
      await hook.close();
    } finally {
      await emu.close();
    }
  }, 120_000);
});
