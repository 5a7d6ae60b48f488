import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp, type Dirent } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { SyncguardError, isSyncguardError, throwIfAborted } from '../errors.js';
import { joinUnder, showPath } from '../paths.js';
import {
  checkDigest,
  checkKey,
  checkListPrefix,
  checkPutOptions,
  chunksOf,
  discardBody,
  emptyStream,
  normalisePrefix,
  rangeWithin,
} from './_util.js';
import type {
  GetOptions,
  ObjectInfo,
  PrepareOptions,
  PrepareReport,
  PutOptions,
  Store,
  StoreFeatures,
} from './types.js';

const TMP = '.tmp-';

/**
 * The store layout on a local disk or NAS: one file per key below `root/prefix`.
 *
 * put writes a temp file (`.tmp-…`) in the target folder, fsyncs it, makes it read-only for its owner
 * only (0400) and hard-links it into place: link() fails when the name exists, so a concurrent writer is never
 * clobbered, and the file appears whole or not at all. The folder is fsynced after the link.
 *
 * A file system cannot enforce Object Lock (whoever can write the folder can delete its files), so
 * features.objectLock is false and retention is not recorded: a sidecar would promise a protection
 * that does not exist. Protection here comes from the read-only mode and from keeping the disk
 * offline or on a NAS with its own snapshots.
 *
 * Backups are as private as their source: objects are 0400 and the folders syncguard makes 0700
 * (a 0600 key must not sit world-readable in the store). A store folder made by an older version
 * (0755, objects 0444) is not changed behind the user's back: `init` says how to tighten it.
 */
export class FsStore implements Store {
  readonly features: StoreFeatures = { objectLock: false, versioned: false };
  readonly description: string;
  /** The folder keys are relative to. */
  readonly base: string;

  constructor(root: string, prefix = '') {
    const p = normalisePrefix(prefix);
    this.base = p === '' ? resolve(root) : joinUnder(root, p.slice(0, -1));
    this.description = `folder ${this.base}`;
  }

  async prepare(opts: PrepareOptions): Promise<PrepareReport> {
    const notes: string[] = [];
    let created = false;
    const st = await fsp.stat(this.base).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw this.fsError(e, 'check', this.base);
    });
    if (st && !st.isDirectory())
      throw new SyncguardError(
        'STORE_ERROR',
        `${this.base} is not a folder: point the store's path at a folder`,
      );
    if (!st) {
      if (!opts.create)
        throw new SyncguardError(
          'NOT_FOUND',
          `the store folder ${this.base} does not exist: run \`syncguard init\` to create it`,
        );
      await fsp.mkdir(this.base, { recursive: true, mode: 0o700 }).catch((e) => {
        throw this.fsError(e, 'create', this.base);
      });
      created = true;
      notes.push(`created the folder ${this.base}`);
    } else {
      notes.push(`the folder ${this.base} exists`);
    }
    await fsp.access(this.base, fsc.W_OK | fsc.X_OK).catch((e) => {
      throw new SyncguardError(
        'STORE_ERROR',
        `the store folder ${this.base} is not writable (${(e as NodeJS.ErrnoException).code}): fix its permissions`,
      );
    });
    notes.push('it is writable');
    if (st && (st.mode & 0o077) !== 0)
      notes.push(
        `the folder can be read by others (mode ${(st.mode & 0o777).toString(8)}): \`chmod -R go-rwx ${this.base}\` keeps the backups as private as their sources`,
      );
    notes.push(
      'a folder has no Object Lock: files are written once and made read-only, but anyone who can write the folder can delete them',
    );
    return { created, objectLock: 'off', versioning: 'off', notes };
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    try {
      checkKey(key);
      checkPutOptions(opts);
      if (key.split('/').some((s) => s.startsWith(TMP)))
        throw new SyncguardError(
          'UNSAFE_PATH',
          `refused store key ${showPath(key)}: names starting with "${TMP}" are the store's temp files`,
        );
      throwIfAborted(opts.signal);
    } catch (e) {
      discardBody(body);
      throw e;
    }
    const file = this.path(key);
    if (await this.exists(file)) {
      discardBody(body);
      throw this.conflict(key);
    }
    const dir = dirname(file);
    const tmp = join(dir, `${TMP}${randomBytes(8).toString('hex')}`);
    let fh: fsp.FileHandle | undefined;
    try {
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 }).catch((e) => {
        throw this.fsError(e, 'create', dir);
      });
      fh = await fsp.open(tmp, 'wx', 0o600).catch((e) => {
        throw this.fsError(e, 'write', tmp);
      });
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of chunksOf(body, opts.signal)) {
        hash.update(chunk);
        size += chunk.length;
        await fh.write(chunk).catch((e) => {
          throw this.fsError(e, 'write', tmp);
        });
      }
      checkDigest(key, hash.digest('hex'), size, opts, this.description);
      await fh.sync().catch((e) => {
        throw this.fsError(e, 'write', tmp);
      });
      await fh.close();
      fh = undefined;
      await fsp.chmod(tmp, 0o400);
      await this.linkNoClobber(tmp, file, key);
      await this.syncDir(dir);
    } finally {
      discardBody(body);
      await fh?.close().catch(() => {});
      await fsp.unlink(tmp).catch(() => {});
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    checkKey(key);
    throwIfAborted(opts.signal);
    const file = this.path(key);
    const fh = await fsp.open(file, 'r').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'EISDIR' || e.code === 'ENOTDIR') throw this.notFound(key);
      throw this.fsError(e, 'read', file);
    });
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw this.notFound(key);
      const { start, end } = rangeWithin(key, st.size, opts);
      if (end === start) {
        await fh.close();
        return emptyStream();
      }
      return fh.createReadStream({ start, end: end - 1, autoClose: true, signal: opts.signal });
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key);
    const st = await fsp.stat(this.path(key)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
      throw this.fsError(e, 'read', this.path(key));
    });
    return st?.isFile() ? { key, size: st.size } : undefined;
  }

  /** Walks the folders, a level at a time, in the byte order of the keys they hold (a folder sorts
   *  as its name plus '/', so "a-b" comes before "a/…" as it does in S3). */
  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    checkListPrefix(prefix);
    const startDir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    yield* this.walk(startDir, prefix, signal);
  }

  private async *walk(dir: string, prefix: string, signal?: AbortSignal): AsyncGenerator<ObjectInfo> {
    throwIfAborted(signal);
    const abs = dir === '' ? this.base : join(this.base, ...dir.split('/'));
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(abs, { withFileTypes: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.fsError(e, 'list', abs);
    }
    const items = entries
      .filter((d) => !d.name.startsWith(TMP) && (d.isFile() || d.isDirectory()))
      .map((d) => ({ key: dir === '' ? d.name : `${dir}/${d.name}`, dirent: d }))
      .map((x) => ({ ...x, sortKey: Buffer.from(x.dirent.isDirectory() ? x.key + '/' : x.key) }))
      .sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
    for (const { key, dirent } of items) {
      if (dirent.isDirectory()) {
        const asDir = key + '/';
        if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) yield* this.walk(key, prefix, signal);
      } else if (key.startsWith(prefix)) {
        const st = await fsp.stat(join(abs, dirent.name)).catch(() => undefined);
        if (st) yield { key, size: st.size };
      }
    }
  }

  /** Retention cannot be enforced on a folder (see the class comment); the key must exist. */
  async extendRetention(key: string, _until: Date): Promise<void> {
    if (!(await this.head(key))) throw this.notFound(key);
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    const file = this.path(key);
    await fsp.unlink(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return;
      throw this.fsError(e, 'delete', file);
    });
  }

  private path(key: string): string {
    return joinUnder(this.base, key);
  }

  private async exists(file: string): Promise<boolean> {
    return fsp.lstat(file).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return false;
        throw this.fsError(e, 'read', file);
      },
    );
  }

  private async linkNoClobber(tmp: string, file: string, key: string): Promise<void> {
    try {
      await fsp.link(tmp, file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw this.conflict(key);
      // Some NAS mounts (SMB/CIFS, FAT/exFAT, some FUSE file systems) have no hard links. rename()
      // replaces an existing file, so check first: the window is tiny, and content-addressed keys
      // hold the same bytes whoever wins.
      if (
        code === 'EPERM' ||
        code === 'ENOTSUP' ||
        code === 'EOPNOTSUPP' ||
        code === 'ENOSYS' ||
        code === 'EMLINK'
      ) {
        if (await this.exists(file)) throw this.conflict(key);
        await fsp.rename(tmp, file).catch((err) => {
          throw this.fsError(err, 'write', file);
        });
        return;
      }
      throw this.fsError(e, 'write', file);
    }
  }

  /** Makes the new name durable. Some file systems cannot fsync a folder; that is not an error. */
  private async syncDir(dir: string): Promise<void> {
    const fh = await fsp.open(dir, 'r').catch(() => undefined);
    if (!fh) return;
    try {
      await fh.sync();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (
        code !== 'EINVAL' &&
        code !== 'EISDIR' &&
        code !== 'ENOTSUP' &&
        code !== 'EPERM' &&
        code !== 'EBADF'
      )
        throw this.fsError(e, 'write', dir);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  private conflict(key: string): SyncguardError {
    return new SyncguardError(
      'STORE_CONFLICT',
      `${showPath(key)} exists already in ${this.description}: objects are written once`,
    );
  }

  private notFound(key: string): SyncguardError {
    return new SyncguardError('NOT_FOUND', `${showPath(key)} does not exist in ${this.description}`);
  }

  private fsError(e: unknown, action: string, path: string): SyncguardError {
    if (isSyncguardError(e)) return e;
    const code = (e as NodeJS.ErrnoException).code ?? 'unknown';
    const what = `cannot ${action} ${showPath(path)} (${code})`;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      return new SyncguardError(
        'STORE_ERROR',
        `${what}: check that the store folder is mounted writable and its permissions let syncguard write`,
        { cause: e },
      );
    }
    if (code === 'ENOSPC' || code === 'EDQUOT')
      return new SyncguardError('STORE_ERROR', `${what}: the disk is full; free space or move the store`, {
        cause: e,
      });
    // A NAS that dropped off the network: the next attempt may work.
    if (
      code === 'EIO' ||
      code === 'ESTALE' ||
      code === 'ETIMEDOUT' ||
      code === 'EHOSTDOWN' ||
      code === 'EHOSTUNREACH' ||
      code === 'ENOTCONN'
    ) {
      return new SyncguardError('STORE_UNAVAILABLE', `${what}: is the disk or NAS connected?`, { cause: e });
    }
    return new SyncguardError('STORE_ERROR', what, { cause: e });
  }
}
