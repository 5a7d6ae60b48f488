/**
 * Reading and packing: each file to read is read from the provider (in memory, or spooled to a
 * temporary file when large), hashed, and stored unless its content is stored already: small ones into
 * the current pack, large ones as blobs of their own.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { SyncguardError, isSyncguardError, throwIfAborted } from '../errors.js';
import type { Provider, RemoteEntry } from '../providers/types.js';
import { readAll } from '../store/types.js';
import type { DamagedLocations } from './damaged.js';
import { blobKey } from './layout.js';
import type { ContentIndex, Location, Packer, Repository } from './repository.js';

const SAMPLE_BYTES = 4096;

/** Errors that end a run: everything about auth, the store, the config, or an abort. One bad file does not. */
export function isFatal(e: unknown): boolean {
  if (!isSyncguardError(e)) return false;
  return [
    'PROVIDER_AUTH',
    'STORE_AUTH',
    'STORE_CONFLICT',
    'STORE_LOCKED',
    'STORE_NO_LOCK',
    'STORE_UNAVAILABLE',
    'STORE_ERROR',
    'CONFIG',
    'ABORTED',
    'INTERNAL',
  ].includes(e.code);
}

/** A file that failed its hash check, or whose bytes changed while read, is read again twice. */
export async function withRetries<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      throwIfAborted(signal);
      if (attempt >= 3 || !(isSyncguardError(e, 'INTEGRITY') || (isSyncguardError(e) && e.retryable)))
        throw e;
    }
  }
}

export interface Ingested {
  sha256: string;
  size: number;
  loc: Location;
  mtime?: Date;
  sample?: Buffer;
}

/** Reads one file and stores its content unless it is stored already. */
export class Ingest {
  bytesAdded = 0;
  /** Reused locations that failed their read check this run. */
  readonly damaged: Array<{ object: string; problem: string }> = [];
  private readonly blobs = new Map<string, Promise<Location>>();
  /** Packed contents of other runs, each read back once before it is reused (sha256 → it holds). */
  private readonly checked = new Map<string, Promise<boolean>>();
  /** Contents this run stored: their locations need no check. */
  private readonly stored = new Set<string>();

  constructor(
    private readonly repo: Repository,
    private readonly provider: Provider,
    private readonly index: ContentIndex,
    private readonly packer: Packer,
    private readonly bad: DamagedLocations,
    /** Keep the first bytes of each file read (for the tripwire's look at a new version). */
    private readonly samples: boolean,
    private readonly signal?: AbortSignal,
  ) {}

  async file(entry: RemoteEntry): Promise<Ingested> {
    if (this.provider.features.local && entry.size >= this.repo.packThreshold) return this.localLarge(entry);
    const spool = await Spool.from(
      await this.provider.open(entry, this.signal),
      this.repo.packThreshold,
      this.samples,
    );
    try {
      const { sha256, size } = spool;
      const known = this.packer.get(sha256) ?? this.index.get(sha256);
      if (known && (await this.holds(sha256, known)))
        return { sha256, size, loc: known, sample: spool.sample };
      if (spool.buffer) {
        const loc = await this.packer.add(sha256, spool.buffer);
        this.index.set(sha256, loc);
        this.stored.add(sha256);
        return { sha256, size, loc, sample: spool.sample };
      }
      const loc = await this.blob(sha256, size, () => createReadStream(spool.file!));
      return { sha256, size, loc, sample: spool.sample };
    } finally {
      await spool.remove();
    }
  }

  /** A large local file is hashed in one pass and uploaded in a second, which the store verifies against
   *  the first: a file that changes in between is not stored under the wrong hash. */
  private async localLarge(entry: RemoteEntry): Promise<Ingested> {
    const hash = createHash('sha256');
    let size = 0;
    let sample: Buffer | undefined;
    for await (const chunk of await this.provider.open(entry, this.signal)) {
      hash.update(chunk as Buffer);
      if (!sample && this.samples) sample = Buffer.from((chunk as Buffer).subarray(0, SAMPLE_BYTES));
      size += (chunk as Buffer).length;
    }
    const sha256 = hash.digest('hex');
    const known = this.index.get(sha256);
    if (known) return { sha256, size, loc: known, sample };
    const loc = await this.blob(sha256, size, () => this.provider.open(entry, this.signal));
    return { sha256, size, loc, sample };
  }

  /**
   * Whether a packed location another run wrote still holds `sha256`, read back once per run before
   * it is reused: a pack index can be damaged or forged with offsets that look right (within the pack,
   * one after another), which only reading shows. A location that fails is remembered as damaged and
   * the content is stored again. A blob's key is its SHA-256 (verify checks its bytes).
   */
  private holds(sha256: string, loc: Location): Promise<boolean> {
    if (loc.offset === undefined || this.stored.has(sha256) || this.packer.get(sha256) === loc)
      return Promise.resolve(true);
    let p = this.checked.get(sha256);
    if (!p) {
      p = (async () => {
        let got: string;
        try {
          const data = await readAll(this.repo.store, loc.object, {
            offset: loc.offset,
            length: loc.length,
            signal: this.signal,
          });
          got = createHash('sha256').update(data).digest('hex');
        } catch (e) {
          if (!isSyncguardError(e, 'INTEGRITY') && !isSyncguardError(e, 'NOT_FOUND')) throw e;
          got = '';
        }
        if (got === sha256) return true;
        const problem = `the content ${sha256.slice(0, 12)}… is not at offset ${loc.offset} as its pack index says; it is stored again`;
        this.bad.add({
          object: loc.object,
          offset: loc.offset,
          sha256,
          found: this.repo.now().toISOString(),
          problem,
        });
        this.damaged.push({ object: loc.object, problem });
        this.repo.log('warn', `${loc.object}: ${problem}`);
        return false;
      })();
      this.checked.set(sha256, p);
    }
    return p;
  }

  /** Where the store lets it (no lock holds it), removes a blob that failed its read check, so that its
   *  content can be stored again under its key; else the file fails, loudly, naming the blob. */
  private async replaceDamagedBlob(sha256: string): Promise<void> {
    const key = blobKey(sha256);
    try {
      await this.repo.store.delete(key);
    } catch (e) {
      if (!isSyncguardError(e, 'STORE_LOCKED')) throw e;
      throw new SyncguardError(
        'INTEGRITY',
        `${key} failed its read check and cannot be replaced while it is locked (${e.message}); the file is not stored this time`,
      );
    }
  }

  private blob(sha256: string, size: number, body: () => Readable | Promise<Readable>): Promise<Location> {
    let p = this.blobs.get(sha256);
    if (!p) {
      p = (async () => {
        if (this.bad.has(blobKey(sha256))) await this.replaceDamagedBlob(sha256);
        const loc = await this.repo.putBlob(sha256, await body(), size, this.signal);
        this.index.set(sha256, loc);
        this.bytesAdded += size;
        return loc;
      })();
      this.blobs.set(sha256, p);
      p.catch(() => this.blobs.delete(sha256));
    }
    return p;
  }
}

/** A content read from a stream: in memory while under the threshold, else in a temporary file. */
class Spool {
  buffer?: Buffer;
  file?: string;
  sha256 = '';
  size = 0;
  sample?: Buffer;

  static async from(stream: Readable, threshold: number, sample: boolean): Promise<Spool> {
    const s = new Spool();
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let out: WriteStream | undefined;
    try {
      for await (const c of stream) {
        const chunk = c as Buffer;
        hash.update(chunk);
        s.size += chunk.length;
        if (!s.sample && sample) s.sample = Buffer.from(chunk.subarray(0, SAMPLE_BYTES));
        if (out) {
          if (!out.write(chunk)) await new Promise<void>((r) => out!.once('drain', () => r()));
        } else {
          chunks.push(chunk);
          if (s.size >= threshold) {
            s.file = join(tmpdir(), `syncguard-spool-${randomBytes(8).toString('hex')}`);
            out = createWriteStream(s.file, { mode: 0o600 });
            for (const b of chunks) out.write(b);
            chunks.length = 0;
          }
        }
      }
      if (out)
        await new Promise<void>((resolve, reject) =>
          out!.end((e?: Error | null) => (e ? reject(e) : resolve())),
        );
      // One chunk (a small file read in one go) is the content itself: no copy.
      else s.buffer = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    } catch (e) {
      out?.destroy();
      await s.remove();
      throw e;
    }
    s.sha256 = hash.digest('hex');
    return s;
  }

  async remove(): Promise<void> {
    if (this.file) await fsp.rm(this.file, { force: true });
  }
}
