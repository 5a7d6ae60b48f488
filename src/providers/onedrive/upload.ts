import type { Readable } from 'node:stream';
import { SyncguardError, throwIfAborted } from '../../errors.js';
import { assertSafePath, showPath } from '../../paths.js';
import type { UploadOptions } from '../types.js';
import type { DriveItemJson, GraphApi } from './api.js';
import { HttpError } from './classify.js';
import { QuickXorHash, quickXorHash } from './quickxor.js';

/** Graph's simple upload is safe up to 4 MiB everywhere (older docs say 4 MB, newer 250 MB). */
export const SIMPLE_UPLOAD_MAX = 4 * 1024 * 1024;
/** Upload session fragments must be multiples of 320 KiB (except the last) and below 60 MiB;
 *  32 × 320 KiB = 10 MiB (driveitem-createuploadsession). */
export const FRAGMENT = 32 * 320 * 1024;

export interface WriteContext {
  api: GraphApi;
  driveId: string;
  rootId: string;
}

/** Reads a stream in pieces of a given size; at most one piece is held. */
class ChunkReader {
  private readonly it: AsyncIterator<unknown>;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private ended = false;

  constructor(body: Readable) {
    this.it = body[Symbol.asyncIterator]();
  }

  /** `n` bytes, fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    while (this.pendingLength < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      this.pending.push(b);
      this.pendingLength += b.length;
    }
    const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    const out = all.subarray(0, n);
    const rest = all.subarray(out.length);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingLength = rest.length;
    return out;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

function firstExpected(ranges: unknown): number | undefined {
  const r: unknown = Array.isArray(ranges) ? ranges[0] : undefined;
  const m = typeof r === 'string' ? /^(\d+)-/.exec(r) : null;
  return m ? Number(m[1]) : undefined;
}

/** Restore back into OneDrive: folders, existence checks, simple uploads and upload sessions. */
export class OnedriveWriter {
  private readonly folders = new Map<string, string>();

  constructor(private readonly ctx: WriteContext) {}

  async exists(path: string, signal?: AbortSignal): Promise<boolean> {
    assertSafePath(path);
    return (await this.ctx.api.itemByPath(this.ctx.driveId, path, signal)) !== undefined;
  }

  async mkdir(path: string, signal?: AbortSignal): Promise<void> {
    if (path !== '') assertSafePath(path, 'folder');
    await this.folderId(path, signal);
  }

  /** The id of a folder, created with its parents when missing. */
  private async folderId(path: string, signal?: AbortSignal): Promise<string> {
    if (path === '') return this.ctx.rootId;
    const { api, driveId } = this.ctx;
    let parentId = this.ctx.rootId;
    let current = '';
    for (const seg of path.split('/')) {
      current = current === '' ? seg : `${current}/${seg}`;
      const key = current.toLowerCase();
      const known = this.folders.get(key);
      if (known) {
        parentId = known;
        continue;
      }
      let item: DriveItemJson | undefined = await api.itemByPath(driveId, current, signal);
      // Created by someone else between the look-up and the create: the second look-up finds it.
      if (!item)
        item =
          (await api.createFolder(driveId, parentId, seg, signal)) ??
          (await api.itemByPath(driveId, current, signal));
      if (!item)
        throw new SyncguardError(
          'PROVIDER_ERROR',
          `OneDrive neither created nor found the folder ${showPath(current)}`,
        );
      if (!item.folder)
        throw new SyncguardError(
          'EXISTS',
          `${showPath(current)} is a file in OneDrive, where a folder is needed: move it away or restore to another folder`,
        );
      this.folders.set(key, item.id);
      parentId = item.id;
    }
    return parentId;
  }

  private existsError(path: string): SyncguardError {
    return new SyncguardError(
      'EXISTS',
      `${showPath(path)} exists in OneDrive already: restore with --overwrite to replace it, or restore into another folder`,
    );
  }

  async upload(path: string, body: Readable, size: number, opts: UploadOptions): Promise<void> {
    assertSafePath(path, 'upload path');
    const { signal } = opts;
    throwIfAborted(signal);
    const { api, driveId } = this.ctx;
    const cut = path.lastIndexOf('/');
    const parent = cut < 0 ? '' : path.slice(0, cut);
    const name = path.slice(cut + 1);
    const what = `writing ${showPath(path)}`;
    const parentId = await this.folderId(parent, signal);
    if (!opts.overwrite && (await api.itemByPath(driveId, path, signal))) throw this.existsError(path);
    const conflict = opts.overwrite ? 'replace' : 'fail';
    const fsInfo = opts.modified
      ? { fileSystemInfo: { lastModifiedDateTime: opts.modified.toISOString() } }
      : {};
    const reader = new ChunkReader(body);
    try {
      // The simple upload cannot carry fileSystemInfo, and a PATCH after it makes a second version on
      // Business and SharePoint, doubling the quota used (OneDrive/onedrive-api-docs#778, #1378;
      // rclone#1716): a file with a time to keep goes through an upload session, whose item carries
      // it. Only an empty file cannot (a session takes no empty fragment): it is patched.
      if (size <= SIMPLE_UPLOAD_MAX && (!opts.modified || size === 0)) {
        const buf = await reader.read(size);
        await this.expectEnd(reader, buf.length, size, path);
        let item: DriveItemJson;
        try {
          item = await api.putContent(driveId, parentId, name, buf, conflict, what, signal);
        } catch (e) {
          if (!(e instanceof SyncguardError && e.code === 'EXISTS')) throw e;
          // A retried PUT whose first answer was lost meets the file it created itself.
          const there = await api.itemByPath(driveId, path, signal);
          if (!there || there.file?.hashes?.quickXorHash !== quickXorHash(buf) || there.size !== buf.length)
            throw this.existsError(path);
          item = there;
        }
        if (opts.modified)
          await api.patchItem(
            driveId,
            item.id,
            fsInfo,
            `setting the modified time of ${showPath(path)}`,
            signal,
          );
        return;
      }
      let session: { uploadUrl: string };
      try {
        session = await api.createUploadSession(
          driveId,
          parentId,
          name,
          { '@microsoft.graph.conflictBehavior': conflict, ...fsInfo },
          what,
          signal,
        );
      } catch (e) {
        if (e instanceof SyncguardError && e.code === 'EXISTS') throw this.existsError(path);
        throw e;
      }
      const sent = { hash: new QuickXorHash(), all: false };
      try {
        await this.sendFragments(session.uploadUrl, reader, size, path, sent, signal);
      } catch (e) {
        // The last fragment committed the file but its answer was lost: the session is gone, and
        // the fragment sent again gets 404. The file is ours when its name, size and QuickXorHash
        // say so; anything else there is someone else's.
        if (sent.all && e instanceof SyncguardError && e.code === 'NOT_FOUND') {
          const there = await api.itemByPath(driveId, path, signal, true);
          if (there?.size === size && there.file?.hashes?.quickXorHash === sent.hash.digest()) return;
          if (there) throw this.existsError(path);
        }
        // Leave no half upload behind; the session would expire by itself, but not at once.
        await api
          .plain(`cancelling the upload of ${showPath(path)}`, (http) =>
            http(session.uploadUrl, { method: 'DELETE' }),
          )
          .catch(() => undefined);
        if (e instanceof SyncguardError && e.code === 'EXISTS') throw this.existsError(path);
        throw e;
      }
    } finally {
      await reader.close();
    }
  }

  private async expectEnd(reader: ChunkReader, got: number, size: number, path: string): Promise<void> {
    const extra = got === size ? (await reader.read(1)).length : 0;
    if (got !== size || extra > 0) {
      throw new SyncguardError(
        'INTEGRITY',
        `the content given for ${showPath(path)} is ${got < size ? 'shorter' : 'longer'} than its size (${size} bytes): nothing was written`,
      );
    }
  }

  /** Sends the fragments in order, without the token (Graph may refuse one with 401). After a lost
   *  answer, the session's nextExpectedRanges says where to go on. */
  private async sendFragments(
    uploadUrl: string,
    reader: ChunkReader,
    size: number,
    path: string,
    /** The QuickXorHash of what was read so far, and whether all of it was. */
    read: { hash: QuickXorHash; all: boolean },
    signal?: AbortSignal,
  ): Promise<void> {
    const { api } = this.ctx;
    const what = `writing ${showPath(path)}`;
    let offset = 0;
    while (offset < size) {
      const want = Math.min(FRAGMENT, size - offset);
      const chunk = await reader.read(want);
      if (offset + chunk.length === size || chunk.length < want)
        await this.expectEnd(reader, offset + chunk.length, size, path);
      read.hash.update(chunk);
      read.all = offset + chunk.length === size;
      let sent = 0;
      while (sent < chunk.length) {
        const start = offset + sent;
        const piece = chunk.subarray(sent);
        const r = await api.plain(
          what,
          async (http) => {
            const res = await http(uploadUrl, {
              method: 'PUT',
              headers: { 'Content-Range': `bytes ${start}-${start + piece.length - 1}/${size}` },
              body: piece,
              signal,
            });
            if (res.status === 200 || res.status === 201) {
              await res.body?.cancel();
              return { done: true as const };
            }
            if (res.status === 202)
              return {
                next: firstExpected(
                  ((await res.json()) as { nextExpectedRanges?: unknown }).nextExpectedRanges,
                ),
              };
            if (res.status === 416) {
              // We sent this range before and lost the answer: ask where the session stands.
              await res.body?.cancel();
              const st = await http(uploadUrl, { signal });
              if (!st.ok) throw await HttpError.from(st);
              return {
                next: firstExpected(
                  ((await st.json()) as { nextExpectedRanges?: unknown }).nextExpectedRanges,
                ),
              };
            }
            throw await HttpError.from(res);
          },
          signal,
        );
        if ('done' in r) {
          if (start + piece.length !== size)
            throw new SyncguardError(
              'PROVIDER_ERROR',
              `OneDrive finished the upload of ${showPath(path)} before its last byte`,
            );
          return;
        }
        if (r.next === undefined || r.next < offset || r.next > offset + chunk.length) {
          throw new SyncguardError(
            'PROVIDER_ERROR',
            `OneDrive's upload session for ${showPath(path)} asks for byte ${r.next ?? '?'} while byte ${start} was sent: start the restore again`,
          );
        }
        sent = r.next - offset;
      }
      offset += chunk.length;
    }
    throw new SyncguardError(
      'PROVIDER_ERROR',
      `OneDrive did not finish the upload of ${showPath(path)} after its last byte`,
    );
  }
}
