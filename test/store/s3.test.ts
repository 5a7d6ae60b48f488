import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { S3StoreConfig } from '../../src/config/schema.js';
import { createStore } from '../../src/store/index.js';
import { S3Store, type S3StoreOptions } from '../../src/store/s3.js';
import { readAll } from '../../src/store/types.js';
import { flakyProxy, type FlakyProxy } from './flaky-proxy.js';
import { expectCode, sha, storeSuite, streamOf } from './store-suite.js';

/**
 * The S3 store against the real S3 server of the test setup (Ceph RGW with Object Lock). Buckets are
 * named per run; GOVERNANCE-locked test objects are removed afterwards with the governance bypass
 * (which the store itself never uses), COMPLIANCE ones are given seconds of retention and outlived.
 */

const s3 = inject('s3');
if (!s3)
  console.warn('\n!!! store: s3 tests SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n');

const run = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const MiB = 1024 * 1024;
const DAY = 86_400_000;
const buckets = new Set<string>();
const stores: S3Store[] = [];
/** Retries without waiting: the tests show that retries happen, not how long they wait. */
const fast: S3StoreOptions = { retry: { sleep: async () => {}, maxAttempts: 4 } };

function config(bucket: string, over: Partial<S3StoreConfig> = {}): S3StoreConfig {
  buckets.add(bucket);
  return {
    type: 's3',
    bucket,
    region: 'us-east-1',
    endpoint: s3!.endpoint,
    forcePathStyle: true,
    prefix: '',
    accessKeyId: s3!.accessKeyId,
    secretAccessKey: s3!.secretAccessKey,
    objectLock: { mode: 'GOVERNANCE', days: 1 },
    ...over,
  };
}

function store(cfg: S3StoreConfig, opts: S3StoreOptions = fast): S3Store {
  const s = new S3Store(cfg, opts);
  stores.push(s);
  return s;
}

let raw: S3Client;

async function versionsOf(bucket: string, key?: string) {
  const r = await raw.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  return [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])].filter(
    (v) => key === undefined || v.Key === key,
  );
}

async function uploadsOf(bucket: string): Promise<number> {
  return (await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0;
}

async function removeBucket(bucket: string): Promise<void> {
  for (;;) {
    const r = await raw.send(new ListObjectVersionsCommand({ Bucket: bucket })).catch(() => undefined);
    if (!r) return;
    const all = [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])];
    await Promise.all(
      all.map((v) =>
        raw
          .send(
            new DeleteObjectCommand({
              Bucket: bucket,
              Key: v.Key,
              VersionId: v.VersionId,
              BypassGovernanceRetention: true,
            }),
          )
          .catch(() => {}),
      ),
    );
    if (!r.IsTruncated || all.length === 0) break;
  }
  await raw.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
}

describe.skipIf(!s3)('store: s3', () => {
  const suiteBucket = `sg-suite-${run}`;
  const plainBucket = `sg-plain-${run}`;

  beforeAll(async () => {
    raw = new S3Client({
      endpoint: s3!.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: s3!.accessKeyId, secretAccessKey: s3!.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    await store(config(suiteBucket)).prepare({ create: true });
    await store(config(plainBucket, { objectLock: 'off' })).prepare({ create: true });
  });

  afterAll(async () => {
    for (const s of stores) s.close();
    if (!raw) return;
    await Promise.all([...buckets].map(removeBucket));
    raw.destroy();
  });

  // Parts of 5 MiB, so the suite's larger stream bodies go up in parts. Ceph RGW 16 ignores
  // If-None-Match in versioned buckets: two puts racing for one key may both succeed there.
  const prefixes = new Map<S3Store, string>();
  storeSuite(
    's3 with Object Lock (GOVERNANCE)',
    async () => {
      const prefix = `t-${randomBytes(4).toString('hex')}/`;
      const s = store(config(suiteBucket, { prefix }), { ...fast, partSize: 5 * MiB });
      prefixes.set(s, prefix);
      await s.prepare({ create: false });
      return s;
    },
    {
      atomicCreate: false,
      // One PutObject per key instead of the store's HEAD + PutObject: half the requests.
      seed: async (s, keys) => {
        const queue = [...keys];
        await Promise.all(
          Array.from({ length: 32 }, async () => {
            for (let k = queue.shift(); k !== undefined; k = queue.shift()) {
              await raw.send(
                new PutObjectCommand({ Bucket: suiteBucket, Key: prefixes.get(s as S3Store) + k, Body: k }),
              );
            }
          }),
        );
      },
    },
  );
  // Lists through the same code as the run above: the thousand-key listing is not repeated.
  storeSuite(
    's3 without Object Lock',
    async () => {
      const s = store(
        config(plainBucket, { objectLock: 'off', prefix: `t-${randomBytes(4).toString('hex')}` }),
        { ...fast, partSize: 5 * MiB },
      );
      await s.prepare({ create: false });
      return s;
    },
    { manyKeys: false },
  );

  describe('store: s3', () => {
    it('prepare creates a bucket with Object Lock and versioning, and no default retention', async () => {
      const bucket = `sg-create-${run}`;
      const s = store(config(bucket, { objectLock: { mode: 'COMPLIANCE', days: 30 } }));
      await expectCode(s.prepare({ create: false }), 'NOT_FOUND', /does not exist: run `syncguard init`/);
      const report = await s.prepare({ create: true });
      expect(report).toMatchObject({ created: true, objectLock: 'enabled', versioning: 'enabled' });
      const lock = await raw.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
      expect(lock.ObjectLockConfiguration?.ObjectLockEnabled).toBe('Enabled');
      expect(lock.ObjectLockConfiguration?.Rule).toBeUndefined();
      expect((await s.prepare({ create: true })).created).toBe(false);
      expect(s.features).toEqual({ objectLock: true, versioned: true });
    });

    it('prepare refuses a bucket created without Object Lock (STORE_NO_LOCK), and accepts it with objectLock: off', async () => {
      const bucket = `sg-nolock-${run}`;
      buckets.add(bucket);
      await raw.send(new CreateBucketCommand({ Bucket: bucket }));
      const locked = store(config(bucket, { objectLock: { mode: 'COMPLIANCE', days: 30 } }));
      await expectCode(
        locked.prepare({ create: true }),
        'STORE_NO_LOCK',
        /create a new bucket.*`objectLock: off`/,
      );
      // Written before prepare (as a misconfigured run would): refused, and says what to do.
      await expectCode(
        locked.put('blobs/x', Buffer.from('x'), { retainUntil: new Date(Date.now() + DAY) }),
        'STORE_NO_LOCK',
        /objectLock: off/,
      );

      const off = store(config(bucket, { objectLock: 'off' }));
      const report = await off.prepare({ create: false });
      expect(report).toMatchObject({ created: false, objectLock: 'off', versioning: 'off' });
      expect(off.features.objectLock).toBe(false);
      await off.put('blobs/y', Buffer.from('y'), { retainUntil: new Date(Date.now() + DAY) });
      const head = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: 'blobs/y' }));
      expect(head.ObjectLockMode).toBeUndefined();
      await off.delete('blobs/y');
      expect(await versionsOf(bucket, 'blobs/y')).toEqual([]);
    });

    it('locks a blob and a manifest (COMPLIANCE): the server refuses deleting their versions until retention ends, then the store deletes them', async () => {
      const bucket = `sg-compliance-${run}`;
      const s = store(config(bucket, { objectLock: { mode: 'COMPLIANCE', days: 1 }, prefix: 'vault' }));
      await s.prepare({ create: true });
      const until = new Date(Date.now() + 3000);
      const blob = randomBytes(1000);
      await s.put(`blobs/sha256/${sha(blob).slice(0, 2)}/${sha(blob)}`, blob, {
        sha256: sha(blob),
        retainUntil: until,
      });
      await s.put(
        'snapshots/acc/2026-11-20T02:00:00.000Z.ndjson.gz',
        streamOf(Buffer.from('{"format":1}\n')),
        { retainUntil: until },
      );
      for (const key of [
        `vault/blobs/sha256/${sha(blob).slice(0, 2)}/${sha(blob)}`,
        'vault/snapshots/acc/2026-11-20T02:00:00.000Z.ndjson.gz',
      ]) {
        const [v] = await versionsOf(bucket, key);
        const retention = await raw.send(
          new GetObjectRetentionCommand({ Bucket: bucket, Key: key, VersionId: v.VersionId }),
        );
        expect(retention.Retention?.Mode).toBe('COMPLIANCE');
        // Same credentials, raw SDK, exact version, even with the governance bypass: refused.
        await expect(
          raw.send(
            new DeleteObjectCommand({
              Bucket: bucket,
              Key: key,
              VersionId: v.VersionId,
              BypassGovernanceRetention: true,
            }),
          ),
        ).rejects.toMatchObject({ name: 'AccessDenied' });
        expect((await head(bucket, key)).ContentLength).toBeGreaterThan(0);
      }
      const err = await expectCode(
        s.delete('snapshots/acc/2026-11-20T02:00:00.000Z.ndjson.gz'),
        'STORE_LOCKED',
        /locked until .*COMPLIANCE/,
      );
      expect(err.message).toContain(until.toISOString().slice(0, 19));

      await new Promise((r) => setTimeout(r, Math.max(0, until.getTime() - Date.now()) + 1500));
      await s.delete('snapshots/acc/2026-11-20T02:00:00.000Z.ndjson.gz');
      await s.delete(`blobs/sha256/${sha(blob).slice(0, 2)}/${sha(blob)}`);
      expect(await versionsOf(bucket)).toEqual([]);
    });

    it('uploads a 40 MiB stream in parts and locks it after completion (Ceph ignores lock headers on CreateMultipartUpload)', async () => {
      const s = store(config(suiteBucket, { prefix: `mp-${run}` }));
      const data = randomBytes(40 * MiB);
      const until = new Date(Date.now() + DAY);
      await s.put('blobs/big', streamOf(data, 1024 * 1024), {
        sha256: sha(data),
        size: data.length,
        retainUntil: until,
      });
      const key = `mp-${run}/blobs/big`;
      const versions = await versionsOf(suiteBucket, key);
      expect(versions).toHaveLength(1);
      const retention = await raw.send(
        new GetObjectRetentionCommand({ Bucket: suiteBucket, Key: key, VersionId: versions[0].VersionId }),
      );
      expect(retention.Retention).toMatchObject({ Mode: 'GOVERNANCE' });
      expect(Math.floor(retention.Retention!.RetainUntilDate!.getTime() / 1000)).toBe(
        Math.floor(until.getTime() / 1000),
      );
      const h = await head(suiteBucket, key);
      expect(h.Metadata?.sha256).toBe(sha(data));
      expect(h.ETag).toMatch(/-3"$/); // three parts of 16 MiB
      await expect(
        raw.send(
          new DeleteObjectCommand({ Bucket: suiteBucket, Key: key, VersionId: versions[0].VersionId }),
        ),
      ).rejects.toMatchObject({ name: 'AccessDenied' });
      await expectCode(s.delete('blobs/big'), 'STORE_LOCKED');
      expect(sha(await readAll(s, 'blobs/big'))).toBe(sha(data));
      expect(sha(await readAll(s, 'blobs/big', { offset: 16 * MiB - 10, length: 20 }))).toBe(
        sha(data.subarray(16 * MiB - 10, 16 * MiB + 10)),
      );
      expect(await uploadsOf(suiteBucket)).toBe(0);
    });

    it('aborts a multipart upload whose sha256 differs: no object, no parts left behind', async () => {
      const s = store(config(suiteBucket, { prefix: `mpbad-${run}` }), { ...fast, partSize: 5 * MiB });
      const data = randomBytes(12 * MiB);
      await expectCode(
        s.put('blobs/bad', streamOf(data), {
          sha256: sha(Buffer.from('not it')),
          retainUntil: new Date(Date.now() + DAY),
        }),
        'INTEGRITY',
      );
      expect(await versionsOf(suiteBucket, `mpbad-${run}/blobs/bad`)).toEqual([]);
      expect(await uploadsOf(suiteBucket)).toBe(0);
    });

    it('refuses a second write of a key without making a version, for single and multipart bodies', async () => {
      const s = store(config(suiteBucket, { prefix: `cond-${run}` }), { ...fast, partSize: 5 * MiB });
      await s.put('snapshots/a/m', Buffer.from('first'));
      await expectCode(s.put('snapshots/a/m', Buffer.from('second')), 'STORE_CONFLICT');
      await expectCode(s.put('snapshots/a/m', streamOf(randomBytes(11 * MiB))), 'STORE_CONFLICT');
      expect(await versionsOf(suiteBucket, `cond-${run}/snapshots/a/m`)).toHaveLength(1);
      expect(await uploadsOf(suiteBucket)).toBe(0);
      expect((await readAll(s, 'snapshots/a/m')).toString()).toBe('first');
    });

    it('delete removes every version of a key and its delete markers, not only the newest', async () => {
      const s = store(config(suiteBucket, { prefix: `vers-${run}` }));
      const key = `vers-${run}/k`;
      for (const body of ['one', 'two'])
        await raw.send(new PutObjectCommand({ Bucket: suiteBucket, Key: key, Body: body }));
      await raw.send(new DeleteObjectCommand({ Bucket: suiteBucket, Key: key }));
      expect(await versionsOf(suiteBucket, key)).toHaveLength(3);
      await s.delete('k');
      expect(await versionsOf(suiteBucket, key)).toEqual([]);
    });

    it('refuses wrong credentials with STORE_AUTH, never showing the secret', async () => {
      const secret = 'Sup3rSecretValueThatMustNotLeak';
      const s = store(config(suiteBucket, { secretAccessKey: secret }));
      const errors = await Promise.all([
        s.put('x', Buffer.from('x')).catch((e) => e),
        s.head('x').catch((e) => e),
        s.prepare({ create: false }).catch((e) => e),
      ]);
      for (const e of errors) {
        expect(e.code).toBe('STORE_AUTH');
        expect(e.message).toMatch(/credentials/);
        expect(`${e.message} ${e.stack} ${JSON.stringify(e)}`).not.toContain(secret);
      }
      expect(s.description).toBe(`s3://${suiteBucket}/ at ${s3!.endpoint}`);
      expect(s.description).not.toContain(s3!.accessKeyId);
    });

    it('createStore builds an S3 store from the config, which loads the AWS SDK on its first call', async () => {
      const s = createStore(config(suiteBucket, { prefix: '/syncguard/' }), { configDir: '/' });
      expect(s.description).toBe(`s3://${suiteBucket}/syncguard/ at ${s3!.endpoint}`);
      expect(s.features).toEqual({ objectLock: true, versioned: true });
      const key = `created/${randomUUID()}`;
      await s.put(key, Buffer.from('via createStore'), { retainUntil: new Date(Date.now() + 86_400_000) });
      expect((await readAll(s, key)).toString()).toBe('via createStore');
      expect(await s.head(key)).toMatchObject({ key, size: 15 });
      const listed: string[] = [];
      for await (const o of s.list('created/')) listed.push(o.key);
      expect(listed).toContain(key);
      s.close?.();
      expect(() =>
        createStore(config(suiteBucket, { secretAccessKey: undefined }), { configDir: '/' }),
      ).toThrow(/give both accessKeyId and secretAccessKey/);
    });

    describe('through a proxy that fails requests', () => {
      let proxy: FlakyProxy;
      beforeAll(async () => {
        proxy = await flakyProxy(s3!.endpoint);
      });
      afterAll(async () => {
        await proxy?.close();
      });

      const viaProxy = (prefix: string, opts: S3StoreOptions = {}) =>
        store(config(suiteBucket, { endpoint: proxy.endpoint, prefix: `${prefix}-${run}` }), {
          ...fast,
          ...opts,
        });

      it('retries a 503 SlowDown, a 500 and a reset connection', async () => {
        const s = viaProxy('retry');
        const faults = ['slow-down', 'internal-error', 'reset'] as const;
        let i = 0;
        proxy.rule = (req) => (req.method === 'PUT' && i < faults.length ? faults[i++] : undefined);
        await s.put('a', Buffer.from('content'));
        expect(i).toBe(3);
        proxy.rule = () => undefined;
        expect((await readAll(s, 'a')).toString()).toBe('content');
        expect(await versionsOf(suiteBucket, `retry-${run}/a`)).toHaveLength(1);
      });

      it('treats a retried put that finds its own first attempt stored as done (the reply was lost)', async () => {
        // One pacer slot: the retry's HEAD must not wait for a slot its own put holds (it did once).
        const s = viaProxy('lost', { retry: { ...fast.retry, concurrency: 1 } });
        let puts = 0;
        proxy.rule = (req) => (req.method === 'PUT' && puts++ === 0 ? 'lose-reply' : undefined);
        const before = proxy.seen.length;
        await s.put('m', Buffer.from('manifest'));
        proxy.rule = () => undefined;
        // HEAD, PUT (reply lost), HEAD again: finds its own bytes, and does not write twice.
        expect(proxy.seen.slice(before).map((r) => r.split(' ')[0])).toEqual(['HEAD', 'PUT', 'HEAD']);
        expect(await versionsOf(suiteBucket, `lost-${run}/m`)).toHaveLength(1);
        expect((await readAll(s, 'm')).toString()).toBe('manifest');
        // Someone else's object under the key is still a conflict.
        await expectCode(s.put('m', Buffer.from('other')), 'STORE_CONFLICT');
      });

      it('retries a failed part of a multipart upload and completes it', async () => {
        const s = viaProxy('part', { partSize: 5 * MiB });
        let failed = 0;
        proxy.rule = (req) =>
          req.method === 'PUT' && /partNumber=2/.test(req.url ?? '') && failed++ === 0
            ? 'internal-error'
            : undefined;
        const data = randomBytes(11 * MiB);
        await s.put('big', streamOf(data), { sha256: sha(data) });
        proxy.rule = () => undefined;
        expect(failed).toBe(2);
        expect(sha(await readAll(s, 'big'))).toBe(sha(data));
        expect(await uploadsOf(suiteBucket)).toBe(0);
      });

      it('signs a write with the SHA-256 it is given, and sends Content-MD5 only where asked (issue 10)', async () => {
        const s = viaProxy('hash');
        const data = randomBytes(1000);
        const until = new Date(Date.now() + DAY);
        const before = proxy.headers.length;
        await s.put('a', data, { sha256: sha(data), retainUntil: until });
        const put = proxy.headers.slice(before).filter((_, i) => proxy.seen[before + i].startsWith('PUT'));
        expect(put).toHaveLength(1);
        // The server checks the bytes against the caller's SHA-256; Ceph needs no Content-MD5.
        expect(put[0]['x-amz-content-sha256']).toBe(sha(data));
        expect(put[0]['content-md5']).toBeUndefined();
        expect((await head(suiteBucket, `hash-${run}/a`)).ObjectLockRetainUntilDate).toBeDefined();
        // `checksum: md5` sends it on every write, as before.
        const m = store(
          config(suiteBucket, { endpoint: proxy.endpoint, prefix: `md5-${run}`, checksum: 'md5' }),
          fast,
        );
        const at = proxy.headers.length;
        await m.put('a', data, { sha256: sha(data) });
        expect(proxy.headers.slice(at).find((h) => h['content-md5'])?.['content-md5']).toBe(
          createHash('md5').update(data).digest('base64'),
        );
        // `checksum: sha256` sends x-amz-checksum-sha256, each part signed with the hash it sends.
        const c = store(
          config(suiteBucket, { endpoint: proxy.endpoint, prefix: `c256-${run}`, checksum: 'sha256' }),
          {
            ...fast,
            partSize: 5 * MiB,
          },
        );
        const large = randomBytes(6 * MiB);
        const from = proxy.headers.length;
        await c.put('large', streamOf(large), { sha256: sha(large), retainUntil: until });
        const parts = proxy.headers.slice(from).filter((_, i) => /partNumber=/.test(proxy.seen[from + i]));
        expect(parts).toHaveLength(2);
        for (const h of parts)
          expect(Buffer.from(h['x-amz-checksum-sha256'] as string, 'base64').toString('hex')).toBe(
            h['x-amz-content-sha256'],
          );
        expect(sha(await readAll(c, 'large'))).toBe(sha(large));
      });

      it('a body damaged on the way is refused by the server and sent again, single or in parts (issue 10)', async () => {
        const s = viaProxy('damage', { partSize: 5 * MiB });
        let damaged = 0;
        proxy.rule = (req) => (req.method === 'PUT' && damaged++ === 0 ? 'damage-body' : undefined);
        const small = randomBytes(3000);
        await s.put('small', small, { sha256: sha(small) });
        expect(damaged).toBe(2);
        damaged = 0;
        proxy.rule = (req) =>
          req.method === 'PUT' && /partNumber=2/.test(req.url ?? '') && damaged++ === 0
            ? 'damage-body'
            : undefined;
        const large = randomBytes(11 * MiB);
        await s.put('large', streamOf(large), { sha256: sha(large) });
        proxy.rule = () => undefined;
        expect(damaged).toBe(2);
        expect((await readAll(s, 'small')).equals(small)).toBe(true);
        expect(sha(await readAll(s, 'large'))).toBe(sha(large));
        expect(await versionsOf(suiteBucket, `damage-${run}/small`)).toHaveLength(1);
        // A body that is not what its SHA-256 says is refused for good, without retries.
        const before = proxy.seen.length;
        await expectCode(s.put('wrong', small, { sha256: sha(large) }), 'INTEGRITY', /nothing was written/);
        expect(proxy.seen.slice(before).filter((r) => r.startsWith('PUT'))).toHaveLength(1);
        expect(await versionsOf(suiteBucket, `damage-${run}/wrong`)).toEqual([]);
      });

      it('a server that refuses locked writes without Content-MD5 (as AWS does) gets it, from then on (issue 10)', async () => {
        const s = viaProxy('needmd5', { partSize: 5 * MiB });
        proxy.rule = (req) =>
          req.method === 'PUT' && req.headers['x-amz-object-lock-mode'] && !req.headers['content-md5']
            ? 'need-md5'
            : undefined;
        const until = new Date(Date.now() + DAY);
        const first = Buffer.from('first');
        let before = proxy.seen.length;
        await s.put('one', first, { sha256: sha(first), retainUntil: until });
        expect(proxy.seen.slice(before).filter((r) => r.startsWith('PUT'))).toHaveLength(2);
        const second = Buffer.from('second');
        before = proxy.seen.length;
        await s.put('two', second, { sha256: sha(second), retainUntil: until });
        expect(proxy.seen.slice(before).filter((r) => r.startsWith('PUT'))).toHaveLength(1);
        proxy.rule = () => undefined;
        expect((await readAll(s, 'one')).equals(first)).toBe(true);
        expect((await head(suiteBucket, `needmd5-${run}/two`)).ObjectLockRetainUntilDate).toBeDefined();
      });

      it('gives up after its attempts with a retryable STORE_UNAVAILABLE, and aborts the upload', async () => {
        const s = viaProxy('down', { partSize: 5 * MiB });
        proxy.rule = (req) =>
          req.method === 'PUT' && /partNumber=/.test(req.url ?? '') ? 'slow-down' : undefined;
        const err = await expectCode(
          s.put('big', streamOf(randomBytes(11 * MiB))),
          'STORE_UNAVAILABLE',
          /SlowDown HTTP 503/,
        );
        expect((err as { retryable?: boolean }).retryable).toBe(true);
        proxy.rule = () => undefined;
        expect(await uploadsOf(suiteBucket)).toBe(0);
        expect(await versionsOf(suiteBucket, `down-${run}/big`)).toEqual([]);
      });
    });
  });
});

async function head(bucket: string, key: string) {
  return raw.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}
