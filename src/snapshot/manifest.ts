/**
 * The manifest: gzip'd NDJSON, line 1 a header, then one line per file or folder, by path
 * (comparePaths order). Plain enough that `zcat | jq` and any S3 client can restore without syncguard.
 * A manifest read back is untrusted: every line is checked, and a path that could escape a restore
 * target is refused.
 */
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { SyncguardError } from '../errors.js';
import { comparePaths, showPath, unsafeReason } from '../paths.js';
import { parseManifestKey } from './layout.js';
import { MAX_DEPTH, MAX_HEADER_LINE, gunzipLines, nestsDeeper } from './untrusted.js';

export const MANIFEST_FORMAT = 'syncguard-manifest';
export const MANIFEST_VERSION = 1;

export interface ManifestEntry {
  path: string;
  type: 'file' | 'dir';
  /** Bytes (0 for folders). */
  size: number;
  /** Modified time, ISO 8601 UTC with milliseconds. */
  mtime: string;
  /** SHA-256 of the content, hex (files only). */
  sha256?: string;
  /** What the provider reported, "algo:value" (files only, where it has one). */
  providerHash?: string;
  /** The size the provider listed, where it served another number of bytes (`size` is what was read). */
  providerSize?: number;
  /** The provider's id for the item, where it has one. */
  id?: string;
  /** The store key that holds the content: a blob, or a pack (files only). */
  object?: string;
  /** Where the content starts in a pack, and its length (packed files only). */
  offset?: number;
  length?: number;
  /** Local files: the last change of content or metadata (ISO 8601 UTC), the device and the inode, as
   *  listed; the next run reads the file again when any of them differs. Absent in older manifests. */
  ctime?: string;
  dev?: number;
  ino?: number;
  /** Local files: when the content was last read from the folder (ISO 8601 UTC), for `reread`. */
  readAt?: string;
  /** Set when this run could not read the file: the content is the last one read (absent: read or
   *  reused this run). Old manifests have none. */
  stale?: StaleMark;
  /** Permission bits (0o600, 0o755, …) of a file or folder read from a local disk; restore gives them
   *  back (never more permissive). Absent for cloud files and in older manifests: the umask decides. */
  mode?: number;
}

export interface StaleMark {
  /** Why the file could not be read, the last time it was tried. */
  reason: string;
  /** The snapshot whose run first could not read it. */
  since: string;
  /** Runs in a row that could not read it, this one included. */
  runs: number;
}

export interface FailedFile {
  path: string;
  error: string;
}

/** A file the next run reads again whatever the provider's listing says (a cursor lists a file once):
 *  as the provider listed it when it could not be read. */
export interface RetryFile {
  path: string;
  size: number;
  mtime: string;
  providerHash?: string;
  id?: string;
  /** Why it could not be read. */
  error: string;
  /** The snapshot carries its previous content (false: a new file, absent from the snapshot). */
  kept: boolean;
  /** The snapshot whose run first could not read it, and the runs in a row since. */
  staleSince: string;
  staleRuns: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface ManifestHeader {
  format: typeof MANIFEST_FORMAT;
  version: number;
  account: string;
  provider: string;
  /** The snapshot's id: its start time in ISO basic format. */
  id: string;
  started: string;
  finished: string;
  tool: string;
  counts: { files: number; dirs: number; failed: number; skipped: number };
  /** Bytes of all files in the snapshot. */
  bytes: number;
  /** Bytes this run wrote to the store (new content only). */
  bytesAdded: number;
  /** The provider's cursor for the next run's incremental listing. */
  cursor?: string;
  /** The manifest key of the snapshot this one was built on. */
  previous?: string;
  /** Every object this snapshot names is locked at least until then (absent: the store has no lock). */
  lockedUntil?: string;
  failures: FailedFile[];
  /** Every file to read again on the next run (never cut short: a file left out would be lost again).
   *  Absent in manifests written before it existed. */
  retry?: RetryFile[];
  skipped: SkippedFile[];
  /** Set when the ransomware tripwire fired on this snapshot. */
  tripwire?: { fired: boolean; reasons: string[] };
}

const MAX_LISTED = 10_000;

/** Writes a manifest to a temporary file as entries arrive; the caller stores it and removes it. */
export class ManifestWriter {
  private readonly gzip = createGzip({ level: 6 });
  private readonly hash = createHash('sha256');
  private size = 0;
  /** Lines not yet handed to gzip: each gzip write is a round trip to the thread pool, so lines go in
   *  batches (200,000 entries: 20 s one by one, 2 s batched). */
  private pending = '';
  private readonly done: Promise<void>;
  readonly file: string;

  constructor(header: ManifestHeader) {
    this.file = join(tmpdir(), `syncguard-manifest-${randomBytes(8).toString('hex')}.ndjson.gz`);
    const out = createWriteStream(this.file, { mode: 0o600 });
    this.gzip.on('data', (c: Buffer) => {
      this.hash.update(c);
      this.size += c.length;
    });
    this.done = pipeline(this.gzip, out);
    // A constructor cannot wait for gzip to drain; the stream buffers the header, and add() waits.
    void this.line(boundedHeader(header));
  }

  private line(v: unknown): Promise<void> | void {
    this.pending += JSON.stringify(v) + '\n';
    if (this.pending.length < 64 * 1024) return;
    const batch = this.pending;
    this.pending = '';
    if (!this.gzip.write(batch)) return new Promise((r) => this.gzip.once('drain', () => r()));
  }

  async add(entry: ManifestEntry): Promise<void> {
    await this.line(entry);
  }

  async finish(): Promise<{ file: string; sha256: string; size: number }> {
    this.gzip.end(this.pending || undefined);
    this.pending = '';
    await this.done;
    return { file: this.file, sha256: this.hash.digest('hex'), size: this.size };
  }

  async discard(): Promise<void> {
    this.gzip.destroy();
    await this.done.catch(() => {});
    await fsp.rm(this.file, { force: true });
  }
}

/** How many files a snapshot holds stale or lacks, and for how many runs in a row. */
export interface StaleSummary {
  files: number;
  /** The longest run of one file (0: none stale). */
  maxRuns: number;
  /** The oldest snapshot since which a file could not be read. */
  since?: string;
  /** Files by runs stale, longest first. */
  byRuns: Array<{ runs: number; files: number }>;
}

export function staleSummary(h: Pick<ManifestHeader, 'retry'>): StaleSummary {
  const by = new Map<number, number>();
  let since: string | undefined;
  for (const r of h.retry ?? []) {
    by.set(r.staleRuns, (by.get(r.staleRuns) ?? 0) + 1);
    if (since === undefined || r.staleSince < since) since = r.staleSince;
  }
  const byRuns = [...by].map(([runs, files]) => ({ runs, files })).sort((a, b) => b.runs - a.runs);
  const out: StaleSummary = { files: h.retry?.length ?? 0, maxRuns: byRuns[0]?.runs ?? 0, byRuns };
  if (since !== undefined) out.since = since;
  return out;
}

/** At most MAX_LISTED failures and skipped files, and fewer when their names are long: a header
 *  line longer than readers accept (MAX_HEADER_LINE) would make the whole snapshot unreadable. */
function boundedHeader(h: ManifestHeader): ManifestHeader {
  const { retry, ...rest } = h;
  for (let n = MAX_LISTED; ; n = Math.floor(n / 2)) {
    const b = { ...rest, failures: h.failures.slice(0, n), skipped: h.skipped.slice(0, n) };
    if (n === 0 || JSON.stringify(b).length <= MAX_HEADER_LINE / 4)
      return { ...b, retry: boundedRetry(retry) };
  }
}

/** The retry list within half of MAX_HEADER_LINE: new files first, as a kept file is also retried from
 *  its entry's stale mark when the list does not name it. */
function boundedRetry(retry: RetryFile[] | undefined): RetryFile[] | undefined {
  if (!retry || Buffer.byteLength(JSON.stringify(retry)) <= MAX_HEADER_LINE / 2) return retry;
  const out: RetryFile[] = [];
  let bytes = 2;
  for (const r of [...retry.filter((x) => !x.kept), ...retry.filter((x) => x.kept)]) {
    bytes += Buffer.byteLength(JSON.stringify(r)) + 1;
    if (bytes > MAX_HEADER_LINE / 2) break;
    out.push(r);
  }
  return out.sort((a, b) => comparePaths(a.path, b.path));
}

export function manifestFileStream(file: string): Readable {
  return createReadStream(file);
}

/**
 * Reads a manifest stream: the header, then its entries one by one. Throws INTEGRITY on a malformed
 * line, a line longer than 1 MiB (the header: 16 MiB), JSON nested deeper than 32 levels, or a body
 * that decompresses to far more than its size (untrusted.ts); entries with unsafe paths are reported
 * through `unsafe` and not yielded. `what` is the manifest's key: its account must be the header's.
 */
export async function readManifest(
  body: Readable,
  what: string,
): Promise<{ header: ManifestHeader; entries: AsyncGenerator<ManifestEntry>; unsafe: FailedFile[] }> {
  const batches = gunzipLines(body, `the manifest ${what}`);
  let batch: string[] = [];
  let at = 0;
  const nextLine = async (): Promise<string | undefined> => {
    while (at >= batch.length) {
      const r = await batches.next();
      if (r.done) return undefined;
      [batch, at] = [r.value, 0];
    }
    return batch[at++];
  };
  const first = await nextLine();
  if (first === undefined) throw new SyncguardError('INTEGRITY', `the manifest ${what} is empty`);
  const header = parseHeader(first, what);
  const unsafe: FailedFile[] = [];
  async function* entries(): AsyncGenerator<ManifestEntry> {
    let n = 1;
    try {
      for (let line = await nextLine(); line !== undefined; line = await nextLine()) {
        n++;
        if (line === '') continue;
        const entry = parseEntry(line, what, n);
        const reason = unsafeReason(entry.path);
        if (reason) {
          unsafe.push({ path: entry.path, error: `refused: ${reason}` });
          continue;
        }
        yield entry;
      }
    } catch (e) {
      if (e instanceof SyncguardError) throw e;
      throw new SyncguardError(
        'INTEGRITY',
        `the manifest ${what} is damaged at line ${n}: ${(e as Error).message}`,
        { cause: e },
      );
    } finally {
      await batches.return(undefined);
    }
  }
  return { header, entries: entries(), unsafe };
}

function parseHeader(line: string, what: string): ManifestHeader {
  const bad = (why: string) => new SyncguardError('INTEGRITY', `the manifest ${what} ${why}`);
  if (nestsDeeper(line)) throw bad(`has a header that nests deeper than ${MAX_DEPTH} levels`);
  let h: ManifestHeader;
  try {
    h = JSON.parse(line) as ManifestHeader;
  } catch {
    throw bad('has no valid header');
  }
  if (typeof h !== 'object' || h === null || Array.isArray(h)) throw bad('has no valid header');
  if (h.format !== MANIFEST_FORMAT)
    throw new SyncguardError('INTEGRITY', `${what} is not a syncguard manifest`);
  if (typeof h.version !== 'number' || h.version > MANIFEST_VERSION) {
    throw new SyncguardError(
      'INTEGRITY',
      `the manifest ${what} has format version ${String(h.version)}; this syncguard reads up to ${MANIFEST_VERSION}: upgrade syncguard`,
    );
  }
  h.failures ??= [];
  h.skipped ??= [];
  const why = headerProblem(h, parseManifestKey(what)?.account);
  if (why) throw bad(`has a header that is not valid: ${why}`);
  return h;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
const isTime = (v: unknown) => isString(v) && !Number.isNaN(Date.parse(v));

/** What is wrong with a header read back, or undefined. Only what a reader relies on is checked. */
function headerProblem(h: ManifestHeader, account: string | undefined): string | undefined {
  if (!isString(h.account) || (account !== undefined && h.account !== account))
    return `it names the account ${JSON.stringify(h.account)}, not "${account}"`;
  if (!isString(h.id) || !isString(h.provider) || !isString(h.tool)) return 'id, provider or tool is missing';
  if (!isTime(h.started) || !isTime(h.finished)) return 'started or finished is not a time';
  const c = h.counts as Partial<ManifestHeader['counts']> | undefined;
  if (typeof c !== 'object' || c === null || ![c.files, c.dirs, c.failed, c.skipped].every(isCount))
    return 'counts are not whole numbers';
  if (!isCount(h.bytes) || !isCount(h.bytesAdded)) return 'bytes are not whole numbers';
  if (h.cursor !== undefined && !isString(h.cursor)) return 'the cursor is not a string';
  if (h.lockedUntil !== undefined && !isTime(h.lockedUntil)) return 'lockedUntil is not a time';
  if (h.previous !== undefined) {
    const p = isString(h.previous) ? parseManifestKey(h.previous) : undefined;
    if (!p || p.account !== h.account)
      return `previous names ${showPath(String(h.previous))}, which is not a snapshot of "${h.account}"`;
  }
  const listed = (v: unknown, field: string) =>
    Array.isArray(v) &&
    v.every(
      (x: unknown) =>
        typeof x === 'object' &&
        x !== null &&
        isString((x as Record<string, unknown>).path) &&
        isString((x as Record<string, unknown>)[field]),
    );
  if (!listed(h.failures, 'error')) return 'failures is not a list of paths and errors';
  if (!listed(h.skipped, 'reason')) return 'skipped is not a list of paths and reasons';
  const t = h.tripwire;
  if (
    t !== undefined &&
    (typeof t !== 'object' ||
      t === null ||
      typeof t.fired !== 'boolean' ||
      !Array.isArray(t.reasons) ||
      !t.reasons.every(isString))
  )
    return 'tripwire is not { fired, reasons }';
  if (h.retry !== undefined) {
    if (!Array.isArray(h.retry)) return 'retry is not a list';
    for (let i = 0; i < h.retry.length; i++) {
      const why = badRetry(h.retry[i]);
      if (why) return `retry[${i}] ${why}`;
    }
  }
  return undefined;
}

const PROVIDER_HASH = /^(dropbox|quickxor|sha1|sha256):[^\s]+$/;

function badRetry(r: RetryFile): string | undefined {
  if (typeof r !== 'object' || r === null) return 'is not an object';
  if (typeof r.path !== 'string') return 'has no path';
  if (!Number.isSafeInteger(r.size) || r.size < 0) return `${showPath(r.path)} has no valid size`;
  if (typeof r.mtime !== 'string' || Number.isNaN(Date.parse(r.mtime)))
    return `${showPath(r.path)} has no valid mtime`;
  if (
    r.providerHash !== undefined &&
    (typeof r.providerHash !== 'string' || !PROVIDER_HASH.test(r.providerHash))
  )
    return `${showPath(r.path)} has no valid providerHash`;
  if (r.id !== undefined && typeof r.id !== 'string') return `${showPath(r.path)} has no valid id`;
  if (typeof r.error !== 'string' || typeof r.kept !== 'boolean' || typeof r.staleSince !== 'string')
    return `${showPath(r.path)} has no valid error, kept or staleSince`;
  if (!Number.isSafeInteger(r.staleRuns) || r.staleRuns < 1)
    return `${showPath(r.path)} has no valid staleRuns`;
  return undefined;
}

const SHA = /^[0-9a-f]{64}$/;
const KEY = /^(blobs\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64}|packs\/\d{4}\/\d{2}\/\d{2}\/[0-9a-f]{32}\.pack)$/;

function parseEntry(line: string, what: string, n: number): ManifestEntry {
  const bad = (why: string) =>
    new SyncguardError('INTEGRITY', `the manifest ${what} is damaged at line ${n}: ${why}`);
  if (nestsDeeper(line)) throw bad(`it nests deeper than ${MAX_DEPTH} levels`);
  const e = JSON.parse(line) as ManifestEntry;
  if (typeof e !== 'object' || e === null) throw bad('not an object');
  if (typeof e.path !== 'string') throw bad('no path');
  if (e.type !== 'file' && e.type !== 'dir') throw bad(`${showPath(e.path)} has no type`);
  if (typeof e.mtime !== 'string' || Number.isNaN(Date.parse(e.mtime)))
    throw bad(`${showPath(e.path)} has no valid mtime`);
  if (e.stale !== undefined) {
    const st = e.stale;
    if (
      typeof st !== 'object' ||
      st === null ||
      typeof st.reason !== 'string' ||
      typeof st.since !== 'string' ||
      !Number.isSafeInteger(st.runs) ||
      st.runs < 1
    )
      throw bad(`${showPath(e.path)} has no valid stale mark`);
  }
  if (e.mode !== undefined && (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o777))
    throw bad(`${showPath(e.path)} has no valid mode`);
  if (e.type === 'file') {
    if (!Number.isSafeInteger(e.size) || e.size < 0) throw bad(`${showPath(e.path)} has no valid size`);
    if (typeof e.sha256 !== 'string' || !SHA.test(e.sha256))
      throw bad(`${showPath(e.path)} has no valid sha256`);
    if (typeof e.object !== 'string' || !KEY.test(e.object))
      throw bad(`${showPath(e.path)} names no valid object`);
    if (e.object.startsWith('packs/')) {
      if (!Number.isSafeInteger(e.offset) || e.offset! < 0 || e.length !== e.size)
        throw bad(`${showPath(e.path)} has no valid offset and length`);
    } else if (!e.object.endsWith(e.sha256)) {
      throw bad(`${showPath(e.path)} names a blob of other content`);
    }
    for (const k of ['ctime', 'readAt'] as const)
      if (e[k] !== undefined && (typeof e[k] !== 'string' || Number.isNaN(Date.parse(e[k]))))
        throw bad(`${showPath(e.path)} has no valid ${k}`);
    for (const k of ['dev', 'ino'] as const)
      if (e[k] !== undefined && (typeof e[k] !== 'number' || !(e[k] >= 0)))
        throw bad(`${showPath(e.path)} has no valid ${k}`);
  }
  return e;
}
