/**
 * The end of a run: which folders the manifest keeps, the locks of the objects it names extended to
 * outlast it, and the manifest itself, written last.
 */
import { throwIfAborted } from '../errors.js';
import { comparePaths } from '../paths.js';
import { forEachLimit } from '../util.js';
import { ManifestWriter, manifestFileStream, type ManifestEntry, type ManifestHeader } from './manifest.js';
import type { ContentIndex, Repository } from './repository.js';

const DAY = 86_400_000;

/**
 * Objects reused from earlier snapshots may be locked for less time than the new manifest. Those are
 * extended — one call per object, not per file, all in one batch — to now + days plus a slack of a
 * quarter of the lock time, so each object is touched about once every few nights, not nightly.
 */
export async function extendLocks(
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

/** Folders are kept when nothing excludes them; with an include list, only those that hold something
 *  taken. The entries come back sorted as the manifest lists them. */
export function keptEntries(entries: ManifestEntry[], include: string[]): ManifestEntry[] {
  if (include.length > 0) {
    const holders = new Set<string>();
    for (const e of entries)
      if (e.type === 'file')
        for (let i = e.path.indexOf('/'); i > 0; i = e.path.indexOf('/', i + 1))
          holders.add(e.path.slice(0, i));
    entries = entries.filter((e) => e.type === 'file' || holders.has(e.path));
  }
  return entries.sort((a, b) => comparePaths(a.path, b.path));
}

/** Writes the manifest, locked until `lockedUntil`: the last object of a run, which makes the snapshot. */
export async function putManifest(
  repo: Repository,
  key: string,
  header: ManifestHeader,
  entries: ManifestEntry[],
  lockedUntil: number | undefined,
  signal?: AbortSignal,
): Promise<void> {
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
}
