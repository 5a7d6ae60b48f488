import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import {
  cliJson,
  expectCli,
  localConfigYaml,
  s3StoreYaml,
  startCli,
  type SnapshotJson,
} from '../helpers/cli.js';
import { listKeys } from '../helpers/s3-client.js';
import { MiB, makeTree, readTree, treeBytes, type TreeItem } from '../helpers/tree.js';
import { s3Workspace } from '../helpers/workspace.js';

const s3 = inject('s3');
if (!s3)
  console.warn('\n!!! e2e: crash test SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n');

const PREFIX = 'crash/';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * `syncguard snapshot` killed with SIGKILL at several points of a run against the real S3 server.
 * The kill points are chosen by what the run has done so far (its lock taken, its first object
 * stored, part of the tree stored), never by a clock; the assertions are about outcomes only.
 */
describe.skipIf(!s3)('e2e: a snapshot killed at any point', () => {
  let expected: TreeItem[];
  let bytes: number;
  const ws = s3Workspace(s3, 'crash', {
    config: (bucket) =>
      localConfigYaml(s3StoreYaml(bucket, s3!, '{ mode: GOVERNANCE, days: 1 }', PREFIX), './src'),
    timeoutMs: 240_000,
  });

  beforeAll(async () => {
    await makeTree(join(ws.dir, 'src'), {
      small: 600,
      large: Array.from({ length: 10 }, (_, i) => Math.round(1.2 * MiB) + i * 4099),
      odd: false,
    });
    expected = await readTree(join(ws.dir, 'src'));
    bytes = treeBytes(expected);
    await expectCli(['init'], ws.cli, 0);
  }, 120_000);

  const lockFile = () => join(ws.dir, 'state/locks/laptop.lock');
  const stored = async () => {
    const keys = await listKeys(ws.raw, ws.bucket, PREFIX);
    const content = keys.filter((k) => k.key.startsWith(`${PREFIX}blobs/`) || k.key.endsWith('.pack'));
    return { objects: content.length, bytes: content.reduce((n, k) => n + k.size, 0) };
  };

  it("lists no half snapshot, takes the dead run's lock over, and the next run completes, reusing what was stored", async () => {
    const restored = new Set<string>();
    /** Every snapshot listed restores completely, byte for byte (the tree never changes in this test). */
    const checkListed = async () => {
      const list = await cliJson<SnapshotJson[]>(['snapshots'], ws.cli);
      for (const s of list) {
        if (restored.has(s.id)) continue;
        expect(s).toMatchObject({
          files: expected.filter((x) => x.type === 'file').length,
          bytes,
          failed: 0,
        });
        const to = join(ws.dir, `restore-${s.id}`);
        await expectCli(['restore', 'laptop', '--at', s.id, '--to', to], ws.cli, 0);
        expect(await readTree(to), `snapshot ${s.id}`).toEqual(expected);
        await fsp.rm(to, { recursive: true });
        restored.add(s.id);
      }
      return list;
    };

    const points: Array<{
      name: string;
      reached: (base: { objects: number; bytes: number }) => Promise<boolean>;
    }> = [
      { name: 'once it holds the run lock', reached: async () => existsSync(lockFile()) },
      {
        name: 'once it stored its first object',
        reached: async (base) => (await stored()).objects > base.objects,
      },
      {
        name: 'once it stored a third of what is left',
        reached: async (base) => (await stored()).bytes - base.bytes >= (bytes - base.bytes) / 3,
      },
    ];
    let completed = 0;
    for (const point of points) {
      const base = await stored();
      const { child, finished } = startCli(['snapshot', 'laptop'], ws.cli);
      let exited = false;
      void finished.then(() => {
        exited = true;
      });
      while (!exited && !(await point.reached(base).catch(() => false))) await sleep(20);
      if (!exited) child.kill('SIGKILL');
      const r = await finished;
      if (r.signal === 'SIGKILL') {
        // The dead run's lock is still there, naming a process that is gone.
        if (existsSync(lockFile())) {
          expect(JSON.parse(readFileSync(lockFile(), 'utf8')), point.name).toMatchObject({ pid: child.pid });
          expect(alive(child.pid!)).toBe(false);
        }
      } else {
        // The run was quicker than the kill: it must have finished properly.
        expect(r.code, `${point.name}: ${r.stderr}`).toBe(0);
        completed++;
      }
      const list = await checkListed();
      expect(list.length, point.name).toBeGreaterThanOrEqual(completed);
    }

    // A run after the kills: not refused as BUSY, complete, and cheaper than the tree.
    const [run] = await cliJson<
      Array<{ ok: boolean; id: string; files: number; bytesAdded: number; failed: unknown[] }>
    >(['snapshot', 'laptop'], ws.cli);
    expect(run).toMatchObject({
      ok: true,
      files: expected.filter((x) => x.type === 'file').length,
      failed: [],
    });
    expect(run.bytesAdded).toBeLessThanOrEqual(bytes);
    expect(existsSync(lockFile())).toBe(false);
    const list = await checkListed();
    expect(list.map((s) => s.id)).toContain(run.id);
    // What the killed runs left behind is unreferenced, not damage.
    const v = await expectCli(['verify'], ws.cli, 0);
    expect(v.stdout).toContain('no problems found');
  }, 400_000);
});
