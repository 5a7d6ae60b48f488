/** What a snapshot holds (ls), and what changed between two (diff). */
import { SyncguardError } from '../errors.js';
import { comparePaths, isUnder, normaliseFolder, showPath } from '../paths.js';
import type { ManifestEntry, ManifestHeader } from './manifest.js';
import type { Repository, SnapshotInfo } from './repository.js';

export interface SnapshotSummary extends SnapshotInfo {
  header: ManifestHeader;
}

/** Every snapshot kept for `account` (or all accounts), oldest first, with its header. */
export async function listSnapshots(
  repo: Repository,
  account?: string,
  signal?: AbortSignal,
): Promise<SnapshotSummary[]> {
  const infos = await repo.listSnapshots(account, signal);
  const out: SnapshotSummary[] = [];
  for (const s of infos) out.push({ ...s, header: await repo.readHeader(s.key, signal) });
  return out;
}

export interface LsResult {
  snapshot: SnapshotInfo;
  path: string;
  entries: ManifestEntry[];
}

/** The entries of a folder in the snapshot at `at`: its direct children, or everything below it. */
export async function ls(
  repo: Repository,
  account: string,
  opts: { at?: string | Date; path?: string; recursive?: boolean; signal?: AbortSignal },
): Promise<LsResult> {
  const snapshot = await repo.findSnapshot(account, opts.at, opts.signal);
  const folder = normaliseFolder(opts.path);
  const m = await repo.readManifest(snapshot.key, opts.signal);
  const entries: ManifestEntry[] = [];
  let found = folder === '';
  for await (const e of m.entries) {
    if (e.path === folder) {
      found = true;
      if (e.type === 'file') entries.push(e);
      continue;
    }
    if (!isUnder(e.path, folder)) continue;
    found = true;
    const rest = folder === '' ? e.path : e.path.slice(folder.length + 1);
    if (opts.recursive || !rest.includes('/')) entries.push(e);
  }
  if (!found)
    throw new SyncguardError(
      'NOT_FOUND',
      `the snapshot ${snapshot.id} of "${account}" holds nothing at ${showPath(folder)}`,
    );
  return { snapshot, path: folder, entries };
}

export interface DiffResult {
  from: SnapshotInfo;
  to: SnapshotInfo;
  added: ManifestEntry[];
  changed: Array<{ before: ManifestEntry; after: ManifestEntry }>;
  deleted: ManifestEntry[];
}

/** What was added, changed (other content, or file ↔ folder) and deleted between two snapshots. */
export async function diff(
  repo: Repository,
  account: string,
  at1: string | Date,
  at2: string | Date,
  signal?: AbortSignal,
): Promise<DiffResult> {
  const from = await repo.findSnapshot(account, at1, signal);
  const to = await repo.findSnapshot(account, at2, signal);
  const before = new Map<string, ManifestEntry>();
  for await (const e of (await repo.readManifest(from.key, signal)).entries) before.set(e.path, e);
  const added: ManifestEntry[] = [],
    deleted: ManifestEntry[] = [];
  const changed: DiffResult['changed'] = [];
  for await (const e of (await repo.readManifest(to.key, signal)).entries) {
    const b = before.get(e.path);
    before.delete(e.path);
    if (!b) added.push(e);
    else if (b.type !== e.type || b.sha256 !== e.sha256) changed.push({ before: b, after: e });
  }
  deleted.push(...before.values());
  deleted.sort((a, b) => comparePaths(a.path, b.path));
  return { from, to, added, changed, deleted };
}
