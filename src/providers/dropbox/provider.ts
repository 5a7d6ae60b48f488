import type { Readable } from 'node:stream';
import type { DropboxAccountConfig } from '../../config/schema.js';
import type { PacerOptions } from '../_pacer.js';
import type { ProviderContext } from '../registry.js';
import type {
  Change,
  ChangesOptions,
  Provider,
  ProviderFeatures,
  ProviderStats,
  RemoteEntry,
  UploadOptions,
} from '../types.js';
import { DropboxCalls } from './calls.js';
import { openFile } from './download.js';
import { DropboxListing } from './listing.js';
import { PathRoot, configuredFolders } from './roots.js';
import { DropboxWriter } from './upload.js';

export { configuredFolders, type ConfiguredFolder } from './roots.js';
export { SESSION_CHUNK, dropboxTime } from './upload.js';

export interface DropboxProviderOptions {
  /** Retry and concurrency tuning (tests shorten the waits). */
  pacer?: PacerOptions;
}

/**
 * A Dropbox account (or some of its folders) as a Provider. Lists with files/list_folder and keeps one
 * list_folder cursor per configured folder (listing.ts); reads with a streamed files/download checked
 * against content_hash (download.ts); writes back through upload sessions committed in batches
 * (upload.ts), all under the account's path root (roots.ts). Every call goes through one Pacer and one
 * classify() (calls.ts).
 */
export class DropboxProvider implements Provider {
  readonly features: ProviderFeatures = {
    deltaListing: true,
    nativeHash: 'dropbox',
    canUpload: true,
    local: false,
    caseInsensitive: true,
  };
  private readonly calls: DropboxCalls;
  private readonly root: PathRoot;
  private readonly listing: DropboxListing;
  private readonly writer: DropboxWriter;

  constructor(
    account: DropboxAccountConfig,
    ctx: ProviderContext,
    refreshToken: string,
    opts: DropboxProviderOptions = {},
  ) {
    const folders = configuredFolders(account);
    this.calls = new DropboxCalls(account, ctx, refreshToken, opts.pacer);
    this.root = new PathRoot(account, this.calls);
    this.listing = new DropboxListing(account, this.calls, this.root, folders);
    this.writer = new DropboxWriter(this.calls, this.root);
  }

  changes(cursor?: string, opts: ChangesOptions = {}): AsyncGenerator<Change, string | undefined, undefined> {
    return this.listing.changes(cursor, opts);
  }

  open(entry: RemoteEntry, signal?: AbortSignal): Promise<Readable> {
    return openFile(this.calls, this.root, entry, signal);
  }

  exists(path: string, signal?: AbortSignal): Promise<boolean> {
    return this.writer.exists(path, signal);
  }

  mkdir(path: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    return this.writer.mkdir(path, opts);
  }

  upload(path: string, body: Readable, size: number, opts: UploadOptions): Promise<void> {
    return this.writer.upload(path, body, size, opts);
  }

  stats(): ProviderStats {
    return { throttledMs: this.calls.pacer.throttledMs, retries: this.calls.pacer.retries };
  }

  async close(): Promise<void> {
    // Dropbox refresh tokens do not rotate: nothing to save back.
  }
}
