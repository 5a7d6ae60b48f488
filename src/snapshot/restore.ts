/**
 * Restore: the last snapshot at or before a date, to a folder on disk or back into the provider.
 * Every content is verified against its SHA-256 before it takes a file's name; nothing is written
 * over an existing file unless asked; nothing is written outside the target, whatever the manifest says.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SyncguardError, describeError, isSyncguardError, throwIfAborted } from '../errors.js';
import { isUnder, joinUnder, normaliseFolder, showPath } from '../paths.js';
import type { Provider } from '../providers/types.js';
import { checkBuffer, openContent, readPackSpan } from './content.js';
import type { FailedFile, ManifestEntry } from './manifest.js';
import { type Repository, type SnapshotInfo } from './repository.js';
import { forEachLimit } from '../util.js';

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
    if (
      isSyncguardError(err) &&
      ['ABORTED', 'STORE_AUTH', 'PROVIDER_AUTH', 'STORE_UNAVAILABLE'].includes(err.code)
    )
      throw err;
    failed.push({ path: e.path, error: describeError(err) });
  };
  if (opts.to.kind === 'dir') await toDisk(opts, opts.to.dir, entries, result, done, fail);
  else await toProvider(opts, opts.to.provider, opts.to.folder, entries, result, done, fail);
  return result;
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
  // Plan first: every destination is checked before anything is written.
  const dest = new Map<ManifestEntry, string>();
  const conflicts: string[] = [];
  for (const e of entries) {
    let d: string;
    try {
      d = joinUnder(root, e.path);
    } catch (err) {
      fail(e, err);
      continue;
    }
    dest.set(e, d);
    const st = await fsp.lstat(d).catch(() => undefined);
    if (!st) continue;
    if (e.type === 'dir' ? !st.isDirectory() : true) conflicts.push(e.path);
  }
  const rootStat = await fsp.stat(root).catch(() => undefined);
  if (rootStat && !rootStat.isDirectory()) {
    throw new SyncguardError('EXISTS', `${root} exists and is not a folder; nothing was written`);
  }
  if (conflicts.length > 0 && !opts.overwrite) {
    const list = conflicts.slice(0, 5).map(showPath).join(', ');
    throw new SyncguardError(
      'EXISTS',
      `${conflicts.length} file(s) already exist in ${root} (${list}${conflicts.length > 5 ? ', …' : ''}); nothing was written. Restore into an empty folder, or add --overwrite to replace them`,
    );
  }
  result.overwritten = conflicts.length;
  if (opts.dryRun) return;

  await fsp.mkdir(root, { recursive: true });
  const real = await fsp.realpath(root);
  const made = new Set<string>();
  const ensureDir = async (d: string): Promise<void> => {
    if (d === root || made.has(d)) return;
    await ensureDir(dirname(d));
    // One level at a time, looking before creating: a folder in the target may be a symbolic link
    // planted to lead out of it, and mkdir -p would create folders at its far end. Refuse to go through it.
    let st = await fsp.lstat(d).catch(() => undefined);
    if (!st) {
      await fsp.mkdir(d).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      st = await fsp.lstat(d);
    }
    if (st.isSymbolicLink()) {
      const r = await fsp.realpath(d);
      if (r !== real && !r.startsWith(real + sep))
        throw new SyncguardError(
          'UNSAFE_PATH',
          `${showPath(d)} leads outside ${root} (through a symbolic link); refused`,
        );
    } else if (!st.isDirectory()) {
      throw new SyncguardError('EXISTS', `${showPath(d)} exists and is not a folder`);
    }
    made.add(d);
  };
  for (const e of entries)
    if (e.type === 'dir' && dest.has(e)) await ensureDir(dest.get(e)!).catch((err) => fail(e, err));

  const write = async (e: ManifestEntry, body: Readable | Buffer) => {
    const d = dest.get(e)!;
    await ensureDir(dirname(d));
    const tmp = `${dirname(d)}${sep}.syncguard-restore-${randomBytes(6).toString('hex')}`;
    try {
      if (Buffer.isBuffer(body)) await fsp.writeFile(tmp, body, { flag: 'wx', mode: 0o644 });
      else await pipeline(body, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }), { signal });
      const t = new Date(e.mtime);
      await fsp.utimes(tmp, t, t);
      if (!opts.overwrite) {
        // Renaming would replace a file that appeared since the plan was made: link fails instead.
        await fsp.link(tmp, d);
        await fsp.unlink(tmp);
      } else {
        await fsp.rename(tmp, d);
      }
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  };

  const files = entries.filter((e) => e.type === 'file' && dest.has(e));
  await restoreContents(repo, files, opts.concurrency ?? 4, signal, write, done, fail);

  // Folder times last, deepest first, once nothing more is written into them; only on folders made or
  // checked above (a refused one has failed already), and never through a link (lutimes).
  const dirEntries = entries
    .filter((e) => e.type === 'dir' && dest.has(e) && made.has(dest.get(e)!))
    .reverse();
  for (const e of dirEntries) {
    const t = new Date(e.mtime);
    await fsp.lutimes(dest.get(e)!, t, t).catch((err) => fail(e, err));
  }
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
      span = await readPackSpan(repo.store, object, group, signal);
    } catch (err) {
      for (const e of group) fail(e, err);
      return;
    }
    await forEachLimit(group, concurrency, async (e) => {
      try {
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
      await write(e, await openContent(repo.store, e, signal));
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
