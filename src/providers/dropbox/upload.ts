import type { Readable } from 'node:stream';
import type { files } from 'dropbox';
import { SyncguardError, isSyncguardError } from '../../errors.js';
import { assertSafePath, showPath } from '../../paths.js';
import type { UploadOptions } from '../types.js';
import { CommitBatcher } from './batch.js';
import type { DropboxCalls } from './calls.js';
import { errorSummary, errorTag, isDropboxResponseError } from './classify.js';
import { DropboxContentHasher, dropboxContentHash } from './content-hash.js';
import type { PathRoot } from './roots.js';

/** Session chunks: a multiple of 4 MiB, as Dropbox recommends (api-brief §1.6). */
export const SESSION_CHUNK = 8 * 1024 * 1024;

/** Dropbox timestamps have whole seconds: "2015-05-12T15:50:38Z". */
export function dropboxTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Writes into Dropbox, for restores: folders with create_folder_v2, files through an upload session
 * committed in batches (finish_batch_v2) with the other uploads in progress, every piece checked by
 * its content_hash; and the lookups a restore makes before writing.
 */
export class DropboxWriter {
  private readonly batcher: CommitBatcher;
  private uploading = 0;

  constructor(
    private readonly calls: DropboxCalls,
    private readonly root: PathRoot,
  ) {
    this.batcher = new CommitBatcher({
      finishBatch: (entries, attempts) => this.finishBatch(entries, attempts),
      committedEarlier: (path, hash) => this.committedEarlier(path, hash),
      failed: (failure, summary, label) =>
        this.calls.classify(
          {
            name: 'DropboxResponseError',
            status: 409,
            error: { error_summary: summary + '/..', error: failure },
          },
          label,
        ),
      inProgress: () => this.uploading,
    });
  }

  async exists(path: string, signal?: AbortSignal): Promise<boolean> {
    if (path === '') return true;
    assertSafePath(path);
    await this.root.ready(signal);
    try {
      await this.calls.call(
        `looking up ${showPath(path)}`,
        () => this.calls.client.dbx.filesGetMetadata({ path: '/' + path }),
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
    await this.root.ready(opts.signal);
    const dbx = this.calls.client.dbx;
    try {
      await this.calls.call(
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
      await this.root.ready(signal);
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
    const dbx = this.calls.client.dbx;
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
          await this.calls.call(
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
    const dbx = this.calls.client.dbx;
    await this.calls.call(
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
    const res = await this.calls.call(`committing ${entries.length} uploaded file(s)`, () => {
      attempts.count++;
      return this.calls.client.dbx.filesUploadSessionFinishBatchV2({ entries });
    });
    return res.result.entries;
  }

  /** The file at `path` when it holds exactly `hash`: what an earlier attempt whose answer was lost wrote. */
  private async committedEarlier(path: string, hash: string): Promise<files.FileMetadata | undefined> {
    const meta = (await this.calls.client.dbx.filesGetMetadata({ path })).result;
    return meta['.tag'] === 'file' && meta.content_hash === hash ? meta : undefined;
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
