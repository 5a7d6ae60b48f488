import { createHash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectRetentionCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type HeadObjectCommandOutput,
  type ObjectLockRetentionMode,
} from '@aws-sdk/client-s3';
import type { S3StoreConfig } from '../config/schema.js';
import { SyncguardError, abortError, isSyncguardError, throwIfAborted, type ErrorCode } from '../errors.js';
import type { Log } from '../log.js';
import { silentLog } from '../log.js';
import { showPath } from '../paths.js';
import { Pacer, type PacerOptions } from '../providers/_pacer.js';
import {
  checkDigest,
  checkKey,
  checkListPrefix,
  checkPutOptions,
  chunksOf,
  discardBody,
  emptyStream,
  isFuture,
  normalisePrefix,
  rangeWithin,
  sha256Hex,
} from './_util.js';
import type {
  GetOptions,
  ObjectInfo,
  PrepareOptions,
  PrepareReport,
  PutOptions,
  Store,
  StoreFeatures,
  StoredVersion,
} from './types.js';

// On Node 20 the AWS SDK warns, on every client it makes, that its releases after January 2027 need
// Node 22. syncguard pins a release that runs on Node 20, so the warning would only be noise on stderr.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const MiB = 1024 * 1024;
const MIN_PART = 5 * MiB;
const MAX_PARTS = 10_000;

export interface S3StoreOptions {
  /** Part size of multipart uploads (default 16 MiB, at least 5 MiB). Stream bodies shorter than
   *  one part are sent with a single PutObject. */
  partSize?: number;
  /** Parts of one upload in flight at once (default 3): it holds (queueSize + 1) × partSize. */
  queueSize?: number;
  /** Retrying of transient failures (tests pass a sleep that does not wait). */
  retry?: PacerOptions;
  log?: Log;
}

/**
 * An S3 bucket, on AWS or any S3-compatible server (Ceph RGW, MinIO, Wasabi, Backblaze B2).
 *
 * Every write carries Content-MD5, which every server verifies (x-amz-checksum-* is ignored by Ceph
 * and refused by B2), and our SHA-256 as x-amz-meta-sha256. The SDK's own checksums and retries are
 * off (requestChecksumCalculation WHEN_REQUIRED: its default aws-chunked stream uploads break Ceph
 * and B2); transient failures are retried here, through the pacer, with bodies held in memory.
 *
 * Object Lock is per object: retention is sent with each PutObject; a multipart upload gets it
 * with PutObjectRetention after completion, checked with a HEAD, because Ceph ignores lock headers
 * on CreateMultipartUpload. No bucket default retention is set.
 *
 * Write-once: a HEAD before each write, plus If-None-Match: * where the server honours it (AWS,
 * MinIO; Ceph RGW 16 only in unversioned buckets, and never on CompleteMultipartUpload). On Ceph,
 * two writers racing for one key in a locked bucket can both succeed, leaving two versions: for
 * content-addressed keys they hold the same bytes, and manifest keys are unique per run.
 */
export class S3Store implements Store {
  readonly features: StoreFeatures;
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly lockMode?: ObjectLockRetentionMode;
  private readonly checksum: 'md5' | 'sha256';
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly pacer: Pacer;
  private readonly secrets: string[];
  private readonly log: Log;
  private readonly customEndpoint: boolean;
  private readonly region: string;

  constructor(config: S3StoreConfig, opts: S3StoreOptions = {}) {
    if (!!config.accessKeyId !== !!config.secretAccessKey) {
      throw new SyncguardError(
        'CONFIG',
        'store: give both accessKeyId and secretAccessKey, or neither (to use the AWS credential chain)',
      );
    }
    this.bucket = config.bucket;
    this.prefix = normalisePrefix(config.prefix);
    this.region = config.region ?? 'us-east-1';
    this.customEndpoint = config.endpoint !== undefined;
    this.lockMode = config.objectLock === 'off' ? undefined : config.objectLock.mode;
    this.checksum = config.checksum ?? 'md5';
    this.features = { objectLock: this.lockMode !== undefined, versioned: this.lockMode !== undefined };
    this.partSize = Math.max(MIN_PART, opts.partSize ?? 16 * MiB);
    this.queueSize = Math.max(1, opts.queueSize ?? 3);
    this.log = opts.log ?? silentLog;
    this.secrets = [config.secretAccessKey, config.sessionToken].filter(
      (s): s is string => !!s && s.length >= 4,
    );
    this.pacer = new Pacer({
      concurrency: 64,
      maxAttempts: 6,
      baseDelayMs: 200,
      maxDelayMs: 20_000,
      maxElapsedMs: 5 * 60_000,
      ...opts.retry,
    });
    this.client = new S3Client({
      region: this.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      credentials:
        config.accessKeyId && config.secretAccessKey
          ? {
              accessKeyId: config.accessKeyId,
              secretAccessKey: config.secretAccessKey,
              sessionToken: config.sessionToken,
            }
          : undefined,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 1,
      requestHandler: {
        connectionTimeout: 15_000,
        socketTimeout: 120_000,
        httpAgent: { keepAlive: true, maxSockets: 64 },
        httpsAgent: { keepAlive: true, maxSockets: 64 },
      },
    });
    this.description = `s3://${this.bucket}/${this.prefix}${config.endpoint ? ` at ${withoutUserinfo(config.endpoint)}` : ` in ${this.region}`}`;
  }

  /** Closes the client's connections. */
  close(): void {
    this.client.destroy();
  }

  async prepare(opts: PrepareOptions): Promise<PrepareReport> {
    const notes: string[] = [];
    let created = false;
    if (!(await this.bucketExists())) {
      if (!opts.create) {
        throw new SyncguardError(
          'NOT_FOUND',
          `the bucket ${this.bucket} does not exist${this.customEndpoint ? '' : ` in ${this.region}`}: run \`syncguard init\` to create it`,
        );
      }
      await this.createBucket();
      created = true;
      notes.push(
        `created the bucket ${this.bucket}${this.lockMode ? ' with Object Lock (and so versioning)' : ''}`,
      );
    } else {
      notes.push(`the bucket ${this.bucket} exists`);
    }
    const versioning = await this.call('prepare', undefined, () =>
      this.client.send(new GetBucketVersioningCommand({ Bucket: this.bucket })),
    );
    const versioned = versioning.Status === 'Enabled';
    const lock = await this.bucketLock();
    notes.push(`versioning: ${versioning.Status ?? 'never enabled'}`);
    if (this.lockMode) {
      if (!lock.enabled || !versioned) {
        throw new SyncguardError(
          'STORE_NO_LOCK',
          `the bucket ${this.bucket} has no Object Lock${lock.enabled ? ' (versioning is off)' : ''}, so its objects could be deleted or overwritten: ` +
            'Object Lock can only be switched on when a bucket is created on most servers, so create a new bucket (`syncguard init` does, with Object Lock) and name it in the config, ' +
            'or write `objectLock: off` in the store section to accept a store without it',
        );
      }
      notes.push(
        `Object Lock is enabled: every object is locked (${this.lockMode}) until the date its snapshots need`,
      );
      if (lock.defaultRetention)
        notes.push(
          `the bucket also has a default retention (${lock.defaultRetention}): every object is kept at least that long, whatever the keep policy says`,
        );
    } else {
      this.features.objectLock = false;
      notes.push(
        lock.enabled
          ? 'the bucket has Object Lock, but the config says `objectLock: off`: objects are written without retention of their own'
          : "Object Lock is off (as configured): anyone holding the store's keys can delete the backups",
      );
    }
    this.features.versioned = versioned;
    return {
      created,
      objectLock: this.lockMode && lock.enabled ? 'enabled' : 'off',
      versioning: versioned ? 'enabled' : 'off',
      notes,
    };
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    try {
      checkKey(key);
      checkPutOptions(opts);
      throwIfAborted(opts.signal);
    } catch (e) {
      discardBody(body);
      throw e;
    }
    if (Buffer.isBuffer(body)) return this.putSingle(key, body, opts);
    const pool = new PartPool(this.partSizeFor(opts.size));
    const parts = partsOf(chunksOf(body, opts.signal), pool);
    try {
      // One part, or less, is sent with a single PutObject; more go up as a multipart upload.
      const first = await parts.next();
      if (first.done || first.value.length < pool.size)
        return await this.putSingle(key, first.done ? Buffer.alloc(0) : first.value, opts);
      await this.putMultipart(key, first.value, parts, pool, opts);
    } finally {
      await parts.return(undefined);
      discardBody(body);
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    checkKey(key);
    throwIfAborted(opts.signal);
    rangeWithin(key, Number.MAX_SAFE_INTEGER, opts);
    const start = opts.offset ?? 0;
    if (opts.length === 0) return this.emptyRange(key, opts);
    const range =
      start === 0 && opts.length === undefined
        ? undefined
        : `bytes=${start}-${opts.length === undefined ? '' : start + opts.length - 1}`;
    const res = await this.call(
      'get',
      key,
      async () => {
        try {
          return await this.client.send(
            new GetObjectCommand({
              Bucket: this.bucket,
              Key: this.full(key),
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
    if (!res) return this.emptyRange(key, opts);
    const body = res.Body as Readable | undefined;
    const got = res.ContentLength ?? 0;
    const total = res.ContentRange ? Number(/\/(\d+)$/.exec(res.ContentRange)?.[1]) : got;
    if (opts.length !== undefined && got !== opts.length) {
      body?.destroy();
      rangeWithin(key, total, opts);
      throw new SyncguardError(
        'INTEGRITY',
        `${this.where(key)}: asked for ${opts.length} bytes at ${start}, the server sent ${got}`,
      );
    }
    if (!body) return emptyStream();
    // Errors while streaming are AWS/network errors too: translate them here, not in the caller.
    const out = new PassThrough();
    body.on('error', (e) => out.destroy(this.translate(e, 'get', key, opts.signal)));
    out.on('close', () => body.destroy());
    return body.pipe(out);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key);
    const h = await this.headRaw(key);
    if (!h) return undefined;
    const info: ObjectInfo = { key, size: h.ContentLength ?? 0 };
    if (h.ObjectLockRetainUntilDate) info.retainUntil = h.ObjectLockRetainUntilDate;
    return info;
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    checkListPrefix(prefix);
    let token: string | undefined;
    do {
      throwIfAborted(signal);
      const page = await this.call(
        'list',
        prefix,
        () =>
          this.client.send(
            new ListObjectsV2Command({
              Bucket: this.bucket,
              Prefix: this.prefix + prefix,
              ContinuationToken: token,
            }),
            { abortSignal: signal },
          ),
        signal,
      );
      for (const o of page.Contents ?? []) {
        // Folder markers ("a/") made by web consoles are not objects of ours.
        if (!o.Key || o.Key.endsWith('/')) continue;
        yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async versions(prefix: string, signal?: AbortSignal): Promise<StoredVersion[]> {
    checkListPrefix(prefix);
    const out: StoredVersion[] = [];
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    do {
      throwIfAborted(signal);
      const page = await this.call(
        'list',
        prefix,
        () =>
          this.client.send(
            new ListObjectVersionsCommand({
              Bucket: this.bucket,
              Prefix: this.prefix + prefix,
              KeyMarker: keyMarker,
              VersionIdMarker: versionMarker,
            }),
            { abortSignal: signal },
          ),
        signal,
      );
      for (const v of page.Versions ?? []) {
        if (!v.Key || v.Key.endsWith('/') || !v.VersionId) continue;
        out.push({
          key: v.Key.slice(this.prefix.length),
          versionId: v.VersionId,
          size: v.Size ?? 0,
          lastModified: v.LastModified ?? new Date(0),
        });
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
    } while (keyMarker);
    // S3 lists keys in order and the versions of a key newest first (times may tie within a second).
    const sorted: StoredVersion[] = [];
    for (let i = 0; i < out.length;) {
      let j = i;
      while (j < out.length && out[j].key === out[i].key) j++;
      sorted.push(...out.slice(i, j).reverse());
      i = j;
    }
    return sorted;
  }

  /** Extends every version of the key, not only the latest: anyone who can write the bucket can put a
   *  newer version over a key, and extending only that one would let the real data's lock lapse. */
  async extendRetention(key: string, until: Date): Promise<void> {
    checkKey(key);
    const h = await this.headRaw(key);
    if (!h) throw this.notFound(key);
    if (!this.features.objectLock || !this.lockMode || !isFuture(until, new Date())) return;
    const versions = (this.features.versioned ? await this.versionsOf(key, false) : undefined) ?? [
      h.VersionId,
    ];
    for (const vid of versions) {
      const v =
        vid === h.VersionId
          ? h
          : await this.call('extend retention of', key, () => this.headDirect(key, vid));
      if (!v) continue;
      const current = v.ObjectLockRetainUntilDate;
      if (current && current.getTime() >= until.getTime()) continue;
      // A version still under retention keeps its mode: changing it needs the governance bypass.
      const mode =
        current && isFuture(current, new Date()) && v.ObjectLockMode ? v.ObjectLockMode : this.lockMode;
      await this.call('extend retention of', key, () =>
        this.client.send(
          new PutObjectRetentionCommand({
            Bucket: this.bucket,
            Key: this.full(key),
            VersionId: vid,
            Retention: { Mode: mode, RetainUntilDate: until },
          }),
        ),
      );
    }
  }

  /** Deletes every version (and delete marker) of the key. A plain DeleteObject would only add a
   *  delete marker in a versioned bucket and leave the data. GOVERNANCE retention is not bypassed. */
  async delete(key: string): Promise<void> {
    checkKey(key);
    const versions = await this.versionsOf(key);
    if (versions === undefined) {
      await this.call('delete', key, () =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key) })),
      );
      return;
    }
    let locked: SyncguardError | undefined;
    for (const versionId of versions) {
      try {
        await this.call('delete', key, () =>
          this.client.send(
            new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key), VersionId: versionId }),
          ),
        );
      } catch (e) {
        if (!isSyncguardError(e, 'STORE_LOCKED')) throw e;
        locked ??= await this.lockedError(key, versionId);
      }
    }
    if (locked) throw locked;
  }

  // ---- writing ----

  private async putSingle(key: string, data: Buffer, opts: PutOptions): Promise<void> {
    const sha = sha256Hex(data);
    checkDigest(key, sha, data.length, opts, this.description);
    const input = {
      Bucket: this.bucket,
      Key: this.full(key),
      Body: data,
      ContentLength: data.length,
      ContentMD5: createHash('md5').update(data).digest('base64'),
      ContentType: 'application/octet-stream',
      IfNoneMatch: '*',
      Metadata: { sha256: sha },
      ...(this.checksum === 'sha256' ? { ChecksumSHA256: Buffer.from(sha, 'hex').toString('base64') } : {}),
      ...this.lockParams(opts.retainUntil),
    };
    let attempt = 0;
    await this.call(
      'put',
      key,
      async () => {
        attempt++;
        // Ceph RGW ignores If-None-Match in versioned buckets (every Object Lock bucket): a second
        // PUT would add a version. So look first; If-None-Match still closes the race where honoured.
        const existing = await this.headDirect(key);
        if (existing) {
          // A retry after a lost reply finds what our own first attempt wrote: that is success.
          if (attempt > 1 && existing.Metadata?.sha256 === sha && existing.ContentLength === data.length)
            return;
          throw this.conflict(key);
        }
        try {
          await this.client.send(new PutObjectCommand(input), { abortSignal: opts.signal });
        } catch (e) {
          throw this.translate(e, 'put', key, opts.signal, input.ObjectLockMode !== undefined);
        }
      },
      opts.signal,
    );
  }

  private async putMultipart(
    key: string,
    first: Buffer,
    rest: AsyncGenerator<Buffer>,
    pool: PartPool,
    opts: PutOptions,
  ): Promise<void> {
    const signal = opts.signal;
    // Ceph ignores If-None-Match on CompleteMultipartUpload: look before uploading gigabytes.
    if (await this.headRaw(key)) throw this.conflict(key);
    const created = await this.call(
      'put',
      key,
      () =>
        this.client.send(
          new CreateMultipartUploadCommand({
            Bucket: this.bucket,
            Key: this.full(key),
            ContentType: 'application/octet-stream',
            Metadata: opts.sha256 ? { sha256: opts.sha256.toLowerCase() } : undefined,
            ...(this.checksum === 'sha256' ? { ChecksumAlgorithm: 'SHA256' as const } : {}),
            ...this.lockParams(opts.retainUntil),
          }),
          { abortSignal: signal },
        ),
      signal,
    );
    const uploadId = created.UploadId;
    if (!uploadId)
      throw new SyncguardError(
        'STORE_ERROR',
        `put ${this.where(key)}: the server started a multipart upload without an UploadId`,
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
              `put ${this.where(key)}: the body is larger than ${MAX_PARTS} parts of ${pool.size} bytes; pass its size so the part size can grow`,
            ),
          };
          break;
        }
        hash.update(part);
        size += part.length;
        const num = n;
        // The buffer is reused only once the server has taken all of it (the part succeeded).
        const p: Promise<void> = this.uploadPart(key, uploadId, num, part, signal)
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
        while (inflight.size >= this.queueSize && failure === undefined) await Promise.race(inflight);
        if (failure !== undefined) break;
      }
      await Promise.all(inflight);
      if (failure) throw failure.error;
      checkDigest(key, hash.digest('hex'), size, opts, this.description);
      versionId = await this.complete(key, uploadId, done, size, signal);
    } catch (e) {
      await this.abortUpload(key, uploadId);
      throw e;
    }
    await this.lockAfterComplete(key, versionId, opts.retainUntil);
  }

  private async uploadPart(
    key: string,
    uploadId: string,
    num: number,
    part: Buffer,
    signal?: AbortSignal,
  ): Promise<CompletedPart> {
    const sha = this.checksum === 'sha256' ? createHash('sha256').update(part).digest('base64') : undefined;
    const res = await this.call(
      'put',
      key,
      () =>
        this.client.send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key: this.full(key),
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
    return sha
      ? { PartNumber: num, ETag: res.ETag, ChecksumSHA256: sha }
      : { PartNumber: num, ETag: res.ETag };
  }

  /** Completes the upload and returns the new version's id. */
  private async complete(
    key: string,
    uploadId: string,
    parts: CompletedPart[],
    size: number,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    let attempt = 0;
    return this.call(
      'put',
      key,
      async () => {
        attempt++;
        try {
          const r = await this.client.send(
            new CompleteMultipartUploadCommand({
              Bucket: this.bucket,
              Key: this.full(key),
              UploadId: uploadId,
              MultipartUpload: { Parts: parts },
              IfNoneMatch: '*',
            }),
            { abortSignal: signal },
          );
          return r.VersionId;
        } catch (e) {
          const err = this.translate(e, 'put', key, signal);
          // A retry after a lost reply finds the upload gone: it completed if the object is there.
          if (err.code === 'NOT_FOUND' && attempt > 1) {
            const h = await this.headDirect(key);
            if (h && h.ContentLength === size) return h.VersionId;
          }
          throw err;
        }
      },
      signal,
    );
  }

  /** Ceph ignores lock headers on CreateMultipartUpload: set the retention on the new version and
   *  read it back. A version that should be locked and is not is removed, not left behind. */
  private async lockAfterComplete(
    key: string,
    versionId: string | undefined,
    until: Date | undefined,
  ): Promise<void> {
    if (!this.features.objectLock || !this.lockMode || !until) return;
    let vid = versionId;
    try {
      vid ??= (await this.headRaw(key))?.VersionId;
      await this.call('lock', key, () =>
        this.client.send(
          new PutObjectRetentionCommand({
            Bucket: this.bucket,
            Key: this.full(key),
            VersionId: vid,
            Retention: { Mode: this.lockMode, RetainUntilDate: until },
          }),
        ),
      );
      const h = await this.call('lock', key, () => this.headDirect(key, vid));
      const got = h?.ObjectLockRetainUntilDate;
      if (!got || Math.floor(got.getTime() / 1000) < Math.floor(until.getTime() / 1000)) {
        throw new SyncguardError(
          'STORE_ERROR',
          `put ${this.where(key)}: the server accepted the retention until ${until.toISOString()} but reports ${got ? got.toISOString() : 'none'}; the upload was removed. This server cannot lock multipart uploads: use another or \`objectLock: off\``,
        );
      }
    } catch (e) {
      if (vid) {
        await this.client
          .send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key), VersionId: vid }))
          .catch(() =>
            this.log('warn', `could not remove the unlocked upload ${this.where(key)} (version ${vid})`),
          );
      }
      throw e;
    }
  }

  private async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.call('abort upload', key, () =>
        this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.full(key), UploadId: uploadId }),
        ),
      );
    } catch (e) {
      // Not fatal: a lifecycle rule (AbortIncompleteMultipartUpload) removes leftover parts.
      this.log('warn', `could not abort the multipart upload of ${this.where(key)}: ${(e as Error).message}`);
    }
  }

  private lockParams(until: Date | undefined): {
    ObjectLockMode?: ObjectLockRetentionMode;
    ObjectLockRetainUntilDate?: Date;
  } {
    return this.features.objectLock && this.lockMode && until
      ? { ObjectLockMode: this.lockMode, ObjectLockRetainUntilDate: until }
      : {};
  }

  /** Large enough that a body of `size` bytes fits in MAX_PARTS parts, in whole MiB. */
  private partSizeFor(size: number | undefined): number {
    if (size === undefined) return this.partSize;
    return Math.max(this.partSize, Math.ceil(size / MAX_PARTS / MiB) * MiB);
  }

  // ---- reading ----

  private async headRaw(key: string): Promise<HeadObjectCommandOutput | undefined> {
    return this.call('head', key, () => this.headDirect(key));
  }

  /** HeadObject without the pacer, for use inside a call() (a nested call could wait for a slot
   *  its own caller holds). Undefined when missing; other errors are left for call() to translate. */
  private async headDirect(key: string, versionId?: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.full(key), VersionId: versionId }),
      );
    } catch (e) {
      if (status(e) === 404 && nameOf(e) !== 'NoSuchBucket') return undefined;
      throw e;
    }
  }

  private async emptyRange(key: string, opts: GetOptions): Promise<Readable> {
    const h = await this.headRaw(key);
    if (!h) throw this.notFound(key);
    rangeWithin(key, h.ContentLength ?? 0, opts);
    return emptyStream();
  }

  /** Version ids of exactly this key, delete markers included; undefined where the server has no
   *  versions API (a plain DeleteObject is then final). */
  private async versionsOf(key: string, markers = true): Promise<string[] | undefined> {
    const full = this.full(key);
    const ids: string[] = [];
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.call('delete', key, () =>
          this.client.send(
            new ListObjectVersionsCommand({
              Bucket: this.bucket,
              Prefix: full,
              KeyMarker: keyMarker,
              VersionIdMarker: versionMarker,
            }),
          ),
        );
      } catch (e) {
        if (
          !this.features.versioned &&
          isSyncguardError(e, 'STORE_ERROR') &&
          /NotImplemented|HTTP 501/.test(e.message)
        )
          return undefined;
        throw e;
      }
      for (const v of [...(page.Versions ?? []), ...(markers ? (page.DeleteMarkers ?? []) : [])]) {
        if (v.Key === full && v.VersionId) ids.push(v.VersionId);
      }
      if (!page.IsTruncated) return ids;
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
    }
  }

  private async lockedError(key: string, versionId: string): Promise<SyncguardError> {
    const h = await this.headDirect(key, versionId).catch(() => undefined);
    const until = h?.ObjectLockRetainUntilDate;
    return new SyncguardError(
      'STORE_LOCKED',
      `${this.where(key)} is locked${until ? ` until ${until.toISOString()}` : ''} (Object Lock${h?.ObjectLockMode ? `, ${h.ObjectLockMode}` : ''})${h?.ObjectLockLegalHoldStatus === 'ON' ? ' and under a legal hold' : ''}: it can be deleted ${until ? 'after that' : 'once its retention ends'}`,
    );
  }

  // ---- the bucket ----

  private async bucketExists(): Promise<boolean> {
    return this.call('prepare', undefined, async () => {
      try {
        await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
        return true;
      } catch (e) {
        if (status(e) === 404) return false;
        if (status(e) === 403 && !['InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(nameOf(e))) {
          // A HEAD has no body: a wrong secret, a missing permission and someone else's bucket look alike.
          throw new SyncguardError(
            'STORE_AUTH',
            `the bucket ${this.bucket} refused these credentials: check accessKeyId and secretAccessKey, that they may use this bucket, and that the name is not someone else's bucket`,
          );
        }
        throw e;
      }
    });
  }

  private async createBucket(): Promise<void> {
    await this.call('create bucket', undefined, async () => {
      try {
        await this.client.send(
          new CreateBucketCommand({
            Bucket: this.bucket,
            ObjectLockEnabledForBucket: this.lockMode ? true : undefined,
            // Only AWS needs the region spelled out; other servers reject names they do not know.
            CreateBucketConfiguration:
              !this.customEndpoint && this.region !== 'us-east-1'
                ? { LocationConstraint: this.region as never }
                : undefined,
          }),
        );
      } catch (e) {
        const name = nameOf(e);
        if (name === 'BucketAlreadyOwnedByYou') return;
        if (name === 'BucketAlreadyExists')
          throw new SyncguardError(
            'STORE_ERROR',
            `the bucket name ${this.bucket} is taken by someone else: choose another name in the config`,
          );
        throw e;
      }
    });
  }

  private async bucketLock(): Promise<{ enabled: boolean; defaultRetention?: string }> {
    return this.call('prepare', undefined, async () => {
      try {
        const r = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
        const d = r.ObjectLockConfiguration?.Rule?.DefaultRetention;
        return {
          enabled: r.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled',
          defaultRetention: d ? `${d.Mode}, ${d.Days ? `${d.Days} days` : `${d.Years} years`}` : undefined,
        };
      } catch (e) {
        // No configuration (404 ObjectLockConfigurationNotFoundError), or a server without the API.
        if (status(e) === 404 || status(e) === 501 || nameOf(e) === 'ObjectLockConfigurationNotFoundError')
          return { enabled: false };
        throw e;
      }
    });
  }

  // ---- errors ----

  private call<T>(
    op: string,
    key: string | undefined,
    fn: () => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    return this.pacer.call(async () => {
      try {
        return await fn();
      } catch (e) {
        throw this.translate(e, op, key, signal);
      }
    }, signal);
  }

  /** The one place AWS errors become SyncguardErrors. The AWS error is not kept as the cause: it
   *  would carry the raw response out of this file. */
  private translate(
    e: unknown,
    op: string,
    key: string | undefined,
    signal?: AbortSignal,
    sentLock = false,
  ): SyncguardError {
    if (isSyncguardError(e)) return e;
    if (signal?.aborted) return abortError(signal);
    const err = e as { message?: string; code?: string };
    const name = nameOf(e);
    const http = status(e);
    const where = key === undefined ? `s3://${this.bucket}` : this.where(key);
    const message = err.message && err.message !== name && err.message !== 'UnknownError' ? err.message : '';
    const detail = this.scrub(`${name}${http ? ` HTTP ${http}` : ''}${message ? `: ${message}` : ''}`);
    const say = (code: ErrorCode, text: string, retryable?: boolean) =>
      new SyncguardError(
        code,
        `${op} ${where}: ${text} (${detail})`,
        retryable === undefined ? {} : { retryable },
      );

    if (name === 'AbortError') return new SyncguardError('ABORTED', `${op} ${where} was aborted`);
    if (
      [
        'InvalidAccessKeyId',
        'SignatureDoesNotMatch',
        'InvalidToken',
        'ExpiredToken',
        'TokenRefreshRequired',
        'CredentialsProviderError',
        'InvalidClientTokenId',
      ].includes(name)
    ) {
      return say(
        'STORE_AUTH',
        'the store refused the credentials: check accessKeyId and secretAccessKey in the config (or the AWS credential chain)',
      );
    }
    if (name === 'RequestTimeTooSkewed')
      return say(
        'STORE_AUTH',
        "this machine's clock is too far from the server's: set the clock right (NTP)",
      );
    if (http === 403 || name === 'AccessDenied') {
      if (/object ?lock|worm|retention|protected/i.test(message))
        return say('STORE_LOCKED', 'Object Lock refuses it while the object is retained');
      // A HEAD has no body to say why: a wrong secret and a missing permission look the same.
      return say(
        'STORE_AUTH',
        'access denied: check the credentials in the config, and that they may use this bucket',
      );
    }
    if (name === 'NoSuchBucket')
      return say('NOT_FOUND', 'the bucket does not exist: run `syncguard init` to create it');
    if (http === 404 || ['NoSuchKey', 'NotFound', 'NoSuchVersion', 'NoSuchUpload'].includes(name))
      return say('NOT_FOUND', 'it does not exist');
    if (http === 412 || name === 'PreconditionFailed')
      return say('STORE_CONFLICT', 'it exists already: objects are written once');
    // AWS: another conditional write to the key is under way; retrying gives 412 or success.
    if (name === 'ConditionalRequestConflict')
      return say('STORE_CONFLICT', 'another write to it is under way', true);
    if (['BadDigest', 'InvalidDigest', 'XAmzContentSHA256Mismatch'].includes(name)) {
      return say('INTEGRITY', 'the server received other bytes than were sent (damaged in transit)', true);
    }
    // AWS says "Bucket is missing Object Lock Configuration"; Ceph sends a bare InvalidRequest.
    if (name === 'InvalidRequest' && (/object ?lock/i.test(message) || sentLock)) {
      return say(
        'STORE_NO_LOCK',
        'the bucket has no Object Lock: run `syncguard init` to check the bucket, or write `objectLock: off` in the config',
      );
    }
    if (
      http === 301 ||
      name === 'PermanentRedirect' ||
      name === 'AuthorizationHeaderMalformed' ||
      name === 'IllegalLocationConstraintException'
    ) {
      return say('STORE_ERROR', 'the bucket is in another region: set store.region in the config');
    }
    if (http === 501 || name === 'NotImplemented')
      return say('STORE_ERROR', 'the server does not implement this (NotImplemented)');
    if (http === 503 || name === 'SlowDown' || name === 'ServiceUnavailable')
      return say('STORE_UNAVAILABLE', 'the server asks to slow down or is unavailable');
    if (
      (http !== undefined && http >= 500) ||
      [
        'InternalError',
        'RequestTimeout',
        'RequestTimeoutException',
        'OperationAborted',
        'TimeoutError',
      ].includes(name)
    ) {
      return say('STORE_UNAVAILABLE', 'the server failed; it will be tried again');
    }
    if (http === undefined && err.code !== undefined) {
      return say(
        'STORE_UNAVAILABLE',
        `the server cannot be reached (${err.code ?? name}): check store.endpoint and the network`,
      );
    }
    return say('STORE_ERROR', 'the server refused it');
  }

  private scrub(text: string): string {
    let t = text;
    for (const s of this.secrets) t = t.split(s).join('***');
    return t;
  }

  private conflict(key: string): SyncguardError {
    return new SyncguardError(
      'STORE_CONFLICT',
      `${this.where(key)} exists already: objects are written once`,
    );
  }

  private notFound(key: string): SyncguardError {
    return new SyncguardError('NOT_FOUND', `${this.where(key)} does not exist`);
  }

  private full(key: string): string {
    return this.prefix + key;
  }

  private where(key: string): string {
    return `s3://${this.bucket}/${this.prefix}${showPath(key)}`;
  }
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

function status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function nameOf(e: unknown): string {
  const x = e as { name?: string; Code?: string };
  return (x?.name && x.name !== 'Error' ? x.name : x?.Code) ?? x?.name ?? 'Error';
}

function withoutUserinfo(endpoint: string): string {
  try {
    const u = new URL(endpoint);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid endpoint)';
  }
}
