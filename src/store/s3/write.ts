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
import type { PartPool, S3Context } from './client.js';
import { nameOf } from './errors.js';
import { lockAfterComplete, lockParams } from './retention.js';

const MiB = 1024 * 1024;
const MAX_PARTS = 10_000;

/**
 * Writes an object once. Each byte is hashed once per purpose:
 * - The server checks the bytes it receives against a SHA-256 it is given: a single PutObject is
 *   signed with the caller's SHA-256 (x-amz-content-sha256), which AWS, Ceph RGW and MinIO verify
 *   (XAmzContentSHA256Mismatch), so the store does not hash the body again, and the signer does not
 *   either. A part of a multipart upload is signed with its own hash over plain http (the signer
 *   computes it) and sent as UNSIGNED-PAYLOAD over TLS, which protects it on the way; the whole
 *   body's SHA-256 is computed here as the parts go, and checked before the upload is completed.
 * - Content-MD5 only where the server needs it: always with `checksum: md5`; on a locked write where
 *   the server asks for it (AWS: "Content-MD5 OR x-amz-checksum- HTTP header is required"; Ceph RGW
 *   16 does not). AWS gets x-amz-checksum-sha256 from the SHA-256 already known instead, for single
 *   writes; another server that refuses a locked write without it is sent it from then on.
 * - Our SHA-256 is stored as x-amz-meta-sha256.
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
  const pool = s3.partPool(partSizeFor(s3, opts.size));
  const parts = partsOf(chunksOf(body, opts.signal), pool);
  try {
    // One part, or less, is sent with a single PutObject; more go up as a multipart upload.
    const first = await parts.next();
    if (first.done || first.value.length < pool.size) {
      const data = first.done ? Buffer.alloc(0) : first.value;
      try {
        return await putSingle(s3, key, data, opts);
      } finally {
        pool.release(data);
      }
    }
    await putMultipart(s3, key, first.value, parts, pool, opts);
  } finally {
    await parts.return(undefined);
    discardBody(body);
  }
}

async function putSingle(s3: S3Context, key: string, data: Buffer, opts: PutOptions): Promise<void> {
  // With the caller's SHA-256 this checks only the size: the server checks the bytes against it.
  const sha = opts.sha256?.toLowerCase() ?? sha256Hex(data);
  checkDigest(key, sha, data.length, opts, s3.description);
  const lock = lockParams(s3, opts.retainUntil);
  const locked = lock.ObjectLockMode !== undefined;
  const input = (md5: boolean) => ({
    Bucket: s3.bucket,
    Key: s3.full(key),
    Body: data,
    ContentLength: data.length,
    ContentMD5: md5 ? md5Of(data) : undefined,
    ContentType: 'application/octet-stream',
    IfNoneMatch: '*',
    Metadata: { sha256: sha },
    ...(s3.checksum === 'sha256' || (locked && !s3.customEndpoint)
      ? { ChecksumSHA256: Buffer.from(sha, 'hex').toString('base64') }
      : {}),
    ...lock,
  });
  const send = (md5: boolean) =>
    s3.client.send(signedWith(new PutObjectCommand(input(md5)), sha), { abortSignal: opts.signal });
  const md5 = s3.checksum === 'md5' || (locked && s3.checksum === undefined && s3.md5ForLock);
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
        await withMd5IfAsked(s3, locked && !md5 && !!s3.customEndpoint, send, md5);
      } catch (e) {
        const err = s3.translate(e, 'put', key, opts.signal, locked);
        // The server received other bytes than the SHA-256 says: either the body is not what the
        // caller hashed (refused for good, as when the store hashes it), or it was damaged on the
        // way (a retry sends it again).
        if (err.code === 'INTEGRITY' && opts.sha256 !== undefined)
          checkDigest(key, sha256Hex(data), data.length, opts, s3.description);
        throw err;
      }
    },
    opts.signal,
  );
}

/**
 * Sends a request; when `mayAsk` and the server refuses it as InvalidRequest (a locked write without
 * Content-MD5 on a server that needs one, as AWS does), sends it again with Content-MD5 and, when
 * that succeeds, remembers that this server needs it. A bucket without Object Lock is refused both
 * times, and the second refusal is what the caller sees.
 */
async function withMd5IfAsked<T>(
  s3: S3Context,
  mayAsk: boolean,
  send: (md5: boolean) => Promise<T>,
  md5: boolean,
): Promise<T> {
  try {
    return await send(md5);
  } catch (e) {
    if (!mayAsk || nameOf(e) !== 'InvalidRequest') throw e;
  }
  const r = await send(true);
  if (!s3.md5ForLock) {
    s3.md5ForLock = true;
    s3.log('debug', `${s3.description} needs Content-MD5 on locked writes: it is sent from now on`);
  }
  return r;
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
  const lock = lockParams(s3, opts.retainUntil);
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
          ...lock,
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
      const p: Promise<void> = uploadPart(
        s3,
        key,
        uploadId,
        num,
        part,
        lock.ObjectLockMode !== undefined,
        signal,
      )
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
  locked: boolean,
  signal?: AbortSignal,
): Promise<CompletedPart> {
  const sha = s3.checksum === 'sha256' ? createHash('sha256').update(part).digest() : undefined;
  // AWS wants Content-MD5 (or a checksum) on each part of a locked upload; Ceph ignores the lock
  // headers of CreateMultipartUpload, and so does not.
  const md5 =
    s3.checksum === 'md5' || (locked && s3.checksum === undefined && (!s3.customEndpoint || s3.md5ForLock));
  const send = (withMd5: boolean) => {
    const command = new UploadPartCommand({
      Bucket: s3.bucket,
      Key: s3.full(key),
      UploadId: uploadId,
      PartNumber: num,
      Body: part,
      ContentLength: part.length,
      ContentMD5: withMd5 ? md5Of(part) : undefined,
      ChecksumSHA256: sha?.toString('base64'),
    });
    // Over plain http the signer hashes the part (the server checks it); over TLS it need not.
    if (sha) signedWith(command, sha.toString('hex'));
    else if (s3.tls) signedWith(command, 'UNSIGNED-PAYLOAD');
    return s3.client.send(command, { abortSignal: signal });
  };
  const res = await s3.call('put', key, () => withMd5IfAsked(s3, locked && !md5, send, md5), signal);
  return sha
    ? { PartNumber: num, ETag: res.ETag, ChecksumSHA256: sha.toString('base64') }
    : { PartNumber: num, ETag: res.ETag };
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

/** Signs the request with this payload hash (a SHA-256 in hex, or UNSIGNED-PAYLOAD) instead of
 *  letting the signer hash the body: the signer takes an x-amz-content-sha256 header as given. */
function signedWith<C extends PutObjectCommand | UploadPartCommand>(command: C, payloadHash: string): C {
  (command.middlewareStack as unknown as BuildStack).add(
    (next) => (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers['x-amz-content-sha256'] = payloadHash;
      return next(args);
    },
    { step: 'build', name: 'syncguardPayloadHash' },
  );
  return command;
}

/** The part of a command's middleware stack that signedWith uses, the same for every command. */
interface BuildStack {
  add(
    middleware: (
      next: (args: { request: unknown }) => Promise<unknown>,
    ) => (args: { request: unknown }) => Promise<unknown>,
    options: { step: 'build'; name: string },
  ): void;
}

function md5Of(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
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
