/**
 * Taking a snapshot: the previous manifest + what the provider says changed → new content stored,
 * then the new manifest, last. A crash at any point leaves at most unreferenced objects, which the
 * next run reuses; a snapshot exists exactly when its manifest does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import picomatch from 'picomatch';
import { SyncguardError, describeError, isSyncguardError, throwIfAborted } from '../errors.js';
import { readAll } from '../store/types.js';
import type { DamagedLocations } from './damaged.js';
import { comparePaths, showPath, unsafeReason } from '../paths.js';
import type { Change, PreviousState, Provider, RemoteEntry } from '../providers/types.js';
import { blobKey, snapshotId } from './layout.js';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  ManifestWriter,
  manifestFileStream,
  type FailedFile,
  type ManifestEntry,
  type ManifestHeader,
  type RetryFile,
  type SkippedFile,
} from './manifest.js';
import { datedAhead, type ContentIndex, type Location, type Packer, type Repository } from './repository.js';
import { forEachLimit } from '../util.js';
import { VERSION } from '../version.js';

export interface SnapshotAccount {
  name: string;
  provider: string;
  include?: string[];
  exclude?: string[];
}

export interface SnapshotProgress {
  phase: 'listing' | 'reading' | 'finishing';
  listed: number;
  filesDone: number;
  filesToRead: number;
  bytesRead: number;
  bytesToRead: number;
  bytesAdded: number;
  /** The service throttles the account: nothing moves until `until` (set by the caller that watches
   *  the provider, not by the engine). */
  waiting?: { until: Date; reason: string };
}

export interface TakeOptions {
  repo: Repository;
  account: SnapshotAccount;
  provider: Provider;
  /** Files read at once. */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (p: SnapshotProgress) => void;
  /** List everything, ignoring the previous snapshot's cursor (content already stored is still reused). */
  full?: boolean;
  /** Local providers: every file whose size, times, device and inode did not change is still read
   *  again once in this many days, about 1/N of them each night (the config's `reread`, 30 days by
   *  default there). Absent or 0: never. */
  rereadDays?: number;
  /** Looks at the new snapshot against the previous one before it is written (the tripwire). */
  inspect?: (input: InspectInput) => Promise<ManifestHeader['tripwire']> | ManifestHeader['tripwire'];
}

export interface InspectInput {
  previous: Map<string, ManifestEntry> | undefined;
  next: ManifestEntry[];
  /** The new content of a file, for a look at its first bytes; undefined when not read this run. */
  sample(path: string): Buffer | undefined;
}

export interface SnapshotResult {
  account: string;
  id: string;
  key: string;
  time: Date;
  header: ManifestHeader;
  /** Files whose content was read from the provider this run. */
  filesRead: number;
  /** Of those, files read only because `rereadDays` said so (nothing about them had changed). */
  filesReread: number;
  /** What the run should tell whoever reads its report (a re-read file whose content differed). */
  warnings: string[];
  bytesRead: number;
  bytesAdded: number;
  objectsExtended: number;
  /** Objects of the store this run found damaged (or planted) and passed over: manifests it could
   *  not build on, pack indexes it did not trust. They stay as they are, for `verify` to report. */
  damaged: Array<{ object: string; problem: string }>;
}

const DAY = 86_400_000;
const SAMPLE_BYTES = 4096;
const MAX_WARNINGS = 100;

export async function takeSnapshot(opts: TakeOptions): Promise<SnapshotResult> {
  const { repo, account, provider, signal } = opts;
  const started = repo.now();
  const id = snapshotId(started);
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const progress: SnapshotProgress = {
    phase: 'listing',
    listed: 0,
    filesDone: 0,
    filesToRead: 0,
    bytesRead: 0,
    bytesToRead: 0,
    bytesAdded: 0,
  };
  const report = () => opts.onProgress?.({ ...progress });

  // 1. What the last snapshot held.
  const snaps = await repo.listSnapshots(account.name, signal);
  let prevInfo: (typeof snaps)[number] | undefined;
  let prevHeader: ManifestHeader | undefined;
  let prev: Map<string, ManifestEntry> | undefined;
  const failures: FailedFile[] = [];
  const damaged: SnapshotResult['damaged'] = [];
  // The latest readable snapshot: a damaged manifest (or one rewritten by whoever holds the store's
  // keys) must not stop every later snapshot. It stays as it is, for verify to report.
  // Nor may one dated in the future, or one whose header is not the snapshot its key names: whoever
  // can write the store could otherwise choose what this run compares with (DESIGN: what remains
  // possible is in README.md, "The store format").
  for (let i = snaps.length - 1; i >= 0 && !prevInfo; i--) {
    const ahead = datedAhead(snaps[i].time, started);
    if (ahead) {
      damaged.push({ object: snaps[i].key, problem: ahead });
      repo.log('warn', `the snapshot ${snaps[i].key} is passed over: ${ahead}. Run \`syncguard verify\``);
      continue;
    }
    try {
      const m = await repo.readManifest(snaps[i].key, signal);
      const h = m.header;
      if (h.account !== account.name || h.provider !== account.provider || h.id !== snaps[i].id) {
        m.entries.return(undefined).catch(() => {});
        throw new SyncguardError(
          'INTEGRITY',
          `its header names the snapshot ${JSON.stringify(h.id)} of ${JSON.stringify(h.account)} (${JSON.stringify(h.provider)}), not its key's`,
        );
      }
      const entries = new Map<string, ManifestEntry>();
      for await (const e of m.entries) entries.set(e.path, e);
      for (const u of m.unsafe)
        repo.log(
          'warn',
          `the previous snapshot ${snaps[i].key} names an unsafe path ${showPath(u.path)}; it is ignored`,
        );
      [prevInfo, prevHeader, prev] = [snaps[i], m.header, entries];
    } catch (e) {
      if (!isSyncguardError(e, 'INTEGRITY')) throw e;
      damaged.push({ object: snaps[i].key, problem: e.message });
      repo.log(
        'warn',
        `the snapshot ${snaps[i].key} cannot be read (${e.message}); the next snapshot builds on the one before it. Run \`syncguard verify\``,
      );
    }
  }
  const index = await repo.loadIndex(signal);
  damaged.push(...index.damaged);
  // Locations that failed a read check (verify, or an earlier run) are never reused: read again.
  const bad = await repo.damagedLocations();
  const sound = (e: ManifestEntry) => e.type !== 'file' || !bad.has(e.object!, e.offset);
  // Files the last run could not read: read again this run whatever the listing says, since a cursor
  // names a change once (a file dropped then would be missing from every later snapshot).
  const retryPrev = new Map<string, RetryFile>();
  for (const r of prevHeader?.retry ?? []) if (!unsafeReason(r.path)) retryPrev.set(r.path, r);
  // A stale entry the header's list does not name (the list was cut short to keep the header readable)
  // is retried from its own line: as stored, without the hash it was listed with.
  for (const e of prev?.values() ?? [])
    if (e.type === 'file' && e.stale && !retryPrev.has(e.path))
      retryPrev.set(e.path, {
        path: e.path,
        size: e.size,
        mtime: e.mtime,
        id: e.id,
        error: e.stale.reason,
        kept: true,
        staleSince: e.stale.since,
        staleRuns: e.stale.runs,
      });
  const retryNext: RetryFile[] = [];

  // 2. What the provider says now.
  const match = matcher(account.include ?? [], account.exclude ?? []);
  const fold = provider.features.caseInsensitive ? (p: string) => p.toLowerCase() : (p: string) => p;
  const useCursor =
    !opts.full && provider.features.deltaListing && prevHeader?.cursor !== undefined && prev !== undefined;
  /** retry: read whatever the listing says; unlisted: the listing could not see it (keep what was). */
  const state = new Map<
    string,
    { entry: RemoteEntry; carried?: ManifestEntry; retry?: RetryFile; unlisted?: string }
  >();
  if (useCursor) {
    for (const e of prev!.values()) state.set(e.path, { entry: toRemote(e), carried: e });
    // As it was listed when it failed: what the cursor has passed. A delete or a newer listing replaces it.
    for (const r of retryPrev.values())
      if (match(r.path, 'file'))
        state.set(r.path, { entry: retryRemote(r), carried: fileOf(prev!.get(r.path)), retry: r });
  }
  const unlistable = new Map<string, string>();
  const skipped: SkippedFile[] = [];
  const gen = provider.changes(useCursor ? prevHeader!.cursor : undefined, {
    signal,
    previous: prev && previousState(prev),
  });
  let cursor: string | undefined;
  for (;;) {
    throwIfAborted(signal);
    const r = await gen.next();
    if (r.done) {
      cursor = r.value;
      break;
    }
    applyChange(r.value);
  }
  function removeTree(path: string) {
    const p = fold(path);
    const exact = state.get(path);
    if (exact && exact.entry.type === 'file') {
      state.delete(path);
      return;
    }
    for (const k of [...state.keys()]) {
      const f = fold(k);
      if (f === p || f.startsWith(p + '/')) state.delete(k);
    }
  }
  function applyChange(c: Change) {
    switch (c.kind) {
      case 'reset':
        state.clear();
        return;
      case 'upsert': {
        progress.listed++;
        if (progress.listed % 1000 === 0) report();
        const reason = unsafeReason(c.entry.path);
        if (reason) {
          failures.push({ path: c.entry.path, error: `refused: ${reason}` });
          return;
        }
        if (!match(c.entry.path, c.entry.type)) return;
        const old = state.get(c.entry.path);
        if (old && old.entry.type === 'dir' && c.entry.type === 'file') removeTree(c.entry.path);
        state.set(c.entry.path, { entry: c.entry });
        return;
      }
      case 'delete':
        removeTree(c.path);
        return;
      case 'skip':
        skipped.push({ path: c.path, reason: c.reason });
        removeTree(c.path);
        return;
      case 'error':
        failures.push({ path: c.path, error: c.message });
        unlistable.set(c.path, c.message);
        return;
    }
  }
  for (const [path, r] of retryPrev) {
    const s = state.get(path);
    if (s?.entry.type === 'file') s.retry = r;
  }
  // What an error hid from a full listing (a file that cannot be stat'ed, a folder that cannot be
  // listed) is not deleted: its previous version stays, marked stale, until a listing sees it again.
  // (A change feed keeps what it does not name already.)
  if (prev && unlistable.size > 0 && !useCursor) {
    const hiddenBy = (path: string): string | undefined => {
      for (let p = path; ; p = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '') {
        const why = unlistable.get(p);
        if (why !== undefined || p === '') return why;
      }
    };
    for (const e of prev.values()) {
      if (state.has(e.path) || !match(e.path, e.type)) continue;
      const why = hiddenBy(e.path);
      if (why !== undefined) state.set(e.path, { entry: toRemote(e), carried: e, unlisted: why });
    }
  }

  // 3. Content: carried over, reused, or read and stored.
  const prevByProviderHash = new Map<string, ManifestEntry>();
  if (prev && !provider.features.local)
    for (const e of prev.values())
      if (e.providerHash && e.type === 'file') prevByProviderHash.set(e.providerHash, e);
  const next: ManifestEntry[] = [];
  const toRead: RemoteEntry[] = [];
  const readAt = provider.features.local ? started.toISOString() : undefined;
  const rereadDays = provider.features.local ? (opts.rereadDays ?? 0) : 0;
  /** Unchanged files read again (rereadDays): what the previous snapshot holds for each. */
  const rereading = new Map<string, ManifestEntry>();
  const warnings: string[] = [];
  const warn = (message: string) => {
    if (warnings.length < MAX_WARNINGS) warnings.push(message);
    repo.log('warn', message);
  };
  for (const { entry, carried, retry, unlisted } of state.values()) {
    if (entry.type === 'dir') {
      next.push(carried ?? dirEntry(entry));
      continue;
    }
    if (unlisted !== undefined) {
      keepStale(carried, entry, unlisted);
      continue;
    }
    if (carried && !retry && sound(carried)) {
      next.push(carried);
      continue;
    }
    const reuse = retry
      ? undefined
      : findReuse(entry, prev?.get(entry.path), prevByProviderHash, provider.features.local);
    if (reuse && sound(reuse)) {
      if (rereadDays > 0 && rereadDue(entry.path, reuse.readAt, started.getTime(), rereadDays)) {
        rereading.set(entry.path, reuse);
        toRead.push(entry);
        progress.bytesToRead += entry.size;
        continue;
      }
      // The size of the content stored, which is not always the size listed (OneDrive rewrites some files).
      next.push(fileEntry(entry, reuse.sha256!, reuse, { size: reuse.size, readAt: reuse.readAt }));
      continue;
    }
    toRead.push(entry);
    progress.bytesToRead += entry.size;
  }
  state.clear();
  progress.phase = 'reading';
  progress.filesToRead = toRead.length;
  report();

  const packer = repo.packer(signal);
  const ingest = new Ingest(repo, provider, index, packer, bad, signal);
  const samples = new Map<string, Buffer>();
  let filesRead = 0;
  let filesReread = 0;
  let lastReport = Date.now();
  await forEachLimit(toRead, concurrency, async (entry) => {
    const was = rereading.get(entry.path);
    try {
      const got = await withRetries(() => ingest.file(entry), signal);
      next.push(fileEntry(entry, got.sha256, got.loc, { size: got.size, mtime: got.mtime, readAt }));
      if (was) {
        filesReread++;
        if (was.sha256 !== got.sha256)
          warn(
            `${showPath(entry.path)} was read again (reread: ${rereadDays} days) with its size, times, device and inode unchanged, but its content differs from the previous snapshot's: a rewrite that put its times back, or damage on the disk. The content read now is stored; earlier snapshots keep the old one`,
          );
      }
      // Samples serve only to compare with a previous version: a first snapshot keeps none (200,000 files
      // of under 4 KiB would otherwise all stay in memory until the end of the run).
      if (opts.inspect && prev && got.sample) samples.set(entry.path, got.sample);
      filesRead++;
      progress.bytesRead += got.size;
    } catch (e) {
      if (isFatal(e)) throw e;
      // A file the provider will not serve is left out with the reason, as a listing's skip is: being
      // out of the manifest, it is not asked for again until it changes.
      if (isSyncguardError(e, 'SKIPPED')) {
        skipped.push({ path: entry.path, reason: e.message });
        progress.filesDone++;
        return;
      }
      if (was && !isSyncguardError(e, 'NOT_FOUND')) {
        // Nothing said it changed: the previous content stays, and it is read again another night.
        next.push(fileEntry(entry, was.sha256!, was, { size: was.size, readAt: was.readAt }));
        warn(
          `${showPath(entry.path)} could not be read again (${describeError(e)}); its previous content is kept`,
        );
      } else if (isSyncguardError(e, 'NOT_FOUND')) {
        // Gone from the account: a file to retry leaves the snapshot (the listing will not name it again).
        if (retryPrev.has(entry.path))
          repo.log('info', `${showPath(entry.path)}, to be read again, is gone from the account`);
        else failures.push({ path: entry.path, error: 'vanished during the run' });
      } else {
        const error = describeError(e);
        failures.push({ path: entry.path, error });
        keepStale(fileOf(prev?.get(entry.path)), entry, error);
      }
    }
    progress.filesDone++;
    progress.bytesAdded = ingest.bytesAdded + packer.bytesWritten;
    if (Date.now() - lastReport > 200) {
      lastReport = Date.now();
      report();
    }
  });
  await packer.flush();
  for (const d of ingest.damaged) damaged.push(d);
  await bad
    .save()
    .catch((e: unknown) =>
      repo.log('warn', `the list of damaged locations could not be saved: ${describeError(e)}`),
    );
  // What was listed to read (an object and a Date per file) is in `next` now: let it go before the
  // manifest is built (200,000 files: 55 MB less heap while finishing).
  toRead.length = 0;
  progress.phase = 'finishing';
  progress.bytesAdded = ingest.bytesAdded + packer.bytesWritten;
  report();

  /** A file not read this run: its previous version, if any, marked stale; read again next run. */
  function keepStale(last: ManifestEntry | undefined, listed: RemoteEntry, reason: string) {
    // A location that failed a read check is not carried either: nothing is kept, the file is retried.
    const old = last && sound(last) ? last : undefined;
    const r = retryPrev.get(listed.path);
    const staleSince = r?.staleSince ?? old?.stale?.since ?? id;
    const staleRuns = (r?.staleRuns ?? old?.stale?.runs ?? 0) + 1;
    if (old) next.push({ ...old, stale: { reason, since: staleSince, runs: staleRuns } });
    retryNext.push({
      path: listed.path,
      size: listed.size,
      mtime: listed.modified.toISOString(),
      providerHash: providerHash(listed),
      id: listed.id,
      error: reason,
      kept: old !== undefined,
      staleSince,
      staleRuns,
    });
  }

  // Folders are kept when nothing excludes them; with an include list, only those that hold something taken.
  let entries = next;
  if ((account.include ?? []).length > 0) {
    const holders = new Set<string>();
    for (const e of entries)
      if (e.type === 'file')
        for (let i = e.path.indexOf('/'); i > 0; i = e.path.indexOf('/', i + 1))
          holders.add(e.path.slice(0, i));
    entries = entries.filter((e) => e.type === 'file' || holders.has(e.path));
  }
  entries.sort((a, b) => comparePaths(a.path, b.path));

  // 4. Locks: every object this snapshot names must stay locked at least as long as its manifest.
  const { lockedUntil, extended } = await extendLocks(repo, entries, index, prev, prevHeader, signal);

  const tripwire = opts.inspect
    ? await opts.inspect({ previous: prev, next: entries, sample: (p) => samples.get(p) })
    : undefined;

  // 5. The manifest, last.
  const files = entries.filter((e) => e.type === 'file');
  const header: ManifestHeader = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    account: account.name,
    provider: account.provider,
    id,
    started: started.toISOString(),
    finished: repo.now().toISOString(),
    tool: `syncguard ${VERSION}`,
    counts: {
      files: files.length,
      dirs: entries.length - files.length,
      failed: failures.length,
      skipped: skipped.length,
    },
    bytes: files.reduce((n, e) => n + e.size, 0),
    bytesAdded: 0,
    cursor,
    previous: prevInfo?.key,
    lockedUntil: lockedUntil ? new Date(lockedUntil).toISOString() : undefined,
    failures,
    retry: retryNext.length > 0 ? retryNext.sort((a, b) => comparePaths(a.path, b.path)) : undefined,
    skipped,
    tripwire,
  };
  header.bytesAdded = ingest.bytesAdded + packer.bytesWritten;
  const key = repo.manifestKey(account.name, id);
  const writer = new ManifestWriter(header);
  try {
    for (const e of entries) await writer.add(e);
    const m = await writer.finish();
    throwIfAborted(signal);
    await repo.store.put(key, manifestFileStream(m.file), {
      sha256: m.sha256,
      size: m.size,
      retainUntil: lockedUntil ? new Date(lockedUntil) : undefined,
      signal,
    });
  } finally {
    await writer.discard();
  }
  return {
    account: account.name,
    id,
    key,
    time: started,
    header,
    filesRead,
    filesReread,
    warnings,
    bytesRead: progress.bytesRead,
    bytesAdded: header.bytesAdded,
    objectsExtended: extended,
    damaged,
  };
}

/** Errors that end a run: everything about auth, the store, the config, or an abort. One bad file does not. */
function isFatal(e: unknown): boolean {
  if (!isSyncguardError(e)) return false;
  return [
    'PROVIDER_AUTH',
    'STORE_AUTH',
    'STORE_CONFLICT',
    'STORE_LOCKED',
    'STORE_NO_LOCK',
    'STORE_UNAVAILABLE',
    'STORE_ERROR',
    'CONFIG',
    'ABORTED',
    'INTERNAL',
  ].includes(e.code);
}

/** A file that failed its hash check, or whose bytes changed while read, is read again twice. */
async function withRetries<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      throwIfAborted(signal);
      if (attempt >= 3 || !(isSyncguardError(e, 'INTEGRITY') || (isSyncguardError(e) && e.retryable)))
        throw e;
    }
  }
}

function matcher(include: string[], exclude: string[]): (path: string, type: 'file' | 'dir') => boolean {
  const inc = include.length ? picomatch(include, { dot: true }) : undefined;
  const exc = exclude.length ? picomatch(exclude, { dot: true }) : undefined;
  // An excluded folder takes everything below it along; a listing names a folder's files one by one.
  const dirs = new Map<string, boolean>();
  const excludedDir = (dir: string): boolean => {
    let out = dirs.get(dir);
    if (out === undefined) {
      const up = dir.lastIndexOf('/');
      out = exc!(dir) || exc!(dir + '/') || (up > 0 && excludedDir(dir.slice(0, up)));
      dirs.set(dir, out);
    }
    return out;
  };
  return (path, type) => {
    if (exc) {
      if (type === 'dir' ? excludedDir(path) : exc(path)) return false;
      const up = path.lastIndexOf('/');
      if (up > 0 && excludedDir(path.slice(0, up))) return false;
    }
    if (inc && type === 'file' && !inc(path)) return false;
    return true;
  };
}

function toRemote(e: ManifestEntry): RemoteEntry {
  const [algo, value] = e.providerHash ? splitHash(e.providerHash) : [undefined, undefined];
  return {
    path: e.path,
    type: e.type,
    size: e.size,
    modified: new Date(e.mtime),
    id: e.id,
    mode: e.mode,
    hash: algo ? { algo: algo as never, value: value } : undefined,
  };
}

function retryRemote(r: RetryFile): RemoteEntry {
  return toRemote({
    path: r.path,
    type: 'file',
    size: r.size,
    mtime: r.mtime,
    providerHash: r.providerHash,
    id: r.id,
  });
}

function fileOf(e: ManifestEntry | undefined): ManifestEntry | undefined {
  return e?.type === 'file' ? e : undefined;
}

function splitHash(h: string): [string, string] {
  const i = h.indexOf(':');
  return [h.slice(0, i), h.slice(i + 1)];
}

function previousState(prev: Map<string, ManifestEntry>): PreviousState {
  let ids: Map<string, RemoteEntry> | undefined;
  return {
    byId(id) {
      ids ??= new Map([...prev.values()].filter((e) => e.id).map((e) => [e.id!, toRemote(e)]));
      return ids.get(id);
    },
    *below(path) {
      const p = path === '' ? '' : path + '/';
      for (const e of prev.values()) if (e.path.startsWith(p)) yield toRemote(e);
    },
  };
}

function providerHash(entry: RemoteEntry): string | undefined {
  return entry.hash ? `${entry.hash.algo}:${entry.hash.value}` : undefined;
}

function findReuse(
  entry: RemoteEntry,
  old: ManifestEntry | undefined,
  byHash: Map<string, ManifestEntry>,
  local: boolean,
): ManifestEntry | undefined {
  if (local) {
    // Size, mtime, ctime and inode, as restic compares them (its changelog: "Use ctime when checking for
    // file changes"), and the device. A rewrite that puts its mtime back (VeraCrypt, `touch -r`) still
    // changes ctime. Entries of manifests older than these fields compare size and mtime.
    return old &&
      old.type === 'file' &&
      old.size === entry.size &&
      Date.parse(old.mtime) === entry.modified.getTime() &&
      (old.ctime === undefined || old.ctime === entry.ctime?.toISOString()) &&
      (old.ino === undefined || old.ino === entry.ino) &&
      (old.dev === undefined || old.dev === entry.dev)
      ? old
      : undefined;
  }
  const ph = providerHash(entry);
  if (!ph)
    return old &&
      old.type === 'file' &&
      old.id !== undefined &&
      old.id === entry.id &&
      old.size === entry.size &&
      Date.parse(old.mtime) === entry.modified.getTime()
      ? old
      : undefined;
  if (old && old.providerHash === ph) return old;
  return byHash.get(ph);
}

function dirEntry(entry: RemoteEntry): ManifestEntry {
  return {
    path: entry.path,
    type: 'dir',
    size: 0,
    mtime: entry.modified.toISOString(),
    id: entry.id,
    mode: entry.mode,
  };
}

function fileEntry(
  entry: RemoteEntry,
  sha256: string,
  loc: { object?: string; offset?: number; length?: number },
  opts: { size?: number; mtime?: Date; readAt?: string } = {},
): ManifestEntry {
  const size = opts.size ?? entry.size;
  return {
    path: entry.path,
    type: 'file',
    size,
    mtime: (opts.mtime ?? entry.modified).toISOString(),
    ctime: entry.ctime?.toISOString(),
    dev: entry.dev,
    ino: entry.ino,
    readAt: opts.readAt,
    sha256,
    providerHash: providerHash(entry),
    // The provider listed another size than it served (OneDrive rewrites some files on download).
    providerSize: size !== entry.size ? entry.size : undefined,
    id: entry.id,
    object: loc.object,
    offset: loc.offset,
    length: loc.offset === undefined ? undefined : size,
    mode: entry.mode,
  };
}

/**
 * Whether an unchanged local file is read again this run: on its own night of every `days` (a hash of
 * its path picks it, so about 1/days of the files each night, the same ones every period), and on any
 * night once `days` have passed since it was last read (a night missed). Never twice within half a day.
 * Entries of older manifests have no `readAt`: they are read on their own night, never all at once.
 */
export function rereadDue(path: string, readAt: string | undefined, now: number, days: number): boolean {
  const last = readAt === undefined ? NaN : Date.parse(readAt);
  if (now - last >= days * DAY - DAY / 2) return true;
  if (now - last < DAY / 2) return false;
  return fnv1a(path) % days === Math.floor(now / DAY) % days;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

interface Ingested {
  sha256: string;
  size: number;
  loc: Location;
  mtime?: Date;
  sample?: Buffer;
}

/** Reads one file and stores its content unless it is stored already. */
class Ingest {
  bytesAdded = 0;
  /** Reused locations that failed their read check this run. */
  readonly damaged: Array<{ object: string; problem: string }> = [];
  private readonly blobs = new Map<string, Promise<Location>>();
  /** Packed contents of other runs, each read back once before it is reused (sha256 → it holds). */
  private readonly checked = new Map<string, Promise<boolean>>();
  /** Contents this run stored: their locations need no check. */
  private readonly stored = new Set<string>();

  constructor(
    private readonly repo: Repository,
    private readonly provider: Provider,
    private readonly index: ContentIndex,
    private readonly packer: Packer,
    private readonly bad: DamagedLocations,
    private readonly signal?: AbortSignal,
  ) {}

  async file(entry: RemoteEntry): Promise<Ingested> {
    if (this.provider.features.local && entry.size >= this.repo.packThreshold) return this.localLarge(entry);
    const spool = await Spool.from(await this.provider.open(entry, this.signal), this.repo.packThreshold);
    try {
      const { sha256, size } = spool;
      const known = this.packer.get(sha256) ?? this.index.get(sha256);
      if (known && (await this.holds(sha256, known)))
        return { sha256, size, loc: known, sample: spool.sample };
      if (spool.buffer) {
        const loc = await this.packer.add(sha256, spool.buffer);
        this.index.set(sha256, loc);
        this.stored.add(sha256);
        return { sha256, size, loc, sample: spool.sample };
      }
      const loc = await this.blob(sha256, size, () => createReadStream(spool.file!));
      return { sha256, size, loc, sample: spool.sample };
    } finally {
      await spool.remove();
    }
  }

  /** A large local file is hashed in one pass and uploaded in a second, which the store verifies against
   *  the first: a file that changes in between is not stored under the wrong hash. */
  private async localLarge(entry: RemoteEntry): Promise<Ingested> {
    const hash = createHash('sha256');
    let size = 0;
    let sample: Buffer | undefined;
    for await (const chunk of await this.provider.open(entry, this.signal)) {
      hash.update(chunk as Buffer);
      if (!sample) sample = Buffer.from((chunk as Buffer).subarray(0, SAMPLE_BYTES));
      size += (chunk as Buffer).length;
    }
    const sha256 = hash.digest('hex');
    const known = this.index.get(sha256);
    if (known) return { sha256, size, loc: known, sample };
    const loc = await this.blob(sha256, size, () => this.provider.open(entry, this.signal));
    return { sha256, size, loc, sample };
  }

  /**
   * Whether a packed location another run wrote still holds `sha256`, read back once per run before
   * it is reused: a pack index can be damaged or forged with offsets that look right (within the pack,
   * one after another), which only reading shows. A location that fails is remembered as damaged and
   * the content is stored again. A blob's key is its SHA-256 (verify checks its bytes).
   */
  private holds(sha256: string, loc: Location): Promise<boolean> {
    if (loc.offset === undefined || this.stored.has(sha256) || this.packer.get(sha256) === loc)
      return Promise.resolve(true);
    let p = this.checked.get(sha256);
    if (!p) {
      p = (async () => {
        let got: string;
        try {
          const data = await readAll(this.repo.store, loc.object, {
            offset: loc.offset,
            length: loc.length,
            signal: this.signal,
          });
          got = createHash('sha256').update(data).digest('hex');
        } catch (e) {
          if (!isSyncguardError(e, 'INTEGRITY') && !isSyncguardError(e, 'NOT_FOUND')) throw e;
          got = '';
        }
        if (got === sha256) return true;
        const problem = `the content ${sha256.slice(0, 12)}… is not at offset ${loc.offset} as its pack index says; it is stored again`;
        this.bad.add({
          object: loc.object,
          offset: loc.offset,
          sha256,
          found: this.repo.now().toISOString(),
          problem,
        });
        this.damaged.push({ object: loc.object, problem });
        this.repo.log('warn', `${loc.object}: ${problem}`);
        return false;
      })();
      this.checked.set(sha256, p);
    }
    return p;
  }

  /** Where the store lets it (no lock holds it), removes a blob that failed its read check, so that its
   *  content can be stored again under its key; else the file fails, loudly, naming the blob. */
  private async replaceDamagedBlob(sha256: string): Promise<void> {
    const key = blobKey(sha256);
    try {
      await this.repo.store.delete(key);
    } catch (e) {
      if (!isSyncguardError(e, 'STORE_LOCKED')) throw e;
      throw new SyncguardError(
        'INTEGRITY',
        `${key} failed its read check and cannot be replaced while it is locked (${e.message}); the file is not stored this time`,
      );
    }
  }

  private blob(sha256: string, size: number, body: () => Readable | Promise<Readable>): Promise<Location> {
    let p = this.blobs.get(sha256);
    if (!p) {
      p = (async () => {
        if (this.bad.has(blobKey(sha256))) await this.replaceDamagedBlob(sha256);
        const loc = await this.repo.putBlob(sha256, await body(), size, this.signal);
        this.index.set(sha256, loc);
        this.bytesAdded += size;
        return loc;
      })();
      this.blobs.set(sha256, p);
      p.catch(() => this.blobs.delete(sha256));
    }
    return p;
  }
}

/** A content read from a stream: in memory while under the threshold, else in a temporary file. */
class Spool {
  buffer?: Buffer;
  file?: string;
  sha256 = '';
  size = 0;
  sample?: Buffer;

  static async from(stream: Readable, threshold: number): Promise<Spool> {
    const s = new Spool();
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let out: WriteStream | undefined;
    try {
      for await (const c of stream) {
        const chunk = c as Buffer;
        hash.update(chunk);
        s.size += chunk.length;
        if (!s.sample) s.sample = Buffer.from(chunk.subarray(0, SAMPLE_BYTES));
        if (out) {
          if (!out.write(chunk)) await new Promise<void>((r) => out!.once('drain', () => r()));
        } else {
          chunks.push(chunk);
          if (s.size >= threshold) {
            s.file = join(tmpdir(), `syncguard-spool-${randomBytes(8).toString('hex')}`);
            out = createWriteStream(s.file, { mode: 0o600 });
            for (const b of chunks) out.write(b);
            chunks.length = 0;
          }
        }
      }
      if (out)
        await new Promise<void>((resolve, reject) =>
          out!.end((e?: Error | null) => (e ? reject(e) : resolve())),
        );
      else s.buffer = Buffer.concat(chunks);
    } catch (e) {
      out?.destroy();
      await s.remove();
      throw e;
    }
    s.sha256 = hash.digest('hex');
    return s;
  }

  async remove(): Promise<void> {
    if (this.file) await fsp.rm(this.file, { force: true });
  }
}

/**
 * Objects reused from earlier snapshots may be locked for less time than the new manifest. Those are
 * extended — one call per object, not per file, all in one batch — to now + days plus a slack of a
 * quarter of the lock time, so each object is touched about once every few nights, not nightly.
 */
async function extendLocks(
  repo: Repository,
  entries: ManifestEntry[],
  index: ContentIndex,
  prev: Map<string, ManifestEntry> | undefined,
  prevHeader: ManifestHeader | undefined,
  signal?: AbortSignal,
): Promise<{ lockedUntil?: number; extended: number }> {
  if (!repo.lockDays) return { extended: 0 };
  const now = repo.now().getTime();
  const horizon = now + repo.lockDays * DAY;
  const extendTo = horizon + repo.lockSlackDays() * DAY;
  const prevLock = prevHeader?.lockedUntil ? Date.parse(prevHeader.lockedUntil) : 0;
  // The previous manifest's lockedUntil holds for the objects it names, and only for those.
  const prevObjects = new Set<string>();
  if (prev) for (const e of prev.values()) if (e.object) prevObjects.add(e.object);
  const known = new Map<string, number>();
  for (const e of entries) {
    if (e.type !== 'file' || !e.object) continue;
    const fromIndex = index.get(e.sha256!)?.object === e.object ? index.get(e.sha256!)!.lockedUntil : 0;
    const k = Math.max(known.get(e.object) ?? 0, fromIndex, prevObjects.has(e.object) ? prevLock : 0);
    known.set(e.object, k);
  }
  // When one lock ends too soon, every lock that ends before extendTo moves with it: the objects then
  // share one end, which the header records, and the next nights have nothing to extend.
  const due = [...known.values()].some((until) => until < horizon);
  const stale = due ? [...known].filter(([, until]) => until < extendTo).map(([o]) => o) : [];
  await forEachLimit(stale, 8, async (object) => {
    throwIfAborted(signal);
    await repo.store.extendRetention(object, new Date(extendTo));
    known.set(object, extendTo);
  });
  // The true minimum, not the horizon: the next run reads it as the lock of every object named here,
  // and a value capped at the horizon would have it extend them all again the next night.
  let min = known.size > 0 ? Infinity : horizon;
  for (const v of known.values()) min = Math.min(min, v);
  return { lockedUntil: min, extended: stale.length };
}
