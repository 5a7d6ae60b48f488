import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { DeleteObjectCommand, ListObjectVersionsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { snapshots } from '../../src/api.js';
import { configSchema } from '../../src/config/schema.js';
import { Repository } from '../../src/snapshot/repository.js';
import { namedObjects, prune, type Policy } from '../../src/snapshot/retention.js';
import { s3Bucket, snap, tempDir, writeFiles, type S3Access } from '../schedule/_helpers.js';

const s3 = inject('s3');
const LOCK_MS = 3000;
const none = { last: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
const onlyNewest = new Map<string, Policy>([['docs', { keep: none, timeZone: 'UTC' }]]);
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

async function versions(client: S3Client, bucket: string, key: string): Promise<string[]> {
  const r = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  return [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])]
    .filter((v) => v.Key === key)
    .map((v) => v.VersionId!);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!s3)('retention: against the real S3 server with Object Lock', () => {
  it("prunes what only a dropped snapshot names once its lock runs out, versions and all; never what the kept one names; extends the kept one's locks", async () => {
    const { store, config, bucket } = await s3Bucket(s3!, 'retention');
    const client = raw(s3!);
    const repo = new Repository({ store, lockMs: LOCK_MS, packThreshold: 1024 });
    const root = await tempDir('retention-s3');
    dirs.push(root);
    await writeFiles(root, {
      'big-a.bin': randomBytes(4000),
      'big-b.bin': randomBytes(4000),
      'small-1.txt': 'one',
      'small-2.txt': 'two',
    });
    const s1 = await snap(repo, root);
    await writeFiles(root, { 'big-a.bin': randomBytes(4000), 'small-1.txt': 'one, edited' });
    const s2 = await snap(repo, root);
    const named2 = await namedObjects(repo, s2.key);
    const unique1 = [...(await namedObjects(repo, s1.key))].filter((o) => !named2.has(o));
    expect(unique1).toEqual([expect.stringMatching(/^blobs\/sha256\//)]);

    // While locked: prune keeps the dropped snapshot and deletes nothing, and the server refuses.
    const early = await prune(repo, { policies: onlyNewest, graceMs: 0 });
    expect(early.snapshots.map((s) => [s.id, s.action])).toEqual([
      [s1.id, 'locked'],
      [s2.id, 'keep'],
    ]);
    expect(early.objects.deleted).toEqual([]);
    await expect(store.delete(unique1[0])).rejects.toMatchObject({ code: 'STORE_LOCKED' });
    const [v] = await versions(client, bucket, unique1[0]);
    await expect(
      client.send(new DeleteObjectCommand({ Bucket: bucket, Key: unique1[0], VersionId: v })),
    ).rejects.toMatchObject({ name: 'AccessDenied' });

    // Once every lock has run out (the kept snapshot's too), prune removes only what s1 alone named.
    const ends = await Promise.all(
      [s1.key, ...unique1, ...named2].map(async (k) => (await store.head(k))!.retainUntil!.getTime()),
    );
    await sleep(Math.max(...ends) - Date.now() + 1100);
    const r = await prune(repo, { policies: onlyNewest, graceMs: 0 });
    expect(r.snapshots.map((s) => [s.id, s.action])).toEqual([
      [s1.id, 'remove'],
      [s2.id, 'keep'],
    ]);
    expect(r.objects.deleted.map((d) => d.key)).toEqual(unique1);
    expect(await versions(client, bucket, unique1[0])).toEqual([]);
    expect(await versions(client, bucket, s1.key)).toEqual([]);
    for (const o of named2) expect(await store.head(o), o).toBeDefined();

    // The kept snapshot's locks had run out too: prune extended them, objects and manifest.
    expect(r.locks).toEqual([
      expect.objectContaining({ account: 'docs', snapshots: [s2.id], objects: named2.size }),
    ]);
    const now = Date.now();
    for (const o of [...named2, s2.key])
      expect((await store.head(o))!.retainUntil!.getTime(), o).toBeGreaterThan(now);
    await expect(store.delete([...named2][0])).rejects.toMatchObject({ code: 'STORE_LOCKED' });

    // `syncguard snapshots` shows the extended lock, not the one the manifest was written with.
    const ctx = {
      config: configSchema.parse({
        store: config,
        accounts: [{ name: 'docs', provider: 'local', path: root }],
      }),
      file: '/dev/null',
      dir: root,
      store,
    };
    const [shown] = await snapshots(ctx, 'docs');
    expect(shown.id).toBe(s2.id);
    expect(Date.parse(shown.lockedUntil!)).toBeGreaterThan(now);
    expect(Date.parse(shown.header.lockedUntil!)).toBeLessThan(now);
    store.close();
    client.destroy();
  });
});
