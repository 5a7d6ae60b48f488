import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { leaseKey } from '../../src/snapshot/layout.js';
import { readAll } from '../../src/store/types.js';
import {
  holdingProxy,
  prose,
  runCli,
  s3Bucket,
  startCli,
  tempDir,
  writeFiles,
} from '../schedule/_helpers.js';

/**
 * Two machines on one S3 store (two processes that call themselves machine-a and machine-b): a
 * snapshot on one and a prune on the other exclude each other through a lease object in the store.
 */
const s3 = inject('s3');
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of closers) await c();
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

function configYaml(endpoint: string, bucket: string, state: string): string {
  return [
    'store:',
    '  type: s3',
    `  bucket: ${bucket}`,
    `  endpoint: ${endpoint}`,
    '  forcePathStyle: true',
    '  accessKeyId: ${AWS_ACCESS_KEY_ID}',
    '  secretAccessKey: ${AWS_SECRET_ACCESS_KEY}',
    '  objectLock: { mode: GOVERNANCE, days: 1 }',
    `stateDir: ./${state}`,
    'keep: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 }',
    'prune: { graceHours: 0 }',
    'tripwire: { enabled: false }',
    'accounts:',
    '  - { name: docs, provider: local, path: ./tree }',
    '',
  ].join('\n');
}

describe.skipIf(!s3)('e2e: prune and snapshot on two machines, one S3 store', () => {
  it('prune on machine-b refuses while a snapshot on machine-a holds its lease, and prunes once it is done; an expired lease is ignored', async () => {
    const dir = await tempDir('lease');
    dirs.push(dir);
    const { store, bucket } = await s3Bucket(s3!, 'lease');
    await writeFiles(
      join(dir, 'tree'),
      Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`n${i}.txt`, prose(i, 3000)])),
    );
    await fsp.writeFile(join(dir, 'b.yaml'), configYaml(s3!.endpoint, bucket, 'state-b'));
    const env = (host: string) => ({
      AWS_ACCESS_KEY_ID: s3!.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3!.secretAccessKey,
      SYNCGUARD_HOST: host,
    });
    const b = (args: string[]) => runCli(['-c', 'b.yaml', ...args], dir, env('machine-b'));
    expect((await b(['snapshot'])).code).toBe(0);
    await writeFiles(join(dir, 'tree'), { 'new.txt': prose(99, 3000) });

    // Machine A's snapshot stops at its first pack, its lease taken.
    const holding = await holdingProxy(s3!.endpoint);
    closers.push(holding.close);
    await fsp.writeFile(join(dir, 'a.yaml'), configYaml(holding.url, bucket, 'state-a'));
    const a = startCli(['-c', 'a.yaml', 'snapshot'], dir, env('machine-a'));
    await holding.heldOnce;
    const leases = [];
    for await (const o of store.list('leases/')) leases.push(o.key);
    expect(leases).toEqual([
      expect.stringMatching(/^leases\/snapshot\/docs\/\d{8}T\d{6}\.\d{3}Z-[0-9a-f]+-0\.json$/),
    ]);
    expect(JSON.parse((await readAll(store, leases[0])).toString('utf8'))).toMatchObject({
      kind: 'snapshot',
      account: 'docs',
      host: 'machine-a',
      pid: a.child.pid,
    });

    const refused = await b(['prune']);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain('cannot prune now: a snapshot of "docs" on host machine-a');
    expect(refused.stderr).toContain(leases[0]);

    holding.release();
    const done = await a.exited;
    expect(done.code, a.stderr()).toBe(0);
    const pruned = await b(['prune', '--json']);
    expect(pruned.code, pruned.stderr).toBe(0);
    // Both snapshots are still locked (Object Lock, 1 day): the policy lets the first go later.
    expect(JSON.parse(pruned.stdout)).toMatchObject({
      snapshots: [{ action: 'locked' }, { action: 'keep' }],
    });

    // A lease whose holder died: expired, it holds nothing back, and prune clears it away.
    const dead = leaseKey('snapshot', 'docs', '20261101T020000.000Z-0badc0de', 0);
    await store.put(
      dead,
      Buffer.from(
        JSON.stringify({
          format: 'syncguard-lease',
          version: 1,
          kind: 'snapshot',
          account: 'docs',
          id: '20261101T020000.000Z-0badc0de',
          host: 'machine-a',
          pid: 4242,
          started: '2026-11-01T02:00:00.000Z',
          expires: new Date(Date.now() - 60_000).toISOString(),
        }),
      ),
    );
    const again = await b(['prune']);
    expect(again.code, again.stderr).toBe(0);
    expect(await store.head(dead)).toBeUndefined();
    const v = await b(['verify']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  }, 240_000);
});
