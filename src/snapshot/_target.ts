/**
 * The folders of a restore target on disk, held so that no other process can redirect a write out of
 * the target while the restore runs (issue 8, point 5: a folder checked once and cached, then swapped
 * for a symbolic link, sent files outside the target).
 *
 * Node has no openat(). Two ways to get its effect:
 * - Pinned (Linux, and wherever /proc/self/fd/N leads to the open folder itself): each folder is
 *   opened with O_DIRECTORY | O_NOFOLLOW relative to its parent's descriptor, through
 *   `/proc/self/fd/<parent>/<name>`, and every file is created, linked or renamed through
 *   `/proc/self/fd/<folder>/<name>`. The kernel resolves `/proc/self/fd/N` to the open folder, not to
 *   a path, so swapping any folder on the way for a link, or renaming it, changes nothing: there is no
 *   window at all. A folder moved away while held is still written to where it now is; only someone
 *   who may write there can have moved it, so nothing reaches a place they could not write anyway.
 * - Checked (macOS and other systems without /proc): right before each call that names a path, every
 *   folder from the target down is lstat'ed and compared (device and inode) with what was recorded
 *   when it was made or first checked; a link or any change is refused. The window left is the time
 *   between that check and the one system call that follows it (a few microseconds, never a wait for
 *   the store or the network); it is the best that can be done without openat.
 * Both refuse a symbolic link anywhere below the target, even one that leads back inside it.
 *
 * Descriptors are cached (at most MAX_OPEN folders at once, least recently used closed first); a folder
 * opened again is checked against its recorded device and inode.
 */
import { constants as fsc, promises as fsp, type Stats } from 'node:fs';
import { join } from 'node:path';
import { SyncguardError } from '../errors.js';
import { showPath } from '../paths.js';

const O_FOLDER = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;
const MAX_OPEN = 64;

interface Folder {
  dev: number;
  ino: number;
  /** Pinned mode: the open folder, while cached. */
  handle?: fsp.FileHandle;
  /** Calls using the handle right now: it is not closed under them. */
  users: number;
}

/** Names a file in a folder of the target, for the one system call made right after. */
export type At = (name: string) => Promise<string>;

export class TargetFolders {
  private readonly folders = new Map<string, Folder>();
  /** Pinned mode: the folders with an open handle, least recently used first. */
  private readonly open = new Map<string, Folder>();
  private readonly opening = new Map<string, Promise<Folder>>();
  /** Folders this restore created (they were 0700 until the end). */
  readonly made = new Set<string>();

  private constructor(
    readonly root: string,
    readonly pinned: boolean,
    rootFolder: Folder,
  ) {
    this.folders.set('', rootFolder);
  }

  /** Opens an existing target folder. `pin: false` uses the checked mode even where pinning works. */
  static async open(root: string, opts: { pin?: boolean } = {}): Promise<TargetFolders> {
    // The target itself may be reached through links the user chose (/home → /data/home): followed once.
    const handle = await fsp.open(root, fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      const st = await handle.stat();
      let pinned = false;
      if (opts.pin !== false) {
        const via = await fsp.stat(`/proc/self/fd/${handle.fd}`).catch(() => undefined);
        pinned = via !== undefined && via.dev === st.dev && via.ino === st.ino;
      }
      const folder: Folder = { dev: st.dev, ino: st.ino, users: 1 };
      if (pinned) folder.handle = handle;
      else await handle.close();
      return new TargetFolders(root, pinned, folder);
    } catch (e) {
      await handle.close().catch(() => {});
      throw e;
    }
  }

  /** Makes the folder `rel` ('' is the target) and every folder above it (0700 while the restore
   *  runs), or checks those that exist. Throws UNSAFE_PATH for a link, EXISTS for a file. */
  async ensure(rel: string): Promise<void> {
    if (this.pinned) this.release(await this.acquire(rel));
    else await this.checkedEnsure(rel);
  }

  /** Runs `fn` with a way to name files in the folder `rel` (made, 0700, when it does not exist). */
  async within<T>(rel: string, fn: (at: At) => Promise<T>): Promise<T> {
    if (!this.pinned) {
      if (!this.folders.has(rel)) await this.checkedEnsure(rel);
      return fn(async (name) => join(await this.verifiedPath(rel), name));
    }
    const f = await this.acquire(rel);
    try {
      const fd = f.handle!.fd;
      return await fn((name) => Promise.resolve(`/proc/self/fd/${fd}/${name}`));
    } finally {
      this.release(f);
    }
  }

  /** Gives a folder its final mode (and modified time), through a handle opened without following links. */
  async finish(rel: string, mode: number, mtime?: Date): Promise<void> {
    if (this.pinned) {
      const f = await this.acquire(rel);
      try {
        await f.handle!.chmod(mode).catch(noModes);
        if (mtime) await f.handle!.utimes(mtime, mtime);
      } finally {
        this.release(f);
      }
      return;
    }
    const path = await this.verifiedPath(rel);
    const handle = await fsp.open(path, rel === '' ? fsc.O_RDONLY | fsc.O_DIRECTORY : O_FOLDER).catch((e) => {
      throw this.refusal(rel, e);
    });
    try {
      this.expectSame(rel, this.folders.get(rel)!, await handle.stat());
      await handle.chmod(mode).catch(noModes);
      if (mtime) await handle.utimes(mtime, mtime);
    } finally {
      await handle.close();
    }
  }

  /** The error for a held folder that was deleted (a file created in it fails with ENOENT). */
  gone(rel: string): SyncguardError {
    return new SyncguardError(
      'UNSAFE_PATH',
      `${rel === '' ? 'the target' : showPath(rel)} in ${this.root} was removed or replaced while the restore ran; nothing more is written there`,
    );
  }

  /** Whether the folder `rel` was made or checked by this restore (a refused one was not). */
  has(rel: string): boolean {
    return this.folders.has(rel);
  }

  async close(): Promise<void> {
    const root = this.folders.get('')!;
    for (const f of [root, ...this.open.values()]) {
      await f.handle?.close().catch(() => {});
      f.handle = undefined;
    }
    this.open.clear();
  }

  private async acquire(rel: string): Promise<Folder> {
    for (;;) {
      const known = this.folders.get(rel);
      if (known?.handle) {
        known.users++;
        if (rel !== '') {
          this.open.delete(rel);
          this.open.set(rel, known);
        }
        return known;
      }
      let pending = this.opening.get(rel);
      if (!pending) {
        pending = this.openFolder(rel).finally(() => this.opening.delete(rel));
        this.opening.set(rel, pending);
      }
      // Looked up again: another call may have closed it to make room since it was opened.
      await pending;
    }
  }

  private release(f: Folder): void {
    f.users--;
  }

  /** Pinned mode: opens `rel` below its (held) parent, making it when it does not exist. */
  private async openFolder(rel: string): Promise<Folder> {
    const parent = await this.acquire(parentOf(rel));
    let handle: fsp.FileHandle;
    try {
      const path = `/proc/self/fd/${parent.handle!.fd}/${nameOf(rel)}`;
      handle = await fsp.open(path, O_FOLDER).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw this.refusal(rel, e, await fsp.lstat(path).catch(() => undefined));
        await this.mkdir(path, rel);
        return fsp.open(path, O_FOLDER).catch(async (e2) => {
          throw this.refusal(rel, e2, await fsp.lstat(path).catch(() => undefined));
        });
      });
    } finally {
      this.release(parent);
    }
    try {
      const st = await handle.stat();
      const known = this.folders.get(rel);
      if (known) this.expectSame(rel, known, st);
      const f: Folder = known ?? { dev: st.dev, ino: st.ino, users: 0 };
      await this.evict();
      f.handle = handle;
      this.folders.set(rel, f);
      this.open.set(rel, f);
      return f;
    } catch (e) {
      await handle.close().catch(() => {});
      throw e;
    }
  }

  private async evict(): Promise<void> {
    for (const [rel, f] of this.open) {
      if (this.open.size < MAX_OPEN) return;
      if (f.users > 0) continue;
      this.open.delete(rel);
      const h = f.handle;
      f.handle = undefined;
      await h?.close().catch(() => {});
    }
  }

  /** Checked mode: makes or checks each level from the top, recording what it found. */
  private async checkedEnsure(rel: string): Promise<void> {
    if (this.folders.has(rel)) {
      await this.verifiedPath(rel);
      return;
    }
    const parent = parentOf(rel);
    await this.checkedEnsure(parent);
    const path = join(await this.verifiedPath(parent), nameOf(rel));
    let st = await fsp.lstat(path).catch(() => undefined);
    if (!st) {
      await this.mkdir(path, rel);
      st = await fsp.lstat(path);
    }
    if (!st.isDirectory()) throw this.refusal(rel, undefined, st);
    if (!this.folders.has(rel)) this.folders.set(rel, { dev: st.dev, ino: st.ino, users: 0 });
  }

  /** Checked mode: the folder's path, once every folder from the target down is what was recorded. */
  private async verifiedPath(rel: string): Promise<string> {
    const rootSt = await fsp.stat(this.root);
    this.expectSame('', this.folders.get('')!, rootSt);
    let path = this.root;
    let sofar = '';
    for (const name of rel === '' ? [] : rel.split('/')) {
      sofar = sofar === '' ? name : `${sofar}/${name}`;
      path = join(path, name);
      const known = this.folders.get(sofar);
      if (!known)
        throw new SyncguardError('INTERNAL', `${showPath(sofar)} was written to before it was checked`);
      const st = await fsp.lstat(path).catch((e: NodeJS.ErrnoException) => {
        throw this.refusal(sofar, e);
      });
      if (!st.isDirectory()) throw this.refusal(sofar, undefined, st);
      this.expectSame(sofar, known, st);
    }
    return path;
  }

  private async mkdir(path: string, rel: string): Promise<void> {
    try {
      await fsp.mkdir(path, 0o700);
      this.made.add(rel);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }

  private expectSame(rel: string, known: Folder, st: Stats): void {
    if (st.dev !== known.dev || st.ino !== known.ino)
      throw new SyncguardError(
        'UNSAFE_PATH',
        `${rel === '' ? this.root : showPath(rel)} was replaced while the restore ran; nothing more is written there`,
      );
  }

  private refusal(rel: string, e?: unknown, st?: Stats): unknown {
    if (st?.isSymbolicLink())
      return new SyncguardError(
        'UNSAFE_PATH',
        `${showPath(rel)} in ${this.root} is a symbolic link: a restore never writes through one (it could lead outside the target); refused`,
      );
    if (st && !st.isDirectory())
      return new SyncguardError('EXISTS', `${showPath(rel)} exists in ${this.root} and is not a folder`);
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return this.gone(rel);
    return e;
  }
}

/** FAT, exFAT and many SMB and FUSE file systems keep no permissions: a mode is then not an error. */
function noModes(e: NodeJS.ErrnoException): void {
  if (!['ENOSYS', 'ENOTSUP', 'EOPNOTSUPP', 'EPERM'].includes(e.code ?? '')) throw e;
}

export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

export function nameOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}
