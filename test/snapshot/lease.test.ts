import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { leaseKey } from '../../src/snapshot/layout.js';
import {
  Lease,
  checkPruneAlone,
  listLeases,
  takePruneLease,
  takeSnapshotLease,
} from '../../src/snapshot/lease.js';
import { Repository } from '../../src/snapshot/repository.js';
import { prune } from '../../src/snapshot/retention.js';
import { readAll } from '../../src/store/types.js';
import { DAY, memoryRepo, prose, snap, tempDir, withOverrides, writeFiles } from '../schedule/_helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

function logged(repo: { log: unknown }): string[] {
  const lines: string[] = [];
  (repo as { log: (l: string, m: string) => void }).log = (_l, m) => lines.push(m);
  return lines;
}

async function keys(repo: Repository): Promise<string[]> {
  const out: string[] = [];
  for await (const o of repo.store.list('leases/')) out.push(o.key);
  return out;
}

describe('leases: prune and snapshots of one store exclude each other', () => {
  it('a snapshot waits while a prune holds the store, goes on once it ends, and gives up after waitMs naming it', async () => {
    const { repo } = memoryRepo();
    const lines = logged(repo);
    const p = await takePruneLease(repo);
    const waiting = takeSnapshotLease(repo, 'docs', { pollMs: 5 });
    while (!lines.some((l) => l.startsWith('docs: waits for a prune of the store on host'))) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await p.release();
    const s = await waiting;
    expect(await keys(repo)).toEqual([s.key]);
    await s.release();
    expect(await keys(repo)).toEqual([]);

    const p2 = await takePruneLease(repo);
    await expect(takeSnapshotLease(repo, 'docs', { waitMs: 0 })).rejects.toMatchObject({
      code: 'BUSY',
      message: expect.stringContaining(
        `holds the store, and did not end in 0 minutes; if no syncguard prune runs on`,
      ),
    });
    await expect(takeSnapshotLease(repo, 'docs', { waitMs: 0 })).rejects.toThrow(
      `delete ${p2.key} from the store`,
    );
    expect(await keys(repo)).toEqual([p2.key]);
    await p2.release();
  });

  it('a prune refuses while a snapshot or another prune holds a lease, and leaves no lease of its own', async () => {
    const { repo } = memoryRepo();
    const s = await takeSnapshotLease(repo, 'docs');
    await expect(takePruneLease(repo)).rejects.toMatchObject({
      code: 'BUSY',
      message: expect.stringMatching(
        /^a snapshot of "docs" on host \S+ \(pid \d+, lease leases\/snapshot\/docs\//,
      ),
    });
    expect(await keys(repo)).toEqual([s.key]);
    await s.release();
    const p = await takePruneLease(repo);
    await expect(takePruneLease(repo)).rejects.toThrow(/^a prune of the store on host/);
    await p.release();
  });

  it('an expired lease holds nothing back, nor one of this host whose process is gone; the prune removes both', async () => {
    const { repo, clock } = memoryRepo();
    const old = await Lease.write(repo, 'snapshot', 'docs', { ttlMs: 60_000 });
    clock.advance(61_000);
    const dead = leaseKey('snapshot', 'laptop', '20261120T020000.000Z-00ff', 0);
    const me = JSON.parse((await readAll(repo.store, old.key)).toString('utf8')) as Record<string, unknown>;
    await repo.store.put(
      dead,
      Buffer.from(
        JSON.stringify({
          ...me,
          account: 'laptop',
          id: '20261120T020000.000Z-00ff',
          pid: 2 ** 22 + 17, // above pid_max: no such process
          expires: new Date(clock.t + DAY).toISOString(),
        }),
      ),
    );
    const p = await takePruneLease(repo);
    expect(await keys(repo)).toEqual([p.key]);
    await p.release();
  });

  it('is renewed under the next key, the one before removed; one that ran out stops its holder', async () => {
    const { repo, clock } = memoryRepo();
    const p = await takePruneLease(repo, { ttlMs: 60_000 });
    const first = p.key;
    clock.advance(30_000);
    await p.renew();
    expect(p.key).toBe(first.replace(/-0\.json$/, '-1.json'));
    expect(await keys(repo)).toEqual([p.key]);
    expect(p.expires.getTime()).toBe(clock.t + 60_000);
    p.assertHeld();
    clock.advance(55_000);
    expect(() => p.assertHeld()).toThrow(/the prune's lease leases\/prune\/\S+ ran out/);
    await p.release();
  });

  it('passes over an object under leases/ that is not a lease, with a warning', async () => {
    const { repo } = memoryRepo();
    const lines = logged(repo);
    const key = leaseKey('prune', undefined, '20261120T020000.000Z-abcd', 0);
    await repo.store.put(key, Buffer.from('{"format":"syncguard-lease","kind":"prune"'));
    expect(await listLeases(repo)).toEqual([]);
    expect(lines).toEqual([
      expect.stringMatching(/^leases\/prune\/20261120T020000\.000Z-abcd-0\.json is ignored: /),
    ]);
    const p = await takePruneLease(repo);
    await p.release();
  });

  it('prune looks again right before it deletes: a snapshot lease taken since stops it, nothing deleted', async () => {
    const root = await tempDir('lease-prune');
    dirs.push(root);
    let planted: Lease | undefined;
    let plant = false;
    const { repo, clock, memory } = memoryRepo({
      wrap: (s) =>
        withOverrides(s, {
          list: (prefix, signal) => {
            if (plant && prefix === 'blobs/sha256/' && !planted)
              return (async function* () {
                planted = await Lease.write(repo, 'snapshot', 'docs');
                yield* s.list(prefix, signal);
              })();
            return s.list(prefix, signal);
          },
        }),
    });
    await writeFiles(root, { 'a.txt': prose(1) });
    await snap(repo, root);
    await fsp.rm(join(root, 'a.txt'));
    await writeFiles(root, { 'b.txt': prose(2) });
    clock.advance(DAY);
    await snap(repo, root);
    clock.advance(60 * DAY);
    const objects = memory.size;
    plant = true;
    const lease = await takePruneLease(repo);
    const stopped = await prune(repo, {
      policies: new Map([['docs', { keep: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 } }]]),
      graceMs: 0,
      beforeDelete: (signal) => checkPruneAlone(lease, signal),
      stillHeld: () => lease.assertHeld(),
    }).catch((e: unknown) => e);
    expect(stopped).toMatchObject({ code: 'BUSY', message: expect.stringContaining(planted!.key) });
    // The old manifest went (before the snapshot's lease); the pack only it named did not.
    expect(memory.size).toBe(objects - 1 + 2);
    await lease.release();
    await planted!.release();
  });
});
