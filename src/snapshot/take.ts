/**
 * Taking a snapshot: the previous manifest + what the provider says changed → new content stored,
 * then the new manifest, last. A crash at any point leaves at most unreferenced objects, which the
 * next run reuses; a snapshot exists exactly when its manifest does.
 *
 * This file runs the steps in order; each job is in a file of its own: `_take-previous.ts` (what the
 * last snapshot held), `_take-changes.ts` (the listing applied to it, and what can be reused),
 * `_take-ingest.ts` (reading and packing), `_take-manifest.ts` (locks, and the manifest, last).
 */
import { describeError, isSyncguardError } from '../errors.js';
import { comparePaths, showPath } from '../paths.js';
import type { Provider, RemoteEntry } from '../providers/types.js';
import { snapshotId } from './layout.js';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type FailedFile,
  type ManifestEntry,
  type ManifestHeader,
  type RetryFile,
  type SkippedFile,
} from './manifest.js';
import type { Repository } from './repository.js';
import { forEachLimit } from '../util.js';
import { VERSION } from '../version.js';
import { fileOf, readPrevious, retryList } from './_take-previous.js';
import {
  byProviderHash,
  dirEntry,
  fileEntry,
  findReuse,
  listChanges,
  providerHash,
  rereadDue,
} from './_take-changes.js';
import { Ingest, isFatal, withRetries } from './_take-ingest.js';
import { extendLocks, keptEntries, putManifest } from './_take-manifest.js';

export { rereadDue };

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

const MAX_WARNINGS = 100;

/** Progress before anything is listed. */
export function startProgress(): SnapshotProgress {
  return {
    phase: 'listing',
    listed: 0,
    filesDone: 0,
    filesToRead: 0,
    bytesRead: 0,
    bytesToRead: 0,
    bytesAdded: 0,
  };
}

export async function takeSnapshot(opts: TakeOptions): Promise<SnapshotResult> {
  const { repo, account, provider, signal } = opts;
  const started = repo.now();
  const id = snapshotId(started);
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const progress = startProgress();
  const report = () => opts.onProgress?.({ ...progress });

  // 1. What the last snapshot held.
  const previous = await readPrevious(repo, account, started, signal);
  const { info: prevInfo, header: prevHeader, entries: prev } = previous;
  const failures: FailedFile[] = [];
  const damaged: SnapshotResult['damaged'] = previous.damaged;
  const index = await repo.loadIndex(signal);
  damaged.push(...index.damaged);
  // Locations that failed a read check (verify, or an earlier run) are never reused: read again.
  const bad = await repo.damagedLocations();
  const sound = (e: ManifestEntry) => e.type !== 'file' || !bad.has(e.object!, e.offset);
  const retryPrev = retryList(previous);
  const retryNext: RetryFile[] = [];

  // 2. What the provider says now.
  const skipped: SkippedFile[] = [];
  const { state, cursor } = await listChanges({
    provider,
    include: account.include ?? [],
    exclude: account.exclude ?? [],
    prev: previous,
    retryPrev,
    full: opts.full,
    signal,
    failures,
    skipped,
    onListed: () => {
      progress.listed++;
      if (progress.listed % 1000 === 0) report();
    },
  });

  // 3. Content: carried over, reused, or read and stored.
  const prevByProviderHash = byProviderHash(previous, provider.features.local);
  const next: ManifestEntry[] = [];
  const toRead: Array<RemoteEntry | undefined> = [];
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
  // Samples serve only to compare with a previous version: a first snapshot keeps none (200,000 files
  // of under 4 KiB would otherwise all stay in memory until the end of the run).
  const keepSamples = opts.inspect !== undefined && prev !== undefined;
  const ingest = new Ingest(repo, provider, index, packer, bad, keepSamples, signal);
  const samples = new Map<string, Buffer>();
  let filesRead = 0;
  let filesReread = 0;
  let lastReport = Date.now();
  // Each listed entry is let go once read (its fields are in `next` then): what is listed to read
  // shrinks as what is read grows.
  await forEachLimit(draining(toRead), concurrency, async (entry) => {
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
      if (got.sample) samples.set(entry.path, got.sample);
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

  const entries = keptEntries(next, account.include ?? []);

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
  await putManifest(repo, key, header, entries, lockedUntil, signal);
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

/** The items of `list`, each slot emptied as its item is taken. */
function* draining<T>(list: Array<T | undefined>): Generator<T> {
  for (let i = 0; i < list.length; i++) {
    const item = list[i]!;
    list[i] = undefined;
    yield item;
  }
  list.length = 0;
}
