import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import {
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  expectCli,
  expectNoSecret,
  localConfigYaml,
  s3Env,
  s3StoreYaml,
  tempDir,
  uniqueBucket,
  writeConfig,
} from '../helpers/cli.js';
import {
  createPlainBucket,
  getObject,
  listKeys,
  rawClient,
  removeBucket,
  tryDeleteVersion,
} from '../helpers/s3-client.js';
import { MiB, sha256 } from '../helpers/tree.js';
import { endToEnd, type FlowResult } from './_flow.js';

const s3 = inject('s3');
if (!s3)
  console.warn(
    '\n!!! e2e: CLI with the S3 store SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n',
  );

const DAY = 86_400_000;
const PREFIX = 'family/backups/';

/** The whole command line against a real S3 server with Object Lock (Ceph RADOS Gateway). */
describe.skipIf(!s3)('e2e: CLI with the S3 store', () => {
  let dir: string;
  let raw: S3Client;
  const buckets: string[] = [];
  let bucket: string;
  let flow: FlowResult;
  beforeAll(async () => {
    dir = await tempDir('e2e-s3');
    raw = rawClient(s3!);
    bucket = uniqueBucket('e2e');
    buckets.push(bucket);
  });
  afterAll(async () => {
    for (const b of buckets) await removeBucket(raw, b);
    raw?.destroy();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('init refuses a bucket made without Object Lock, unless the config says objectLock: off', async () => {
    const plain = uniqueBucket('plain');
    buckets.push(plain);
    await createPlainBucket(raw, plain);
    const cwd = join(dir, 'plain');
    await fsp.mkdir(join(cwd, 'src'), { recursive: true });
    const env = s3Env(s3!);
    await writeConfig(cwd, localConfigYaml(s3StoreYaml(plain, s3!), './src'));
    const refused = await expectCli(['init'], { cwd, env }, 1);
    expect(refused.stderr).toMatch(
      new RegExp(`the bucket ${plain} has no Object Lock.*create a new bucket.*objectLock: off`),
    );
    expectNoSecret(refused, s3!.secretAccessKey);
    // A snapshot into it is refused the same way, and leaves nothing behind.
    await fsp.writeFile(join(cwd, 'src/a.txt'), 'a');
    const snap = await expectCli(['snapshot'], { cwd, env }, 1);
    expect(snap.stderr).toMatch(/no Object Lock|Object Lock/);
    expect(await listKeys(raw, plain)).toEqual([]);

    await writeConfig(cwd, localConfigYaml(s3StoreYaml(plain, s3!, 'off'), './src'));
    const accepted = await expectCli(['init'], { cwd, env }, 0);
    expect(accepted.stdout).toMatch(/^checked s3:\/\//);
    expect(accepted.stdout).toContain('object lock: off');
    expect(accepted.stdout).toContain("anyone holding the store's keys can delete the backups");
  });

  it('creates a locked bucket, snapshots twice (a 20 MiB file among them) and restores both snapshots byte for byte', async () => {
    flow = await endToEnd({
      dir,
      storeYaml: s3StoreYaml(bucket, s3!, '{ mode: GOVERNANCE, days: 1 }', PREFIX),
      env: s3Env(s3!),
      secrets: [s3!.secretAccessKey],
      locked: true,
      tree: {
        large: [Math.round(1.1 * MiB), Math.round(1.3 * MiB), Math.round(1.6 * MiB), 20 * MiB + 12_345],
      },
    });
    const lock = await raw.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
    expect(lock.ObjectLockConfiguration?.ObjectLockEnabled).toBe('Enabled');
    // No default retention: every object gets its own, as long as its snapshots need.
    expect(lock.ObjectLockConfiguration?.Rule).toBeUndefined();
    expect((await raw.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status).toBe('Enabled');
    // Everything lies under the configured prefix, in the documented layout.
    const keys = (await listKeys(raw, bucket)).map((k) => k.key);
    expect(keys.every((k) => k.startsWith(PREFIX))).toBe(true);
    expect(new Set(keys.map((k) => k.slice(PREFIX.length).split('/')[0]))).toEqual(
      new Set(['blobs', 'packs', 'snapshots']),
    );
  }, 240_000);

  it('locks every object it wrote, the multipart-uploaded one too, until at least the day the config asks for', async () => {
    const all = await listKeys(raw, bucket);
    const big = all.filter((k) => k.key.includes('/blobs/')).sort((a, b) => b.size - a.size)[0];
    expect(big.size).toBe(20 * MiB + 12_345);
    const sample = [
      big,
      ...all.filter((k) => k.key.endsWith('.pack')).slice(0, 2),
      ...all.filter((k) => k.key.includes('/snapshots/')),
    ];
    for (const o of sample) {
      const h = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: o.key }));
      expect(h.ObjectLockMode, o.key).toBe('GOVERNANCE');
      expect(h.ObjectLockRetainUntilDate!.getTime(), o.key).toBeGreaterThan(Date.now() + DAY - 10 * 60_000);
    }
    // The big blob's bytes are the file's bytes.
    const restored = await fsp.readFile(join(dir, 'restored-2/large/big3.bin'));
    expect(sha256(await getObject(raw, bucket, big.key))).toBe(sha256(restored));
    expect(big.key).toBe(`${PREFIX}blobs/sha256/${sha256(restored).slice(0, 2)}/${sha256(restored)}`);
  });

  it('refuses to delete a stored blob or manifest, even to someone holding the same credentials', async () => {
    const all = await listKeys(raw, bucket);
    const blob = all.find((k) => k.key.includes('/blobs/'))!.key;
    const manifest = all.find((k) => k.key.includes('/snapshots/'))!.key;
    for (const key of [blob, manifest]) {
      const before = await getObject(raw, bucket, key);
      const versions =
        (await raw.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }))).Versions ?? [];
      expect(versions.length, key).toBe(1);
      const refused = await tryDeleteVersion(raw, bucket, key, versions[0].VersionId!);
      expect(refused, key).toEqual({ name: 'AccessDenied', status: 403 });
      expect((await getObject(raw, bucket, key)).equals(before)).toBe(true);
    }
    // A delete without a version id only hides the object behind a delete marker: the locked version stays.
    const marker = await raw.send(new DeleteObjectCommand({ Bucket: bucket, Key: manifest }));
    expect(marker.DeleteMarker).toBe(true);
    const left = await raw.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: manifest }));
    expect(left.Versions).toHaveLength(1);
    // Removing the marker (it has no lock) brings the snapshot back, and everything checks out again.
    await raw.send(new DeleteObjectCommand({ Bucket: bucket, Key: manifest, VersionId: marker.VersionId }));
    const v = await flow.run(['verify'], 0);
    expect(v.stdout).toContain('no problems found');
  });
});
