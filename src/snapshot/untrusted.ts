/**
 * Reading what the store holds. Anyone who can create a key can plant an object beside ours (Object
 * Lock stops rewrites, not new keys), so every reader of store objects bounds what it accepts: a line
 * of at most 1 MiB, a decompressed size proportionate to the object, JSON nested at most 32 deep.
 * Anything beyond is an INTEGRITY error for that object, raised where the caller can catch it — never
 * an exception thrown from a stream's event handler, which would end the process (readline builds
 * a line without limit: a 600 MB line threw an uncaught RangeError and killed the daemon).
 */
import { Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { SyncguardError, isSyncguardError } from '../errors.js';
import { readAll, type Store } from '../store/types.js';

const MiB = 1024 * 1024;
export const MAX_LINE = MiB;
/** A manifest's header lists up to 10,000 failed and skipped files: its line may be longer. */
export const MAX_HEADER_LINE = 16 * MiB;
export const MAX_DEPTH = 32;
/** A gzip'd object may decompress to RATIO times what was read of it, plus FLOOR. Real manifests
 *  compress 5 to 20 times (each file line holds a SHA-256); gzip itself allows about 1000. */
export const RATIO = 256;
export const FLOOR = 16 * MiB;

/**
 * The lines of a gzip'd object, without their '\n', in batches (one per decompressed chunk: a
 * promise per line would cost more than the parsing). Throws INTEGRITY when a line is longer than
 * MAX_LINE (the first: MAX_HEADER_LINE), when the object decompresses to more than RATIO × its size + FLOOR, or when it is not
 * gzip. Errors of the store (the body's stream) are passed on as they are. Stopping early releases
 * the body.
 */
export async function* gunzipLines(body: Readable, what: string): AsyncGenerator<string[], void, undefined> {
  let read = 0;
  let out = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      read += chunk.length;
      cb(null, chunk);
    },
  });
  const gunzip = createGunzip();
  body.on('error', (e) => counter.destroy(e));
  counter.on('error', (e) => gunzip.destroy(e));
  body.pipe(counter).pipe(gunzip);
  const bad = (why: string) => new SyncguardError('INTEGRITY', `${what} ${why}`);
  const limit = (line: number) => (line === 1 ? MAX_HEADER_LINE : MAX_LINE);
  const tooLong = (line: number) => bad(`line ${line} is longer than ${limit(line) / MiB} MiB`);
  let n = 0;
  let held: Buffer[] = [];
  let heldBytes = 0;
  try {
    for await (const c of gunzip) {
      const chunk = c as Buffer;
      out += chunk.length;
      if (out > RATIO * read + FLOOR)
        throw bad(
          `decompresses to more than ${RATIO} times its size (${out} bytes from ${read}): it is not a manifest syncguard wrote`,
        );
      let start = 0;
      const batch: string[] = [];
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        n++;
        if (heldBytes + nl - start > limit(n)) throw tooLong(n);
        const line =
          heldBytes === 0
            ? chunk.toString('utf8', start, nl)
            : Buffer.concat([...held, chunk.subarray(start, nl)]).toString('utf8');
        held = [];
        heldBytes = 0;
        start = nl + 1;
        batch.push(line);
      }
      if (start < chunk.length) {
        held.push(chunk.subarray(start));
        heldBytes += chunk.length - start;
        if (heldBytes > limit(n + 1)) throw tooLong(n + 1);
      }
      if (batch.length > 0) yield batch;
    }
    if (heldBytes > 0) yield [Buffer.concat(held).toString('utf8')];
  } catch (e) {
    if (isSyncguardError(e)) throw e;
    throw new SyncguardError('INTEGRITY', `${what} cannot be read: ${(e as Error).message}`, { cause: e });
  } finally {
    body.unpipe(counter);
    body.destroy();
    counter.destroy();
    gunzip.destroy();
  }
}

/** Whether a JSON text nests arrays and objects deeper than `max`. Only texts that open more than
 *  `max` of them are walked (a manifest line opens one). */
export function nestsDeeper(text: string, max = MAX_DEPTH): boolean {
  let opens = 0;
  for (const ch of ['{', '[']) for (let i = text.indexOf(ch); i !== -1; i = text.indexOf(ch, i + 1)) opens++;
  if (opens <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

/** JSON.parse with a depth bound: INTEGRITY (naming `what`) when the text is not JSON or nests
 *  deeper than MAX_DEPTH. */
export function parseJson(text: string, what: string): unknown {
  if (nestsDeeper(text))
    throw new SyncguardError('INTEGRITY', `${what} nests deeper than ${MAX_DEPTH} levels`);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new SyncguardError('INTEGRITY', `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * A small JSON object of the store (a pack index, an acknowledgement): refused unread when it is
 * larger than `maxBytes` (its size from the listing or a HEAD), and INTEGRITY when it is not a
 * JSON object. The read itself stops at maxBytes too, whatever the listing said.
 */
export async function readJsonObject(
  store: Pick<Store, 'get'>,
  key: string,
  opts: { size: number; maxBytes: number; signal?: AbortSignal; versionId?: string },
): Promise<Record<string, unknown>> {
  if (opts.size > opts.maxBytes)
    throw new SyncguardError(
      'INTEGRITY',
      `${key} is too large (${opts.size} bytes, at most ${opts.maxBytes}): it is not an object syncguard wrote`,
    );
  const data = await readAll(store, key, {
    offset: 0,
    length: opts.size,
    signal: opts.signal,
    versionId: opts.versionId,
  });
  const v = parseJson(data.toString('utf8'), key);
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new SyncguardError('INTEGRITY', `${key} is not a JSON object`);
  return v as Record<string, unknown>;
}
