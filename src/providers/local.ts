import { constants, existsSync, promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { LocalAccountConfig } from '../config/schema.js';
import { SyncguardError, throwIfAborted } from '../errors.js';
import { showPath, unsafeReason } from '../paths.js';
import { expandHome } from '../util.js';
import type { ProviderContext } from './registry.js';
import type { Change, ChangesOptions, Provider, ProviderFeatures, RemoteEntry } from './types.js';

// Absent on Windows, where there are no symbolic links to refuse the same way.
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
// A file swapped for a FIFO after listing would otherwise block the open forever.
const NONBLOCK = constants.O_NONBLOCK ?? 0;
const DIRECTORY = constants.O_DIRECTORY ?? 0;
// On Linux, /proc/self/fd/<fd>/<name> is looked up from the open folder itself, as openat() would: a
// folder on the path swapped for a symbolic link cannot redirect it. Elsewhere paths are used, and each
// folder is still checked (device, inode) when it is opened.
const FD_DIR = process.platform === 'linux' && existsSync('/proc/self/fd') ? '/proc/self/fd' : undefined;
/** Bytes read at once from a large file. */
const CHUNK = 256 * 1024;

/** A folder being listed, and the folders above it, for loop detection. */
interface Folder {
  path: string;
  dev: number;
  ino: number;
  up?: Folder;
}

/**
 * Any folder on disk, such as the one a Dropbox, OneDrive, iCloud Drive or Google Drive desktop
 * client keeps in sync. Read-only: it never writes to the folder. Every run lists everything;
 * the snapshot engine skips reading files whose size, mtime, ctime, device and inode did not change.
 * open() reads only the file listed (same device and inode, not a link put in its place, same size).
 */
export class LocalProvider implements Provider {
  readonly features: ProviderFeatures = { deltaListing: false, canUpload: false, local: true };
  readonly root: string;
  private readonly followSymlinks: boolean;

  constructor(
    account: Pick<LocalAccountConfig, 'path'> & { followSymlinks?: boolean },
    ctx: Pick<ProviderContext, 'configDir'>,
  ) {
    this.root = expandHome(account.path, ctx.configDir);
    this.followSymlinks = account.followSymlinks ?? false;
  }

  async *changes(
    _cursor?: string,
    opts: ChangesOptions = {},
  ): AsyncGenerator<Change, string | undefined, undefined> {
    const signal = opts.signal;
    let rootStat: Stats;
    try {
      rootStat = await fsp.stat(this.root);
    } catch (e) {
      throw new SyncguardError(
        'NOT_FOUND',
        `the folder ${this.root} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)}): check the account's path`,
        { cause: e },
      );
    }
    if (!rootStat.isDirectory())
      throw new SyncguardError('CONFIG', `${this.root} is not a folder: check the account's path`);
    // Depth first, names in byte order, a folder before what it holds.
    const stack: Folder[] = [{ path: '', dev: rootStat.dev, ino: rootStat.ino }];
    while (stack.length > 0) {
      throwIfAborted(signal);
      const folder = stack.pop()!;
      const dir = folder.path;
      let handle: FileHandle | undefined;
      let names: string[];
      let base: string;
      try {
        // The root may itself be a link (a synced folder moved elsewhere); below it, only when asked.
        const follow = dir === '' || this.followSymlinks;
        handle = await fsp.open(
          dir === '' ? this.root : join(this.root, dir),
          constants.O_RDONLY | DIRECTORY | (follow ? 0 : NOFOLLOW),
        );
        const st = await handle.stat();
        if (!st.isDirectory() || st.dev !== folder.dev || st.ino !== folder.ino) {
          await handle.close();
          yield { kind: 'error', path: dir, message: FOLDER_REPLACED };
          continue;
        }
        base = FD_DIR ? `${FD_DIR}/${handle.fd}` : dir === '' ? this.root : join(this.root, dir);
        names = await fsp.readdir(base);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        yield {
          kind: 'error',
          path: dir,
          message:
            code === 'ELOOP' || code === 'ENOTDIR'
              ? FOLDER_REPLACED
              : `cannot list the folder: ${code ?? String(e)}`,
        };
        await handle?.close();
        continue;
      }
      names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const subdirs: Folder[] = [];
      let stats: Array<{ rel: string; st?: Stats; err?: NodeJS.ErrnoException }>;
      try {
        stats = await Promise.all(
          names.map(async (name) => {
            const rel = dir === '' ? name : `${dir}/${name}`;
            try {
              const st = await (this.followSymlinks ? fsp.stat : fsp.lstat)(join(base, name));
              return { rel, st };
            } catch (e) {
              return { rel, err: e as NodeJS.ErrnoException };
            }
          }),
        );
      } finally {
        await handle.close();
      }
      for (const { rel, st, err } of stats) {
        // Checked before the stat result: a name decoded with U+FFFD names no file, and its stat fails
        // with ENOENT, which would pass it off as a file that vanished.
        if (Buffer.from(rel).toString() !== rel || rel.includes('\uFFFD')) {
          yield {
            kind: 'error',
            path: rel,
            message: 'the name is not valid UTF-8 and cannot be kept byte for byte',
          };
          continue;
        }
        if (err) {
          // Vanished between readdir and stat: it is simply not part of this snapshot.
          if (err.code !== 'ENOENT')
            yield { kind: 'error', path: rel, message: `cannot read: ${err.code ?? err.message}` };
          continue;
        }
        const reason = unsafeReason(rel);
        if (reason) {
          yield { kind: 'error', path: rel, message: reason };
          continue;
        }
        if (st!.isDirectory()) {
          // A link (or a bind mount) back to a folder above would be walked forever.
          let above = folder as Folder | undefined;
          while (above && (above.dev !== st!.dev || above.ino !== st!.ino)) above = above.up;
          if (above) {
            yield {
              kind: 'skip',
              path: rel,
              reason: `loop: it leads back to ${above.path === '' ? "the account's folder" : `the folder ${showPath(above.path)}`}, which is taken once`,
            };
            continue;
          }
          yield {
            kind: 'upsert',
            entry: { path: rel, type: 'dir', size: 0, modified: st!.mtime, mode: st!.mode & 0o777 },
          };
          subdirs.push({ path: rel, dev: st!.dev, ino: st!.ino, up: folder });
        } else if (st!.isFile()) {
          yield {
            kind: 'upsert',
            entry: {
              path: rel,
              type: 'file',
              size: st!.size,
              modified: st!.mtime,
              dev: st!.dev,
              ino: st!.ino,
              ctime: st!.ctime,
              mode: st!.mode & 0o777,
            },
          };
        } else if (st!.isSymbolicLink()) {
          yield {
            kind: 'skip',
            path: rel,
            reason: 'symbolic link (set followSymlinks: true to take what it points to)',
          };
        } else {
          yield { kind: 'skip', path: rel, reason: 'not a regular file or folder' };
        }
      }
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
    }
    return undefined;
  }

  /** The file listed and nothing else: a link put in its place is not followed (unless followSymlinks),
   *  and another file, or the same one with another size, fails with PROVIDER_ERROR (read again on
   *  the next run). Reads exactly the size listed; a file that grows or shrinks meanwhile fails too. */
  async open(entry: RemoteEntry, signal?: AbortSignal): Promise<Readable> {
    const full = join(this.root, ...entry.path.split('/'));
    let handle: FileHandle;
    try {
      handle = await fsp.open(full, constants.O_RDONLY | NONBLOCK | (this.followSymlinks ? 0 : NOFOLLOW));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SyncguardError(
        code === 'ENOENT' ? 'NOT_FOUND' : 'PROVIDER_ERROR',
        code === 'ELOOP'
          ? `${showPath(entry.path)} was replaced by a symbolic link after it was listed; the link is not followed, and the file is read again on the next run`
          : `cannot open ${showPath(entry.path)}: ${code ?? String(e)}`,
        { cause: e },
      );
    }
    let st: Stats;
    try {
      st = await handle.stat();
      const why = !st.isFile()
        ? 'was replaced by something that is not a regular file after it was listed'
        : (entry.dev !== undefined && st.dev !== entry.dev) ||
            (entry.ino !== undefined && st.ino !== entry.ino)
          ? 'was replaced by another file after it was listed'
          : st.size !== entry.size
            ? `changed while being read (${entry.size} bytes when listed, ${st.size} when opened)`
            : undefined;
      if (why)
        throw new SyncguardError(
          'PROVIDER_ERROR',
          `${showPath(entry.path)} ${why}; it is read again on the next run`,
        );
    } catch (e) {
      await handle.close();
      throw e;
    }
    return new ListedFileStream(handle, entry.path, st, signal);
  }
}

const FOLDER_REPLACED =
  'the folder was replaced after it was listed (by a symbolic link or another folder); it is not read through, and is listed again on the next run';

/**
 * Exactly the bytes of a file as it was opened: reads up to its size plus one byte, so growth is seen
 * at once, and a file read in more than one go is checked again at the end (size, mtime, ctime), so a
 * rewrite during the read fails instead of storing a mix of two versions. A file read in one go needs no
 * second check: the snapshot records the listing's times, and a later write changes ctime, which the
 * next run sees.
 */
class ListedFileStream extends Readable {
  private pos = 0;
  private reads = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly opened: Stats,
    signal?: AbortSignal,
  ) {
    super();
    if (signal) {
      const onAbort = () => this.destroy(signal.reason as Error);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        this.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
  }

  override _read(): void {
    this.next().catch((e: unknown) => this.destroy(e as Error));
  }

  private async next(): Promise<void> {
    const size = this.opened.size;
    const want = Math.min(CHUNK, size - this.pos + 1);
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await this.handle.read(buf, 0, want, this.pos);
    this.reads++;
    this.pos += bytesRead;
    if (this.pos > size || (bytesRead < want && this.pos < size)) throw this.changed();
    if (bytesRead < want) {
      if (this.reads > 1) {
        const st = await this.handle.stat();
        if (st.size !== size || st.mtimeMs !== this.opened.mtimeMs || st.ctimeMs !== this.opened.ctimeMs)
          throw this.changed();
      }
      if (bytesRead > 0) this.push(buf.subarray(0, bytesRead));
      this.push(null);
      return;
    }
    this.push(buf.subarray(0, bytesRead));
  }

  private changed(): SyncguardError {
    return new SyncguardError(
      'PROVIDER_ERROR',
      `${showPath(this.path)} changed while being read; it is read again on the next run`,
    );
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.handle.close().then(
      () => cb(err),
      () => cb(err),
    );
  }
}
