import type { StoreConfig } from '../config/schema.js';
import { expandHome } from '../util.js';
import { FsStore } from './fs.js';
import { S3Store, type S3StoreOptions } from './s3.js';
import type { Store } from './types.js';

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
export { S3Store, type S3StoreOptions } from './s3.js';
export { MemoryStore, type MemoryStoreOptions } from './memory.js';
export { faulty, type Fault, type FaultyStore, type StoreOp } from './faulty.js';

export interface CreateStoreOptions {
  /** The folder of the config file: a relative fs path is taken from there. */
  configDir: string;
  s3?: S3StoreOptions;
}

/** The store a config describes. Nothing is contacted until a method is called. */
export function createStore(config: StoreConfig, opts: CreateStoreOptions): Store {
  switch (config.type) {
    case 's3':
      return new S3Store(config, opts.s3);
    case 'fs':
      return new FsStore(expandHome(config.path, opts.configDir), config.prefix);
  }
}
