import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { SyncguardError } from '../errors.js';
import { showPath } from '../paths.js';
import { readAll, type Store } from '../store/types.js';
import type { ManifestEntry } from './manifest.js';

/** Passes bytes through and fails at the end unless they have the expected SHA-256 and size. */
export function verifying(expectSha256: string, expectSize: number, what: string): Transform {
  const hash = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      const got = hash.digest('hex');
      if (size !== expectSize || got !== expectSha256) {
        cb(
          new SyncguardError(
            'INTEGRITY',
            `${what}: the stored content does not match its hash (expected ${expectSize} bytes, sha256 ${expectSha256.slice(0, 12)}…; got ${size} bytes, ${got.slice(0, 12)}…)`,
          ),
        );
      } else cb();
    },
  });
}

export function checkBuffer(buf: Buffer, sha256: string, what: string): void {
  const got = createHash('sha256').update(buf).digest('hex');
  if (got !== sha256)
    throw new SyncguardError(
      'INTEGRITY',
      `${what}: the stored content does not match its hash (sha256 ${got.slice(0, 12)}…, expected ${sha256.slice(0, 12)}…)`,
    );
}

/** A file's content from the store, verified as it streams (the error comes at the end). */
export async function openContent(
  store: Pick<Store, 'get'>,
  e: ManifestEntry,
  signal?: AbortSignal,
): Promise<Readable> {
  const body =
    e.offset === undefined
      ? await store.get(e.object!, { signal })
      : e.size === 0
        ? emptyStream()
        : await store.get(e.object!, { offset: e.offset, length: e.size, signal });
  const check = verifying(e.sha256!, e.size, showPath(e.path));
  body.on('error', (err) => check.destroy(err));
  return body.pipe(check);
}

function emptyStream(): Readable {
  const t = new Transform();
  t.end();
  return t;
}

/** Reads the byte span of a pack that a group of entries needs, in one request. */
export async function readPackSpan(
  store: Pick<Store, 'get'>,
  object: string,
  entries: ManifestEntry[],
  signal?: AbortSignal,
): Promise<{ start: number; data: Buffer }> {
  let start = Infinity,
    end = 0;
  for (const e of entries) {
    start = Math.min(start, e.offset!);
    end = Math.max(end, e.offset! + e.size);
  }
  if (end <= start) return { start: 0, data: Buffer.alloc(0) };
  const data = await readAll(store, object, { offset: start, length: end - start, signal });
  if (data.length !== end - start)
    throw new SyncguardError('INTEGRITY', `the pack ${object} is shorter than its index says`);
  return { start, data };
}
