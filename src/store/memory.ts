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
  private readonly now: () => Date;

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
      this.objects.set(key, { data: Buffer.from(data), retainUntil });
    } finally {
      discardBody(body);
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    checkKey(key);
    throwIfAborted(opts.signal);
    const e = this.entry(key);
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
    if (!e.retainUntil || e.retainUntil < until) e.retainUntil = new Date(until);
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    const e = this.objects.get(key);
    if (!e) return;
    if (this.features.objectLock && isFuture(e.retainUntil, this.now())) {
      throw new SyncguardError(
        'STORE_LOCKED',
        `${showPath(key)} is locked until ${e.retainUntil.toISOString()} (Object Lock): it can be deleted after that`,
      );
    }
    this.objects.delete(key);
  }

  private entry(key: string): Entry {
    const e = this.objects.get(key);
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
