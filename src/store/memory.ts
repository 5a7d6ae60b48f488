import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { SyncguardError, throwIfAborted } from '../errors.js';
import { showPath } from '../paths.js';
import {
  checkDigest,
  checkKey,
  checkListPrefix,
  checkPutOptions,
  chunksOf,
  discardBody,
  emptyStream,
  isFuture,
  rangeWithin,
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

export interface MemoryStoreOptions {
  /** Simulate Object Lock: a retained object cannot be deleted until `now()` passes its retention. */
  objectLock: boolean;
  /** The clock retention is compared against (a test can move it forward). */
  now?: () => Date;
}

interface Entry {
  data: Buffer;
  retainUntil?: Date;
  versionId: string;
  lastModified: Date;
}

/**
 * A store in memory, for tests of the snapshot logic. With objectLock it behaves as an S3 bucket
 * with Object Lock does for our calls (after Kopia's in-memory store): write-once, retention that
 * only grows, delete refused while retained.
 */
export class MemoryStore implements Store {
  readonly features: StoreFeatures;
  readonly description = 'memory';
  private readonly objects = new Map<string, Entry>();
  /** Older versions of a key, oldest first (only plant() makes them, as a hostile writer would). */
  private readonly older = new Map<string, Entry[]>();
  private readonly now: () => Date;
  private nextVersion = 0;

  constructor(opts: MemoryStoreOptions) {
    this.features = { objectLock: opts.objectLock, versioned: opts.objectLock };
    this.now = opts.now ?? (() => new Date());
  }

  /** How many objects are stored (for tests). */
  get size(): number {
    return this.objects.size;
  }

  async prepare(_opts: PrepareOptions): Promise<PrepareReport> {
    const lock = this.features.objectLock ? 'enabled' : 'off';
    return {
      created: false,
      objectLock: lock,
      versioning: lock,
      notes: ['an in-memory store: nothing outlives the process'],
    };
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    try {
      checkKey(key);
      checkPutOptions(opts);
      if (this.objects.has(key)) throw this.conflict(key);
      const chunks: Buffer[] = [];
      const hash = createHash('sha256');
      for await (const c of chunksOf(body, opts.signal)) {
        hash.update(c);
        chunks.push(c);
      }
      const data = Buffer.concat(chunks);
      checkDigest(key, hash.digest('hex'), data.length, opts, this.description);
      // Checked again: another put may have finished while this body was read.
      if (this.objects.has(key)) throw this.conflict(key);
      const retainUntil =
        this.features.objectLock && opts.retainUntil ? new Date(opts.retainUntil) : undefined;
      this.objects.set(key, this.newEntry(Buffer.from(data), retainUntil));
    } finally {
      discardBody(body);
    }
  }

  /** Puts a newer version over `key`, as anyone with write access to a versioned bucket can (tests of
   *  hostile writers). The object written before stays as an older version. */
  plant(key: string, data: Buffer): void {
    checkKey(key);
    if (!this.features.versioned) throw new Error('plant() needs a versioned (objectLock) memory store');
    const e = this.objects.get(key);
    if (e) (this.older.get(key) ?? this.older.set(key, []).get(key)!).push(e);
    this.objects.set(key, this.newEntry(Buffer.from(data), undefined));
  }

  async versions(prefix: string, signal?: AbortSignal): Promise<StoredVersion[]> {
    checkListPrefix(prefix);
    throwIfAborted(signal);
    const out: StoredVersion[] = [];
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of keys) {
      for (const e of [...(this.older.get(key) ?? []), this.objects.get(key)!])
        out.push({
          key,
          versionId: e.versionId,
          size: e.data.length,
          lastModified: new Date(e.lastModified),
        });
    }
    return out;
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    checkKey(key);
    throwIfAborted(opts.signal);
    const e = this.entry(key, opts.versionId);
    const { start, end } = rangeWithin(key, e.data.length, opts);
    return end === start ? emptyStream() : Readable.from([e.data.subarray(start, end)]);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key);
    const e = this.objects.get(key);
    return e && info(key, e);
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    checkListPrefix(prefix);
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const k of keys) {
      throwIfAborted(signal);
      const e = this.objects.get(k);
      // As in S3, a listing does not say an object's retention: head() does.
      if (e) yield { key: k, size: e.data.length };
    }
  }

  async extendRetention(key: string, until: Date): Promise<void> {
    checkKey(key);
    const e = this.entry(key);
    if (!this.features.objectLock || !isFuture(until, this.now())) return;
    // Every version, as the S3 store does: the one written first may be an older version.
    for (const v of [e, ...(this.older.get(key) ?? [])])
      if (!v.retainUntil || v.retainUntil < until) v.retainUntil = new Date(until);
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    const cur = this.objects.get(key);
    if (!cur) return;
    const e = [cur, ...(this.older.get(key) ?? [])].find((v) => isFuture(v.retainUntil, this.now())) ?? cur;
    if (this.features.objectLock && isFuture(e.retainUntil, this.now())) {
      throw new SyncguardError(
        'STORE_LOCKED',
        `${showPath(key)} is locked until ${e.retainUntil.toISOString()} (Object Lock): it can be deleted after that`,
      );
    }
    this.objects.delete(key);
    this.older.delete(key);
  }

  private newEntry(data: Buffer, retainUntil: Date | undefined): Entry {
    return { data, retainUntil, versionId: `v${++this.nextVersion}`, lastModified: this.now() };
  }

  private entry(key: string, versionId?: string): Entry {
    const cur = this.objects.get(key);
    const e =
      versionId === undefined || cur?.versionId === versionId
        ? cur
        : this.older.get(key)?.find((v) => v.versionId === versionId);
    if (!e) throw new SyncguardError('NOT_FOUND', `${showPath(key)} does not exist in ${this.description}`);
    return e;
  }

  private conflict(key: string): SyncguardError {
    return new SyncguardError(
      'STORE_CONFLICT',
      `${showPath(key)} exists already in ${this.description}: objects are written once`,
    );
  }
}

function info(key: string, e: Entry): ObjectInfo {
  return e.retainUntil
    ? { key, size: e.data.length, retainUntil: new Date(e.retainUntil) }
    : { key, size: e.data.length };
}
