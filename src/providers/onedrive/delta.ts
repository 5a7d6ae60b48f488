import { isUnder, unsafeReason } from '../../paths.js';
import type { Change, PreviousState, RemoteEntry } from '../types.js';
import type { DriveItemJson } from './api.js';

export const PACKAGE_REASON = 'OneNote notebook (package): export it from OneNote';
export const REMOTE_REASON =
  'shared from another drive ("Add to My files"): add that drive as an account of its own, with drive: { driveId }';

/** Graph's ids are case-insensitive, and since mid-2025 come in mixed casing across endpoints, delta
 *  included (OneDrive/onedrive-api-docs#1902, abraunegg/onedrive#3336): ids are compared by this key. */
export const idKey = (id: string): string => id.toLowerCase();

/** The previous snapshot's entry for an id, whichever casing the snapshot and Graph use. */
export function previousById(previous: PreviousState | undefined, id: string): RemoteEntry | undefined {
  if (!previous) return undefined;
  return previous.byId(id) ?? previous.byId(id.toLowerCase()) ?? previous.byId(id.toUpperCase());
}

/** What the round keeps of a driveItem: little, since a full enumeration holds the whole drive. */
export interface RoundItem {
  id: string;
  name?: string;
  parentId?: string;
  kind: 'file' | 'dir' | 'package' | 'remote' | 'root';
  deleted: boolean;
  size: number;
  modified: Date;
  quickXor?: string;
  sha256?: string;
  /** The content's tag (cTag), or the eTag where there is none: for files listed without hashes. */
  tag?: string;
  childCount?: number;
  /** Fetched only to place what this round names below it (its parent chain was missing). */
  context?: boolean;
}

export function toRoundItem(raw: DriveItemJson): RoundItem {
  // A OneNote notebook on Business and SharePoint is a folder with a `package` facet, whose sections
  // are ordinary files (only the notebook's own /content is 404): it is backed up as a folder.
  // Elsewhere (Personal) a package is not a folder, and is skipped.
  const kind = raw.root
    ? 'root'
    : raw.package && !raw.folder
      ? 'package'
      : raw.remoteItem
        ? 'remote'
        : raw.folder
          ? 'dir'
          : 'file';
  const modified = raw.fileSystemInfo?.lastModifiedDateTime ?? raw.lastModifiedDateTime;
  return {
    id: raw.id,
    name: raw.name,
    parentId: raw.parentReference?.id,
    kind,
    deleted: raw.deleted !== undefined,
    size: kind === 'file' ? (raw.size ?? 0) : 0,
    modified: modified ? new Date(modified) : new Date(0),
    quickXor: raw.file?.hashes?.quickXorHash || undefined,
    sha256: raw.file?.hashes?.sha256Hash?.toLowerCase() || undefined,
    tag: raw.cTag || raw.eTag || undefined,
    childCount: raw.folder?.childCount,
  };
}

/** QuickXorHash where Graph gives it; else the content tag, which changes exactly when the content
 *  does (driveItem: cTag "is not changed if only the metadata is changed"): Business delta has listed
 *  files without hashes (OneDrive/onedrive-api-docs#1704, #527), and an unchanged file is then still
 *  known, a moved one included, without reading it again. */
function entryHash(it: RoundItem): RemoteEntry['hash'] {
  if (it.quickXor) return { algo: 'quickxor', value: it.quickXor };
  if (it.tag) return { algo: 'ctag', value: it.tag };
  return undefined;
}

interface Resolved {
  /** The item's path now; undefined when it is gone or cannot be placed. */
  path?: string;
  /** It lies in a OneNote package (or is one). */
  inPackage: boolean;
  /** A folder above it that neither this round nor the previous snapshot knows. */
  unknown?: string;
}

const GONE: Resolved = { inPackage: false };

/** Paths in comparePaths order, each path's key built once (a full enumeration sorts the whole drive). */
function sortPaths(paths: Iterable<string>): string[] {
  const keyed = [...paths].map((p) => ({ p, k: Buffer.from(p.replaceAll('/', '\0')) }));
  keyed.sort((a, b) => Buffer.compare(a.k, b.k));
  return keyed.map((x) => x.p);
}

/**
 * One round of Graph delta, buffered whole (the same item can come more than once; the last one
 * wins), turned into changes. Delta speaks of ids and omits parentReference.path, and a renamed
 * folder arrives alone, without what it holds: paths are rebuilt from the parent-id chain, using this
 * round's items and, for the rest, the previous snapshot (`previous`, absent on a full enumeration).
 */
export class Round {
  /** By idKey(). */
  readonly items = new Map<string, RoundItem>();
  private readonly resolved = new Map<string, Resolved>();
  /** Old path → id, for items of this round that the previous snapshot holds. */
  private oldPaths?: Map<string, string>;
  /** idKey()s of the drive root: the id GET /root gave, and any item with the `root` facet. */
  private readonly roots = new Set<string>();

  constructor(
    rootId: string,
    private readonly previous: PreviousState | undefined,
    /** Normalised folders to keep ('' or none: the whole drive). */
    private readonly folders: string[],
  ) {
    this.roots.add(idKey(rootId));
  }

  add(item: RoundItem): void {
    if (item.kind === 'root') this.roots.add(idKey(item.id));
    this.items.set(idKey(item.id), item);
    this.resolved.clear();
    this.oldPaths = undefined;
  }

  /** This round's item for an id, in any casing. */
  get(id: string): RoundItem | undefined {
    return this.items.get(idKey(id));
  }

  private prev(id: string): RemoteEntry | undefined {
    return previousById(this.previous, id);
  }

  get size(): number {
    return this.items.size;
  }

  private indexOldPaths(): Map<string, string> {
    if (!this.oldPaths) {
      this.oldPaths = new Map();
      if (this.previous) {
        for (const it of this.items.values()) {
          const prev = this.prev(it.id);
          if (prev) this.oldPaths.set(prev.path, it.id);
        }
      }
    }
    return this.oldPaths;
  }

  /** Where an item of this round, or of the previous snapshot, is now. */
  resolve(id: string, depth = 0): Resolved {
    const key = idKey(id);
    if (this.roots.has(key)) return { path: '', inPackage: false };
    const cached = this.resolved.get(key);
    if (cached) return cached;
    if (depth > 1000) return GONE; // a cycle in broken data
    let r: Resolved;
    const it = this.items.get(key);
    if (it) {
      if (it.deleted || it.kind === 'root' || it.name === undefined || it.parentId === undefined) r = GONE;
      else {
        const parent = this.resolve(it.parentId, depth + 1);
        r =
          parent.path === undefined
            ? parent
            : {
                path: parent.path === '' ? it.name : `${parent.path}/${it.name}`,
                inPackage: parent.inPackage || it.kind === 'package',
              };
      }
    } else {
      const prev = this.prev(id);
      r = prev ? this.movedPath(prev.path, depth) : { inPackage: false, unknown: id };
    }
    this.resolved.set(key, r);
    return r;
  }

  /** The path now of something this round did not mention, that was at `oldPath`: it moved with
   *  the nearest folder above it that this round did mention. */
  private movedPath(oldPath: string, depth: number): Resolved {
    const index = this.indexOldPaths();
    for (let i = oldPath.lastIndexOf('/'); i > 0; i = oldPath.lastIndexOf('/', i - 1)) {
      const ancestor = oldPath.slice(0, i);
      const id = index.get(ancestor);
      if (id === undefined) continue;
      const now = this.resolve(id, depth + 1);
      return now.path === undefined ? GONE : { path: now.path + oldPath.slice(i), inPackage: now.inPackage };
    }
    return { path: oldPath, inPackage: false };
  }

  /** Whether a path is kept: below a configured folder, or one of the folders above it. */
  inScope(path: string): boolean {
    if (this.folders.length === 0) return true;
    const p = path.toLowerCase();
    return this.folders.some((f) => {
      const fl = f.toLowerCase();
      return isUnder(p, fl) || fl.startsWith(p + '/');
    });
  }

  /**
   * Folders above items of this round that neither the round nor the previous snapshot knows (the
   * previous snapshot leaves out what include/exclude rules or failures left out, and Graph may omit
   * the parent chain). The provider fetches them as context.
   */
  unknownParents(): string[] {
    const out = new Set<string>();
    for (const it of this.items.values()) {
      if (it.deleted || it.kind === 'root') continue;
      const u = this.resolve(it.id).unknown;
      if (u !== undefined) out.add(u);
    }
    return [...out];
  }

  /**
   * Folders this round names that the previous snapshot does not hold although they hold more than
   * this round names: folders moved in from outside the configured folders. What they hold must be
   * listed, since delta does not repeat it.
   */
  foldersToList(): string[] {
    if (!this.previous) return [];
    const named = new Map<string, number>();
    for (const it of this.items.values())
      if (!it.deleted && it.parentId) named.set(idKey(it.parentId), (named.get(idKey(it.parentId)) ?? 0) + 1);
    const out: string[] = [];
    for (const it of this.items.values()) {
      if (it.deleted || it.context || it.kind !== 'dir' || this.prev(it.id)) continue;
      if ((it.childCount ?? 0) <= (named.get(idKey(it.id)) ?? 0)) continue;
      const r = this.resolve(it.id);
      if (r.path !== undefined && !r.inPackage && this.inScope(r.path)) out.push(it.id);
    }
    return out;
  }

  /**
   * The changes, in the order the snapshot engine applies them: deletes (of what is gone, and of
   * the old paths of what moved), then upserts by path (a folder before what it holds), then skips
   * and errors. On a full enumeration, a configured folder that does not exist is an error.
   */
  changes(opts: { full: boolean }): Change[] {
    const deletes = new Set<string>();
    const upserts = new Map<string, RemoteEntry>();
    const skips: Change[] = [];
    const errors: Change[] = [];
    const movedFolders: Array<{ oldPath: string }> = [];
    const seenFolders = new Set<string>();

    for (const it of this.items.values()) {
      if (it.kind === 'root') continue;
      const prev = this.prev(it.id);
      const now = this.resolve(it.id);
      if (prev && prev.path !== now.path) {
        deletes.add(prev.path);
        if (prev.type === 'dir' && now.path !== undefined) movedFolders.push({ oldPath: prev.path });
      }
      if (now.path === undefined || !this.inScope(now.path)) continue;
      if (it.kind === 'dir') seenFolders.add(now.path.toLowerCase());
      if (now.inPackage) {
        if (it.kind === 'package') skips.push({ kind: 'skip', path: now.path, reason: PACKAGE_REASON });
        continue;
      }
      const reason = unsafeReason(now.path);
      if (reason) {
        errors.push({ kind: 'error', path: now.path, message: `refused the name OneDrive gave: ${reason}` });
        continue;
      }
      if (it.kind === 'remote') {
        skips.push({ kind: 'skip', path: now.path, reason: REMOTE_REASON });
        continue;
      }
      upserts.set(now.path, {
        path: now.path,
        type: it.kind === 'dir' ? 'dir' : 'file',
        size: it.kind === 'dir' ? 0 : it.size,
        modified: it.modified,
        ...(it.kind === 'file' ? { hash: entryHash(it) } : {}),
        id: it.id,
      });
    }

    // What a moved folder held moved with it; delta does not say so. Copy it from the previous
    // snapshot at its new path: its content is known, nothing is read again.
    if (this.previous) {
      // A folder that moved along with a moved folder above it is covered by that one (in path
      // order, a folder's descendants follow it directly).
      const tops: string[] = [];
      for (const p of sortPaths(movedFolders.map((m) => m.oldPath))) {
        if (tops.length === 0 || !p.startsWith(tops[tops.length - 1] + '/')) tops.push(p);
      }
      for (const oldPath of tops) {
        for (const e of this.previous.below(oldPath)) {
          if (e.id && this.items.has(idKey(e.id))) continue;
          const now = this.movedPath(e.path, 0);
          if (now.path === undefined || now.inPackage || !this.inScope(now.path) || upserts.has(now.path))
            continue;
          const reason = unsafeReason(now.path);
          if (reason) {
            errors.push({
              kind: 'error',
              path: now.path,
              message: `refused the name OneDrive gave: ${reason}`,
            });
            continue;
          }
          upserts.set(now.path, { ...e, path: now.path });
        }
      }
    }

    if (opts.full) {
      for (const f of this.folders) {
        if (f !== '' && !seenFolders.has(f.toLowerCase()))
          errors.push({
            kind: 'error',
            path: f,
            message: "the folder does not exist in this drive: check the account's folders",
          });
      }
    }

    const out: Change[] = [];
    for (const path of sortPaths(deletes)) out.push({ kind: 'delete', path });
    for (const path of sortPaths(upserts.keys())) out.push({ kind: 'upsert', entry: upserts.get(path)! });
    out.push(...skips, ...errors);
    return out;
  }
}
