/**
 * What a snapshot builds on: the latest readable manifest of the account, the files its run could not
 * read (to read again), and the view of it a provider asks for while it lists (`PreviousState`).
 */
import { SyncguardError, isSyncguardError } from '../errors.js';
import { showPath, unsafeReason } from '../paths.js';
import type { PreviousState, RemoteEntry } from '../providers/types.js';
import type { ManifestEntry, ManifestHeader, RetryFile } from './manifest.js';
import { datedAhead, type Repository, type SnapshotInfo } from './repository.js';

export interface Previous {
  info?: SnapshotInfo;
  header?: ManifestHeader;
  entries?: Map<string, ManifestEntry>;
  /** Manifests passed over: damaged, dated ahead, or not the snapshot their key names. */
  damaged: Array<{ object: string; problem: string }>;
}

/**
 * The latest readable snapshot: a damaged manifest (or one rewritten by whoever holds the store's
 * keys) must not stop every later snapshot. It stays as it is, for verify to report.
 * Nor may one dated in the future, or one whose header is not the snapshot its key names: whoever
 * can write the store could otherwise choose what this run compares with (DESIGN: what remains
 * possible is in README.md, "The store format").
 */
export async function readPrevious(
  repo: Repository,
  account: { name: string; provider: string },
  started: Date,
  signal?: AbortSignal,
): Promise<Previous> {
  const snaps = await repo.listSnapshots(account.name, signal);
  const damaged: Previous['damaged'] = [];
  for (let i = snaps.length - 1; i >= 0; i--) {
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
      return { info: snaps[i], header: m.header, entries, damaged };
    } catch (e) {
      if (!isSyncguardError(e, 'INTEGRITY')) throw e;
      damaged.push({ object: snaps[i].key, problem: e.message });
      repo.log(
        'warn',
        `the snapshot ${snaps[i].key} cannot be read (${e.message}); the next snapshot builds on the one before it. Run \`syncguard verify\``,
      );
    }
  }
  return { damaged };
}

/**
 * Files the last run could not read: read again this run whatever the listing says, since a cursor
 * names a change once (a file dropped then would be missing from every later snapshot).
 */
export function retryList(prev: Previous): Map<string, RetryFile> {
  const retry = new Map<string, RetryFile>();
  for (const r of prev.header?.retry ?? []) if (!unsafeReason(r.path)) retry.set(r.path, r);
  // A stale entry the header's list does not name (the list was cut short to keep the header readable)
  // is retried from its own line: as stored, without the hash it was listed with.
  for (const e of prev.entries?.values() ?? [])
    if (e.type === 'file' && e.stale && !retry.has(e.path))
      retry.set(e.path, {
        path: e.path,
        size: e.size,
        mtime: e.mtime,
        id: e.id,
        error: e.stale.reason,
        kept: true,
        staleSince: e.stale.since,
        staleRuns: e.stale.runs,
      });
  return retry;
}

export function previousState(prev: Map<string, ManifestEntry>): PreviousState {
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

/** A manifest entry as a listing would name it. */
export function toRemote(e: ManifestEntry): RemoteEntry {
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

/** A file to retry as it was listed when it failed. */
export function retryRemote(r: RetryFile): RemoteEntry {
  return toRemote({
    path: r.path,
    type: 'file',
    size: r.size,
    mtime: r.mtime,
    providerHash: r.providerHash,
    id: r.id,
  });
}

export function fileOf(e: ManifestEntry | undefined): ManifestEntry | undefined {
  return e?.type === 'file' ? e : undefined;
}

function splitHash(h: string): [string, string] {
  const i = h.indexOf(':');
  return [h.slice(0, i), h.slice(i + 1)];
}
