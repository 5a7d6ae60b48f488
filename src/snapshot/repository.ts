/**
 * The repository: a Store seen through the layout. It lists snapshots, reads manifests, knows where
 * every stored content lies (the content index, rebuilt from pack indexes and blob keys), and packs
 * small contents. It never rewrites an object: everything it writes is new, locked, and kept.
 */
import { createHash } from 'node:crypto';
import { SyncguardError, isSyncguardError } from '../errors.js';
import type { Log } from '../log.js';
import { silentLog } from '../log.js';
import { showPath } from '../paths.js';
import type { ObjectInfo, Store, StoredVersion } from '../store/types.js';
import {
  BLOBS,
  PACKS,
  blobKey,
  blobSha,
  isPackIndexKey,
  manifestKey,
  manifestPrefix,
  newPackKeys,
  packKeyOfIndex,
  parseManifestKey,
  SNAPSHOTS,
  snapshotId,
  timeOfSnapshotId,
} from './layout.js';
import { readManifest, type ManifestHeader } from './manifest.js';
import { forEachLimit } from '../util.js';
import { readJsonObject } from './untrusted.js';
import { DamagedLocations } from './damaged.js';
import { IndexCache, type CachedPackIndex } from './index-cache.js';

export interface Location {
  object: string;
  /** In a pack: where the content starts. Absent for a blob. */
  offset?: number;
  length: number;
  /** What we know of the object's lock: locked at least until then (ms since epoch); 0 unknown. */
  lockedUntil: number;
}

export interface SnapshotInfo {
  account: string;
  id: string;
  time: Date;
  key: string;
}

export interface RepositoryOptions {
  store: Store;
  /** Lock each object for this many days when written (absent: the store has no Object Lock). */
  lockDays?: number;
  /** The lock time in milliseconds instead, with a slack of a quarter of it rather than whole days:
   *  tests use a lock of seconds, which runs out while they run. */
  lockMs?: number;
  packThreshold?: number;
  packSize?: number;
  now?: () => Date;
  log?: Log;
  /** The file that remembers content locations which failed a read check (damaged.ts). */
  damagedFile?: string;
  /** The file that keeps the pack indexes already read, between runs (index-cache.ts). */
  indexCacheFile?: string;
}

interface PackIndexFile {
  format: 'syncguard-pack-index';
  version: 1;
  pack: string;
  created: string;
  retainUntil?: string;
  sha256: string;
  size: number;
  /** [sha256, offset, length] per content, in pack order. */
  entries: Array<[string, number, number]>;
}

const DAY = 86_400_000;

export class Repository {
  readonly store: Store;
  readonly lockDays?: number;
  readonly packThreshold: number;
  readonly packSize: number;
  readonly now: () => Date;
  readonly log: Log;
  private readonly exactLock: boolean;
  private readonly damagedFile?: string;
  private readonly indexCacheFile?: string;
  private damaged?: Promise<DamagedLocations>;
  /** Pack indexes read from the store by the last loadIndex (the others came from the cache). */
  indexesRead = 0;
  private indexCache?: IndexCache;
  /** Manifest keys with more than one version (a versioned store), from the last listing: the
   *  version written first, which is the one read. */
  private readonly firstVersions = new Map<string, StoredVersion>();
  private readonly warned = new Set<string>();

  constructor(opts: RepositoryOptions) {
    this.store = opts.store;
    this.exactLock = opts.lockMs !== undefined;
    this.lockDays = opts.store.features.objectLock
      ? this.exactLock
        ? opts.lockMs! / DAY
        : opts.lockDays
      : undefined;
    this.packThreshold = opts.packThreshold ?? 1024 * 1024;
    this.packSize = opts.packSize ?? 16 * 1024 * 1024;
    this.now = opts.now ?? (() => new Date());
    this.log = opts.log ?? silentLog;
    this.damagedFile = opts.damagedFile;
    this.indexCacheFile = opts.indexCacheFile;
  }

  /** Content locations that failed a read check: never reused (read once per repository). */
  damagedLocations(): Promise<DamagedLocations> {
    this.damaged ??= DamagedLocations.load(this.damagedFile);
    return this.damaged;
  }

  /** The retention a new object gets: now + lockDays + lockSlackDays. The slack (a quarter of the lock
   *  time) lets the following nights reuse the object without extending its lock every night. */
  retainUntil(): Date | undefined {
    return this.lockDays
      ? new Date(this.now().getTime() + (this.lockDays + this.lockSlackDays()) * DAY)
      : undefined;
  }

  /** Days added to a lock beyond lockDays when an object is written or its lock extended. */
  lockSlackDays(): number {
    if (!this.lockDays) return 0;
    return this.exactLock ? this.lockDays / 4 : Math.max(1, Math.ceil(this.lockDays / 4));
  }

  /** Every snapshot of `account` (or of all accounts), oldest first. */
  async listSnapshots(account?: string, signal?: AbortSignal): Promise<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    for await (const o of this.store.list(account ? manifestPrefix(account) : SNAPSHOTS, signal)) {
      const p = parseManifestKey(o.key);
      if (p) out.push({ ...p, key: o.key });
    }
    await this.findOverwritten(account ? manifestPrefix(account) : SNAPSHOTS, signal);
    return out.sort((a, b) => a.time.getTime() - b.time.getTime() || a.account.localeCompare(b.account));
  }

  /** The last snapshot of `account` taken at or before `at` (see parseAt), or the latest. */
  async findSnapshot(
    account: string,
    at: string | Date | undefined,
    signal?: AbortSignal,
  ): Promise<SnapshotInfo> {
    // Parsed before the store is read: a mistyped date is a usage error, whatever the store holds.
    const t = typeof at === 'string' ? parseAt(at) : (at ?? 'latest');
    const all = await this.listSnapshots(account, signal);
    if (all.length === 0)
      throw new SyncguardError(
        'NOT_FOUND',
        `the account "${account}" has no snapshot yet: run \`syncguard snapshot ${account}\``,
      );
    if (t === 'latest') return all[all.length - 1];
    const hit = all.filter((s) => s.time.getTime() <= t.getTime()).pop();
    if (!hit) {
      throw new SyncguardError(
        'NOT_FOUND',
        `"${account}" has no snapshot at or before ${t.toISOString()}; the first is ${all[0].id} (${all[0].time.toISOString()})`,
      );
    }
    return hit;
  }

  /**
   * Manifests have no hash kept elsewhere, and anyone who can write a versioned bucket can put a newer
   * version over one (Object Lock keeps the original): where a key has several versions, the oldest is
   * read. One listing of versions per listing of snapshots; a store without versions costs nothing.
   */
  private async findOverwritten(prefix: string, signal?: AbortSignal): Promise<void> {
    if (!this.store.versions || !this.store.features.versioned) return;
    const seen = new Map<string, { first: StoredVersion; n: number }>();
    for (const v of await this.store.versions(prefix, signal)) {
      const s = seen.get(v.key);
      if (s) s.n++;
      else seen.set(v.key, { first: v, n: 1 });
    }
    for (const [key, s] of seen) {
      if (s.n > 1) this.firstVersions.set(key, s.first);
      else this.firstVersions.delete(key);
    }
  }

  /** The version of a manifest to read (see findOverwritten); undefined: the latest. */
  manifestVersion(key: string): string | undefined {
    const v = this.firstVersions.get(key);
    if (v && !this.warned.has(key)) {
      this.warned.add(key);
      this.log(
        'warn',
        `${key} has more than one version: a newer one was written over it; reading the oldest, version ${v.versionId} of ${v.lastModified.toISOString()}`,
      );
    }
    return v?.versionId;
  }

  async readManifest(key: string, signal?: AbortSignal) {
    return readManifest(await this.store.get(key, { signal, versionId: this.manifestVersion(key) }), key);
  }

  async readHeader(key: string, signal?: AbortSignal): Promise<ManifestHeader> {
    const ac = new AbortController();
    const body = await this.store.get(key, {
      signal: signal ? AbortSignal.any([signal, ac.signal]) : ac.signal,
      versionId: this.manifestVersion(key),
    });
    try {
      return (await readManifest(body, key)).header;
    } finally {
      body.destroy();
    }
  }

  manifestKey(account: string, id: string): string {
    return manifestKey(account, id);
  }

  /**
   * Where every stored content lies: from every pack index and every blob key. A pack index is
   * trusted only when it holds: no larger than its pack can need, its pack listed beside it, and
   * entries that cover that pack from its first byte to its last, one after another, each a distinct
   * SHA-256 (as the packer writes them). Any other index is ignored, listed in `damaged`, and its
   * contents are stored again when met.
   */
  async loadIndex(signal?: AbortSignal): Promise<ContentIndex> {
    const index = new ContentIndex();
    const damaged = await this.damagedLocations();
    for await (const o of this.store.list(BLOBS, signal)) {
      const sha = blobSha(o.key);
      if (sha && !damaged.has(o.key))
        index.set(sha, { object: o.key, length: o.size, lockedUntil: o.retainUntil?.getTime() ?? 0 });
    }
    const idxs: ObjectInfo[] = [];
    const packs = new Map<string, number>();
    for await (const o of this.store.list(PACKS, signal)) {
      if (isPackIndexKey(o.key)) idxs.push(o);
      else if (o.key.endsWith('.pack')) packs.set(o.key, o.size);
    }
    // An index has no hash kept elsewhere: where someone wrote a newer version over one, the oldest is
    // read (one listing of versions, only in a versioned store).
    const firstIndex = new Map<string, StoredVersion>();
    if (this.store.versions && this.store.features.versioned && idxs.length > 0) {
      const count = new Map<string, number>();
      for (const v of await this.store.versions(PACKS, signal)) {
        if (!isPackIndexKey(v.key)) continue;
        count.set(v.key, (count.get(v.key) ?? 0) + 1);
        if (!firstIndex.has(v.key)) firstIndex.set(v.key, v);
      }
      for (const [key, n] of count) {
        if (n < 2) firstIndex.delete(key);
        else
          this.log(
            'warn',
            `${key} has more than one version: a newer one was written over it; reading the oldest, version ${firstIndex.get(key)!.versionId} of ${firstIndex.get(key)!.lastModified.toISOString()}`,
          );
      }
    }
    const cache = await IndexCache.load(this.indexCacheFile);
    this.indexCache = cache;
    let read = 0;
    await forEachLimit(idxs, 8, async (o) => {
      let entries: Array<[string, number, number]>;
      let lockedUntil: number;
      const pack = packKeyOfIndex(o.key);
      const first = firstIndex.get(o.key);
      try {
        const size = packs.get(pack);
        if (size === undefined) throw new SyncguardError('INTEGRITY', `its pack ${pack} is not in the store`);
        const idxSize = first?.size ?? o.size;
        const cached = fromCache(cache, o.key, pack, idxSize, size, first?.versionId);
        if (cached) {
          ({ entries, lockedUntil } = cached);
        } else {
          read++;
          const raw = await readJsonObject(this.store, o.key, {
            size: idxSize,
            versionId: first?.versionId,
            maxBytes: maxIndexBytes(size),
            signal,
          });
          entries = checkPackIndex(raw, pack, size);
          lockedUntil = typeof raw.retainUntil === 'string' ? Date.parse(raw.retainUntil) || 0 : 0;
          cache.set(o.key, { idxSize, versionId: first?.versionId, packSize: size, lockedUntil, entries });
        }
      } catch (e) {
        if (isSyncguardError(e) && e.code !== 'NOT_FOUND' && e.code !== 'INTEGRITY') throw e;
        cache.forget(o.key);
        const problem = `the pack index is not valid and is ignored (${(e as Error).message}); its contents will be stored again`;
        index.damaged.push({ object: o.key, problem });
        this.log('warn', `${o.key}: ${problem}`);
        return;
      }
      for (const [sha, offset, length] of entries) {
        if (!index.has(sha) && !damaged.has(pack, offset))
          index.set(sha, { object: pack, offset, length, lockedUntil });
      }
    });
    this.indexesRead = read;
    cache.keepOnly(new Set(idxs.map((o) => o.key)));
    await this.saveIndexCache();
    return index;
  }

  /** Adds a pack index this run wrote to the cache loaded by loadIndex, so that the next run need not
   *  read it back. */
  cachePackIndex(key: string, entry: CachedPackIndex): void {
    this.indexCache?.set(key, entry);
  }

  /** Writes the index cache when it changed; a failure only costs the next run more reads. */
  async saveIndexCache(): Promise<void> {
    const cache = this.indexCache;
    if (!cache) return;
    try {
      await cache.save();
    } catch (e) {
      this.log(
        'warn',
        `could not save the index cache ${cache.file}: ${(e as Error).message}; the next run reads the pack indexes from the store`,
      );
    }
  }

  /** Stores a large content as a blob of its own. Content already stored (by anyone) counts as stored. */
  async putBlob(
    sha256: string,
    body: Buffer | import('node:stream').Readable,
    size: number,
    signal?: AbortSignal,
  ): Promise<Location> {
    const key = blobKey(sha256);
    const retainUntil = this.retainUntil();
    try {
      await this.store.put(key, body, { sha256, size, retainUntil, signal });
    } catch (e) {
      if (!isSyncguardError(e, 'STORE_CONFLICT')) throw e;
      const info = await this.store.head(key);
      return { object: key, length: size, lockedUntil: info?.retainUntil?.getTime() ?? 0 };
    }
    return { object: key, length: size, lockedUntil: retainUntil?.getTime() ?? 0 };
  }

  /** Writes small contents into packs of about packSize, at most two uploads in flight. */
  packer(signal?: AbortSignal): Packer {
    return new Packer(this, signal);
  }
}

export class ContentIndex {
  private readonly map = new Map<string, Location>();
  /** Pack indexes that were not trusted, and why. */
  readonly damaged: Array<{ object: string; problem: string }> = [];
  get size(): number {
    return this.map.size;
  }
  get(sha256: string): Location | undefined {
    return this.map.get(sha256);
  }
  has(sha256: string): boolean {
    return this.map.has(sha256);
  }
  set(sha256: string, loc: Location): void {
    this.map.set(sha256, loc);
  }
}

export class Packer {
  private parts: Buffer[] = [];
  private entries: Array<[string, number, number]> = [];
  private pending = new Map<string, Location>();
  private offset = 0;
  private keys: { pack: string; idx: string };
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;
  /** Bytes written to the store, packs and their indexes. */
  bytesWritten = 0;
  packsWritten = 0;

  constructor(
    private readonly repo: Repository,
    private readonly signal?: AbortSignal,
  ) {
    this.keys = newPackKeys(repo.now());
  }

  /** Where `sha256` will be once the current pack is written, if this packer holds it already. */
  get(sha256: string): Location | undefined {
    return this.pending.get(sha256);
  }

  /** Adds a content; returns where it will be. Waits while two packs are uploading. */
  async add(sha256: string, content: Buffer): Promise<Location> {
    if (this.failure) throw this.failure.error;
    const held = this.pending.get(sha256);
    if (held) return held;
    const loc: Location = {
      object: this.keys.pack,
      offset: this.offset,
      length: content.length,
      lockedUntil: 0,
    };
    this.parts.push(content);
    this.entries.push([sha256, this.offset, content.length]);
    this.pending.set(sha256, loc);
    this.offset += content.length;
    if (this.offset >= this.repo.packSize) await this.seal();
    return loc;
  }

  private async seal(): Promise<void> {
    if (this.entries.length === 0) return;
    while (this.inFlight.size >= 2) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure.error;
    const parts = this.parts,
      entries = this.entries,
      keys = this.keys,
      pending = this.pending;
    this.parts = [];
    this.entries = [];
    this.pending = new Map();
    this.offset = 0;
    this.keys = newPackKeys(this.repo.now());
    const p = this.write(keys, parts, entries, pending)
      .catch((e) => {
        this.failure ??= { error: e };
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async write(
    keys: { pack: string; idx: string },
    parts: Buffer[],
    entries: Array<[string, number, number]>,
    pending: Map<string, Location>,
  ): Promise<void> {
    const body = Buffer.concat(parts);
    // The parts are copied into the body: let them go now, not when the upload ends (a pack's size
    // less held per pack in flight; 30 MB less peak RSS on the benchmark's first snapshot).
    parts.length = 0;
    const sha256 = createHash('sha256').update(body).digest('hex');
    const retainUntil = this.repo.retainUntil();
    await this.repo.store.put(keys.pack, body, {
      sha256,
      size: body.length,
      retainUntil,
      signal: this.signal,
    });
    const idx: PackIndexFile = {
      format: 'syncguard-pack-index',
      version: 1,
      pack: keys.pack,
      created: this.repo.now().toISOString(),
      retainUntil: retainUntil?.toISOString(),
      sha256,
      size: body.length,
      entries,
    };
    const idxBody = Buffer.from(JSON.stringify(idx));
    // The index is written after its pack: an index always names a pack that exists.
    await this.repo.store.put(keys.idx, idxBody, {
      sha256: createHash('sha256').update(idxBody).digest('hex'),
      size: idxBody.length,
      retainUntil,
      signal: this.signal,
    });
    for (const loc of pending.values()) loc.lockedUntil = retainUntil?.getTime() ?? 0;
    this.repo.cachePackIndex(keys.idx, {
      idxSize: idxBody.length,
      packSize: body.length,
      lockedUntil: retainUntil?.getTime() ?? 0,
      entries,
    });
    this.bytesWritten += body.length + idxBody.length;
    this.packsWritten++;
  }

  /** Writes what is left and waits for every upload. */
  async flush(): Promise<void> {
    await this.seal();
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure.error;
    await this.repo.saveIndexCache();
  }
}

/** How far a machine's clock may run ahead of this one's before what it dated is not believed. */
export const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * Why a snapshot or an acknowledgement dated `time` is not used now, or undefined. Whoever can write
 * the store can name a key with any date: a manifest dated in the future would be every later run's
 * "previous" snapshot (so deleting most files would look like no change), an ack dated in the future
 * would cover every later alarm. What is dated more than a few minutes after now is passed over (and
 * flagged by `snapshots` and `verify`) until that time comes.
 */
export function datedAhead(time: Date, now: Date): string | undefined {
  if (time.getTime() <= now.getTime() + CLOCK_SKEW_MS) return undefined;
  return `it is dated ${time.toISOString()}, in the future (now ${now.toISOString()}): a clock far ahead, or planted by whoever can write the store`;
}

/** The forms `--at` (and diff's dates) take, for messages. */
export const AT_FORMS =
  'a snapshot id (20261127T131820.416Z), a date (2026-11-20: the end of that day in the configured timezone), a date-time (2026-11-20T18:30 in that timezone, or 2026-11-20T18:30:00Z, 2026-11-20T18:30:00+01:00) or "latest"';

/**
 * `--at`: "latest", a snapshot id (its time), a date (the end of that day, local time of the process:
 * the CLI sets TZ from the config) or a date-time (local, or with Z or an offset). Nothing else: a
 * lenient parser turns "2026-12-03 15:37 (comment)" into another day.
 */
export function parseAt(at: string): Date | 'latest' {
  if (at === 'latest') return 'latest';
  const fromId = timeOfSnapshotId(at);
  if (fromId && snapshotId(fromId) === at) return fromId;
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:\d{2})?)?$/.exec(
      at,
    );
  if (m) {
    // A date alone means the end of that day; a date-time, that moment (seconds default to 0).
    const dayOnly = m[4] === undefined;
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const [h, mi, sec] = dayOnly ? [23, 59, 59] : [Number(m[4]), Number(m[5]), Number(m[6] ?? 0)];
    const ms = dayOnly ? 999 : Number((m[7] ?? '0').padEnd(3, '0'));
    const valid =
      mo >= 1 &&
      mo <= 12 &&
      d >= 1 &&
      d <= new Date(Date.UTC(y, mo, 0)).getUTCDate() &&
      h <= 23 &&
      mi <= 59 &&
      sec <= 59 &&
      (!m[8] || m[8] === 'Z' || (Number(m[8].slice(1, 3)) <= 23 && Number(m[8].slice(4, 6)) <= 59));
    if (valid) {
      if (!m[8]) return new Date(y, mo - 1, d, h, mi, sec, ms);
      const offset =
        m[8] === 'Z'
          ? 0
          : (m[8][0] === '-' ? -1 : 1) * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6)));
      return new Date(Date.UTC(y, mo - 1, d, h, mi, sec, ms) - offset * 60_000);
    }
  }
  throw new SyncguardError('USAGE', `"${at}" is not ${AT_FORMS}`);
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The largest index a pack of `packSize` bytes can have: an entry takes under 100 bytes of JSON, and
 *  each distinct content but the empty one at least a byte of the pack. At most 64 MiB. */
function maxIndexBytes(packSize: number): number {
  return Math.min(64 * 1024 * 1024, 4096 + 100 * (packSize + 1));
}

/** The entries of a pack index read back, or INTEGRITY with what is wrong. */
/** A pack index from the cache, when the store's listing agrees with it and its entries hold as a
 *  pack index read from the store must; else undefined (the index is read from the store). */
function fromCache(
  cache: IndexCache,
  key: string,
  pack: string,
  idxSize: number,
  packSize: number,
  versionId: string | undefined,
): { entries: Array<[string, number, number]>; lockedUntil: number } | undefined {
  const c = cache.get(key, idxSize, packSize, versionId);
  if (!c) return undefined;
  try {
    const entries = checkPackIndex(
      { format: 'syncguard-pack-index', version: 1, pack, size: packSize, entries: c.entries },
      pack,
      packSize,
    );
    return { entries, lockedUntil: c.lockedUntil };
  } catch {
    cache.forget(key);
    return undefined;
  }
}

export function checkPackIndex(
  raw: Record<string, unknown>,
  pack: string,
  packSize: number,
): Array<[string, number, number]> {
  const bad = (why: string) => new SyncguardError('INTEGRITY', why);
  if (raw.format !== 'syncguard-pack-index' || raw.version !== 1) throw bad('not a syncguard pack index');
  if (raw.pack !== pack) throw bad(`it names the pack ${showPath(String(raw.pack))}, not ${pack}`);
  if (raw.size !== packSize)
    throw bad(`it says the pack has ${String(raw.size)} bytes; the store lists ${packSize}`);
  if (!Array.isArray(raw.entries)) throw bad('it has no entries');
  const seen = new Set<string>();
  let next = 0;
  for (const [i, e] of (raw.entries as unknown[]).entries()) {
    if (!Array.isArray(e) || e.length !== 3) throw bad(`entry ${i} is not [sha256, offset, length]`);
    const [sha, offset, length] = e as [unknown, unknown, unknown];
    if (typeof sha !== 'string' || !SHA256.test(sha)) throw bad(`entry ${i} has no valid SHA-256`);
    if (seen.has(sha)) throw bad(`entry ${i} names a content twice`);
    seen.add(sha);
    if (!Number.isSafeInteger(length) || (length as number) < 0) throw bad(`entry ${i} has no valid length`);
    if (offset !== next)
      throw bad(`entry ${i} starts at ${String(offset)}; the entry before it ends at ${next}`);
    next += length as number;
    if (next > packSize)
      throw bad(`entry ${i} ends at ${next}, past the end of the pack (${packSize} bytes)`);
  }
  if (next !== packSize) throw bad(`its entries end at ${next}; the pack has ${packSize} bytes`);
  return raw.entries as Array<[string, number, number]>;
}
