import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AccountStatus } from '../../src/api.js';
import { expectCli } from '../helpers/cli.js';
import { s3Workspace } from '../helpers/workspace.js';
import { startDropboxEmulator, type DropboxEmulator } from '../emulators/dropbox.js';
import { cloudConfig } from './cloud-cli-suite.js';

const s3 = inject('s3');
if (!s3)
  console.warn(
    '\n!!! e2e: stale files with Dropbox SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n',
  );

const ACCOUNT = 'family-dropbox';

interface SnapshotRun {
  ok: boolean;
  id: string;
  files: number;
  filesRead: number;
  failed: Array<{ path: string; error: string }>;
  stale: { files: number; maxRuns: number; since?: string; byRuns: Array<{ runs: number; files: number }> };
}

interface Alert {
  event: string;
  summary: string;
  snapshot: { stale?: SnapshotRun['stale'] } | null;
}

/**
 * Issue 8, point 1, from the command line: a file edited in the Dropbox whose download fails every
 * retry keeps its previous version in every snapshot (exit 3) until it can be read, and is then read
 * although the cursor moved on long ago and the listing never names it again. A file stale for 3 runs
 * sends a `stale` alert; `status` says how many files are stale for how many runs.
 */
describe.skipIf(!s3)(
  'e2e: CLI with Dropbox (emulated): a file that cannot be read keeps its previous version',
  () => {
    let emu: DropboxEmulator;
    beforeAll(async () => {
      emu = await startDropboxEmulator();
    });
    afterAll(async () => {
      await emu?.close();
    });
    const ws = s3Workspace(s3, 'e2e-stale', {
      config: (bucket) =>
        cloudConfig(
          bucket,
          [
            {
              name: ACCOUNT,
              provider: 'dropbox',
              appKey: emu.appKey,
              refreshToken: '${DROPBOX_REFRESH_TOKEN}',
              endpoint: emu.url,
            },
          ],
          ['alerts:', '  on: [stale]', '  command: ["/bin/sh", "-c", "cat >> alerts.ndjson"]'],
        ),
      env: () => ({ DROPBOX_REFRESH_TOKEN: emu.issueRefreshToken() }),
    });

    const json = async <T>(args: string[], code: number): Promise<T> =>
      JSON.parse((await expectCli([...args, '--json'], ws.cli, code)).stdout) as T;
    const restoredReport = async (id: string, to: string) => {
      await json(['restore', ACCOUNT, '--at', id, '--to', to], 0);
      return fsp.readFile(join(ws.dir, to, 'Documents', 'report.txt'), 'utf8');
    };
    const alerts = async (): Promise<Alert[]> => {
      try {
        const text = await fsp.readFile(join(ws.dir, 'alerts.ndjson'), 'utf8');
        return text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Alert);
      } catch {
        return [];
      }
    };

    let second: SnapshotRun;

    it('a changed file whose download fails every retry keeps its previous version in the snapshot (exit 3)', async () => {
      await expectCli(['init'], ws.cli, 0);
      emu.home.put('/Documents/report.txt', 'version 1', {
        clientModified: new Date('2026-11-01T08:00:00Z'),
      });
      emu.home.put('/Documents/other.txt', 'other', { clientModified: new Date('2026-11-01T08:00:00Z') });
      const [first] = await json<SnapshotRun[]>(['snapshot', ACCOUNT], 0);
      expect(first).toMatchObject({ ok: true, files: 2, failed: [] });

      // Edited in the account; every download of it comes back corrupted (the content hash does not match).
      emu.home.put('/Documents/report.txt', 'version 2, edited in the account', {
        clientModified: new Date('2026-11-20T08:00:00Z'),
      });
      emu.inject('files/download', { kind: 'corrupt' }, 1000);
      [second] = await json<SnapshotRun[]>(['snapshot', ACCOUNT], 3);
      expect(second).toMatchObject({
        files: 2,
        failed: [{ path: 'Documents/report.txt', error: expect.stringContaining('do not match') }],
        stale: { files: 1, maxRuns: 1, since: second.id },
      });
      expect(await restoredReport(second.id, 'r2')).toBe('version 1');
    }, 180_000);

    it('the next night, with nothing listed and the download still failing, still carries it', async () => {
      const continues = emu.count('files/list_folder/continue');
      const [third] = await json<SnapshotRun[]>(['snapshot', ACCOUNT], 3);
      expect(emu.count('files/list_folder/continue')).toBeGreaterThan(continues);
      expect(emu.count('files/list_folder')).toBe(1);
      expect(third).toMatchObject({ files: 2, stale: { files: 1, maxRuns: 2, since: second.id } });
      expect(await restoredReport(third.id, 'r3')).toBe('version 1');
      expect(await alerts()).toEqual([]);
    }, 120_000);

    it('on the third run in a row a `stale` alert goes out, and `status` says how many files are stale for how many runs', async () => {
      const text = await expectCli(['snapshot', ACCOUNT], ws.cli, 3);
      expect(text.stdout).toContain('failed: Documents/report.txt: ');
      expect(text.stdout).toContain('(the previous version is kept; read again next run; 3 runs in a row)');
      const sent = await alerts();
      expect(sent).toHaveLength(1);
      expect(sent[0]).toMatchObject({ event: 'stale', snapshot: { stale: { files: 1, maxRuns: 3 } } });
      expect(sent[0].summary).toContain('1 file not read: 1 for 3 runs (since');

      const status = await json<{ accounts: AccountStatus[] }>(['status', ACCOUNT], 0);
      expect(status.accounts[0].stale).toEqual({
        files: 1,
        maxRuns: 3,
        since: second.id,
        byRuns: [{ runs: 3, files: 1 }],
      });
      expect((await expectCli(['status', ACCOUNT], ws.cli, 0)).stdout).toMatch(
        /\n {2}stale {10}1 file not read: 1 for 3 runs \(since \d{8}T\d{6}\.\d{3}Z\)/,
      );
    }, 120_000);

    it('once the download works, the new version is read although the cursor moved on long ago', async () => {
      emu.clearFaults();
      const [fixed] = await json<SnapshotRun[]>(['snapshot', ACCOUNT], 0);
      expect(fixed).toMatchObject({ files: 2, failed: [], filesRead: 1, stale: { files: 0, maxRuns: 0 } });
      expect(await restoredReport(fixed.id, 'r5')).toBe('version 2, edited in the account');
      expect(emu.count('files/list_folder')).toBe(1);
    }, 120_000);
  },
);
