import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lettersFolder, runCli, writeFiles } from '../schedule/_helpers.js';

/**
 * Whoever can write the store cannot blind the tripwire (issue 8, point 10): an empty ack named far
 * in the future, and a manifest dated in the future that lists nothing, are planted in an fs store;
 * deleting 40 of 60 files still fires, status and prune still see it, and an ack covers only the
 * alarms it names.
 */
describe('e2e: a hostile writer of the store and the tripwire', () => {
  let dir: string;
  const cli = (args: string[]) => runCli(args, dir);

  beforeAll(async () => {
    dir = await lettersFolder('e2e-hostile-acks');
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  async function plant(key: string, body: Buffer): Promise<void> {
    const file = join(dir, 'store', ...key.split('/'));
    await fsp.mkdir(join(file, '..'), { recursive: true });
    await fsp.writeFile(file, body);
  }

  it('fires, stays fired and blocks prune despite a far-future ack and a future-dated manifest', async () => {
    expect((await cli(['snapshot'])).code).toBe(0);

    // An empty "ack" dated 9999, and a "previous snapshot" dated 2099 that holds no file.
    await plant('acks/docs/99991231T235959.999Z.json', Buffer.alloc(0));
    const future = '20991231T000000.000Z';
    const header = {
      format: 'syncguard-manifest',
      version: 1,
      account: 'docs',
      provider: 'local',
      id: future,
      started: '2099-12-31T00:00:00.000Z',
      finished: '2099-12-31T00:00:01.000Z',
      tool: 'syncguard 0.1.0',
      counts: { files: 0, dirs: 0, failed: 0, skipped: 0 },
      bytes: 0,
      bytesAdded: 0,
      failures: [],
      skipped: [],
    };
    await plant(`snapshots/docs/${future}.ndjson.gz`, gzipSync(JSON.stringify(header) + '\n'));

    // The attack: 40 of the 60 files deleted.
    for (let i = 0; i < 40; i++) await fsp.rm(join(dir, 'tree', 'docs', `d${i % 3}`, `letter-${i}.txt`));
    const attacked = await cli(['snapshot']);
    expect(attacked.code, attacked.stdout + attacked.stderr).toBe(4);
    expect(attacked.stdout).toMatch(/TRIPWIRE: 67% of the files were deleted \(40 of 60/);
    expect(attacked.stderr).toContain(`snapshots/docs/${future}.ndjson.gz is passed over: it is dated`);

    const st = await cli(['status', '--json']);
    expect(st.code, st.stderr).toBe(4);
    type Status = { accounts: Array<{ tripwire: { tripped: boolean; fired: unknown[] } }> };
    expect((JSON.parse(st.stdout) as Status).accounts[0].tripwire).toMatchObject({ tripped: true });
    expect(st.stderr).toContain('the acknowledgement acks/docs/99991231T235959.999Z.json is ignored');

    const blocked = await cli(['prune']);
    expect(blocked.code, blocked.stderr).toBe(4);
    expect(blocked.stderr).toMatch(/docs was not pruned: the ransomware tripwire fired/);

    const list = await cli(['snapshots', '--json']);
    const flagged = (JSON.parse(list.stdout) as Array<{ id: string; datedAhead: string | null }>).filter(
      (s) => s.datedAhead,
    );
    expect(flagged.map((s) => s.id)).toEqual([future]);
    const v = await cli(['verify']);
    expect(v.code).toBe(1);
    expect(v.stdout + v.stderr).toContain(`snapshots/docs/${future}.ndjson.gz`);

    // A person acknowledges: that alarm, and no later one.
    expect((await cli(['ack', 'docs'])).code).toBe(0);
    expect((await cli(['status'])).code).toBe(0);
    // 20 files are below minFiles: a ransom note fires the next night all the same.
    await writeFiles(join(dir, 'tree'), { 'docs/d0/HOW_TO_DECRYPT.txt': 'pay us' });
    expect((await cli(['snapshot'])).code).toBe(4);
    const again = await cli(['status', '--json']);
    expect(again.code).toBe(4);
    expect((JSON.parse(again.stdout) as Status).accounts[0].tripwire.fired).toHaveLength(1);
  }, 300_000);
});
