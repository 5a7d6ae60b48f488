import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { SyncguardError, isSyncguardError } from '../errors.js';
import type { Log } from '../log.js';
import { showPath } from '../paths.js';
import { readAll, type Store, type StoredVersion } from '../store/types.js';
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
  versionId?: string,
): Promise<Readable> {
  const body =
    e.offset === undefined
      ? await store.get(e.object!, { signal, versionId })
      : e.size === 0
        ? emptyStream()
        : await store.get(e.object!, { offset: e.offset, length: e.size, signal, versionId });
  const check = verifying(e.sha256!, e.size, showPath(e.path));
  body.on('error', (err) => check.destroy(err));
  // A short object (a planted one) can end, and fail its check, before the reader starts: the stream
  // keeps the error for the reader, and without a listener it would be thrown as an uncaught exception.
  check.on('error', () => {});
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
  versionId?: string,
): Promise<{ start: number; data: Buffer }> {
  let start = Infinity,
    end = 0;
  for (const e of entries) {
    start = Math.min(start, e.offset!);
    end = Math.max(end, e.offset! + e.size);
  }
  if (end <= start) return { start: 0, data: Buffer.alloc(0) };
  const data = await readAll(store, object, { offset: start, length: end - start, signal, versionId });
  if (data.length !== end - start)
    throw new SyncguardError('INTEGRITY', `the pack ${object} is shorter than its index says`);
  return { start, data };
}

/**
 * Anyone who can write a versioned bucket can put a newer version over a key, and reads take the
 * latest. When the latest version of `key` failed its hash check: the oldest older version for which
 * `holds` is true, said in a warning, or undefined (the store keeps no versions, or none holds).
 */
export async function olderVersionThatHolds(
  store: Pick<Store, 'versions'>,
  key: string,
  holds: (versionId: string) => Promise<boolean>,
  log: Log,
  signal?: AbortSignal,
): Promise<StoredVersion | undefined> {
  if (!store.versions) return undefined;
  const all = (await store.versions(key, signal)).filter((v) => v.key === key);
  for (const v of all.slice(0, -1)) {
    let ok = false;
    try {
      ok = await holds(v.versionId);
    } catch (e) {
      if (isSyncguardError(e, 'ABORTED') || isSyncguardError(e, 'STORE_AUTH')) throw e;
    }
    if (ok) {
      log('warn', plantedVersion(key, v));
      return v;
    }
  }
  return undefined;
}

/** What a warning or a verify problem says of a key whose latest version was written over it. */
export function plantedVersion(key: string, v: StoredVersion): string {
  return `the latest version of ${key} does not match its hash; using version ${v.versionId} of ${v.lastModified.toISOString()} (a newer version was written over it)`;
}

/** Whether a version of a blob has the SHA-256 and size expected. */
export async function blobVersionHolds(
  store: Pick<Store, 'get'>,
  key: string,
  sha256: string,
  size: number,
  versionId: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const hash = createHash('sha256');
  let n = 0;
  for await (const c of await store.get(key, { versionId, signal })) {
    hash.update(c as Buffer);
    n += (c as Buffer).length;
  }
  return n === size && hash.digest('hex') === sha256;
}

function spanHolds(span: { start: number; data: Buffer }, entries: ManifestEntry[]): boolean {
  return entries.every(
    (e) =>
      createHash('sha256')
        .update(span.data.subarray(e.offset! - span.start, e.offset! - span.start + e.size))
        .digest('hex') === e.sha256,
  );
}

/**
 * readPackSpan, and when a content in the span does not match its hash in a versioned store, the span
 * of the oldest older version of the pack in which every content matches (`planted` then names it).
 * Otherwise the latest version's span, for the caller's own checks to report.
 */
export async function readPackSpanChecked(
  store: Pick<Store, 'get' | 'versions'>,
  object: string,
  entries: ManifestEntry[],
  log: Log,
  signal?: AbortSignal,
): Promise<{ start: number; data: Buffer; planted?: StoredVersion }> {
  let span: { start: number; data: Buffer } | undefined;
  let failure: unknown;
  try {
    span = await readPackSpan(store, object, entries, signal);
    if (spanHolds(span, entries)) return span;
  } catch (e) {
    if (!isSyncguardError(e, 'INTEGRITY') || !store.versions) throw e;
    failure = e;
  }
  let older: { start: number; data: Buffer } | undefined;
  const planted = await olderVersionThatHolds(
    store,
    object,
    async (versionId) => {
      const s = await readPackSpan(store, object, entries, signal, versionId);
      if (!spanHolds(s, entries)) return false;
      older = s;
      return true;
    },
    log,
    signal,
  );
  if (planted && older) return { ...older, planted };
  if (!span) throw failure;
  return span;
}
