import type { Readable } from 'node:stream';
import type { S3StoreConfig, StoreConfig } from '../config/schema.js';
import { expandHome } from '../util.js';
import { FsStore } from './fs.js';
import type { S3Store, S3StoreOptions } from './s3.js';
import { s3Identity } from './_s3-config.js';
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

export type {
  GetOptions,
  ObjectInfo,
  PrepareOptions,
  PrepareReport,
  PutOptions,
  Store,
  StoreFeatures,
} from './types.js';
export { readAll } from './types.js';
export { FsStore } from './fs.js';
export type { S3StoreOptions } from './s3.js';
export { MemoryStore, type MemoryStoreOptions } from './memory.js';
export { faulty, type Fault, type FaultyStore, type StoreOp } from './faulty.js';

export interface CreateStoreOptions {
  /** The folder of the config file: a relative fs path is taken from there. */
  configDir: string;
  s3?: S3StoreOptions;
}

/** The store a config describes. Nothing is contacted until a method is called, and the AWS SDK is
 *  loaded only then: a command that never reaches the store starts without it. */
export function createStore(config: StoreConfig, opts: CreateStoreOptions): Store & { close?(): void } {
  switch (config.type) {
    case 's3':
      return new LazyS3Store(config, opts.s3);
    case 'fs':
      return new FsStore(expandHome(config.path, opts.configDir), config.prefix);
  }
}

/** An `S3Store` made on the first call that needs it (importing `s3.ts` imports the AWS SDK, which
 *  takes longer than everything else a short command does). Config errors are thrown at once. */
class LazyS3Store implements Store {
  readonly description: string;
  private readonly configured: StoreFeatures;
  private made?: Promise<S3Store>;
  private loaded?: S3Store;
  private closed = false;

  constructor(
    private readonly config: S3StoreConfig,
    private readonly opts: S3StoreOptions | undefined,
  ) {
    ({ description: this.description, features: this.configured } = s3Identity(config));
  }

  /** What the config says until the store is made; then the store's own (prepare() sets them to what
   *  the bucket has). */
  get features(): StoreFeatures {
    return this.loaded?.features ?? this.configured;
  }

  private store(): Promise<S3Store> {
    return (this.made ??= import('./s3.js').then(
      (m) => (this.loaded = new m.S3Store(this.config, this.opts)),
    ));
  }

  /** Closes the client's connections (nothing to close when no call was made). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.made?.then((s) => s.close()).catch(() => {});
  }

  async prepare(opts: PrepareOptions): Promise<PrepareReport> {
    return (await this.store()).prepare(opts);
  }
  async put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    return (await this.store()).put(key, body, opts);
  }
  async get(key: string, opts?: GetOptions): Promise<Readable> {
    return (await this.store()).get(key, opts);
  }
  async head(key: string): Promise<ObjectInfo | undefined> {
    return (await this.store()).head(key);
  }
  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    yield* (await this.store()).list(prefix, signal);
  }
  async versions(prefix: string, signal?: AbortSignal): Promise<StoredVersion[]> {
    return (await this.store()).versions(prefix, signal);
  }
  async extendRetention(key: string, until: Date): Promise<void> {
    return (await this.store()).extendRetention(key, until);
  }
  async delete(key: string): Promise<void> {
    return (await this.store()).delete(key);
  }
}
