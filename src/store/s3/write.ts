import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { SyncguardError, throwIfAborted } from '../../errors.js';
import { checkDigest, checkKey, checkPutOptions, chunksOf, discardBody, sha256Hex } from '../_util.js';
import type { PutOptions } from '../types.js';
import type { S3Context } from './client.js';
import { lockAfterComplete, lockParams } from './retention.js';

const MiB = 1024 * 1024;
const MAX_PARTS = 10_000;

/**
 * Writes an object once. Every write carries Content-MD5, which every server verifies
 * (x-amz-checksum-* is ignored by Ceph and refused by B2), and our SHA-256 as x-amz-meta-sha256.
 * A body of one part or less goes up with a single PutObject (retention in its headers), a longer
 * one as a multipart upload locked after completion (lockAfterComplete).
 *
 * Write-once: a HEAD before each write, plus If-None-Match: * where the server honours it (AWS,
 * MinIO; Ceph RGW 16 only in unversioned buckets, and never on CompleteMultipartUpload).
 */
export async function putObject(
  s3: S3Context,
  key: string,
  body: Buffer | Readable,
  opts: PutOptions = {},
): Promise<void> {
  try {
    checkKey(key);
    checkPutOptions(opts);
    throwIfAborted(opts.signal);
  } catch (e) {
    discardBody(body);
    throw e;
  }
  if (Buffer.isBuffer(body)) return putSingle(s3, key, body, opts);
  const pool = new PartPool(partSizeFor(s3, opts.size));
  const parts = partsOf(chunksOf(body, opts.signal), pool);
  try {
    // One part, or less, is sent with a single PutObject; more go up as a multipart upload.
    const first = await parts.next();
    if (first.done || first.value.length < pool.size)
      return await putSingle(s3, key, first.done ? Buffer.alloc(0) : first.value, opts);
    await putMultipart(s3, key, first.value, parts, pool, opts);
  } finally {
    await parts.return(undefined);
    discardBody(body);
  }
}

async function putSingle(s3: S3Context, key: string, data: Buffer, opts: PutOptions): Promise<void> {
  const sha = sha256Hex(data);
  checkDigest(key, sha, data.length, opts, s3.description);
  const input = {
    Bucket: s3.bucket,
    Key: s3.full(key),
    Body: data,
    ContentLength: data.length,
    ContentMD5: createHash('md5').update(data).digest('base64'),
    ContentType: 'application/octet-stream',
    IfNoneMatch: '*',
    Metadata: { sha256: sha },
    ...(s3.checksum === 'sha256' ? { ChecksumSHA256: Buffer.from(sha, 'hex').toString('base64') } : {}),
    ...lockParams(s3, opts.retainUntil),
  };
  let attempt = 0;
  await s3.call(
    'put',
    key,
    async () => {
      attempt++;
      // Ceph RGW ignores If-None-Match in versioned buckets (every Object Lock bucket): a second
      // PUT would add a version. So look first; If-None-Match still closes the race where honoured.
      const existing = await s3.headDirect(key);
      if (existing) {
        // A retry after a lost reply finds what our own first attempt wrote: that is success.
        if (attempt > 1 && existing.Metadata?.sha256 === sha && existing.ContentLength === data.length)
          return;
        throw s3.conflict(key);
      }
      try {
        await s3.client.send(new PutObjectCommand(input), { abortSignal: opts.signal });
      } catch (e) {
        throw s3.translate(e, 'put', key, opts.signal, input.ObjectLockMode !== undefined);
      }
    },
    opts.signal,
  );
}

async function putMultipart(
  s3: S3Context,
  key: string,
  first: Buffer,
  rest: AsyncGenerator<Buffer>,
  pool: PartPool,
  opts: PutOptions,
): Promise<void> {
  const signal = opts.signal;
  // Ceph ignores If-None-Match on CompleteMultipartUpload: look before uploading gigabytes.
  if (await s3.headRaw(key)) throw s3.conflict(key);
  const created = await s3.call(
    'put',
    key,
    () =>
      s3.client.send(
        new CreateMultipartUploadCommand({
          Bucket: s3.bucket,
          Key: s3.full(key),
          ContentType: 'application/octet-stream',
          Metadata: opts.sha256 ? { sha256: opts.sha256.toLowerCase() } : undefined,
          ...(s3.checksum === 'sha256' ? { ChecksumAlgorithm: 'SHA256' as const } : {}),
          ...lockParams(s3, opts.retainUntil),
        }),
        { abortSignal: signal },
      ),
    signal,
  );
  const uploadId = created.UploadId;
  if (!uploadId)
    throw new SyncguardError(
      'STORE_ERROR',
      `put ${s3.where(key)}: the server started a multipart upload without an UploadId`,
    );
  let versionId: string | undefined;
  try {
    const hash = createHash('sha256');
    const done: CompletedPart[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    let size = 0;
    let n = 0;
    const feed = async function* () {
      yield first;
      yield* rest;
    };
    for await (const part of feed()) {
      if (++n > MAX_PARTS) {
        failure = {
          error: new SyncguardError(
            'STORE_ERROR',
            `put ${s3.where(key)}: the body is larger than ${MAX_PARTS} parts of ${pool.size} bytes; pass its size so the part size can grow`,
          ),
        };
        break;
      }
      hash.update(part);
      size += part.length;
      const num = n;
      // The buffer is reused only once the server has taken all of it (the part succeeded).
      const p: Promise<void> = uploadPart(s3, key, uploadId, num, part, signal)
        .then(
          (c) => {
            done[num - 1] = c;
            pool.release(part);
          },
          (e) => {
            failure ??= { error: e };
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
      while (inflight.size >= s3.queueSize && failure === undefined) await Promise.race(inflight);
      if (failure !== undefined) break;
    }
    await Promise.all(inflight);
    if (failure) throw failure.error;
    checkDigest(key, hash.digest('hex'), size, opts, s3.description);
    versionId = await complete(s3, key, uploadId, done, size, signal);
  } catch (e) {
    await abortUpload(s3, key, uploadId);
    throw e;
  }
  await lockAfterComplete(s3, key, versionId, opts.retainUntil);
}

async function uploadPart(
  s3: S3Context,
  key: string,
  uploadId: string,
  num: number,
  part: Buffer,
  signal?: AbortSignal,
): Promise<CompletedPart> {
  const sha = s3.checksum === 'sha256' ? createHash('sha256').update(part).digest('base64') : undefined;
  const res = await s3.call(
    'put',
    key,
    () =>
      s3.client.send(
        new UploadPartCommand({
          Bucket: s3.bucket,
          Key: s3.full(key),
          UploadId: uploadId,
          PartNumber: num,
          Body: part,
          ContentLength: part.length,
          ContentMD5: createHash('md5').update(part).digest('base64'),
          ChecksumSHA256: sha,
        }),
        { abortSignal: signal },
      ),
    signal,
  );
  return sha ? { PartNumber: num, ETag: res.ETag, ChecksumSHA256: sha } : { PartNumber: num, ETag: res.ETag };
}

/** Completes the upload and returns the new version's id. */
async function complete(
  s3: S3Context,
  key: string,
  uploadId: string,
  parts: CompletedPart[],
  size: number,
  signal?: AbortSignal,
): Promise<string | undefined> {
  let attempt = 0;
  return s3.call(
    'put',
    key,
    async () => {
      attempt++;
      try {
        const r = await s3.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: s3.bucket,
            Key: s3.full(key),
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
            IfNoneMatch: '*',
          }),
          { abortSignal: signal },
        );
        return r.VersionId;
      } catch (e) {
        const err = s3.translate(e, 'put', key, signal);
        // A retry after a lost reply finds the upload gone: it completed if the object is there.
        if (err.code === 'NOT_FOUND' && attempt > 1) {
          const h = await s3.headDirect(key);
          if (h && h.ContentLength === size) return h.VersionId;
        }
        throw err;
      }
    },
    signal,
  );
}

async function abortUpload(s3: S3Context, key: string, uploadId: string): Promise<void> {
  try {
    await s3.call('abort upload', key, () =>
      s3.client.send(
        new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key: s3.full(key), UploadId: uploadId }),
      ),
    );
  } catch (e) {
    // Not fatal: a lifecycle rule (AbortIncompleteMultipartUpload) removes leftover parts.
    s3.log('warn', `could not abort the multipart upload of ${s3.where(key)}: ${(e as Error).message}`);
  }
}

/** Large enough that a body of `size` bytes fits in MAX_PARTS parts, in whole MiB. */
function partSizeFor(s3: S3Context, size: number | undefined): number {
  if (size === undefined) return s3.partSize;
  return Math.max(s3.partSize, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

/** Buffers of one part size, reused from part to part: an upload holds (queueSize + 1) of them
 *  whatever its length, instead of allocating a new part for the garbage collector every time. */
class PartPool {
  private readonly free: Buffer[] = [];
  constructor(readonly size: number) {}
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }
  release(part: Buffer): void {
    if (part.length === this.size) this.free.push(part);
  }
}

/** A stream cut into parts of exactly pool.size bytes, the last one shorter, copied into buffers
 *  of the pool. It reads only when the consumer asks for the next part. */
async function* partsOf(chunks: AsyncIterable<Buffer>, pool: PartPool): AsyncGenerator<Buffer> {
  let part = pool.take();
  let filled = 0;
  for await (const c of chunks) {
    for (let at = 0; at < c.length;) {
      const n = Math.min(pool.size - filled, c.length - at);
      c.copy(part, filled, at, at + n);
      filled += n;
      at += n;
      if (filled === pool.size) {
        yield part;
        part = pool.take();
        filled = 0;
      }
    }
  }
  if (filled > 0) yield part.subarray(0, filled);
}
