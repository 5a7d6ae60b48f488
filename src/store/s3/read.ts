import { PassThrough, type Readable } from 'node:stream';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { SyncguardError, throwIfAborted } from '../../errors.js';
import { checkKey, emptyStream, rangeWithin } from '../_util.js';
import type { GetOptions, ObjectInfo } from '../types.js';
import type { S3Context } from './client.js';
import { status } from './errors.js';

/** An object's bytes, or a range of them, as a stream whose errors are SyncguardErrors. */
export async function getObject(s3: S3Context, key: string, opts: GetOptions = {}): Promise<Readable> {
  checkKey(key);
  throwIfAborted(opts.signal);
  rangeWithin(key, Number.MAX_SAFE_INTEGER, opts);
  const start = opts.offset ?? 0;
  if (opts.length === 0) return emptyRange(s3, key, opts);
  const range =
    start === 0 && opts.length === undefined
      ? undefined
      : `bytes=${start}-${opts.length === undefined ? '' : start + opts.length - 1}`;
  const res = await s3.call(
    'get',
    key,
    async () => {
      try {
        return await s3.client.send(
          new GetObjectCommand({
            Bucket: s3.bucket,
            Key: s3.full(key),
            Range: range,
            VersionId: opts.versionId,
          }),
          { abortSignal: opts.signal },
        );
      } catch (e) {
        if (status(e) === 416) return undefined; // the range starts at or after the end
        throw e;
      }
    },
    opts.signal,
  );
  if (!res) return emptyRange(s3, key, opts);
  const body = res.Body as Readable | undefined;
  const got = res.ContentLength ?? 0;
  const total = res.ContentRange ? Number(/\/(\d+)$/.exec(res.ContentRange)?.[1]) : got;
  if (opts.length !== undefined && got !== opts.length) {
    body?.destroy();
    rangeWithin(key, total, opts);
    throw new SyncguardError(
      'INTEGRITY',
      `${s3.where(key)}: asked for ${opts.length} bytes at ${start}, the server sent ${got}`,
    );
  }
  if (!body) return emptyStream();
  // Errors while streaming are AWS/network errors too: translate them here, not in the caller.
  const out = new PassThrough();
  body.on('error', (e) => out.destroy(s3.translate(e, 'get', key, opts.signal)));
  out.on('close', () => body.destroy());
  return body.pipe(out);
}

export async function headObject(s3: S3Context, key: string): Promise<ObjectInfo | undefined> {
  checkKey(key);
  const h = await s3.headRaw(key);
  if (!h) return undefined;
  const info: ObjectInfo = { key, size: h.ContentLength ?? 0 };
  if (h.ObjectLockRetainUntilDate) info.retainUntil = h.ObjectLockRetainUntilDate;
  return info;
}

async function emptyRange(s3: S3Context, key: string, opts: GetOptions): Promise<Readable> {
  const h = await s3.headRaw(key);
  if (!h) throw s3.notFound(key);
  rangeWithin(key, h.ContentLength ?? 0, opts);
  return emptyStream();
}
