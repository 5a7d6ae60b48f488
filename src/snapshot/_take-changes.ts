/**
 * What the provider says changed, applied to what the previous snapshot held: the include and exclude
 * patterns, deletes and resets, files the listing could not see; then, for each file listed, whether
 * its content can be reused (the previous entry, or another with the same provider hash).
 */
import picomatch from 'picomatch';
import { throwIfAborted } from '../errors.js';
import { unsafeReason } from '../paths.js';
import type { Change, Provider, RemoteEntry } from '../providers/types.js';
import type { FailedFile, ManifestEntry, RetryFile, SkippedFile } from './manifest.js';
import { fileOf, previousState, retryRemote, toRemote, type Previous } from './_take-previous.js';

const DAY = 86_400_000;

/** A path as listed this run. retry: read whatever the listing says; unlisted: the listing could not
 *  see it (keep what was). */
export interface Listed {
  entry: RemoteEntry;
  carried?: ManifestEntry;
  retry?: RetryFile;
  unlisted?: string;
}

export interface ListInput {
  provider: Provider;
  include: string[];
  exclude: string[];
  prev: Previous;
  retryPrev: Map<string, RetryFile>;
  /** List everything, ignoring the previous snapshot's cursor. */
  full?: boolean;
  signal?: AbortSignal;
  /** Paths refused or not listable: they go to the header's failures. */
  failures: FailedFile[];
  skipped: SkippedFile[];
  /** Called once per entry listed. */
  onListed(): void;
}

/** Lists the account (from the previous cursor when the provider has one) into what this snapshot holds. */
export async function listChanges(
  input: ListInput,
): Promise<{ state: Map<string, Listed>; cursor: string | undefined }> {
  const { provider, prev, retryPrev, failures, skipped, signal } = input;
  const match = matcher(input.include, input.exclude);
  const fold = provider.features.caseInsensitive ? (p: string) => p.toLowerCase() : (p: string) => p;
  const useCursor =
    !input.full &&
    provider.features.deltaListing &&
    prev.header?.cursor !== undefined &&
    prev.entries !== undefined;
  const state = new Map<string, Listed>();
  if (useCursor) {
    for (const e of prev.entries!.values()) state.set(e.path, { entry: toRemote(e), carried: e });
    // As it was listed when it failed: what the cursor has passed. A delete or a newer listing replaces it.
    for (const r of retryPrev.values())
      if (match(r.path, 'file'))
        state.set(r.path, { entry: retryRemote(r), carried: fileOf(prev.entries!.get(r.path)), retry: r });
  }
  const unlistable = new Map<string, string>();
  const gen = provider.changes(useCursor ? prev.header!.cursor : undefined, {
    signal,
    previous: prev.entries && previousState(prev.entries),
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
        input.onListed();
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
  if (prev.entries && unlistable.size > 0 && !useCursor) {
    const hiddenBy = (path: string): string | undefined => {
      for (let p = path; ; p = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '') {
        const why = unlistable.get(p);
        if (why !== undefined || p === '') return why;
      }
    };
    for (const e of prev.entries.values()) {
      if (state.has(e.path) || !match(e.path, e.type)) continue;
      const why = hiddenBy(e.path);
      if (why !== undefined) state.set(e.path, { entry: toRemote(e), carried: e, unlisted: why });
    }
  }
  return { state, cursor };
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

export function providerHash(entry: RemoteEntry): string | undefined {
  return entry.hash ? `${entry.hash.algo}:${entry.hash.value}` : undefined;
}

/** The previous entry whose content a listed file still has, if any: by size and times (and device and
 *  inode) for a local folder, else by provider hash, or by id, size and time where there is none. */
export function findReuse(
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

/** The previous snapshot's files by provider hash (cloud providers: a file moved or copied is reused). */
export function byProviderHash(prev: Previous, local: boolean): Map<string, ManifestEntry> {
  const byHash = new Map<string, ManifestEntry>();
  if (prev.entries && !local)
    for (const e of prev.entries.values())
      if (e.providerHash && e.type === 'file') byHash.set(e.providerHash, e);
  return byHash;
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

export function dirEntry(entry: RemoteEntry): ManifestEntry {
  return {
    path: entry.path,
    type: 'dir',
    size: 0,
    mtime: entry.modified.toISOString(),
    id: entry.id,
    mode: entry.mode,
  };
}

export function fileEntry(
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
