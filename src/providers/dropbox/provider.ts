import { Readable } from 'node:stream';
import type { files } from 'dropbox';
import type { DropboxAccountConfig } from '../../config/schema.js';
import { SyncguardError, abortError, isSyncguardError, throwIfAborted } from '../../errors.js';
import { assertSafePath, normaliseFolder, showPath, unsafeReason } from '../../paths.js';
import { Pacer, showDuration, type PacerOptions } from '../_pacer.js';
import type { ProviderContext } from '../registry.js';
import type {
  Change,
  ChangesOptions,
  Provider,
  ProviderFeatures,
  ProviderStats,
  RemoteEntry,
  UploadOptions,
} from '../types.js';
import {
  createClient,
  downloadStream,
  dropboxFetch,
  setPathRoot,
  withSignal,
  type Client,
  type DownloadResponse,
} from './api.js';
import { classify, errorSummary, errorTag, isDropboxResponseError, isExpiredToken } from './classify.js';
import { DropboxContentHasher, dropboxContentHash } from './content-hash.js';
import { CommitBatcher } from './batch.js';
import { DropboxNames } from './names.js';

/** Session chunks: a multiple of 4 MiB, as Dropbox recommends (api-brief §1.6). */
export const SESSION_CHUNK = 8 * 1024 * 1024;
const LIST_LIMIT = 2000;
/** A download whose connection breaks is resumed with Range this many times at most. */
const MAX_RESUMES = 10;
/** Dropbox reports no time for folders. */
const FOLDER_TIME = new Date(0);

export interface DropboxProviderOptions {
  /** Retry and concurrency tuning (tests shorten the waits). */
  pacer?: PacerOptions;
}

interface ConfiguredFolder {
  /** As the API takes it: '' for the whole Dropbox, else '/Photos'. */
  api: string;
  /** The key of its cursor: the configured path, lower-cased. */
  key: string;
}

type Meta = files.FileMetadataReference | files.FolderMetadataReference | files.DeletedMetadataReference;

/** Dropbox timestamps have whole seconds: "2015-05-12T15:50:38Z". */
export function dropboxTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The configured folders, checked: no overlap (Dropbox compares case-insensitively), '/' alone. */
export function configuredFolders(
  account: Pick<DropboxAccountConfig, 'name' | 'folders'>,
): ConfiguredFolder[] {
  const list = account.folders.map((f) => {
    try {
      return normaliseFolder(f);
    } catch (e) {
      throw new SyncguardError(
        'CONFIG',
        `accounts "${account.name}" folders: ${(e as Error).message}: write a Dropbox folder such as "/Photos"`,
      );
    }
  });
  if (list.length === 0 || list.includes('')) {
    if (list.length > 1)
      throw new SyncguardError(
        'CONFIG',
        `accounts "${account.name}" folders: "/" (the whole Dropbox) already holds every other folder listed: keep only one of them`,
      );
    return [{ api: '', key: '' }];
  }
  const lower = list.map((f) => f.toLowerCase());
  for (let i = 0; i < list.length; i++) {
    for (let j = 0; j < list.length; j++) {
      if (i !== j && (lower[i] === lower[j] ? i > j : lower[i].startsWith(lower[j] + '/'))) {
        throw new SyncguardError(
          'CONFIG',
          `accounts "${account.name}" folders: "/${list[i]}" lies inside "/${list[j]}": keep only the outer one`,
        );
      }
    }
  }
  return list.map((f, i) => ({ api: '/' + f, key: '/' + lower[i] }));
}

interface SavedCursor {
  v: 1;
  /** Which root the cursors belong to: a cursor is only valid under the path root it was made in. */
  root: string;
  /** Configured folder (lower-cased) → list_folder cursor. */
  folders: Record<string, string>;
}

/**
 * A Dropbox account (or some of its folders) as a Provider. Lists with files/list_folder and keeps one
 * list_folder cursor per configured folder; reads with a streamed files/download checked against
 * content_hash; writes back with files/upload or an upload session. Every call goes through one
 * Pacer and one classify().
 */
export class DropboxProvider implements Provider {
  readonly features: ProviderFeatures = {
    deltaListing: true,
    nativeHash: 'dropbox',
    canUpload: true,
    local: false,
    caseInsensitive: true,
  };
  private readonly client: Client;
  private readonly pacer: Pacer;
  private readonly folders: ConfiguredFolder[];
  private rootKey: string;
  private rootReady?: Promise<void>;
  private readonly secrets: string[];
  private readonly batcher: CommitBatcher;
  private uploading = 0;

  constructor(
    private readonly account: DropboxAccountConfig,
    private readonly ctx: ProviderContext,
    refreshToken: string,
    opts: DropboxProviderOptions = {},
  ) {
    this.folders = configuredFolders(account);
    const base = ctx.fetch ?? globalThis.fetch;
    this.client = createClient({
      appKey: account.appKey,
      appSecret: account.appSecret,
      refreshToken,
      fetch: dropboxFetch(base, account.endpoint),
      selectUser: account.selectUser,
    });
    this.secrets = [refreshToken, ...(account.appSecret ? [account.appSecret] : [])];
    const root = account.root;
    if (typeof root === 'object') {
      setPathRoot(this.client, JSON.stringify({ '.tag': 'namespace_id', namespace_id: root.namespaceId }));
      this.rootKey = `ns:${root.namespaceId}`;
    } else {
      this.rootKey = 'home';
    }
    if (account.selectUser) this.rootKey += `|user:${account.selectUser}`;
    this.batcher = new CommitBatcher({
      finishBatch: (entries, attempts) => this.finishBatch(entries, attempts),
      committedEarlier: (path, hash) => this.committedEarlier(path, hash),
      failed: (failure, summary, label) =>
        this.classify(
          {
            name: 'DropboxResponseError',
            status: 409,
            error: { error_summary: summary + '/..', error: failure },
          },
          label,
        ),
      inProgress: () => this.uploading,
    });
    this.pacer = new Pacer({
      concurrency: Math.max(4, account.concurrency ?? 4),
      onWait: (ms, err) => {
        // A long wait is said at info level: Dropbox often asks for 300 s (rclone #1788, #3482).
        ctx.log(
          ms >= 10_000 ? 'info' : 'debug',
          `dropbox ${account.name}: retrying in ${showDuration(ms)} after ${err.code}: ${err.message}`,
        );
        const until = this.pacer.throttledUntil;
        if (err.code === 'PROVIDER_RATE_LIMITED' && until !== undefined)
          ctx.onThrottle?.(new Date(until), err.message);
      },
      ...opts.pacer,
    });
  }

  async *changes(
    cursor?: string,
    opts: ChangesOptions = {},
  ): AsyncGenerator<Change, string | undefined, undefined> {
    const signal = opts.signal;
    throwIfAborted(signal);
    await this.ready(signal);
    const saved = cursor === undefined ? undefined : this.decodeCursor(cursor);
    if (cursor !== undefined && saved === undefined) yield { kind: 'reset' };
    const next = new Map<string, string>();
    let incremental = saved !== undefined;
    const names = new DropboxNames(opts.previous, incremental);
    yield* names.mend();
    for (let resets = 0; ; resets++) {
      try {
        if (incremental) yield* this.listChanges(saved!, next, names, signal);
        else yield* this.listEverything(next, names, signal);
        break;
      } catch (e) {
        if (!isSyncguardError(e, 'CURSOR_RESET') || resets >= 3) throw e;
        this.ctx.log('info', `dropbox ${this.account.name}: ${e.message}`);
        // A team space's root may be what changed (422 invalid_root): read it again.
        await this.ready(signal, true);
        yield { kind: 'reset' };
        incremental = false;
        names.reset();
        next.clear();
      }
    }
    const out: SavedCursor = { v: 1, root: this.rootKey, folders: Object.fromEntries(next) };
    return JSON.stringify(out);
  }

  /** list_folder/continue from each folder's cursor: only what changed. */
  private async *listChanges(
    saved: Map<string, string>,
    next: Map<string, string>,
    names: DropboxNames,
    signal?: AbortSignal,
  ): AsyncGenerator<Change> {
    for (const folder of this.folders) {
      let cursor = saved.get(folder.key)!;
      const label = `listing changes in ${folder.api || 'the whole Dropbox'}`;
      for (;;) {
        throwIfAborted(signal);
        const page = await this.continueListing(cursor, label, signal);
        for (const entry of page.result.entries) yield* this.toChanges(entry, names);
        cursor = page.result.cursor;
        if (!page.result.has_more) break;
      }
      next.set(folder.key, cursor);
    }
  }

  /** list_folder of each folder, the folder itself first: everything there is. */
  private async *listEverything(
    next: Map<string, string>,
    names: DropboxNames,
    signal?: AbortSignal,
  ): AsyncGenerator<Change> {
    const dbx = this.client.dbx;
    for (const folder of this.folders) {
      const where = folder.api || 'the whole Dropbox';
      let self: string | undefined;
      if (folder.api !== '') {
        // The folder's own entry, before anything in it; this also tells "missing" from "empty".
        const meta = await this.call(
          `reading ${where}`,
          () => dbx.filesGetMetadata({ path: folder.api }),
          signal,
        ).catch((e: unknown) => {
          if (isSyncguardError(e, 'NOT_FOUND')) {
            throw new SyncguardError(
              'NOT_FOUND',
              `the folder ${showPath(folder.api)} of account "${this.account.name}" does not exist on Dropbox: check accounts[].folders`,
            );
          }
          throw e;
        });
        if (meta.result['.tag'] !== 'folder') {
          throw new SyncguardError(
            'CONFIG',
            `${showPath(folder.api)} of account "${this.account.name}" is a file on Dropbox, not a folder: check accounts[].folders`,
          );
        }
        self = meta.result.path_lower;
        yield* this.toChanges(meta.result, names);
      }
      const label = `listing ${where}`;
      let page = await this.call(
        label,
        () =>
          dbx.filesListFolder({
            path: folder.api,
            recursive: true,
            include_deleted: false,
            include_mounted_folders: true,
            include_non_downloadable_files: true,
            limit: LIST_LIMIT,
          }),
        signal,
      ).catch((e: unknown) => {
        if (isSyncguardError(e, 'NOT_FOUND'))
          throw new SyncguardError(
            'NOT_FOUND',
            `the folder ${showPath(folder.api)} of account "${this.account.name}" is gone from Dropbox: check accounts[].folders`,
          );
        throw e;
      });
      for (;;) {
        for (const entry of page.result.entries) {
          if (self !== undefined && entry.path_lower === self) continue;
          yield* this.toChanges(entry, names);
        }
        if (!page.result.has_more) break;
        throwIfAborted(signal);
        const cursor = page.result.cursor;
        page = await this.continueListing(cursor, label, signal);
      }
      next.set(folder.key, page.result.cursor);
    }
  }

  /**
   * list_folder/continue. Dropbox answers 400 (not 409 `reset`) to a cursor it does not accept any more;
   * a cursor kept in a locked manifest would then fail every night. After one retry (a passing refusal
   * goes on from the same cursor) it counts as a reset: a full listing follows.
   */
  private continueListing(cursor: string, label: string, signal?: AbortSignal) {
    let refused = 0;
    return this.call(
      label,
      async () => {
        try {
          return await this.client.dbx.filesListFolderContinue({ cursor });
        } catch (e) {
          if (!isDropboxResponseError(e) || e.status !== 400) throw e;
          const why = typeof e.error === 'string' ? e.error.slice(0, 200) : errorSummary(e);
          if (++refused >= 2)
            throw new SyncguardError(
              'CURSOR_RESET',
              `Dropbox no longer accepts the listing cursor (${label}: 400 ${this.redact(why)}): a full listing follows`,
            );
          throw new SyncguardError(
            'PROVIDER_UNAVAILABLE',
            `Dropbox refused the listing cursor (${label}); trying it once more`,
          );
        }
      },
      signal,
    );
  }

  /** What one listed entry means. Paths are built by `names` from path_lower and each entry's own
   *  name, not taken from path_display, whose casing of the folders above is best effort. */
  private *toChanges(entry: Meta, names: DropboxNames): Generator<Change> {
    const lower = entry.path_lower;
    const display = entry.path_display ?? lower;
    if (!lower || !display) {
      this.ctx.log(
        'debug',
        `dropbox ${this.account.name}: ${showPath(entry.name)} is not mounted here; left out`,
      );
      return;
    }
    const strip = (p: string) => (p.startsWith('/') ? p.slice(1) : p);
    // The engine refuses unsafe paths too; here the raw names are checked before any spelling is kept.
    const reason = unsafeReason(strip(display)) ?? unsafeReason(strip(lower));
    if (entry['.tag'] === 'deleted') {
      if (reason) {
        this.ctx.log(
          'warn',
          `dropbox ${this.account.name}: ignored the deletion of ${showPath(display)}: ${reason}`,
        );
        return;
      }
      yield names.delete(strip(lower), strip(display));
      return;
    }
    if (reason) {
      yield {
        kind: 'error',
        path: strip(display),
        message: `Dropbox named an entry that cannot be kept safely: ${reason}`,
      };
      return;
    }
    const name = entry.name || display.slice(display.lastIndexOf('/') + 1);
    if (entry['.tag'] === 'folder') {
      const dir: RemoteEntry = { path: '', type: 'dir', size: 0, modified: FOLDER_TIME, id: entry.id };
      yield* names.upsert(dir, strip(lower), strip(display), name);
      return;
    }
    if (entry.is_downloadable === false) {
      // Listed under its kept spelling; a skip takes no place in the state.
      yield {
        kind: 'skip',
        path: names.spelling(strip(lower), strip(display), name),
        reason:
          'a cloud document (Paper, Google Docs…) that Dropbox cannot download: export it to keep a copy',
      };
      return;
    }
    const e: RemoteEntry = {
      path: '',
      type: 'file',
      size: entry.size,
      modified: new Date(entry.client_modified),
      id: entry.id,
    };
    if (entry.content_hash) e.hash = { algo: 'dropbox', value: entry.content_hash };
    yield* names.upsert(e, strip(lower), strip(display), name);
  }

  async open(entry: RemoteEntry, signal?: AbortSignal): Promise<Readable> {
    if (entry.type !== 'file')
      throw new SyncguardError('INTERNAL', `open() reads files; ${showPath(entry.path)} is a folder`);
    await this.ready(signal);
    // By id when we have it: a file renamed since the listing still gives the bytes that were listed.
    const target = entry.id?.startsWith('id:') ? entry.id : '/' + entry.path;
    const label = `downloading ${showPath(entry.path)}`;
    const first = await this.call(label, () => downloadStream(this.client, target), signal);
    const expected = entry.hash?.algo === 'dropbox' ? entry.hash.value : undefined;
    const served = first.metadata.content_hash;
    if (expected && served && served !== expected) {
      await first.body.cancel().catch(() => {});
      throw new SyncguardError(
        'INTEGRITY',
        `${showPath(entry.path)} changed on Dropbox after it was listed (content_hash ${served}, listed ${expected}): the next run takes the new version`,
      );
    }
    const stream = Readable.from(this.download(entry, target, first, expected, signal), {
      objectMode: false,
    });
    if (signal) {
      const onAbort = () => stream.destroy(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  /** The bytes of a download, hashed as they pass; a broken connection is resumed with Range. */
  private async *download(
    entry: RemoteEntry,
    target: string,
    first: DownloadResponse,
    expected: string | undefined,
    signal?: AbortSignal,
  ): AsyncGenerator<Buffer> {
    const label = `downloading ${showPath(entry.path)}`;
    const hasher = new DropboxContentHasher();
    let res = first;
    let received = 0;
    let skip = 0;
    for (let resumes = 0; ;) {
      try {
        for await (const part of res.body) {
          let chunk = Buffer.from(part.buffer, part.byteOffset, part.byteLength);
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          received += chunk.length;
          hasher.update(chunk);
          yield chunk;
        }
        break;
      } catch (e) {
        const err = this.classify(e, label, signal);
        if (!err.retryable || resumes >= MAX_RESUMES) throw err;
        resumes++;
        this.ctx.log(
          'debug',
          `dropbox ${this.account.name}: ${label}: ${err.message} after ${received} bytes; resuming`,
        );
        res = await this.call(label, () => downloadStream(this.client, target, received), signal);
        if (res.metadata.rev !== first.metadata.rev) {
          await res.body.cancel().catch(() => {});
          throw new SyncguardError(
            'INTEGRITY',
            `${showPath(entry.path)} changed on Dropbox while it was being read: the next run takes the new version`,
          );
        }
        // A server that ignores Range sends everything again: drop what we have already.
        skip = res.status === 206 ? 0 : received;
      }
    }
    const size = first.metadata.size;
    if (received !== size) {
      throw new SyncguardError(
        'INTEGRITY',
        `${showPath(entry.path)}: Dropbox sent ${received} bytes, its metadata says ${size}`,
      );
    }
    const got = hasher.digest();
    for (const want of [first.metadata.content_hash, expected]) {
      if (want && want !== got) {
        throw new SyncguardError(
          'INTEGRITY',
          `the bytes read from Dropbox for ${showPath(entry.path)} do not match its content_hash (got ${got}, expected ${want}): the download was corrupted`,
        );
      }
    }
  }

  async exists(path: string, signal?: AbortSignal): Promise<boolean> {
    if (path === '') return true;
    assertSafePath(path);
    await this.ready(signal);
    try {
      await this.call(
        `looking up ${showPath(path)}`,
        () => this.client.dbx.filesGetMetadata({ path: '/' + path }),
        signal,
      );
      return true;
    } catch (e) {
      if (isSyncguardError(e, 'NOT_FOUND')) return false;
      throw e;
    }
  }

  async mkdir(path: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (path === '') return;
    assertSafePath(path);
    await this.ready(opts.signal);
    const dbx = this.client.dbx;
    try {
      await this.call(
        `creating the folder ${showPath(path)}`,
        async () => {
          try {
            await dbx.filesCreateFolderV2({ path: '/' + path, autorename: false });
          } catch (e) {
            if (errorSummary(e).startsWith('path/conflict/folder')) return;
            throw e;
          }
        },
        opts.signal,
      );
    } catch (e) {
      if (isSyncguardError(e, 'EXISTS'))
        throw new SyncguardError(
          'EXISTS',
          `cannot create the folder ${showPath(path)} on Dropbox: a file of that name is in the way`,
        );
      throw e;
    }
  }

  async upload(path: string, body: Readable, size: number, opts: UploadOptions): Promise<void> {
    assertSafePath(path, 'upload path');
    const signal = opts.signal;
    const commit: files.CommitInfo = {
      path: '/' + path,
      // add + autorename:false + strict_conflict refuses any existing file (409 path/conflict), even
      // one with the same bytes; a retry after a lost answer checks whether the file is ours.
      mode: opts.overwrite ? { '.tag': 'overwrite' } : { '.tag': 'add' },
      autorename: false,
      mute: true,
      strict_conflict: true,
    };
    if (opts.modified) commit.client_modified = dropboxTime(opts.modified);
    const label = `uploading ${showPath(path)}`;
    this.uploading++;
    try {
      await this.ready(signal);
      // Do not send gigabytes only to learn at the end that the file is there already.
      if (!opts.overwrite && size > SESSION_CHUNK && (await this.exists(path, signal)))
        throw new SyncguardError('EXISTS', '');
      const { sessionId, hash } = await this.sendSession(body, size, label, signal);
      // The commit goes into a batch (upload_session/finish_batch_v2) with the others in progress.
      const meta = await this.batcher.commit(
        { cursor: { session_id: sessionId, offset: size }, commit },
        hash,
        label,
      );
      checkUploaded(meta, hash, label);
    } catch (e) {
      if (isSyncguardError(e, 'EXISTS')) {
        throw new SyncguardError(
          'EXISTS',
          `${showPath(path)} already exists on Dropbox: restore with --overwrite to replace it, or restore elsewhere`,
        );
      }
      throw e;
    } finally {
      this.uploading--;
      this.batcher.poke();
      body.destroy();
    }
  }

  /**
   * The content into a new upload session, in SESSION_CHUNK pieces, each checked by Dropbox against its
   * content_hash; the last piece closes the session (finish_batch_v2 commits closed sessions only).
   */
  private async sendSession(
    body: Readable,
    size: number,
    label: string,
    signal?: AbortSignal,
  ): Promise<{ sessionId: string; hash: string }> {
    const dbx = this.client.dbx;
    const whole = new DropboxContentHasher();
    const chunks = chunksOf(body, SESSION_CHUNK)[Symbol.asyncIterator]();
    let sessionId: string | undefined;
    let offset = 0;
    let current = await chunks.next();
    for (;;) {
      const chunk = current.done ? Buffer.alloc(0) : current.value;
      if (offset + chunk.length > size)
        throw new SyncguardError(
          'INTEGRITY',
          `${label}: the content is longer than the ${size} bytes announced`,
        );
      whole.update(chunk);
      const following = current.done ? current : await chunks.next();
      const last = following.done === true;
      if (last && offset + chunk.length !== size)
        throw new SyncguardError(
          'INTEGRITY',
          `${label}: the content has ${offset + chunk.length} bytes, ${size} were announced`,
        );
      if (sessionId === undefined) {
        sessionId = (
          await this.call(
            label,
            () =>
              dbx.filesUploadSessionStart({
                close: last,
                contents: chunk,
                content_hash: dropboxContentHash(chunk),
              }),
            signal,
          )
        ).result.session_id;
      } else {
        await this.appendSession(sessionId, offset, chunk, last, label, signal);
      }
      offset += chunk.length;
      if (last) return { sessionId, hash: whole.digest() };
      current = following;
    }
  }

  /** append_v2; after a lost response the retry meets incorrect_offset, which says how much arrived. */
  private async appendSession(
    sessionId: string,
    offset: number,
    chunk: Buffer,
    close: boolean,
    label: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const dbx = this.client.dbx;
    await this.call(
      label,
      async () => {
        let from = offset;
        for (let step = 0; ; step++) {
          const part = chunk.subarray(from - offset);
          try {
            await dbx.filesUploadSessionAppendV2({
              cursor: { session_id: sessionId, offset: from },
              close,
              contents: part,
              content_hash: dropboxContentHash(part),
            });
            return;
          } catch (e) {
            const correct = correctOffset(e);
            if (correct === undefined || step > 0) throw e;
            // All of it arrived (and a closing append closed the session with it): done.
            if (correct === offset + chunk.length) return;
            if (correct < from || correct > offset + chunk.length) throw lostSession(label, correct, from);
            from = correct;
          }
        }
      },
      signal,
    );
  }

  /** One finish_batch_v2 through the pacer; a lost answer is retried like any other call. */
  private async finishBatch(
    entries: files.UploadSessionFinishArg[],
    attempts: { count: number },
  ): Promise<files.UploadSessionFinishBatchResultEntry[]> {
    const res = await this.call(`committing ${entries.length} uploaded file(s)`, () => {
      attempts.count++;
      return this.client.dbx.filesUploadSessionFinishBatchV2({ entries });
    });
    return res.result.entries;
  }

  /** The file at `path` when it holds exactly `hash`: what an earlier attempt whose answer was lost wrote. */
  private async committedEarlier(path: string, hash: string): Promise<files.FileMetadata | undefined> {
    const meta = (await this.client.dbx.filesGetMetadata({ path })).result;
    return meta['.tag'] === 'file' && meta.content_hash === hash ? meta : undefined;
  }

  stats(): ProviderStats {
    return { throttledMs: this.pacer.throttledMs, retries: this.pacer.retries };
  }

  async close(): Promise<void> {
    // Dropbox refresh tokens do not rotate: nothing to save back.
  }

  /** Resolves the team space root once (`root: team`), or again after Dropbox said it changed. */
  private ready(signal?: AbortSignal, again = false): Promise<void> {
    if (this.account.root !== 'team') return Promise.resolve();
    if (again) this.rootReady = undefined;
    this.rootReady ??= (async () => {
      const dbx = this.client.dbx;
      setPathRoot(this.client, undefined);
      const me = await this.call(
        'reading the account (for its team space)',
        () => dbx.usersGetCurrentAccount(),
        signal,
      );
      const rootId = me.result.root_info.root_namespace_id;
      setPathRoot(this.client, JSON.stringify({ '.tag': 'root', root: rootId }));
      this.rootKey = `root:${rootId}` + (this.account.selectUser ? `|user:${this.account.selectUser}` : '');
    })().catch((e: unknown) => {
      this.rootReady = undefined;
      throw e;
    });
    return this.rootReady;
  }

  private decodeCursor(cursor: string): Map<string, string> | undefined {
    let saved: Partial<SavedCursor>;
    try {
      saved = JSON.parse(cursor) as Partial<SavedCursor>;
    } catch {
      saved = {};
    }
    const why =
      saved.v !== 1 || typeof saved.folders !== 'object' || saved.folders === null
        ? 'the stored cursor is not a Dropbox cursor of this version'
        : saved.root !== this.rootKey
          ? "the account's root changed since the last snapshot"
          : Object.keys(saved.folders).sort().join('\0') !==
              this.folders
                .map((f) => f.key)
                .sort()
                .join('\0')
            ? "the account's folders changed since the last snapshot"
            : undefined;
    if (why) {
      this.ctx.log('info', `dropbox ${this.account.name}: ${why}; listing everything`);
      return undefined;
    }
    return new Map(Object.entries(saved.folders!));
  }

  /**
   * One Dropbox call through the pacer. The token is renewed before the call when near its end (the
   * SDK's own check), and once more when Dropbox ends it early with 401 expired_access_token: the SDK
   * never reacts to a 401 (api-brief §1.7). Refreshes are single-flight (api.ts).
   */
  private call<T>(what: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const { auth } = this.client;
    return this.pacer.call(
      () =>
        withSignal(signal, async () => {
          try {
            await auth.checkAndRefreshAccessToken();
            const used = auth.getAccessToken();
            try {
              return await fn();
            } catch (e) {
              if (!isExpiredToken(e)) throw e;
              if (auth.getAccessToken() === used) await auth.refreshAccessToken();
              return await fn();
            }
          } catch (e) {
            throw this.classify(e, what, signal);
          }
        }),
      signal,
    );
  }

  private classify(err: unknown, what: string, signal?: AbortSignal): SyncguardError {
    return classify(err, { account: this.account.name, what, signal, redact: (s) => this.redact(s) });
  }

  private redact(text: string): string {
    let out = text;
    const token = this.client.auth.getAccessToken();
    for (const secret of [...this.secrets, ...(token ? [token] : [])]) {
      if (secret.length >= 6) out = out.split(secret).join('[redacted]');
    }
    return out
      .replace(/((?:refresh_token|access_token|client_secret|code_verifier|code)=)[^&\s]+/g, '$1[redacted]')
      .replace(/Bearer\s+\S+/g, 'Bearer [redacted]');
  }
}

function correctOffset(err: unknown): number | undefined {
  if (!isDropboxResponseError(err) || err.status !== 409) return undefined;
  const e = (err.error as { error?: Record<string, unknown> })?.error;
  const lookup = (errorTag(err) === 'lookup_failed' ? e?.lookup_failed : e) as
    { '.tag'?: string; correct_offset?: unknown } | undefined;
  return lookup?.['.tag'] === 'incorrect_offset' && typeof lookup.correct_offset === 'number'
    ? lookup.correct_offset
    : undefined;
}

function lostSession(label: string, has: number, sent: number): SyncguardError {
  return new SyncguardError(
    'PROVIDER_ERROR',
    `${label}: Dropbox's upload session holds ${has} bytes where ${sent} were expected: upload the file again`,
  );
}

function checkUploaded(meta: files.FileMetadata, hash: string, label: string): void {
  if (meta.content_hash && meta.content_hash !== hash) {
    throw new SyncguardError(
      'INTEGRITY',
      `${label}: Dropbox stored content with hash ${meta.content_hash}, we sent ${hash}`,
    );
  }
}

/** The body cut into chunks of exactly `size` bytes (the last one shorter). */
async function* chunksOf(body: Readable, size: number): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(size);
  let filled = 0;
  for await (const part of body) {
    let data = typeof part === 'string' ? Buffer.from(part) : (part as Buffer);
    while (data.length > 0) {
      const n = Math.min(size - filled, data.length);
      data.copy(buf, filled, 0, n);
      filled += n;
      data = data.subarray(n);
      if (filled === size) {
        yield buf;
        buf = Buffer.allocUnsafe(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield buf.subarray(0, filled);
}
