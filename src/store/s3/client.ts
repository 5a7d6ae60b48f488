import {
  HeadObjectCommand,
  S3Client,
  type HeadObjectCommandOutput,
  type ObjectLockRetentionMode,
} from '@aws-sdk/client-s3';
import type { S3StoreConfig } from '../../config/schema.js';
import { SyncguardError } from '../../errors.js';
import type { Log } from '../../log.js';
import { silentLog } from '../../log.js';
import { showPath } from '../../paths.js';
import { Pacer, type PacerOptions } from '../../providers/_pacer.js';
import { s3Identity } from '../_s3-config.js';
import type { StoreFeatures } from '../types.js';
import { nameOf, status, translate } from './errors.js';

// On Node 20 the AWS SDK warns, on every client it makes, that its releases after January 2027 need
// Node 22. syncguard pins a release that runs on Node 20, so the warning would only be noise on stderr.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const MiB = 1024 * 1024;
export const MIN_PART = 5 * MiB;

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
 * What every job of the S3 store shares: the client (endpoint, credentials, connection limits), the
 * bucket and prefix, the pacer that retries transient failures, and how keys and errors are shown.
 *
 * The SDK's own checksums and retries are off (requestChecksumCalculation WHEN_REQUIRED: its default
 * aws-chunked stream uploads break Ceph and B2); transient failures are retried through the pacer.
 */
export class S3Context {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly region: string;
  readonly customEndpoint: boolean;
  readonly lockMode?: ObjectLockRetentionMode;
  /** `checksum` of the config: md5 sends Content-MD5 on every write, sha256 x-amz-checksum-sha256;
   *  absent, each is sent only where the server needs it (see write.ts). */
  readonly checksum?: 'md5' | 'sha256';
  /** The bytes travel over TLS (AWS, or an https endpoint): a part need not be signed with its hash. */
  readonly tls: boolean;
  /** This server refused a locked write without Content-MD5: it is sent on locked writes from then on. */
  md5ForLock = false;
  /** Changed by prepare() to what the bucket really has. */
  readonly features: StoreFeatures;
  readonly partSize: number;
  readonly queueSize: number;
  readonly log: Log;
  readonly description: string;
  private readonly pacer: Pacer;
  private readonly secrets: string[];
  private readonly pools = new Map<number, PartPool>();

  constructor(config: S3StoreConfig, opts: S3StoreOptions = {}) {
    const id = s3Identity(config);
    this.bucket = id.bucket;
    this.prefix = id.prefix;
    this.region = id.region;
    this.customEndpoint = config.endpoint !== undefined;
    this.lockMode = config.objectLock === 'off' ? undefined : config.objectLock.mode;
    this.checksum = config.checksum;
    this.tls = config.endpoint === undefined || /^https:/i.test(config.endpoint);
    this.features = id.features;
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
    this.description = id.description;
  }

  /** The buffers of multipart parts of this size, shared by every upload of the store. */
  partPool(size: number): PartPool {
    let pool = this.pools.get(size);
    if (!pool) {
      pool = new PartPool(size, this.queueSize + 1);
      this.pools.set(size, pool);
    }
    return pool;
  }

  /** Runs one request through the pacer (retries, concurrency), its failure translated. */
  call<T>(op: string, key: string | undefined, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.pacer.call(async () => {
      try {
        return await fn();
      } catch (e) {
        throw this.translate(e, op, key, signal);
      }
    }, signal);
  }

  /** The one place AWS errors become SyncguardErrors (see errors.ts). */
  translate(
    e: unknown,
    op: string,
    key: string | undefined,
    signal?: AbortSignal,
    sentLock = false,
  ): SyncguardError {
    return translate(e, {
      op,
      where: key === undefined ? `s3://${this.bucket}` : this.where(key),
      signal,
      sentLock,
      scrub: (text) => this.scrub(text),
    });
  }

  async headRaw(key: string): Promise<HeadObjectCommandOutput | undefined> {
    return this.call('head', key, () => this.headDirect(key));
  }

  /** HeadObject without the pacer, for use inside a call() (a nested call could wait for a slot
   *  its own caller holds). Undefined when missing; other errors are left for call() to translate. */
  async headDirect(key: string, versionId?: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.full(key), VersionId: versionId }),
      );
    } catch (e) {
      if (status(e) === 404 && nameOf(e) !== 'NoSuchBucket') return undefined;
      throw e;
    }
  }

  conflict(key: string): SyncguardError {
    return new SyncguardError(
      'STORE_CONFLICT',
      `${this.where(key)} exists already: objects are written once`,
    );
  }

  notFound(key: string): SyncguardError {
    return new SyncguardError('NOT_FOUND', `${this.where(key)} does not exist`);
  }

  full(key: string): string {
    return this.prefix + key;
  }

  where(key: string): string {
    return `s3://${this.bucket}/${this.prefix}${showPath(key)}`;
  }

  private scrub(text: string): string {
    let t = text;
    for (const s of this.secrets) t = t.split(s).join('***');
    return t;
  }
}

/** Buffers of one part size, reused from part to part and from upload to upload: an upload holds
 *  (queueSize + 1) of them whatever its length, and up to that many are kept for the next upload,
 *  instead of allocating new parts for the garbage collector every time. */
export class PartPool {
  private readonly free: Buffer[] = [];
  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }
  /** Gives back a buffer of the pool, or a view of one from its start (a last, shorter part). */
  release(part: Buffer): void {
    if (this.free.length >= this.keep || part.byteOffset !== 0 || part.buffer.byteLength !== this.size)
      return;
    this.free.push(part.length === this.size ? part : Buffer.from(part.buffer, 0, this.size));
  }
}
