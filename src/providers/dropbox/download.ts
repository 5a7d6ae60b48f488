import { Readable } from 'node:stream';
import { SyncguardError, abortError } from '../../errors.js';
import { showPath } from '../../paths.js';
import type { RemoteEntry } from '../types.js';
import { downloadStream, type DownloadResponse } from './api.js';
import type { DropboxCalls } from './calls.js';
import { DropboxContentHasher } from './content-hash.js';
import type { PathRoot } from './roots.js';

/** A download whose connection breaks is resumed with Range this many times at most. */
const MAX_RESUMES = 10;

/**
 * A file's bytes as a stream, from a streamed files/download (by id when the listing gave one), checked
 * against the content_hash listed and the one served.
 */
export async function openFile(
  calls: DropboxCalls,
  root: PathRoot,
  entry: RemoteEntry,
  signal?: AbortSignal,
): Promise<Readable> {
  if (entry.type !== 'file')
    throw new SyncguardError('INTERNAL', `open() reads files; ${showPath(entry.path)} is a folder`);
  await root.ready(signal);
  // By id when we have it: a file renamed since the listing still gives the bytes that were listed.
  const target = entry.id?.startsWith('id:') ? entry.id : '/' + entry.path;
  const label = `downloading ${showPath(entry.path)}`;
  const first = await calls.call(label, () => downloadStream(calls.client, target), signal);
  const expected = entry.hash?.algo === 'dropbox' ? entry.hash.value : undefined;
  const served = first.metadata.content_hash;
  if (expected && served && served !== expected) {
    await first.body.cancel().catch(() => {});
    throw new SyncguardError(
      'INTEGRITY',
      `${showPath(entry.path)} changed on Dropbox after it was listed (content_hash ${served}, listed ${expected}): the next run takes the new version`,
    );
  }
  const stream = Readable.from(download(calls, entry, target, first, expected, signal), {
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
async function* download(
  calls: DropboxCalls,
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
      const err = calls.classify(e, label, signal);
      if (!err.retryable || resumes >= MAX_RESUMES) throw err;
      resumes++;
      calls.log(
        'debug',
        `dropbox ${calls.account}: ${label}: ${err.message} after ${received} bytes; resuming`,
      );
      res = await calls.call(label, () => downloadStream(calls.client, target, received), signal);
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
