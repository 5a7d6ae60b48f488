import type { Readable } from 'node:stream';

/** A file or folder as the provider lists it. */
export interface RemoteEntry {
  /** Relative to the account root: '/'-separated, no leading '/', spelled byte for byte as the provider
   *  spells it (restore must give back the same name). Compare in NFC only, never rewrite. */
  path: string;
  type: 'file' | 'dir';
  /** Bytes; 0 for folders. */
  size: number;
  modified: Date;
  /** The hash the provider reports for the content, where it has one. */
  hash?: ProviderHash;
  /** The provider's stable id or revision, where it has one (Dropbox `id`, Graph item id). */
  id?: string;
  /** Local files: the device and inode of the file listed, and when its content or metadata last
   *  changed. open() reads that very file or fails; the next run compares all three, so a rewrite that
   *  kept size and mtime is still seen. */
  dev?: number;
  ino?: number;
  ctime?: Date;
  /** Permission bits (`mode & 0o777`) of a file or folder on a local disk; cloud providers have none. */
  mode?: number;
}

export interface ProviderHash {
  /** `ctag` is not a hash but a content version tag (OneDrive's cTag, for files listed without hashes):
   *  equal tags mean equal content, but the bytes cannot be checked against it. */
  algo: 'dropbox' | 'quickxor' | 'sha1' | 'sha256' | 'ctag';
  value: string;
}

export type Change =
  | { kind: 'upsert'; entry: RemoteEntry }
  /** A file, or a folder and everything below it. */
  | { kind: 'delete'; path: string }
  /** Forget what you knew: a full listing follows; whatever it does not name is gone. */
  | { kind: 'reset' }
  /** Listed, deliberately not backed up (a OneNote package, a cloud-only document); kept in the manifest's header. */
  | { kind: 'skip'; path: string; reason: string }
  /** The provider named an entry that cannot be taken (a hostile path, say): recorded as failed, the run goes on. */
  | { kind: 'error'; path: string; message: string };

export interface ProviderFeatures {
  /** changes(cursor) yields only what changed since the cursor; otherwise every call lists everything. */
  deltaListing: boolean;
  /** The hash algorithm the provider reports and open() verifies, if any. */
  nativeHash?: ProviderHash['algo'];
  /** upload() exists: a restore can go back into the account. */
  canUpload: boolean;
  /** open() reads a local disk: opening twice is cheap, and size, mtime, ctime, device and inode identify an
   *  unchanged file (read again anyway every `reread` days). */
  local: boolean;
  /** Paths differing only in case are the same file (Dropbox, OneDrive): deletes match case-insensitively. */
  caseInsensitive?: boolean;
}

/** What the previous snapshot held, for providers whose change feeds speak of ids (Graph delta):
 *  a renamed folder arrives alone, and the provider must move what was below it. */
export interface PreviousState {
  /** The entry the previous snapshot holds for a provider id. */
  byId(id: string): RemoteEntry | undefined;
  /** Every entry below a folder (not the folder itself), in the previous snapshot; below('') is every entry. */
  below(path: string): Iterable<RemoteEntry>;
}

export interface ChangesOptions {
  signal?: AbortSignal;
  /** The state the cursor belongs to; absent on a first run. */
  previous?: PreviousState;
}

export interface UploadOptions {
  /** Replace an existing file; otherwise an existing file makes upload() reject with EXISTS. */
  overwrite: boolean;
  /** The modified time to give the uploaded file, where the provider lets us set it. */
  modified?: Date;
  signal?: AbortSignal;
}

export interface Provider {
  readonly features: ProviderFeatures;
  /** Everything that changed since `cursor` (everything when there is none), in an order where a
   *  folder comes before what it holds. The generator's return value is the cursor to keep with the
   *  snapshot. Throws PROVIDER_AUTH (run `auth` again) or ABORTED; retries throttling by itself.
   *  A cursor the provider no longer accepts yields a `reset` and a full listing. Not concurrent with
   *  itself. */
  changes(cursor?: string, opts?: ChangesOptions): AsyncGenerator<Change, string | undefined, undefined>;
  /** A stream of the file's bytes, never buffered whole. Where the provider reports a hash, the stream
   *  errors with INTEGRITY at its end when the bytes do not match it. Throws NOT_FOUND when the file
   *  is gone. Safe to call concurrently. */
  open(entry: RemoteEntry, signal?: AbortSignal): Promise<Readable>;
  /** Creates a folder (and its parents); succeeds when it exists already. Present when canUpload. */
  mkdir?(path: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Writes a file at `path` (parents created as needed). Throws EXISTS unless opts.overwrite.
   *  Present when features.canUpload. Safe to call concurrently for different paths. */
  upload?(path: string, body: Readable, size: number, opts: UploadOptions): Promise<void>;
  /** Whether a file or folder exists at `path`. Present when canUpload. */
  exists?(path: string, signal?: AbortSignal): Promise<boolean>;
  /** Saves refreshed tokens and closes connections. Idempotent. */
  close?(): Promise<void>;
  /** Counters since the provider was made, for run reports and metrics. Cheap; any time. */
  stats?(): ProviderStats;
}

export interface ProviderStats {
  /** Time spent waiting because the service throttled us (429, 503, too_many_requests), in ms. */
  throttledMs: number;
  /** Calls retried, for any reason. */
  retries: number;
}
