import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { SyncguardError, abortError, isSyncguardError, throwIfAborted } from '../../errors.js';
import type { Log } from '../../log.js';
import { showPath } from '../../paths.js';
import type { RemoteEntry } from '../types.js';
import type { GraphApi } from './api.js';
import { HttpError, classify } from './classify.js';
import { QuickXorHash } from './quickxor.js';

/** A cut download resumes where it stopped; it gives up after this many cuts without progress. */
const MAX_CUTS_WITHOUT_PROGRESS = 5;
const MAX_CUTS = 50;

export interface DownloadContext {
  api: GraphApi;
  account: string;
  driveId: string;
  log: Log;
  /** The SHA-256 (hex) Graph reported for an item, where it did (OneDrive Personal until 2023). */
  sha256Of(id: string): string | undefined;
  /** Files and contents already warned about (item id + downloaded QuickXorHash), so that a file is
   *  warned about once per content, not once per read. */
  warned: Set<string>;
}

/**
 * A file's bytes as a stream: GET /content answers 302 to a pre-authenticated URL, fetched without
 * the token. A connection cut in the middle resumes with a Range request, so the consumer sees every
 * byte once.
 *
 * The bytes are checked against the listing (size, QuickXorHash, and SHA-256 where Graph gave one).
 * SharePoint and OneDrive change some files on the way out: Office documents, .doc files, some JPEGs
 * gain bytes (OneDrive/onedrive-api-docs#935; rclone#1718, #2036, #4890, #6701; rclone takes the
 * downloaded size as the truth). So a file whose bytes differ from its listing is downloaded a second
 * time: when both downloads agree, the bytes are what the service serves for that file, and they are
 * kept (with a warning, once per file and content); when they differ, the stream errors with INTEGRITY
 * (a download corrupted on the way). Graph gives no hash of the downloaded stream itself.
 */
export async function openItem(
  ctx: DownloadContext,
  entry: RemoteEntry,
  signal?: AbortSignal,
): Promise<Readable> {
  throwIfAborted(signal);
  if (!entry.id)
    throw new SyncguardError(
      'PROVIDER_ERROR',
      `cannot read ${showPath(entry.path)} from OneDrive: the entry has no item id`,
    );
  const id = entry.id;
  const what = `reading ${showPath(entry.path)}`;
  const cctx = { what, account: ctx.account };
  let url = await ctx.api.contentLocation(ctx.driveId, id, what, signal);

  const fetchAt = async (offset: number): Promise<Response> => {
    const attempt = () =>
      ctx.api.plain(
        what,
        async (http) => {
          const res = await http(url, {
            headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
            signal,
            redirect: 'manual',
          });
          if (res.status === 200 || res.status === 206) return res;
          throw await HttpError.from(res);
        },
        signal,
      );
    try {
      return await attempt();
    } catch (e) {
      if (isSyncguardError(e, 'SKIPPED')) throw e;
      // Pre-authenticated URLs expire after about an hour: a refused one is asked for again, once.
      const status = ((e as SyncguardError).cause as { statusCode?: number } | undefined)?.statusCode;
      if (status !== 401 && status !== 403 && status !== 410) throw e;
      url = await ctx.api.contentLocation(ctx.driveId, id, what, signal);
      return attempt();
    }
  };

  /** One download, from `first`, resumed where a cut stopped it. */
  async function* download(first: Response): AsyncGenerator<Buffer> {
    let offset = 0;
    let res = first;
    let cuts = 0;
    let cutsWithoutProgress = 0;
    let lastCutAt = -1;
    for (;;) {
      let skip = 0;
      if (offset > 0) {
        if (res.status === 200)
          skip = offset; // the server ignored Range: drop what we have already given
        else {
          const start = Number(/^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1]);
          if (start !== offset) {
            await res.body?.cancel();
            throw new SyncguardError(
              'PROVIDER_ERROR',
              `OneDrive resumed ${showPath(entry.path)} at the wrong place (asked for byte ${offset})`,
            );
          }
        }
      }
      try {
        if (!res.body) return;
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
          if (skip > 0) {
            const n = Math.min(skip, buf.length);
            skip -= n;
            buf = buf.subarray(n);
            if (buf.length === 0) continue;
          }
          offset += buf.length;
          yield buf;
        }
        return;
      } catch (e) {
        if (signal?.aborted) throw abortError(signal);
        const err = classify(e, cctx);
        if (!err.retryable) throw err;
        cutsWithoutProgress = offset === lastCutAt ? cutsWithoutProgress + 1 : 0;
        lastCutAt = offset;
        if (++cuts > MAX_CUTS || cutsWithoutProgress >= MAX_CUTS_WITHOUT_PROGRESS) throw err;
        ctx.log(
          'debug',
          `OneDrive: ${what}: the connection broke after ${offset} bytes (${err.message}); resuming`,
        );
        res = await fetchAt(offset);
      }
    }
  }

  const first = await fetchAt(0);
  const expectedSha = ctx.sha256Of(id);

  async function* bytes(): AsyncGenerator<Buffer> {
    const qx = new QuickXorHash();
    const sha = expectedSha ? createHash('sha256') : undefined;
    let size = 0;
    for await (const buf of download(first)) {
      qx.update(buf);
      sha?.update(buf);
      size += buf.length;
      yield buf;
    }
    const got = qx.digest();
    const problems: string[] = [];
    if (size !== entry.size) problems.push(`${size} bytes instead of ${entry.size}`);
    if (entry.hash?.algo === 'quickxor' && got !== entry.hash.value)
      problems.push(`quickXorHash ${got} instead of ${entry.hash.value}`);
    if (sha && expectedSha) {
      const gotSha = sha.digest('hex');
      if (gotSha !== expectedSha) problems.push(`sha256Hash ${gotSha} instead of ${expectedSha}`);
    }
    if (problems.length === 0) return;

    // A second download, hashed only: the same bytes again mean the service serves them so.
    const again = new QuickXorHash();
    let againSize = 0;
    for await (const buf of download(await fetchAt(0))) {
      again.update(buf);
      againSize += buf.length;
    }
    if (againSize === size && again.digest() === got) {
      const key = `${id}\0${got}`;
      if (!ctx.warned.has(key)) {
        ctx.warned.add(key);
        ctx.log(
          'warn',
          `OneDrive: ${showPath(entry.path)} differs from what OneDrive listed (${problems.join('; ')}), and two downloads gave the same bytes: OneDrive changes some files when they are downloaded (docs/onedrive.md), so the bytes downloaded are kept, and the listed size and hash are recorded beside them`,
        );
      }
      return;
    }
    throw new SyncguardError(
      'INTEGRITY',
      `the bytes of ${showPath(entry.path)} read from OneDrive do not match what OneDrive reported (${problems.join('; ')}), and a second download gave other bytes: the download was corrupted or the file changed while it was read`,
    );
  }

  return Readable.from(bytes(), { objectMode: false });
}
