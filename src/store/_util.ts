import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { SyncguardError, abortError, throwIfAborted } from '../errors.js';
import { assertSafePath, showPath } from '../paths.js';
import type { GetOptions, PutOptions } from './types.js';

/** Internal to src/store: what every store does the same way with keys, bodies and ranges. */

export function checkKey(key: string): void {
  assertSafePath(key, 'store key');
}

/** A configured prefix as stores join it: '' or 'a/b/' (no leading '/', one trailing '/'). */
export function normalisePrefix(prefix: string | undefined): string {
  const p = (prefix ?? '').replace(/^\/+|\/+$/g, '');
  if (p === '') return '';
  assertSafePath(p, 'store prefix');
  return p + '/';
}

/** A list prefix may end in '/' or in the middle of a name; it must not climb out of the store. */
export function checkListPrefix(prefix: string): void {
  if (prefix === '') return;
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  assertSafePath(trimmed, 'list prefix');
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The chunks of a body, as Buffers. A Readable is destroyed when the signal fires, and when the
 *  consumer stops early (for-await's return). */
export async function* chunksOf(body: Buffer | Readable, signal?: AbortSignal): AsyncGenerator<Buffer> {
  throwIfAborted(signal);
  if (Buffer.isBuffer(body)) {
    if (body.length > 0) yield body;
    return;
  }
  const onAbort = () => body.destroy(abortError(signal));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const c of body) yield Buffer.isBuffer(c) ? c : Buffer.from(c as string | Uint8Array);
  } catch (e) {
    if (signal?.aborted) throw abortError(signal);
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  throwIfAborted(signal);
}

/** Releases a stream body that will not be read (so a provider's download is not left hanging). */
export function discardBody(body: Buffer | Readable): void {
  if (!Buffer.isBuffer(body) && !body.destroyed) body.destroy();
}

/** Throws INTEGRITY when what was read differs from what the caller promised. */
export function checkDigest(
  key: string,
  sha256: string,
  size: number,
  opts: PutOptions,
  where: string,
): void {
  if (opts.size !== undefined && opts.size !== size) {
    throw new SyncguardError(
      'INTEGRITY',
      `refused to store ${showPath(key)} in ${where}: the body has ${size} bytes, expected ${opts.size}; nothing was written`,
    );
  }
  if (opts.sha256 !== undefined && opts.sha256.toLowerCase() !== sha256) {
    throw new SyncguardError(
      'INTEGRITY',
      `refused to store ${showPath(key)} in ${where}: its SHA-256 is ${sha256}, expected ${opts.sha256}; nothing was written`,
    );
  }
}

export function checkPutOptions(opts: PutOptions): void {
  if (opts.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(opts.sha256)) {
    throw new SyncguardError('INTERNAL', `put: sha256 must be 64 hex digits, got "${opts.sha256}"`);
  }
  if (opts.size !== undefined && !(Number.isSafeInteger(opts.size) && opts.size >= 0)) {
    throw new SyncguardError('INTERNAL', `put: size must be a whole number of bytes, got ${opts.size}`);
  }
  if (opts.retainUntil !== undefined && Number.isNaN(opts.retainUntil.getTime())) {
    throw new SyncguardError('INTERNAL', 'put: retainUntil is not a valid date');
  }
}

export interface ByteRange {
  start: number;
  /** Exclusive. */
  end: number;
}

/**
 * The byte range a get asks for, within an object of `size` bytes. A range that does not lie
 * within the object means the manifest or pack index that named it is wrong: INTEGRITY.
 */
export function rangeWithin(key: string, size: number, opts: GetOptions): ByteRange {
  const start = opts.offset ?? 0;
  if (!Number.isSafeInteger(start) || start < 0)
    throw new SyncguardError('INTERNAL', `get: offset must be a whole number ≥ 0, got ${opts.offset}`);
  if (opts.length !== undefined && (!Number.isSafeInteger(opts.length) || opts.length < 0)) {
    throw new SyncguardError('INTERNAL', `get: length must be a whole number ≥ 0, got ${opts.length}`);
  }
  const end = opts.length === undefined ? size : start + opts.length;
  if (start > size || end > size) {
    throw new SyncguardError(
      'INTEGRITY',
      `${showPath(key)} has ${size} bytes, but bytes ${start}–${end} were asked for: the manifest or pack index that names this range does not match the stored object`,
    );
  }
  return { start, end };
}

export function emptyStream(): Readable {
  return Readable.from([]);
}

/** Retention requested in the past has nothing left to protect: callers skip it. */
export function isFuture(date: Date | undefined, now: Date): date is Date {
  return date !== undefined && date.getTime() > now.getTime();
}
