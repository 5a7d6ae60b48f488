/**
 * What the snapshot engine tests share: a MemoryStore on a clock the test moves, a Repository over it,
 * the local provider over a temp folder, and provider wrappers that count or fail calls.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { SyncguardError } from '../../src/errors.js';
import { LocalProvider } from '../../src/providers/local.js';
import type { Change, ChangesOptions, Provider, RemoteEntry } from '../../src/providers/types.js';
import { readManifest, type ManifestEntry, type ManifestHeader } from '../../src/snapshot/manifest.js';
import { Repository } from '../../src/snapshot/repository.js';
import {
  takeSnapshot,
  type SnapshotAccount,
  type SnapshotResult,
  type TakeOptions,
} from '../../src/snapshot/take.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { ObjectInfo, Store } from '../../src/store/types.js';

export const DAY = 86_400_000;

/** A clock the test moves; the store's Object Lock and the repository read the same one. */
export class Clock {
  t: number;
  constructor(iso = '2026-11-20T02:00:00.000Z') {
    this.t = Date.parse(iso);
  }
  readonly now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface EngineOptions {
  lockDays?: number;
  packThreshold?: number;
  packSize?: number;
  objectLock?: boolean;
  /** Wrap the memory store (faulty(), a counter). */
  wrap?: (s: MemoryStore) => Store;
}

export interface Engine {
  clock: Clock;
  memory: MemoryStore;
  store: Store;
  repo: Repository;
  /** A repository over another view of the same objects (a store that fails, say). */
  repoOver(store: Store): Repository;
}

export function engine(opts: EngineOptions = {}): Engine {
  const clock = new Clock();
  const memory = new MemoryStore({ objectLock: opts.objectLock ?? true, now: clock.now });
  const store = opts.wrap ? opts.wrap(memory) : memory;
  const repoOver = (s: Store) =>
    new Repository({
      store: s,
      lockDays: opts.lockDays ?? 30,
      packThreshold: opts.packThreshold ?? 256 * 1024,
      packSize: opts.packSize ?? 1024 * 1024,
      now: clock.now,
    });
  return { clock, memory, store, repo: repoOver(store), repoOver };
}

export const ACCOUNT: SnapshotAccount = { name: 'laptop', provider: 'local' };

export async function snap(
  repo: Repository,
  provider: Provider,
  extra: Partial<TakeOptions> = {},
): Promise<SnapshotResult> {
  return takeSnapshot({ repo, provider, account: ACCOUNT, concurrency: 4, ...extra });
}

export async function sourceDir(label = 'src'): Promise<string> {
  return fsp.mkdtemp(join(tmpdir(), `sg-${label}-`));
}

export function local(root: string): LocalProvider {
  return new LocalProvider({ path: root }, { configDir: '/' });
}

/** Keeps the provider's behaviour, and records every open(). */
export function counting(inner: Provider): { provider: Provider; opened: string[] } {
  const opened: string[] = [];
  const provider: Provider = {
    features: inner.features,
    changes: (cursor?: string, o?: ChangesOptions) => inner.changes(cursor, o),
    open: async (entry: RemoteEntry, signal?: AbortSignal) => {
      opened.push(entry.path);
      return inner.open(entry, signal);
    },
  };
  return { provider, opened };
}

/** Runs `before` ahead of the inner open() for the paths it names (to delete a file, or to throw). */
export function intercepting(
  inner: Provider,
  before: (entry: RemoteEntry) => Promise<void> | void,
): Provider {
  return {
    features: inner.features,
    changes: (cursor?: string, o?: ChangesOptions) => inner.changes(cursor, o),
    open: async (entry: RemoteEntry, signal?: AbortSignal) => {
      await before(entry);
      return inner.open(entry, signal);
    },
  };
}

export async function allObjects(store: Pick<Store, 'list'>, prefix = ''): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

export async function keys(store: Pick<Store, 'list'>, prefix = ''): Promise<string[]> {
  return (await allObjects(store, prefix)).map((o) => o.key);
}

export async function manifestOf(
  repo: Repository,
  key: string,
): Promise<{ header: ManifestHeader; entries: ManifestEntry[] }> {
  const m = await readManifest(await repo.store.get(key), key);
  const entries: ManifestEntry[] = [];
  for await (const e of m.entries) entries.push(e);
  return { header: m.header, entries };
}

/** A gzip'd NDJSON manifest made by hand, line by line (strings are written as they are). */
export async function gzipLines(lines: Array<string | object>): Promise<Buffer> {
  const text = lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';
  const chunks: Buffer[] = [];
  const gz = createGzip();
  gz.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    gz.on('end', resolve);
    gz.on('error', reject);
  });
  gz.end(text);
  await done;
  return Buffer.concat(chunks);
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function failingStream(after: Buffer, error: Error): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(after);
        return;
      }
      this.destroy(error);
    },
  });
}

/**
 * A provider in memory with a change feed (deltaListing) and a native SHA-256, as a cloud provider
 * has: each change gets a sequence number, and the cursor is the last one seen.
 */
export class FeedProvider implements Provider {
  readonly features = { deltaListing: true, nativeHash: 'sha256' as const, canUpload: false, local: false };
  private readonly files = new Map<string, { data: Buffer; mtime: Date; id: string }>();
  private log: Array<{ seq: number; change: Change }> = [];
  private seq = 0;
  private nextId = 0;
  opened: string[] = [];

  write(path: string, data: Buffer | string, mtime = new Date('2026-10-01T00:00:00.000Z')): void {
    const buf = Buffer.from(data);
    const id = this.files.get(path)?.id ?? `id:${++this.nextId}`;
    this.files.set(path, { data: buf, mtime, id });
    this.log.push({ seq: ++this.seq, change: { kind: 'upsert', entry: this.entry(path)! } });
  }

  folder(path: string): void {
    this.log.push({
      seq: ++this.seq,
      change: {
        kind: 'upsert',
        entry: { path, type: 'dir', size: 0, modified: new Date('2026-10-01T00:00:00.000Z') },
      },
    });
  }

  rename(from: string, to: string): void {
    const f = this.files.get(from)!;
    this.files.delete(from);
    this.files.set(to, f);
    this.log.push({ seq: ++this.seq, change: { kind: 'delete', path: from } });
    this.log.push({ seq: ++this.seq, change: { kind: 'upsert', entry: this.entry(to)! } });
  }

  remove(path: string): void {
    this.files.delete(path);
    this.log.push({ seq: ++this.seq, change: { kind: 'delete', path } });
  }

  private entry(path: string): RemoteEntry | undefined {
    const f = this.files.get(path);
    return (
      f && {
        path,
        type: 'file',
        size: f.data.length,
        modified: f.mtime,
        id: f.id,
        hash: { algo: 'sha256', value: sha256(f.data) },
      }
    );
  }

  async *changes(cursor?: string): AsyncGenerator<Change, string | undefined, undefined> {
    const from = cursor === undefined ? 0 : Number(cursor.replace(/^seq:/, ''));
    if (cursor !== undefined && !(from >= 0 && from <= this.seq))
      throw new SyncguardError('INTERNAL', `bad cursor ${cursor}`);
    for (const { seq, change } of this.log) if (seq > from) yield change;
    return `seq:${this.seq}`;
  }

  async open(entry: RemoteEntry): Promise<Readable> {
    this.opened.push(entry.path);
    const f = this.files.get(entry.path);
    if (!f) throw new SyncguardError('NOT_FOUND', `${entry.path} is gone`);
    return Readable.from([f.data]);
  }
}
