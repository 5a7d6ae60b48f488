import type { Readable } from 'node:stream';
import type { S3StoreConfig } from '../config/schema.js';
import { S3Context, type S3StoreOptions } from './s3/client.js';
import { prepareBucket } from './s3/bucket.js';
import { listObjects, listVersions } from './s3/list.js';
import { getObject, headObject } from './s3/read.js';
import { deleteAllVersions, extendRetention } from './s3/retention.js';
import { putObject } from './s3/write.js';
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

export type { S3StoreOptions } from './s3/client.js';

/**
 * An S3 bucket, on AWS or any S3-compatible server (Ceph RGW, MinIO, Wasabi, Backblaze B2).
 *
 * The jobs live in src/store/s3/: client.ts (endpoint, credentials, retries through the pacer),
 * errors.ts (AWS errors as SyncguardErrors), bucket.ts (prepare: the bucket, versioning, Object
 * Lock), write.ts (single and multipart writes, write-once), retention.ts (Object Lock per object,
 * extension, deletion of every version), read.ts (get, head) and list.ts (listing and versions).
 *
 * Object Lock is per object: retention is sent with each PutObject; a multipart upload gets it
 * with PutObjectRetention after completion, checked with a HEAD, because Ceph ignores lock headers
 * on CreateMultipartUpload. No bucket default retention is set.
 *
 * On Ceph, two writers racing for one key in a locked bucket can both succeed, leaving two versions:
 * for content-addressed keys they hold the same bytes, and manifest keys are unique per run.
 */
export class S3Store implements Store {
  readonly features: StoreFeatures;
  readonly description: string;
  private readonly s3: S3Context;

  constructor(config: S3StoreConfig, opts: S3StoreOptions = {}) {
    this.s3 = new S3Context(config, opts);
    this.features = this.s3.features;
    this.description = this.s3.description;
  }

  /** Closes the client's connections. */
  close(): void {
    this.s3.client.destroy();
  }

  prepare(opts: PrepareOptions): Promise<PrepareReport> {
    return prepareBucket(this.s3, opts);
  }

  put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    return putObject(this.s3, key, body, opts);
  }

  get(key: string, opts: GetOptions = {}): Promise<Readable> {
    return getObject(this.s3, key, opts);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return headObject(this.s3, key);
  }

  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    return listObjects(this.s3, prefix, signal);
  }

  versions(prefix: string, signal?: AbortSignal): Promise<StoredVersion[]> {
    return listVersions(this.s3, prefix, signal);
  }

  extendRetention(key: string, until: Date): Promise<void> {
    return extendRetention(this.s3, key, until);
  }

  delete(key: string): Promise<void> {
    return deleteAllVersions(this.s3, key);
  }
}
