/**
 * Versioned buckets (issue 8, point 12), against the real S3 server with Object Lock: anyone with
 * write access can put a newer version over any key, and a crash between completing an upload and
 * locking it leaves a manifest without a lock. Locks are read from the store and set on every version.
 */
import { promises as fsp } from 'node:fs';
import { HeadObjectCommand, ListObjectVersionsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { snapshot, snapshots } from '../../src/api.js';
import { configSchema } from '../../src/config/schema.js';
import { Repository } from '../../src/snapshot/repository.js';
import { s3Bucket, snap, tempDir, withOverrides, writeFiles, type S3Access } from '../schedule/_helpers.js';

const s3 = inject('s3');
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

function raw(a: S3Access): S3Client {
  return new S3Client({
    endpoint: a.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

async function retentions(client: S3Client, bucket: string, key: string): Promise<Array<number | undefined>> {
  const r = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  const out: Array<number | undefined> = [];
  for (const v of (r.Versions ?? []).filter((x) => x.Key === key)) {
    const h = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: v.VersionId }));
    out.push(h.ObjectLockRetainUntilDate?.getTime());
  }
  return out;
}

describe.skipIf(!s3)('adversarial: versioned buckets (point 12), on the real S3 server', () => {
  it('extending a lock extends every version of the key, not only a newer one someone put over it', async () => {
    const { store, bucket } = await s3Bucket(s3!, 'versions-extend');
    const client = raw(s3!);
    try {
      const key = 'packs/2026/11/20/' + 'a'.repeat(32) + '.pack';
      await store.put(key, Buffer.from('the real pack'), { retainUntil: new Date(Date.now() + 5_000) });
      // A hostile writer puts a newer version over it (Object Lock cannot stop that).
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'planted' }));
      const until = new Date(Date.now() + 3_600_000);
      await store.extendRetention(key, until);
      const got = await retentions(client, bucket, key);
      expect(got).toHaveLength(2);
      for (const t of got) expect(t).toBeGreaterThanOrEqual(Math.floor(until.getTime() / 1000) * 1000);
    } finally {
      store.close();
      client.destroy();
    }
  });

  it('`snapshots` shows the lock the store holds, not the header; the next run locks a manifest left unlocked', async () => {
    const { store, config, bucket } = await s3Bucket(s3!, 'versions-unlocked');
    const client = raw(s3!);
    const root = await tempDir('versions-unlocked');
    dirs.push(root);
    try {
      await writeFiles(root, { 'a.txt': 'alpha', 'b.txt': 'beta' });
      // A crash between CompleteMultipartUpload and PutObjectRetention: the manifest is written unlocked.
      const crashing = withOverrides(store, {
        put: (k, b, o) => store.put(k, b, k.startsWith('snapshots/') ? { ...o, retainUntil: undefined } : o),
      });
      const s1 = await snap(new Repository({ store: crashing, lockDays: 1 }), root);
      expect(s1.header.lockedUntil).toBeDefined();
      expect((await store.head(s1.key))!.retainUntil).toBeUndefined();

      const ctx = {
        config: configSchema.parse({
          store: config,
          stateDir: `${root}/state`,
          keep: { last: 10 },
          accounts: [{ name: 'docs', provider: 'local', path: root }],
        }),
        file: '/dev/null',
        dir: root,
        store,
      };
      const [shown] = await snapshots(ctx, 'docs');
      expect(shown.id).toBe(s1.id);
      expect(shown.lockedUntil).toBeUndefined();

      await new Promise((r) => setTimeout(r, 5));
      const [run] = await snapshot(ctx, ['docs']);
      expect(run.ok, run.ok ? '' : run.error.message).toBe(true);
      const locked = (await store.head(s1.key))!.retainUntil;
      expect(locked?.getTime()).toBeGreaterThan(Date.now() + 23 * 3_600_000);
      expect((await retentions(client, bucket, s1.key))[0]).toBe(locked?.getTime());
    } finally {
      store.close();
      client.destroy();
    }
  }, 60_000);
});
