import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Change, PreviousState, Provider, RemoteEntry } from '../../src/providers/types.js';
import { isSyncguardError } from '../../src/errors.js';

/** A source the suite can change between listings: a folder on disk, or an emulator's files. */
export interface ProviderFixture {
  provider: Provider;
  write(path: string, content: Buffer | string, mtime?: Date): Promise<void>;
  mkdir(path: string): Promise<void>;
  /** A file, or a folder and everything below it. */
  remove(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** A new provider for the same account, as the next night's run would create. Default: the same one. */
  reopen?(): Promise<Provider>;
  cleanup(): Promise<void>;
}

export interface Listing {
  changes: Change[];
  cursor: string | undefined;
}

/** The previous state as the snapshot engine hands it to a provider. */
export function previousOf(state: Map<string, RemoteEntry>): PreviousState {
  const ids = new Map([...state.values()].filter((e) => e.id).map((e) => [e.id!, e]));
  return {
    byId: (id) => ids.get(id),
    below: (path) => [...state.values()].filter((e) => path === '' || e.path.startsWith(path + '/')),
  };
}

export async function collect(
  provider: Provider,
  cursor?: string,
  signal?: AbortSignal,
  previous?: Map<string, RemoteEntry>,
): Promise<Listing> {
  const gen = provider.changes(cursor, { signal, previous: previous && previousOf(previous) });
  const changes: Change[] = [];
  for (;;) {
    const r = await gen.next();
    if (r.done) return { changes, cursor: r.value };
    changes.push(r.value);
  }
}

/** What the snapshot engine does with changes: the state after them, path → entry. */
export function applyChanges(
  prev: Map<string, RemoteEntry>,
  listing: Listing,
  delta: boolean,
  caseInsensitive = false,
): Map<string, RemoteEntry> {
  let state = delta ? new Map(prev) : new Map<string, RemoteEntry>();
  for (const c of listing.changes) {
    if (c.kind === 'reset') state = new Map();
    else if (c.kind === 'upsert') state.set(c.entry.path, c.entry);
    else if (c.kind === 'delete') {
      const fold = (p: string) => (caseInsensitive ? p.toLowerCase() : p);
      const d = fold(c.path);
      for (const p of [...state.keys()]) if (fold(p) === d || fold(p).startsWith(d + '/')) state.delete(p);
    }
  }
  return state;
}

export async function readStream(
  provider: Provider,
  entry: RemoteEntry,
  signal?: AbortSignal,
): Promise<{ bytes: Buffer; chunks: number }> {
  const chunks: Buffer[] = [];
  for await (const c of await provider.open(entry, signal)) chunks.push(c as Buffer);
  return { bytes: Buffer.concat(chunks), chunks: chunks.length };
}

const files = (state: Map<string, RemoteEntry>) =>
  [...state.values()]
    .filter((e) => e.type === 'file')
    .map((e) => `${e.path}:${e.size}`)
    .sort();
const dirs = (state: Map<string, RemoteEntry>) =>
  [...state.values()]
    .filter((e) => e.type === 'dir')
    .map((e) => e.path)
    .sort();

/** The behaviour every provider shares. */
export function providerSuite(name: string, setup: () => Promise<ProviderFixture>): void {
  describe(`provider suite: ${name}`, () => {
    let fx: ProviderFixture;
    beforeEach(async () => {
      fx = await setup();
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    const next = async () => (fx.reopen ? fx.reopen() : fx.provider);

    it('lists every file and folder, a folder before what it holds', async () => {
      await fx.mkdir('docs');
      await fx.write('docs/a.txt', 'alpha');
      await fx.write('docs/deep/b.bin', Buffer.alloc(3000, 7));
      await fx.write('top.txt', '');
      await fx.mkdir('empty');
      const listing = await collect(fx.provider);
      const state = applyChanges(new Map(), listing, fx.provider.features.deltaListing);
      expect(files(state)).toEqual(['docs/a.txt:5', 'docs/deep/b.bin:3000', 'top.txt:0']);
      expect(dirs(state)).toEqual(['docs', 'docs/deep', 'empty']);
      const order = listing.changes
        .filter((c) => c.kind === 'upsert')
        .map((c) => (c as { entry: RemoteEntry }).entry.path);
      expect(order.indexOf('docs')).toBeLessThan(order.indexOf('docs/a.txt'));
      expect(order.indexOf('docs/deep')).toBeLessThan(order.indexOf('docs/deep/b.bin'));
      for (const e of state.values()) expect(e.modified).toBeInstanceOf(Date);
    });

    it('after edits, deletes and a folder rename, the next listing brings the state up to date', async () => {
      await fx.write('keep.txt', 'keep');
      await fx.write('edit.txt', 'before');
      await fx.write('gone/x.txt', 'x');
      await fx.write('gone/y/z.txt', 'z');
      await fx.write('old/one.txt', '1');
      await fx.write('old/sub/two.txt', '22');
      const first = await collect(fx.provider);
      const s1 = applyChanges(new Map(), first, fx.provider.features.deltaListing);

      await fx.write('edit.txt', 'after, longer');
      await fx.remove('gone');
      await fx.rename('old', 'new');
      await fx.write('added.txt', 'added');
      const p2 = await next();
      const second = await collect(p2, first.cursor, undefined, s1);
      const s2 = applyChanges(s1, second, p2.features.deltaListing, p2.features.caseInsensitive);
      expect(files(s2)).toEqual([
        'added.txt:5',
        'edit.txt:13',
        'keep.txt:4',
        'new/one.txt:1',
        'new/sub/two.txt:2',
      ]);
      expect(dirs(s2)).toEqual(['new', 'new/sub']);
    });

    it('keeps every name byte for byte: NFC and NFD twins, newlines, 255-byte names', async () => {
      const nfc = 'caf\u00e9.txt';
      const nfd = 'cafe\u0301.txt';
      const newline = 'line\nbreak.txt';
      const long = 'x'.repeat(251) + '.txt';
      const emoji = 'ordner \u{1F600}/d\u00f6c \u00e6\u00f8\u00e5.txt';
      await fx.write(nfc, 'nfc');
      await fx.write(nfd, 'nfd!');
      await fx.write(newline, 'nl');
      await fx.write(long, 'long');
      await fx.write(emoji, 'emoji');
      const state = applyChanges(new Map(), await collect(fx.provider), fx.provider.features.deltaListing);
      const paths = new Set(state.keys());
      for (const p of [nfc, nfd, newline, long, emoji]) expect(paths.has(p), JSON.stringify(p)).toBe(true);
      expect((await readStream(fx.provider, state.get(nfd)!)).bytes.toString()).toBe('nfd!');
      expect((await readStream(fx.provider, state.get(nfc)!)).bytes.toString()).toBe('nfc');
      expect((await readStream(fx.provider, state.get(emoji)!)).bytes.toString()).toBe('emoji');
    });

    it('streams a large file in many chunks with the exact bytes', async () => {
      const big = Buffer.alloc(9 * 1024 * 1024 + 123);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
      await fx.write('big.bin', big);
      const state = applyChanges(new Map(), await collect(fx.provider), fx.provider.features.deltaListing);
      const { bytes, chunks } = await readStream(fx.provider, state.get('big.bin')!);
      expect(chunks).toBeGreaterThan(1);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(
        createHash('sha256').update(big).digest('hex'),
      );
    });

    it('says NOT_FOUND when a listed file is gone before it is read', async () => {
      await fx.write('vanishing.txt', 'soon gone');
      const state = applyChanges(new Map(), await collect(fx.provider), fx.provider.features.deltaListing);
      await fx.remove('vanishing.txt');
      const err = await readStream(fx.provider, state.get('vanishing.txt')!).then(
        () => undefined,
        (e) => e,
      );
      expect(isSyncguardError(err, 'NOT_FOUND'), String(err)).toBe(true);
    });

    it('stops listing when aborted', async () => {
      for (let i = 0; i < 30; i++) await fx.write(`many/f${i}.txt`, String(i));
      const ac = new AbortController();
      ac.abort(new Error('stop now'));
      const err = await collect(fx.provider, undefined, ac.signal).then(
        () => undefined,
        (e) => e,
      );
      expect(isSyncguardError(err, 'ABORTED'), String(err)).toBe(true);
    });
  });
}
