import type { Change, PreviousState, RemoteEntry } from '../types.js';

/**
 * The spelling of each path in a listing. Dropbox's `path_display` is best effort: "at least the last
 * path component will have the correct casing", and "changes to only the casing of paths won't be
 * returned by list_folder/continue" (FolderMetadata.path_display, Dropbox API v2 docs; confirmed by
 * Dropbox staff in dropbox-sdk-python #63 and dropbox-sdk-obj-c #198). A file written by a client that
 * spells its folder "photos" is listed as "/photos/b.jpg" while the folder is "Photos".
 *
 * So entries are identified by `path_lower` (and id), and a path is built from each entry's own `name`
 * under the spelling kept for its parent: the parent's own name when this listing named it, else the
 * previous snapshot's spelling, else (a folder never seen) the parent component of `path_display`.
 * When an entry's own name differs in case from the spelling in use (a case-only rename that surfaced),
 * the old spelling is deleted and what was below it is given again under the new one, so a snapshot
 * never holds two paths that differ only in case.
 */
export class DropboxNames {
  /** fold(path) → own name, from an entry of this listing. */
  private readonly named = new Map<string, string>();
  /** fold(path) → own name taken from a path_display, for a folder no entry has named yet. */
  private readonly guessed = new Map<string, string>();
  /** fold(path) → own name of each folder (and each folder above one) in the previous snapshot. */
  private prevDirs?: Map<string, string>;
  /** What this round gave, by fold(path), while a spelling above it may still change. */
  private readonly given = new Map<string, RemoteEntry>();
  /** fold(path) of what this round deleted. */
  private readonly deleted = new Set<string>();

  /**
   * @param previous the previous snapshot; on a full listing it only lends its spelling to a folder
   *   listed after what it holds.
   * @param incremental the listing continues from a cursor, so the previous snapshot's entries stay
   *   unless changed.
   */
  constructor(
    private readonly previous: PreviousState | undefined,
    private incremental: boolean,
  ) {}

  /** A reset: a full listing follows, and nothing of the previous snapshot stays by itself. */
  reset(): void {
    this.incremental = false;
    this.named.clear();
    this.guessed.clear();
    this.given.clear();
    this.deleted.clear();
  }

  /**
   * Changes that mend a previous snapshot holding a folder under two spellings (as the connector wrote
   * them before it kept one spelling per path): each entry under a wrong spelling is deleted and given
   * again under the kept one. Its content is not read again: the engine finds it by content_hash.
   */
  *mend(): Generator<Change> {
    if (!this.incremental || !this.previous) return;
    const wrong: RemoteEntry[] = [];
    for (const e of this.previous.below('')) if (e.path !== this.spell(e)) wrong.push(e);
    if (wrong.length === 0) return;
    // Deleting a folder takes every spelling of it (deletions compare case-insensitively downstream),
    // so everything it held, under any spelling, is given again.
    const dirs = wrong.filter((e) => e.type === 'dir').map((e) => fold(e.path));
    const under = (e: RemoteEntry) => {
      const k = fold(e.path);
      return dirs.some((d) => k === d || k.startsWith(d + '/'));
    };
    const files = wrong.filter((e) => !under(e));
    for (const e of [...files, ...wrong.filter(under)]) yield { kind: 'delete', path: e.path };
    const again = dirs.length > 0 ? [...this.previous.below('')].filter(under) : [];
    again.sort((a, b) => depth(a.path) - depth(b.path));
    for (const e of [...files, ...again]) {
      const entry = { ...e, path: this.spell(e) };
      this.given.set(fold(entry.path), entry);
      yield { kind: 'upsert', entry };
    }
  }

  /**
   * The changes for a file or folder listed now: `lower` is its path_lower and `display` its
   * path_display (both without the leading '/'), `name` its own name.
   */
  *upsert(entry: RemoteEntry, lower: string, display: string, name: string): Generator<Change> {
    const key = fold(lower);
    const hint = depth(display) === depth(key) ? display : undefined;
    const wasDeleted = this.deleted.delete(key);
    // Where the state holds it now: as given this round, as the previous snapshot holds it, or (for a
    // folder listed after what it holds) under the spelling guessed for what it holds.
    const old =
      this.given.get(key)?.path ??
      this.previousPath(key, entry.id) ??
      (this.guessed.has(key) ? this.path(key, hint) : undefined);
    this.named.set(key, name);
    this.guessed.delete(key);
    const path = this.path(key, hint);
    const renamed = old !== undefined && old !== path;
    if (renamed) yield { kind: 'delete', path: old };
    const self = { ...entry, path };
    yield { kind: 'upsert', entry: self };
    const parent = parentOf(key);
    if (this.incremental || (parent !== '' && !this.named.has(parent))) this.given.set(key, self);
    if (!renamed || entry.type !== 'dir') return;
    // The deletion of the old spelling took what was below it: give that again under the new one.
    const n = depth(key);
    const rebase = (e: RemoteEntry) => ({ ...e, path: [path, ...e.path.split('/').slice(n)].join('/') });
    const again: RemoteEntry[] = [];
    for (const [k, e] of this.given) if (k.startsWith(key + '/')) again.push(rebase(e));
    if (this.incremental && this.previous && !wasDeleted) {
      for (const e of this.previous.below(old)) {
        const k = fold(e.path);
        if (!this.given.has(k) && !this.deletedBetween(k, key)) again.push(rebase(e));
      }
    }
    again.sort((a, b) => depth(a.path) - depth(b.path));
    for (const e of again) {
      this.given.set(fold(e.path), e);
      yield { kind: 'upsert', entry: e };
    }
  }

  /** The kept path of an entry that is only reported (a skip), not given. */
  spelling(lower: string, display: string, name: string): string {
    const key = fold(lower);
    this.named.set(key, name);
    return this.path(key, depth(display) === depth(key) ? display : undefined);
  }

  /** The change for a deleted entry: the spelling does not matter (deletions compare case-insensitively
   *  downstream), but the kept one is the one shown. */
  delete(lower: string, display: string): Change {
    const key = fold(lower);
    const path = this.path(key, depth(display) === depth(key) ? display : undefined);
    this.deleted.add(key);
    for (const map of [this.given, this.named, this.guessed])
      for (const k of [...map.keys()]) if (k === key || k.startsWith(key + '/')) map.delete(k);
    return { kind: 'delete', path };
  }

  /** The spelling under which the previous snapshot holds `key`, when the state still holds it. */
  private previousPath(key: string, id: string | undefined): string | undefined {
    if (!this.incremental || !this.previous || !id) return undefined;
    const e = this.previous.byId(id);
    return e && fold(e.path) === key && !this.deletedBetween(key, '') ? e.path : undefined;
  }

  /** Whether this round deleted `key` or a folder above it, below `stop`. */
  private deletedBetween(key: string, stop: string): boolean {
    for (let k = key; k.length > stop.length; k = parentOf(k)) if (this.deleted.has(k)) return true;
    return false;
  }

  /** The path for `key`: its own name under the kept path of its parent. */
  private path(key: string, display: string | undefined): string {
    if (key === '') return '';
    let own = this.named.get(key) ?? this.guessed.get(key) ?? this.dirs().get(key);
    if (own === undefined) {
      own = display === undefined ? key.slice(key.lastIndexOf('/') + 1) : lastOf(display);
      this.guessed.set(key, own);
    }
    const above = this.path(parentOf(key), display === undefined ? undefined : parentOf(display));
    return above === '' ? own : `${above}/${own}`;
  }

  /** The kept spelling of an entry of the previous snapshot: its folders as the snapshot names them. */
  private spell(e: RemoteEntry): string {
    const dirs = this.dirs();
    const parts = e.path.split('/');
    let key = '';
    return parts
      .map((part, i) => {
        key = key === '' ? fold(part) : `${key}/${fold(part)}`;
        return i < parts.length - 1 || e.type === 'dir' ? (dirs.get(key) ?? part) : part;
      })
      .join('/');
  }

  /** fold(path) → own name of every folder of the previous snapshot, and of every folder above one
   *  (those above a configured folder are no entries). The first spelling met is kept. */
  private dirs(): Map<string, string> {
    if (this.prevDirs) return this.prevDirs;
    const dirs = new Map<string, string>();
    if (this.previous) {
      const paths: string[] = [];
      for (const e of this.previous.below('')) {
        if (e.type !== 'dir') continue;
        const key = fold(e.path);
        if (!dirs.has(key)) dirs.set(key, lastOf(e.path));
        paths.push(e.path);
      }
      for (const p of paths) {
        for (let d = parentOf(p); d !== '' && !dirs.has(fold(d)); d = parentOf(d))
          dirs.set(fold(d), lastOf(d));
      }
    }
    this.prevDirs = dirs;
    return dirs;
  }
}

function fold(path: string): string {
  return path.normalize('NFC').toLowerCase();
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function lastOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function depth(path: string): number {
  return path.split('/').length;
}
