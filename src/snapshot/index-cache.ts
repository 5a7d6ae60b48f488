/**
 * The content index kept between runs, in a file of the state folder (one per store): the entries of
 * every pack index already read, so that a night reads only the pack indexes written since, not every
 * one the store has ever held. The store stays the authority: a cached index is used only while the
 * store lists that index with the same size, its pack with the same size, and (in a versioned store)
 * the same version to read; its entries are checked again as a pack index read from the store is. An
 * index the store no longer lists is dropped. A missing, damaged or oversized file is a cold cache:
 * every index is read from the store and the file is written anew.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

export interface CachedPackIndex {
  /** The listed size of the index object when it was read. */
  idxSize: number;
  /** The version read, where the store has several versions of the index; absent: the latest. */
  versionId?: string;
  /** The listed size of its pack. */
  packSize: number;
  lockedUntil: number;
  entries: Array<[string, number, number]>;
}

interface IndexCacheFile {
  format: 'syncguard-index-cache';
  version: 1;
  indexes: Record<string, CachedPackIndex>;
}

const MAX_FILE_BYTES = 512 * 1024 * 1024;

export class IndexCache {
  private readonly map = new Map<string, CachedPackIndex>();
  private changed = false;

  constructor(readonly file?: string) {}

  /** Reads the cache; a missing, unreadable, oversized or malformed file is an empty cache. */
  static async load(file?: string): Promise<IndexCache> {
    const out = new IndexCache(file);
    if (!file) return out;
    try {
      if ((await fsp.stat(file)).size > MAX_FILE_BYTES) return out;
      const d = JSON.parse(await fsp.readFile(file, 'utf8')) as IndexCacheFile;
      if (d?.format !== 'syncguard-index-cache' || d.version !== 1 || typeof d.indexes !== 'object')
        return out;
      for (const [key, c] of Object.entries(d.indexes ?? {})) {
        if (
          c &&
          Number.isSafeInteger(c.idxSize) &&
          Number.isSafeInteger(c.packSize) &&
          typeof c.lockedUntil === 'number' &&
          (c.versionId === undefined || typeof c.versionId === 'string') &&
          Array.isArray(c.entries)
        )
          out.map.set(key, c);
      }
    } catch {
      // A cold cache: the store is read.
    }
    return out;
  }

  get size(): number {
    return this.map.size;
  }

  /** The cached index of `key`, when what the store lists now agrees with it. */
  get(
    key: string,
    idxSize: number,
    packSize: number,
    versionId: string | undefined,
  ): CachedPackIndex | undefined {
    const c = this.map.get(key);
    if (!c || c.idxSize !== idxSize || c.packSize !== packSize || c.versionId !== versionId) return undefined;
    return c;
  }

  set(key: string, c: CachedPackIndex): void {
    this.map.set(key, c);
    this.changed = true;
  }

  /** Forgets every index not in `listed` (pruned, or never there). */
  keepOnly(listed: Set<string>): void {
    for (const key of this.map.keys()) {
      if (listed.has(key)) continue;
      this.map.delete(key);
      this.changed = true;
    }
  }

  forget(key: string): void {
    if (this.map.delete(key)) this.changed = true;
  }

  /** Writes the cache when it changed (a temporary file renamed into place, 0600). */
  async save(): Promise<void> {
    if (!this.file || !this.changed) return;
    await fsp.mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
    const d: IndexCacheFile = {
      format: 'syncguard-index-cache',
      version: 1,
      indexes: Object.fromEntries(this.map),
    };
    await fsp.writeFile(tmp, JSON.stringify(d), { mode: 0o600 });
    await fsp.rename(tmp, this.file);
    this.changed = false;
  }
}
