import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** The Object Lock retention; absent when the object is not locked or the listing does not say. */
  retainUntil?: Date;
}

export interface PutOptions {
  /** Lock the object until then (Object Lock, in the store's configured mode). Absent: not locked. */
  retainUntil?: Date;
  /** SHA-256 (hex) the body must have: the store checks it while writing and does not commit the
   *  object (rejects with INTEGRITY) when it differs. */
  sha256?: string;
  /** Body length in bytes, when known (a stream body of unknown length is uploaded in parts). */
  size?: number;
  signal?: AbortSignal;
}

export interface GetOptions {
  /** Read this version of the key (from versions()) instead of the latest. */
  versionId?: string;
  offset?: number;
  length?: number;
  signal?: AbortSignal;
}

/** One version of a key in a versioned store (delete markers are not versions). */
export interface StoredVersion {
  key: string;
  versionId: string;
  size: number;
  lastModified: Date;
}

export interface StoreFeatures {
  /** Objects can be locked; a locked object cannot be deleted or overwritten until its retention ends. */
  objectLock: boolean;
  /** Deleting removes versions explicitly (a versioned bucket). */
  versioned: boolean;
}

export interface PrepareOptions {
  /** Create the bucket or folder when it does not exist. Otherwise only check. */
  create: boolean;
}

export interface PrepareReport {
  created: boolean;
  objectLock: 'enabled' | 'off';
  versioning: 'enabled' | 'off';
  /** What was checked, in words, for `syncguard init` to print. */
  notes: string[];
}

/**
 * Dumb, write-once blob storage. Keys are '/'-separated and relative to the store's prefix.
 * Errors: NOT_FOUND, STORE_CONFLICT, STORE_LOCKED, STORE_AUTH, STORE_NO_LOCK, STORE_UNAVAILABLE
 * (retryable), STORE_ERROR, INTEGRITY, ABORTED. Every method is safe to call concurrently.
 */
export interface Store {
  /** Where it stores, for messages (never holds a secret). */
  readonly description: string;
  readonly features: StoreFeatures;
  /** Create (opts.create) or check the bucket or folder: STORE_NO_LOCK when Object Lock is required
   *  and missing. Idempotent. */
  prepare(opts: PrepareOptions): Promise<PrepareReport>;
  /** Writes a new object. Write-once: STORE_CONFLICT when the key exists. The object appears whole
   *  or not at all. */
  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void>;
  /** Streams an object or a byte range of it. NOT_FOUND when missing. */
  get(key: string, opts?: GetOptions): Promise<Readable>;
  /** Size and retention, or undefined when missing. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo>;
  /** Every version of every key that starts with `prefix`, in key order and oldest first within a
   *  key; absent where the store keeps no versions. Anyone who can write a versioned bucket can put a
   *  newer version over a key: readers use this to find the version that was written first. */
  versions?(prefix: string, signal?: AbortSignal): Promise<StoredVersion[]>;
  /** Moves an object's retention to `until`; never shortens it (a later one is kept). Idempotent. */
  extendRetention(key: string, until: Date): Promise<void>;
  /** Removes an object for good (every version). STORE_LOCKED while it is retained; a missing key is
   *  not an error. Idempotent. */
  delete(key: string): Promise<void>;
}

/** Reads a whole (small) object into memory. */
export async function readAll(store: Pick<Store, 'get'>, key: string, opts?: GetOptions): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(key, opts)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
