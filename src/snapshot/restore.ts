/**
 * Restore: the last snapshot at or before a date, to a folder on disk or back into the provider.
 * Every content is verified against its SHA-256 before it takes a file's name; nothing is written
 * over an existing file unless asked; nothing is written outside the target, whatever the manifest says.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { SyncguardError, abortError, describeError, isSyncguardError, throwIfAborted } from '../errors.js';
import { comparePaths, isUnder, joinUnder, normaliseFolder, showPath } from '../paths.js';
import type { Provider } from '../providers/types.js';
import {
  blobVersionHolds,
  checkBuffer,
  olderVersionThatHolds,
  openContent,
  readPackSpanChecked,
} from './content.js';
import type { FailedFile, ManifestEntry } from './manifest.js';
import { type Repository, type SnapshotInfo } from './repository.js';
import { forEachLimit } from '../util.js';
import { TargetFolders, nameOf, parentOf, type At } from './_target.js';

export type RestoreTarget =
  | { kind: 'dir'; dir: string }
  /** Back into the account: under `folder` ('' puts every file where it was). */
  | { kind: 'provider'; provider: Provider; folder: string };

export interface RestoreOptions {
  repo: Repository;
  account: string;
  at?: string | Date;
  /** A folder or file in the snapshot; default: everything. */
  path?: string;
  to: RestoreTarget;
  overwrite?: boolean;
  dryRun?: boolean;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (p: { filesDone: number; files: number; bytesDone: number; bytes: number }) => void;
  /** For tests: play a system without /proc/self/fd (`pinFolders: false`), a disk without hard links
   *  (`link` failing), or another process acting between a folder's check and a write (`beforeWrite`). */
  testing?: {
    pinFolders?: boolean;
    link?: (from: string, to: string) => Promise<void>;
    beforeWrite?: (path: string) => Promise<void> | void;
  };
}

export interface RestoreResult {
  snapshot: SnapshotInfo;
  /** Where the files went: a folder on disk, or a folder in the account ('' for in place). */
  target: string;
  files: number;
  dirs: number;
  bytes: number;
  /** Existing files that were (or, with dryRun, would be) replaced. */
  overwritten: number;
  /** Files already in the target with the snapshot's content (a rerun of an interrupted restore): left as they are. */
  skipped: number;
  failed: FailedFile[];
  dryRun: boolean;
}

export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const { repo, signal } = opts;
  const snapshot = await repo.findSnapshot(opts.account, opts.at, signal);
  const { entries, failed } = await selectEntries(repo, snapshot, opts.path, signal);
  const files = entries.filter((e) => e.type === 'file');
  const dirs = entries.filter((e) => e.type === 'dir');
  const bytes = files.reduce((n, e) => n + e.size, 0);
  const result: RestoreResult = {
    snapshot,
    target: '',
    files: files.length,
    dirs: dirs.length,
    bytes,
    overwritten: 0,
    skipped: 0,
    failed,
    dryRun: !!opts.dryRun,
  };
  const progress = { filesDone: 0, files: files.length, bytesDone: 0, bytes };
  const done = (e: ManifestEntry) => {
    progress.filesDone++;
    progress.bytesDone += e.size;
    opts.onProgress?.({ ...progress });
  };
  const fail = (e: ManifestEntry, err: unknown) => {
    // Whatever fails once the restore is stopped failed because it was stopped.
    if (signal?.aborted) throw abortError(signal);
    if (
      isSyncguardError(err) &&
      ['ABORTED', 'STORE_AUTH', 'PROVIDER_AUTH', 'STORE_UNAVAILABLE'].includes(err.code)
    )
      throw err;
    failed.push({ path: e.path, error: describeError(err) });
  };
  try {
    if (opts.to.kind === 'dir') await toDisk(opts, opts.to.dir, entries, result, done, fail);
    else await toProvider(opts, opts.to.provider, opts.to.folder, entries, result, done, fail);
  } catch (err) {
    if (signal?.aborted || isSyncguardError(err, 'ABORTED')) throw interrupted(opts, result, progress, err);
    throw err;
  }
  return result;
}

/** What a stopped restore says: how far it got, and how to finish it. */
function interrupted(
  opts: RestoreOptions,
  result: RestoreResult,
  progress: { filesDone: number; files: number },
  cause: unknown,
): SyncguardError {
  const id = result.snapshot.id;
  const how =
    opts.to.kind === 'dir'
      ? `every file restored so far is complete. To finish it, run the same restore again (files already there with the right content are checked and skipped): syncguard restore ${opts.account} --at ${id}${opts.path ? ` --path ${shellWord(opts.path)}` : ''} --to ${shellWord(result.target)}${opts.overwrite ? ' --overwrite' : ''}`
      : 'to finish it, run the same restore again with --overwrite (the files already uploaded are uploaded again)';
  return new SyncguardError(
    'ABORTED',
    `the restore of snapshot ${id} of "${opts.account}" to ${result.target === '' ? 'the account' : showPath(result.target)} was interrupted after ${progress.filesDone} of ${progress.files} files; ${how}`,
    { cause },
  );
}

/** A word as a POSIX shell reads it back: plain when it is safe, else in single quotes. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** The entries at or below `path`, with the unsafe ones of a tampered manifest set aside as failed. */
export async function selectEntries(
  repo: Repository,
  snapshot: SnapshotInfo,
  path: string | undefined,
  signal?: AbortSignal,
): Promise<{ entries: ManifestEntry[]; failed: FailedFile[] }> {
  const want = normaliseFolder(path);
  const m = await repo.readManifest(snapshot.key, signal);
  const entries: ManifestEntry[] = [];
  const loose: ManifestEntry[] = [];
  const fold = (p: string) => p.normalize('NFC').toLowerCase();
  for await (const e of m.entries) {
    if (isUnder(e.path, want)) entries.push(e);
    else if (entries.length === 0 && isUnder(fold(e.path), fold(want))) loose.push(e);
  }
  if (entries.length === 0 && want !== '') {
    if (loose.length > 0) return { entries: loose, failed: m.unsafe };
    throw new SyncguardError(
      'NOT_FOUND',
      `the snapshot ${snapshot.id} of "${snapshot.account}" holds nothing at ${showPath(want)}: see \`syncguard ls ${snapshot.account} --at ${snapshot.id}\``,
    );
  }
  return { entries, failed: [...m.unsafe] };
}

/** A restore's temp files: the prefix and 12 hex digits. A rerun removes those an interrupted run left. */
const TEMP_PREFIX = '.syncguard-restore-';
const TEMP = /^\.syncguard-restore-[0-9a-f]{12}$/;
const CREATE = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
/** What link() fails with on disks without hard links: FAT and exFAT (EPERM), many SMB shares and FUSE
 *  file systems (ENOTSUP, EOPNOTSUPP, ENOSYS). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

async function toDisk(
  opts: RestoreOptions,
  dir: string,
  entries: ManifestEntry[],
  result: RestoreResult,
  done: (e: ManifestEntry) => void,
  fail: (e: ManifestEntry, err: unknown) => void,
): Promise<void> {
  const { repo, signal } = opts;
  const root = resolve(dir);
  result.target = root;
  const rootStat = await fsp.stat(root).catch(() => undefined);
  if (rootStat && !rootStat.isDirectory()) {
    throw new SyncguardError('EXISTS', `${root} exists and is not a folder; nothing was written`);
  }
  const safe: ManifestEntry[] = [];
  for (const e of entries) {
    try {
      joinUnder(root, e.path);
      safe.push(e);
    } catch (err) {
      fail(e, err);
    }
  }
  // Plan first: every destination is checked before anything is written. A file already there with the
  // snapshot's content (size, then SHA-256) is what an interrupted restore wrote: it is skipped. A new
  // or empty target holds nothing, and costs no look-up per file.
  const present = new Set<ManifestEntry>();
  const conflicts: string[] = [];
  if (rootStat && !(await isEmptyFolder(root))) {
    await forEachLimit(safe, opts.concurrency ?? 4, async (e) => {
      throwIfAborted(signal);
      const d = joinUnder(root, e.path);
      const st = await fsp.lstat(d).catch(() => undefined);
      if (!st) return;
      if (e.type === 'dir') {
        if (!st.isDirectory()) conflicts.push(e.path);
      } else if (st.isFile() && st.size === e.size && (await sha256OfFile(d)) === e.sha256) {
        present.add(e);
      } else {
        conflicts.push(e.path);
      }
    });
    conflicts.sort(comparePaths);
  }
  if (conflicts.length > 0 && !opts.overwrite) {
    const list = conflicts.slice(0, 5).map(showPath).join(', ');
    throw new SyncguardError(
      'EXISTS',
      `${conflicts.length} file(s) already exist in ${root} with other content (${list}${conflicts.length > 5 ? ', …' : ''}); nothing was written. Restore into an empty folder, or add --overwrite to replace them`,
    );
  }
  result.overwritten = conflicts.length;
  result.skipped = present.size;
  if (opts.dryRun) return;
  for (const e of present) done(e);

  // A target syncguard creates is 0700 until the restore ends, as is every folder it makes in it.
  let madeRoot = false;
  if (!rootStat) {
    await fsp.mkdir(dirname(root), { recursive: true });
    madeRoot = await fsp.mkdir(root, 0o700).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
        return false;
      },
    );
  }
  const folders = await TargetFolders.open(root, { pin: opts.testing?.pinFolders });
  const umaskDefault = 0o777 & ~process.umask();
  try {
    const dirs = safe.filter((e) => e.type === 'dir');
    for (const e of dirs) await folders.ensure(e.path).catch((err) => fail(e, err));
    const files = safe.filter((e) => e.type === 'file' && !present.has(e));
    if (rootStat) await removeLeftovers(folders, dirs, files, safe);

    let hardLinks = true;
    const link = opts.testing?.link ?? ((from: string, to: string) => fsp.link(from, to));
    const write = (e: ManifestEntry, body: Readable | Buffer) =>
      folders.within(parentOf(e.path), async (at) => {
        await opts.testing?.beforeWrite?.(e.path);
        const name = nameOf(e.path);
        const mode = e.mode === undefined ? 0o666 : e.mode & 0o777;
        const mtime = new Date(e.mtime);
        if (!hardLinks && !opts.overwrite) {
          // No hard links on this disk: the final name is created exclusively (never over a file) and
          // written in place; a failure removes it. Only a crash can leave it short: a rerun then refuses it.
          await writeFileExclusive(await at(name), e, mode, mtime, (fh) => writeBody(fh, body, signal), at);
          return;
        }
        const tmp = `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`;
        try {
          const fh = await fsp.open(await at(tmp), CREATE, mode).catch((err: NodeJS.ErrnoException) => {
            throw err.code === 'ENOENT' ? folders.gone(parentOf(e.path)) : err;
          });
          try {
            await writeBody(fh, body, signal);
            await fh.utimes(mtime, mtime);
          } finally {
            await fh.close();
          }
          if (opts.overwrite) {
            await fsp.rename(await at(tmp), await at(name));
            return;
          }
          // Renaming would replace a file that appeared since the plan was made: link fails instead.
          try {
            await link(await at(tmp), await at(name));
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code ?? '';
            if (code === 'EEXIST') throw appeared(e);
            if (!NO_HARD_LINKS.has(code)) throw err;
            hardLinks = false;
            await writeFileExclusive(await at(name), e, mode, mtime, (fh) => copyInto(fh, at, tmp), at);
          }
          await fsp.unlink(await at(tmp));
        } catch (err) {
          await at(tmp)
            .then((p) => fsp.unlink(p))
            .catch(() => {});
          throw err;
        }
      });

    await restoreContents(repo, files, opts.concurrency ?? 4, signal, write, done, fail);

    // Folder modes and times last, deepest first, once nothing more is written into them; only on
    // folders made or checked above (a refused one has failed already), through handles that do not
    // follow links. Folders the snapshot does not name (the parents of --path, the target) get the
    // umask's default.
    for (const e of [...dirs].reverse()) {
      if (!folders.has(e.path)) continue;
      const mode = e.mode === undefined ? umaskDefault : e.mode & 0o777;
      await folders.finish(e.path, mode, new Date(e.mtime)).catch((err) => fail(e, err));
    }
    const named = new Set(dirs.map((e) => e.path));
    for (const rel of folders.made) if (!named.has(rel)) await folders.finish(rel, umaskDefault);
    if (madeRoot) await folders.finish('', umaskDefault);
  } finally {
    await folders.close();
  }
}

async function isEmptyFolder(dir: string): Promise<boolean> {
  const d = await fsp.opendir(dir);
  try {
    return (await d.read()) === null;
  } finally {
    await d.close();
  }
}

async function sha256OfFile(file: string): Promise<string | undefined> {
  const fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const hash = createHash('sha256');
    for await (const chunk of fh.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
    return hash.digest('hex');
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}

/** Removes the temp files an interrupted restore left in the folders this one writes to. */
async function removeLeftovers(
  folders: TargetFolders,
  dirs: ManifestEntry[],
  files: ManifestEntry[],
  all: ManifestEntry[],
): Promise<void> {
  const names = new Set(all.map((e) => e.path));
  const rels = new Set(['', ...dirs.map((e) => e.path), ...files.map((e) => parentOf(e.path))]);
  for (const rel of rels) {
    if (!folders.has(rel)) continue;
    await folders
      .within(rel, async (at) => {
        for (const name of await fsp.readdir(await at('.'))) {
          if (TEMP.test(name) && !names.has(rel === '' ? name : `${rel}/${name}`))
            await fsp.unlink(await at(name)).catch(() => {});
        }
      })
      .catch(() => {});
  }
}

async function writeBody(fh: fsp.FileHandle, body: Readable | Buffer, signal?: AbortSignal): Promise<void> {
  if (Buffer.isBuffer(body)) return writeAll(fh, body);
  for await (const chunk of body) {
    throwIfAborted(signal);
    await writeAll(fh, chunk as Buffer);
  }
}

async function writeAll(fh: fsp.FileHandle, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length;) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
}

async function copyInto(fh: fsp.FileHandle, at: At, tmp: string): Promise<void> {
  const src = await fsp.open(await at(tmp), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    for await (const chunk of src.createReadStream({ autoClose: false })) await writeAll(fh, chunk as Buffer);
  } finally {
    await src.close();
  }
}

/** Creates `file` (failing if anything has the name), fills it, and removes it again if that fails. */
async function writeFileExclusive(
  file: string,
  e: ManifestEntry,
  mode: number,
  mtime: Date,
  fill: (fh: fsp.FileHandle) => Promise<void>,
  at: At,
): Promise<void> {
  const fh = await fsp.open(file, CREATE, mode).catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'EEXIST' ? appeared(e) : err;
  });
  try {
    await fill(fh);
    await fh.utimes(mtime, mtime);
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => {});
    await at(nameOf(e.path))
      .then((p) => fsp.unlink(p))
      .catch(() => {});
    throw err;
  }
}

function appeared(e: ManifestEntry): SyncguardError {
  return new SyncguardError(
    'EXISTS',
    `${showPath(e.path)} appeared in the target while the restore ran; it was left as it is`,
  );
}

/** Streams every file's content to `write`: packed contents one pack span at a time, blobs one by one. */
async function restoreContents(
  repo: Repository,
  files: ManifestEntry[],
  concurrency: number,
  signal: AbortSignal | undefined,
  write: (e: ManifestEntry, body: Readable | Buffer) => Promise<void>,
  done: (e: ManifestEntry) => void,
  fail: (e: ManifestEntry, err: unknown) => void,
): Promise<void> {
  const byPack = new Map<string, ManifestEntry[]>();
  const blobs: ManifestEntry[] = [];
  for (const e of files) {
    if (e.offset === undefined) blobs.push(e);
    else (byPack.get(e.object!) ?? byPack.set(e.object!, []).get(e.object!)!).push(e);
  }
  await forEachLimit(byPack, 2, async ([object, group]) => {
    throwIfAborted(signal);
    let span: { start: number; data: Buffer };
    try {
      // A newer version planted over the pack: the oldest version that holds every content is used.
      span = await readPackSpanChecked(repo.store, object, group, repo.log, signal);
    } catch (err) {
      for (const e of group) fail(e, err);
      return;
    }
    await forEachLimit(group, concurrency, async (e) => {
      try {
        throwIfAborted(signal);
        const content = span.data.subarray(e.offset! - span.start, e.offset! - span.start + e.size);
        checkBuffer(content, e.sha256!, showPath(e.path));
        await write(e, content);
        done(e);
      } catch (err) {
        fail(e, err);
      }
    });
  });
  await forEachLimit(blobs, concurrency, async (e) => {
    throwIfAborted(signal);
    try {
      try {
        await write(e, await openContent(repo.store, e, signal));
      } catch (err) {
        if (!isSyncguardError(err, 'INTEGRITY')) throw err;
        // A newer version planted over the blob: the oldest version with the right content is used.
        const older = await olderVersionThatHolds(
          repo.store,
          e.object!,
          (vid) => blobVersionHolds(repo.store, e.object!, e.sha256!, e.size, vid, signal),
          repo.log,
          signal,
        );
        if (!older) throw err;
        await write(e, await openContent(repo.store, e, signal, older.versionId));
      }
      done(e);
    } catch (err) {
      fail(e, err);
    }
  });
}

async function toProvider(
  opts: RestoreOptions,
  provider: Provider,
  folder: string,
  entries: ManifestEntry[],
  result: RestoreResult,
  done: (e: ManifestEntry) => void,
  fail: (e: ManifestEntry, err: unknown) => void,
): Promise<void> {
  const { repo, signal } = opts;
  if (!provider.features.canUpload || !provider.upload || !provider.exists) {
    throw new SyncguardError(
      'USAGE',
      `the ${opts.account} account's provider cannot take files back; restore to a folder with --to <dir>`,
    );
  }
  const base = normaliseFolder(folder);
  result.target = base;
  const where = (e: ManifestEntry) => (base ? `${base}/${e.path}` : e.path);
  const conflicts: string[] = [];
  // Checked with --overwrite too, so that the result says how many files were replaced. Under a
  // fresh "Restored <date>" folder nothing can exist yet: one call says so.
  const baseExists = base === '' ? true : await provider.exists(base, signal);
  if (baseExists) {
    await forEachLimit(
      entries.filter((e) => e.type === 'file'),
      opts.concurrency ?? 4,
      async (e) => {
        if (await provider.exists!(where(e), signal)) conflicts.push(where(e));
      },
    );
  }
  if (conflicts.length > 0 && !opts.overwrite) {
    const list = conflicts.slice(0, 5).map(showPath).join(', ');
    throw new SyncguardError(
      'EXISTS',
      `${conflicts.length} file(s) already exist in the account (${list}${conflicts.length > 5 ? ', …' : ''}); nothing was written. Restore under another folder, or add --overwrite to replace them`,
    );
  }
  result.overwritten = conflicts.length;
  if (opts.dryRun) return;
  if (provider.mkdir) {
    if (base) await provider.mkdir(base, { signal });
    for (const e of entries)
      if (e.type === 'dir') await provider.mkdir(where(e), { signal }).catch((err) => fail(e, err));
  }
  const files = entries.filter((e) => e.type === 'file');
  await restoreContents(
    repo,
    files,
    opts.concurrency ?? 4,
    signal,
    async (e, body) => {
      const stream = Buffer.isBuffer(body) ? Readable.from([body]) : body;
      await provider.upload!(where(e), stream, e.size, {
        overwrite: !!opts.overwrite,
        modified: new Date(e.mtime),
        signal,
      });
    },
    done,
    fail,
  );
}
