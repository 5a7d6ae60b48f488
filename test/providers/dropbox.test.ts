import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Dropbox, DropboxAuth } from 'dropbox';
import { init, snapshot } from '../../src/api.js';
import { configSchema, dropboxAccountSchema, type DropboxAccountConfig } from '../../src/config/schema.js';
import { isSyncguardError, SyncguardError } from '../../src/errors.js';
import { silentLog } from '../../src/log.js';
import type { PacerOptions } from '../../src/providers/_pacer.js';
import {
  classify,
  createDropboxProvider,
  DropboxContentHasher,
  dropboxContentHash,
  runDropboxAuth,
} from '../../src/providers/dropbox/index.js';
import type { Provider, RemoteEntry } from '../../src/providers/types.js';
import { startDropboxEmulator, type DropboxEmulator, type DropboxNamespace } from '../emulators/dropbox.js';
import { takeSnapshot, type SnapshotProgress } from '../../src/snapshot/take.js';
import { forEachLimit } from '../../src/util.js';
import { DAY, engine } from '../snapshot/_fixtures.js';
import { applyChanges, collect, providerSuite, readStream } from './provider-suite.js';

/** Retries without real waiting: every wait the pacer asks for is recorded, not slept. */
function fastPacer(waits: number[] = []): PacerOptions {
  return {
    baseDelayMs: 1,
    maxDelayMs: 5,
    sleep: async (ms) => {
      waits.push(ms);
    },
  };
}

function accountFor(
  emu: DropboxEmulator,
  over: Partial<Record<keyof DropboxAccountConfig, unknown>> = {},
): DropboxAccountConfig {
  return dropboxAccountSchema.parse({
    name: 'family-dropbox',
    provider: 'dropbox',
    appKey: emu.appKey,
    refreshToken: emu.issueRefreshToken(),
    endpoint: emu.url,
    ...over,
  });
}

async function providerFor(
  emu: DropboxEmulator,
  over: Partial<Record<keyof DropboxAccountConfig, unknown>> = {},
  waits?: number[],
): Promise<Provider> {
  return createDropboxProvider(
    accountFor(emu, over),
    { configDir: '/', log: silentLog },
    { pacer: fastPacer(waits) },
  );
}

/** What the emulator holds, as the engine's state keys: paths without the leading '/'. */
function treeState(ns: DropboxNamespace, under = ''): string[] {
  return [...ns.nodes.values()]
    .filter((n) => under === '' || n.pathLower === under || n.pathLower.startsWith(under + '/'))
    .map((n) => `${n.tag}:${ns.trueDisplay(n).slice(1)}${n.tag === 'file' ? ':' + n.contentHash : ''}`)
    .sort();
}

function listingState(state: Map<string, RemoteEntry>): string[] {
  return [...state.values()]
    .map(
      (e) =>
        `${e.type === 'dir' ? 'folder' : 'file'}:${e.path}${e.type === 'file' ? ':' + e.hash?.value : ''}`,
    )
    .sort();
}

/** n bytes that differ from block to block (and by seed), made quickly. */
const pattern = (n: number, seed = 1) => {
  const base = Buffer.alloc(4096);
  for (let i = 0; i < base.length; i++) base[i] = (i * 31 + seed * 7) & 0xff;
  const b = Buffer.alloc(n, base);
  for (let off = 0; off + 8 <= n; off += 4096) b.writeDoubleLE(off * seed, off);
  return b;
};

const errorOf = <T>(p: Promise<T>) =>
  p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e as SyncguardError,
  );

providerSuite('dropbox', async () => {
  const emu = await startDropboxEmulator();
  const account = accountFor(emu);
  const make = () =>
    createDropboxProvider(account, { configDir: '/', log: silentLog }, { pacer: fastPacer() });
  return {
    provider: await make(),
    write: async (p, content, mtime) => {
      emu.home.put(p, content, { clientModified: mtime });
    },
    mkdir: async (p) => {
      emu.home.mkdir(p);
    },
    remove: async (p) => {
      emu.home.remove(p);
    },
    rename: async (a, b) => {
      emu.home.move(a, b);
    },
    reopen: make,
    cleanup: () => emu.close(),
  };
});

describe('dropbox content_hash', () => {
  /** Written independently of the streaming hasher: whole blocks, then the digest of the digests. */
  function reference(data: Buffer): string {
    const block = 4 * 1024 * 1024;
    const digests: Buffer[] = [];
    for (let off = 0; off < data.length; off += block)
      digests.push(
        createHash('sha256')
          .update(data.subarray(off, off + block))
          .digest(),
      );
    return createHash('sha256').update(Buffer.concat(digests)).digest('hex');
  }

  it('hashes an empty file to the SHA-256 of nothing', () => {
    expect(dropboxContentHash(Buffer.alloc(0))).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  it('matches vectors computed with Python hashlib for one, two-and-a-bit and three blocks', () => {
    // python3: sha256(b''.join(sha256(d[i:i+4MiB]).digest() for i in range(0, len(d), 4MiB))).hexdigest()
    expect(dropboxContentHash(Buffer.alloc(4 * 1024 * 1024, 'a'))).toBe(
      '907a506cf5e706bda5c7a29b43c9c65d8344bd2fa2f22339b359c214812af5a1',
    );
    expect(dropboxContentHash(Buffer.alloc(8 * 1024 * 1024 + 1))).toBe(
      '0abd0f48fe25004ce9ca2e45df928ba9b1052f20666d7dde21ecdbeb7aa96482',
    );
    const d = Buffer.alloc(9_711_423);
    for (let i = 0; i < d.length; i++) d[i] = (i * 31 + 7) & 0xff;
    expect(dropboxContentHash(d)).toBe('818cdb443e7e41218e71dc249b28010d6be324a27f5ea8feda11d78df259c26d');
  });

  it('agrees with an independent computation on a multi-block input, however the input is cut', () => {
    const data = pattern(9_711_423, 3);
    const want = reference(data);
    expect(dropboxContentHash(data)).toBe(want);
    for (const sizes of [
      [4095, 1, 65_537],
      [7, 4 * 1024 * 1024 - 1, 3],
      [4 * 1024 * 1024],
      [1024 * 1024 + 3, 65_536],
    ]) {
      const h = new DropboxContentHasher();
      for (let off = 0, i = 0; off < data.length; i++) {
        const n = sizes[i % sizes.length];
        h.update(data.subarray(off, off + n));
        off += n;
      }
      expect(h.digest(), `chunks of ${sizes.join(', ')}`).toBe(want);
    }
    // One byte changed changes the hash: the block digests are really taken.
    data[5_000_000] ^= 1;
    expect(dropboxContentHash(data)).not.toBe(want);
  });
});

describe('provider: dropbox', () => {
  let emu: DropboxEmulator;
  beforeEach(async () => {
    emu = await startDropboxEmulator();
  });
  afterEach(async () => {
    await emu.close();
  });

  describe('listing', () => {
    it('pages a full listing, then lists 10 changes among 5,000 files with one continue call', async () => {
      for (let d = 0; d < 50; d++)
        for (let f = 0; f < 100; f++) emu.home.put(`Photos/d${d}/f${f}.jpg`, `photo ${d}/${f}`);
      const p = await providerFor(emu);
      const first = await collect(p);
      expect(emu.count('files/list_folder')).toBe(1);
      expect(emu.count('files/list_folder/continue')).toBe(2);
      const s1 = applyChanges(new Map(), first, true, true);
      expect(listingState(s1)).toEqual(treeState(emu.home));
      expect(s1.size).toBe(5051);

      for (let i = 0; i < 4; i++) emu.home.put(`Photos/d${i}/f${i}.jpg`, `edited ${i}`);
      for (let i = 0; i < 3; i++) emu.home.put(`Photos/new/n${i}.jpg`, `new ${i}`);
      emu.home.remove('Photos/d10/f1.jpg');
      emu.home.remove('Photos/d11');
      emu.home.move('Photos/d12/f5.jpg', 'Photos/d13/moved.jpg');
      emu.resetCounts();

      const p2 = await providerFor(emu);
      const second = await collect(p2, first.cursor, undefined, s1);
      expect(emu.counts()).toEqual({ 'oauth2/token': 1, 'files/list_folder/continue': 1 });
      expect(
        second.changes
          .filter((c) => c.kind === 'delete')
          .map((c) => (c as { path: string }).path)
          .sort(),
      ).toEqual(['Photos/d10/f1.jpg', 'Photos/d11', 'Photos/d12/f5.jpg']);
      expect(second.changes.length).toBeLessThan(15);
      const s2 = applyChanges(s1, second, true, true);
      expect(listingState(s2)).toEqual(treeState(emu.home));
      expect(s2.has('Photos/d13/moved.jpg')).toBe(true);
      expect(s2.has('Photos/d11/f0.jpg')).toBe(false);

      // Nothing changed: the cursor still works, and says so with no change at all.
      const third = await collect(p2, second.cursor, undefined, s2);
      expect(third.changes).toEqual([]);
    });

    it('turns a 409 reset into a reset change and a full listing', async () => {
      emu.home.put('a.txt', 'a');
      emu.home.put('Docs/b.txt', 'b');
      const p = await providerFor(emu);
      const first = await collect(p);
      emu.home.put('c.txt', 'c');
      emu.home.remove('a.txt');
      emu.inject('files/list_folder/continue', { kind: 'reset' });
      const second = await collect(p, first.cursor);
      expect(second.changes[0]).toEqual({ kind: 'reset' });
      expect(second.changes.filter((c) => c.kind === 'reset')).toHaveLength(1);
      const s2 = applyChanges(applyChanges(new Map(), first, true), second, true, true);
      expect(listingState(s2)).toEqual(treeState(emu.home));
      // The new cursor is a good one.
      emu.home.put('d.txt', 'd');
      const third = await collect(p, second.cursor);
      expect(third.changes.map((c) => c.kind)).toEqual(['upsert']);
    });

    it('starts over with a reset when Dropbox forgets every cursor, or the stored cursor is not ours', async () => {
      emu.home.put('a.txt', 'a');
      const p = await providerFor(emu);
      const first = await collect(p);
      emu.home.invalidateCursors();
      const second = await collect(p, first.cursor);
      expect(second.changes.map((c) => c.kind)).toEqual(['reset', 'upsert']);
      const third = await collect(p, 'not a cursor');
      expect(third.changes.map((c) => c.kind)).toEqual(['reset', 'upsert']);
    });

    it('treats a 400 to a list_folder/continue cursor as a reset after one retry, so the account is never stuck', async () => {
      emu.home.put('a.txt', 'a');
      const p = await providerFor(emu);
      const first = await collect(p);
      // Once: a passing refusal, the retry goes on from the same cursor.
      emu.home.put('b.txt', 'b');
      emu.inject('files/list_folder/continue', { kind: 'bad-cursor' });
      const second = await collect(p, first.cursor);
      expect(second.changes.map((c) => c.kind)).toEqual(['upsert']);
      // For good: a full listing, and a new cursor that works.
      emu.home.put('c.txt', 'c');
      emu.home.invalidateCursors('bad-request');
      emu.resetCounts();
      const before = emu.requests.length;
      const third = await collect(p, second.cursor);
      expect(third.changes[0]).toEqual({ kind: 'reset' });
      expect(listingState(applyChanges(new Map(), third, true, true))).toEqual(treeState(emu.home));
      expect(
        emu.requests
          .slice(before)
          .filter((r) => r.route === 'files/list_folder/continue')
          .map((r) => r.status),
      ).toEqual([400, 400]);
      expect(emu.count('files/list_folder')).toBe(1);
      emu.home.put('d.txt', 'd');
      expect((await collect(p, third.cursor)).changes.map((c) => c.kind)).toEqual(['upsert']);
    });

    it('takes only the configured folders, each folder as an entry, with one cursor per folder', async () => {
      emu.home.put('Photos/2024/a.jpg', 'a');
      emu.home.put('Documents/tax.pdf', 'tax');
      emu.home.put('Private/secret.txt', 'no');
      emu.home.mkdir('Photos/empty');
      const p = await providerFor(emu, { folders: ['/Photos', 'documents/'] });
      const first = await collect(p);
      const s1 = applyChanges(new Map(), first, true, true);
      expect([...s1.keys()].sort()).toEqual([
        'Documents',
        'Documents/tax.pdf',
        'Photos',
        'Photos/2024',
        'Photos/2024/a.jpg',
        'Photos/empty',
      ]);
      const order = first.changes.map((c) => (c.kind === 'upsert' ? c.entry.path : ''));
      expect(order.indexOf('Photos')).toBeLessThan(order.indexOf('Photos/2024'));
      expect(Object.keys(JSON.parse(first.cursor!).folders).sort()).toEqual(['/documents', '/photos']);

      emu.home.put('Private/other.txt', 'not taken');
      emu.home.put('Documents/new.txt', 'new');
      emu.home.remove('Photos/2024');
      emu.resetCounts();
      const second = await collect(p, first.cursor, undefined, s1);
      expect(emu.count('files/list_folder/continue')).toBe(2);
      expect(second.changes).toEqual([
        { kind: 'delete', path: 'Photos/2024' },
        {
          kind: 'upsert',
          entry: expect.objectContaining({ path: 'Documents/new.txt', type: 'file', size: 3 }),
        },
      ]);

      // Another set of folders: the stored cursors no longer describe it.
      const p3 = await providerFor(emu, { folders: ['/Photos'] });
      const third = await collect(p3, second.cursor);
      expect(third.changes[0]).toEqual({ kind: 'reset' });
    });

    it('says which folder is missing, and refuses overlapping folders before any call', async () => {
      const p = await providerFor(emu, { folders: ['/Nope'] });
      const err = await errorOf(collect(p));
      expect(isSyncguardError(err, 'NOT_FOUND'), String(err)).toBe(true);
      expect(err.message).toMatch(/\/Nope.*does not exist.*check accounts\[\]\.folders/);
      const overlap = await errorOf(providerFor(emu, { folders: ['/Photos', '/photos/2024'] }));
      expect(isSyncguardError(overlap, 'CONFIG'), String(overlap)).toBe(true);
      expect(overlap.message).toMatch(/lies inside "\/Photos"/);
    });

    it('gives files their Dropbox id, content_hash and client_modified, and reports hostile and cloud-only entries', async () => {
      const when = new Date('2021-03-04T05:06:07Z');
      const node = emu.home.put('Notes/plan.txt', 'plan', { clientModified: when });
      emu.home.put('Notes/../escape.txt', 'hostile');
      emu.home.put('Notes/Paper doc.paper', 'cloud', { downloadable: false });
      const { changes } = await collect(await providerFor(emu));
      expect(changes).toContainEqual({
        kind: 'upsert',
        entry: {
          path: 'Notes/plan.txt',
          type: 'file',
          size: 4,
          modified: when,
          id: node.id,
          hash: { algo: 'dropbox', value: node.contentHash },
        },
      });
      expect(changes).toContainEqual({
        kind: 'error',
        path: 'Notes/../escape.txt',
        message: expect.stringContaining('".." segment'),
      });
      expect(changes).toContainEqual({
        kind: 'skip',
        path: 'Notes/Paper doc.paper',
        reason: expect.stringContaining('cannot download'),
      });
      expect(changes.some((c) => c.kind === 'upsert' && c.entry.path.includes('..'))).toBe(false);
    });
  });

  describe('path casing (path_display is best effort)', () => {
    /** path_display of every entry a plain recursive list_folder returns, through the real SDK. */
    async function listedDisplays(e: DropboxEmulator): Promise<string[]> {
      const f = e.fetch;
      const dbx = new Dropbox({
        auth: new DropboxAuth({ refreshToken: e.issueRefreshToken(), clientId: e.appKey, fetch: f }),
        fetch: f,
      });
      const page = await dbx.filesListFolder({ path: '', recursive: true });
      return page.result.entries.map((x) => x.path_display!).sort();
    }

    it('emulator: with casing drift on, path_display keeps the casing a client wrote and a case-only rename left; off, the true casing', async () => {
      const writeAll = (ns: DropboxNamespace) => {
        ns.put('Photos/Trips/a.jpg', 'a');
        ns.put('photos/b.jpg', 'b');
        ns.move('Photos/Trips', 'Photos/trips');
      };
      writeAll(emu.home);
      expect(await listedDisplays(emu)).toEqual([
        '/Photos',
        '/Photos/Trips/a.jpg',
        '/Photos/trips',
        '/photos/b.jpg',
      ]);
      const exact = await startDropboxEmulator({ casingDrift: false });
      try {
        writeAll(exact.home);
        expect(await listedDisplays(exact)).toEqual([
          '/Photos',
          '/Photos/b.jpg',
          '/Photos/trips',
          '/Photos/trips/a.jpg',
        ]);
        // Neither reports a case-only rename to list_folder/continue (the documented behaviour).
        const p = await providerFor(exact);
        const first = await collect(p);
        exact.home.move('Photos', 'PHOTOS');
        expect((await collect(p, first.cursor)).changes).toEqual([]);
      } finally {
        await exact.close();
      }
    });

    it('keeps one spelling per path over nights of drifting path_display, case-only renames and a reset', async () => {
      const ns = emu.home;
      ns.put('Photos/a.jpg', 'a1');
      ns.put('Photos/Trips/t.jpg', 't1');
      ns.mkdir('Docs');
      const p = await providerFor(emu);
      const night1 = await collect(p);
      let state = applyChanges(new Map(), night1, true, true);
      expect(listingState(state)).toEqual(treeState(ns));
      const folded = (s: Map<string, RemoteEntry>) => new Set([...s.keys()].map((k) => k.toLowerCase())).size;

      // A client that spells the folder "photos" adds a file and rewrites another: Dropbox lists them
      // under "/photos/…", the folder is still "Photos".
      ns.put('photos/b.jpg', 'b1');
      ns.put('PHOTOS/trips/t.jpg', 't2');
      const night2 = await collect(p, night1.cursor, undefined, state);
      state = applyChanges(state, night2, true, true);
      expect(listingState(state)).toEqual(treeState(ns));
      expect(folded(state)).toBe(state.size);

      // A file renamed in case only, then edited: the new spelling replaces the old one.
      ns.move('Photos/a.jpg', 'Photos/A.jpg');
      ns.put('photos/A.jpg', 'a2');
      // A folder renamed in case only: not reported, so its files keep the spelling the snapshot has.
      ns.move('Photos/Trips', 'Photos/trips');
      ns.put('photos/trips/u.jpg', 'u1');
      const night3 = await collect(p, night2.cursor, undefined, state);
      state = applyChanges(state, night3, true, true);
      expect(folded(state)).toBe(state.size);
      expect([...state.keys()].sort()).toEqual([
        'Docs',
        'Photos',
        'Photos/A.jpg',
        'Photos/Trips',
        'Photos/Trips/t.jpg',
        'Photos/Trips/u.jpg',
        'Photos/b.jpg',
      ]);
      // A deletion spelled otherwise still removes the entry.
      ns.remove('PHOTOS/B.JPG');
      const night4 = await collect(p, night3.cursor, undefined, state);
      state = applyChanges(state, night4, true, true);
      expect(state.has('Photos/b.jpg')).toBe(false);

      // A full listing (here after a reset) takes each folder's true name.
      emu.inject('files/list_folder/continue', { kind: 'reset' });
      const night5 = await collect(p, night4.cursor, undefined, state);
      state = applyChanges(state, night5, true, true);
      expect(listingState(state)).toEqual(treeState(ns));
      expect(folded(state)).toBe(state.size);
    });

    it('mends a previous snapshot that holds one folder under two spellings', async () => {
      const ns = emu.home;
      ns.put('Photos/a.jpg', 'a');
      ns.put('Photos/b.jpg', 'b');
      const p = await providerFor(emu);
      const first = await collect(p);
      const good = applyChanges(new Map(), first, true, true);
      // What the connector before this fix made of "/photos/b.jpg": a second spelling beside the first.
      const bad = new Map(good);
      const b = bad.get('Photos/b.jpg')!;
      bad.delete('Photos/b.jpg');
      bad.set('photos/b.jpg', { ...b, path: 'photos/b.jpg' });
      ns.put('Photos/c.jpg', 'c');
      const next = await collect(p, first.cursor, undefined, bad);
      const state = applyChanges(bad, next, true, true);
      expect(listingState(state)).toEqual(treeState(ns));
      expect(next.changes.some((c) => c.kind === 'upsert' && c.entry.path === 'Photos/b.jpg')).toBe(true);
    });
  });

  describe('throttling and failures', () => {
    it('waits as long as Retry-After says on 429, then succeeds', async () => {
      emu.home.put('a.txt', 'a');
      emu.inject('files/list_folder', { kind: 'status', status: 429, retryAfter: 1 });
      emu.inject('files/list_folder', { kind: 'status', status: 429, retryAfter: 0 });
      const waits: number[] = [];
      const p = await createDropboxProvider(
        accountFor(emu),
        { configDir: '/', log: silentLog },
        { pacer: { baseDelayMs: 1, maxDelayMs: 5, onWait: (ms) => waits.push(ms) } },
      );
      const { changes } = await collect(p);
      expect(changes).toHaveLength(1);
      expect(emu.count('files/list_folder')).toBe(3);
      expect(waits).toHaveLength(2);
      expect(waits[0]).toBeGreaterThanOrEqual(1000);
      expect(waits[1]).toBeLessThan(1000);
    });

    it('shows a throttling pause in the progress of a snapshot, with its end and the reason (issue 9 point 8)', async () => {
      emu.home.put('a.txt', 'a');
      emu.inject('files/list_folder', { kind: 'status', status: 429, retryAfter: 1 });
      const dir = await mkdtemp(join(tmpdir(), 'sg-dbx-wait-'));
      try {
        const config = configSchema.parse({
          store: { type: 'fs', path: join(dir, 'store') },
          stateDir: join(dir, 'state'),
          accounts: [
            {
              name: 'family-dropbox',
              provider: 'dropbox',
              appKey: emu.appKey,
              refreshToken: emu.issueRefreshToken(),
              endpoint: emu.url,
            },
          ],
        });
        await init({ config, file: join(dir, 'syncguard.yaml'), dir });
        const seen: SnapshotProgress[] = [];
        const started = Date.now();
        const [run] = await snapshot({ config, file: join(dir, 'syncguard.yaml'), dir }, [], {
          onProgress: (_, p) => seen.push(p),
        });
        expect(run.ok).toBe(true);
        const waits = seen.filter((p) => p.waiting);
        expect(waits.length).toBeGreaterThan(0);
        expect(waits[0].waiting!.reason).toMatch(/slow down/);
        expect(waits[0].waiting!.until.getTime()).toBeGreaterThanOrEqual(started + 1000);
        expect(seen.at(-1)!.waiting).toBeUndefined();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('retries 500 and 503 answers and a connection refused before it answered', async () => {
      emu.home.put('a.txt', 'content of a');
      const p = await providerFor(emu);
      const entry = applyChanges(new Map(), await collect(p), true).get('a.txt')!;
      emu.inject('files/download', { kind: 'status', status: 500 }, 2);
      emu.inject('files/download', { kind: 'status', status: 503, retryAfter: 0 });
      emu.inject('files/download', { kind: 'cut' });
      expect((await readStream(p, entry)).bytes.toString()).toBe('content of a');
      expect(emu.count('files/download')).toBe(5);
    });

    it("gives up after the pacer's bound with PROVIDER_UNAVAILABLE", async () => {
      emu.home.put('a.txt', 'a');
      emu.inject('files/list_folder', { kind: 'status', status: 500 }, 100);
      const p = await createDropboxProvider(
        accountFor(emu),
        { configDir: '/', log: silentLog },
        { pacer: { ...fastPacer(), maxAttempts: 3 } },
      );
      const err = await errorOf(collect(p));
      expect(isSyncguardError(err, 'PROVIDER_UNAVAILABLE'), String(err)).toBe(true);
      expect(emu.count('files/list_folder')).toBe(3);
    });

    it('resumes a download cut mid-body with Range and delivers the exact bytes', async () => {
      const data = pattern(3 * 1024 * 1024 + 17);
      emu.home.put('big.bin', data);
      const p = await providerFor(emu);
      const entry = applyChanges(new Map(), await collect(p), true).get('big.bin')!;
      emu.inject('files/download', { kind: 'cut', afterBytes: 1024 * 1024 });
      emu.inject('files/download', { kind: 'cut', afterBytes: 512 * 1024 });
      const { bytes } = await readStream(p, entry);
      expect(bytes.equals(data)).toBe(true);
      const downloads = emu.requests.filter((r) => r.route === 'files/download');
      expect(downloads).toHaveLength(3);
      expect(downloads[0].range).toBeUndefined();
      expect(downloads[1].range).toMatch(/^bytes=\d+-$/);
      expect(Number(/\d+/.exec(downloads[2].range!)![0])).toBeGreaterThan(
        Number(/\d+/.exec(downloads[1].range!)![0]),
      );
    });

    it('stops a download when aborted, with ABORTED', async () => {
      emu.home.put('big.bin', pattern(4 * 1024 * 1024));
      const p = await providerFor(emu);
      const entry = applyChanges(new Map(), await collect(p), true).get('big.bin')!;
      const ac = new AbortController();
      const stream = await p.open(entry, ac.signal);
      let got = 0;
      const err = await (async () => {
        for await (const chunk of stream) {
          got += (chunk as Buffer).length;
          if (got > 100_000) ac.abort(new Error('user pressed ctrl-c'));
        }
      })().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isSyncguardError(err, 'ABORTED'), String(err)).toBe(true);
      expect(got).toBeLessThan(4 * 1024 * 1024);
    });

    it('errors the stream with INTEGRITY when the bytes do not match content_hash', async () => {
      emu.home.put('photo.jpg', pattern(200_000));
      const p = await providerFor(emu);
      const entry = applyChanges(new Map(), await collect(p), true).get('photo.jpg')!;
      emu.inject('files/download', { kind: 'corrupt' });
      const err = await errorOf(readStream(p, entry));
      expect(isSyncguardError(err, 'INTEGRITY'), String(err)).toBe(true);
      expect(err.message).toMatch(/do not match its content_hash/);
      // A listed hash that the served file does not have is refused before any byte is read.
      const stale = { ...entry, hash: { algo: 'dropbox' as const, value: '0'.repeat(64) } };
      const err2 = await errorOf(readStream(p, stale));
      expect(isSyncguardError(err2, 'INTEGRITY'), String(err2)).toBe(true);
      expect((await readStream(p, entry)).bytes.length).toBe(200_000);
    });

    it('records a file Dropbox will not serve (restricted_content) as skipped with the reason, once, and not as failed', async () => {
      emu.home.put('Music/ok.mp3', 'fine');
      emu.home.put('Music/claimed.mp3', 'claimed', { restricted: true });
      const p = await providerFor(emu);
      const entry = applyChanges(new Map(), await collect(p), true).get('Music/claimed.mp3')!;
      // The emulator's switch: listed as usual, refused on download.
      const err = await errorOf(readStream(p, entry));
      expect(err.code, String(err)).toBe('SKIPPED');
      expect(err.message).toMatch(/restricted/);
      expect(emu.count('files/download')).toBe(1);

      const { repo, clock } = engine();
      const account = { name: 'family-dropbox', provider: 'dropbox' };
      const night1 = await takeSnapshot({ repo, provider: p, account });
      expect(night1.header.failures).toEqual([]);
      expect(night1.header.skipped).toEqual([
        { path: 'Music/claimed.mp3', reason: expect.stringMatching(/restricted/) as string },
      ]);
      emu.resetCounts();
      clock.advance(DAY);
      const night2 = await takeSnapshot({ repo, provider: p, account });
      expect(night2.header.failures).toEqual([]);
      expect(night2.header.skipped).toEqual([]);
      expect(emu.count('files/download')).toBe(0);
    });

    it('classifies what the SDK and fetch throw', () => {
      const headers = (h: Record<string, string>) => new Headers(h);
      const rerr = (status: number, error: unknown, h: Record<string, string> = {}) => ({
        name: 'DropboxResponseError',
        status,
        headers: headers(h),
        error,
      });
      const ctx = { account: 'acct' };
      const limited = classify(
        rerr(
          429,
          {
            error_summary: 'too_many_requests/..',
            error: { reason: { '.tag': 'too_many_requests' }, retry_after: 7 },
          },
          { 'Retry-After': '3' },
        ),
        ctx,
      );
      expect([limited.code, limited.retryAfterMs, limited.retryable]).toEqual([
        'PROVIDER_RATE_LIMITED',
        3000,
        true,
      ]);
      expect(classify(rerr(429, 'Too many requests'), ctx).code).toBe('PROVIDER_RATE_LIMITED');
      expect(
        classify(
          rerr(409, {
            error_summary: 'path/not_found/..',
            error: { '.tag': 'path', path: { '.tag': 'not_found' } },
          }),
          ctx,
        ).code,
      ).toBe('NOT_FOUND');
      expect(classify(rerr(409, { error_summary: 'path/conflict/file/..', error: {} }), ctx).code).toBe(
        'EXISTS',
      );
      expect(classify(rerr(409, { error_summary: 'reset/..', error: { '.tag': 'reset' } }), ctx).code).toBe(
        'CURSOR_RESET',
      );
      expect(
        classify(rerr(409, { error_summary: 'path/too_many_write_operations/..', error: {} }), ctx).code,
      ).toBe('PROVIDER_RATE_LIMITED');
      expect(classify(rerr(502, 'Bad gateway'), ctx).code).toBe('PROVIDER_UNAVAILABLE');
      expect(
        classify(
          rerr(401, { error_summary: 'invalid_access_token/', error: { '.tag': 'invalid_access_token' } }),
          ctx,
        ).code,
      ).toBe('PROVIDER_AUTH');
      const grant = classify(
        rerr(400, { error: 'invalid_grant', error_description: 'refresh token is invalid or revoked' }),
        ctx,
      );
      expect(grant.code).toBe('PROVIDER_AUTH');
      expect(grant.message).toContain('syncguard auth dropbox --account acct');
      expect(
        classify(
          Object.assign(new TypeError('fetch failed'), {
            cause: Object.assign(new Error('x'), { code: 'ECONNRESET' }),
          }),
          ctx,
        ).code,
      ).toBe('PROVIDER_UNAVAILABLE');
      expect(classify(new TypeError('terminated'), ctx).retryable).toBe(true);
      const ac = new AbortController();
      ac.abort();
      expect(classify(new TypeError('fetch failed'), { ...ctx, signal: ac.signal }).code).toBe('ABORTED');
    });
  });

  describe('tokens', () => {
    it('renews an access token Dropbox ended early, once for all calls, and retries them', async () => {
      for (let i = 0; i < 6; i++) emu.home.put(`f${i}.txt`, `file ${i}`);
      const p = await providerFor(emu);
      const state = applyChanges(new Map(), await collect(p), true);
      expect(emu.count('oauth2/token')).toBe(1);
      emu.expireAccessTokens();
      const texts = await Promise.all(
        [...state.values()].map(async (e) => (await readStream(p, e)).bytes.toString()),
      );
      expect(texts.sort()).toEqual([0, 1, 2, 3, 4, 5].map((i) => `file ${i}`));
      expect(emu.count('oauth2/token')).toBe(2);
      // At least one download met the expired token and was sent again.
      expect(emu.count('files/download')).toBeGreaterThan(6);

      emu.inject('files/list_folder', { kind: 'expired-token' });
      expect((await collect(p)).changes).toHaveLength(6);
      expect(emu.count('oauth2/token')).toBe(3);
      expect(emu.count('files/list_folder')).toBe(3);
    });

    it('ends with PROVIDER_AUTH, naming the command to run and no token, when the refresh token is revoked', async () => {
      emu.home.put('a.txt', 'a');
      const refreshToken = emu.issueRefreshToken();
      const p = await providerFor(emu, { refreshToken });
      await collect(p);
      emu.revokeRefreshToken(refreshToken);
      emu.expireAccessTokens();
      const err = await errorOf(collect(p));
      expect(isSyncguardError(err, 'PROVIDER_AUTH'), String(err)).toBe(true);
      expect(err.message).toContain('run `syncguard auth dropbox --account family-dropbox` again');
      expect(err.retryable).toBe(false);
      const shown = inspect(err, { depth: 10 }) + JSON.stringify(err) + String(err.stack);
      expect(shown).not.toContain(refreshToken);
      expect(shown).not.toMatch(/sl\.[A-Za-z0-9_-]{20,}/);

      const fresh = await providerFor(emu, { refreshToken });
      const err2 = await errorOf(collect(fresh));
      expect(isSyncguardError(err2, 'PROVIDER_AUTH'), String(err2)).toBe(true);
      expect(inspect(err2, { depth: 10 })).not.toContain(refreshToken);
    });

    it('asks to run auth when no refresh token is configured or saved', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sg-dbx-'));
      try {
        const account = accountFor(emu, { refreshToken: undefined, credentials: 'missing.json' });
        const err = await errorOf(createDropboxProvider(account, { configDir: dir, log: silentLog }));
        expect(isSyncguardError(err, 'PROVIDER_AUTH'), String(err)).toBe(true);
        expect(err.message).toContain(join(dir, 'missing.json'));
        expect(err.message).toContain('syncguard auth dropbox --account family-dropbox');
        await writeFile(join(dir, 'garbage.json'), '{"nope": true}');
        const err2 = await errorOf(
          createDropboxProvider(
            { ...account, credentials: 'garbage.json' },
            { configDir: dir, log: silentLog },
          ),
        );
        expect(err2.message).toMatch(/not a Dropbox credentials file/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('auth dropbox', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sg-dbx-auth-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    /** The user: opens the printed address, clicks Allow, copies the code from the page. */
    async function userCopiesCode(lines: string[]): Promise<string> {
      const url = lines.map((l) => l.trim()).find((l) => l.startsWith('https://'))!;
      const page = await (await emu.fetch(url)).text();
      return /value="([^"]+)"/.exec(page)![1];
    }

    it('runs the PKCE flow end to end and saves the refresh token in a 0600 file that the provider then uses', async () => {
      const account = accountFor(emu, { refreshToken: undefined, credentials: 'creds/family.json' });
      const lines: string[] = [];
      const { credentialsPath } = await runDropboxAuth({
        account,
        configDir: dir,
        print: (l) => lines.push(l),
        prompt: async () => `  ${await userCopiesCode(lines)}\n`,
      });
      expect(credentialsPath).toBe(join(dir, 'creds', 'family.json'));
      const url = new URL(lines.map((l) => l.trim()).find((l) => l.startsWith('https://'))!);
      expect(url.searchParams.get('token_access_type')).toBe('offline');
      expect(url.searchParams.get('code_challenge_method')).toBe('S256');
      expect(url.searchParams.get('client_id')).toBe(emu.appKey);
      expect((await stat(credentialsPath)).mode & 0o777).toBe(0o600);
      expect(await readdir(join(dir, 'creds'))).toEqual(['family.json']);
      const saved = JSON.parse(await readFile(credentialsPath, 'utf8'));
      expect(saved).toMatchObject({ provider: 'dropbox', appKey: emu.appKey, accountId: emu.user.accountId });
      expect(saved.refreshToken).toMatch(/^rt-/);
      expect(lines.join('\n')).not.toContain(saved.refreshToken);
      expect(lines.join('\n')).toContain('Ada Lovelace');

      emu.home.put('hello.txt', 'hello');
      const p = await createDropboxProvider(account, { configDir: dir, log: silentLog });
      const { changes } = await collect(p);
      expect(changes).toHaveLength(1);
    });

    it('is refused when the code was asked for with another PKCE challenge, and the emulator checks the verifier', async () => {
      const account = accountFor(emu, { refreshToken: undefined, credentials: 'c.json' });
      const foreign = emu.authorize(
        `https://www.dropbox.com/oauth2/authorize?client_id=${emu.appKey}&response_type=code&token_access_type=offline&code_challenge_method=S256&code_challenge=${createHash('sha256').update('another verifier').digest('base64url')}`,
      );
      const err = await errorOf(
        runDropboxAuth({ account, configDir: dir, print: () => {}, prompt: async () => foreign }),
      );
      expect(isSyncguardError(err, 'PROVIDER_AUTH'), String(err)).toBe(true);
      expect(err.message).toMatch(/did not accept the access code/);
      expect(await readdir(dir)).toEqual([]);

      const token = async (params: Record<string, string>) => {
        const res = await emu.fetch(
          `https://api.dropboxapi.com/oauth2/token?${new URLSearchParams(params).toString()}`,
          { method: 'POST' },
        );
        return { status: res.status, body: (await res.json()) as { error?: string; refresh_token?: string } };
      };
      const verifier = 'v'.repeat(64);
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      const ask = () =>
        emu.authorize(
          `https://www.dropbox.com/oauth2/authorize?client_id=${emu.appKey}&response_type=code&token_access_type=offline&code_challenge_method=S256&code_challenge=${challenge}`,
        );
      expect(
        await token({
          grant_type: 'authorization_code',
          code: ask(),
          client_id: emu.appKey,
          code_verifier: 'w'.repeat(64),
        }),
      ).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
      expect(
        (await token({ grant_type: 'authorization_code', code: ask(), client_id: emu.appKey })).status,
      ).toBe(400);
      const code = ask();
      const ok = await token({
        grant_type: 'authorization_code',
        code,
        client_id: emu.appKey,
        code_verifier: verifier,
      });
      expect(ok.status).toBe(200);
      expect(ok.body.refresh_token).toMatch(/^rt-/);
      expect(
        await token({
          grant_type: 'authorization_code',
          code,
          client_id: emu.appKey,
          code_verifier: verifier,
        }),
      ).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    });

    it('refuses something that is not a code, without calling Dropbox', async () => {
      const account = accountFor(emu, { refreshToken: undefined, credentials: 'c.json' });
      const err = await errorOf(
        runDropboxAuth({ account, configDir: dir, print: () => {}, prompt: async () => 'paste: it here' }),
      );
      expect(isSyncguardError(err, 'USAGE'), String(err)).toBe(true);
      expect(emu.count('oauth2/token')).toBe(0);
    });
  });

  describe('restore back (upload)', () => {
    const body = (b: Buffer) => Readable.from([b.subarray(0, 1000), b.subarray(1000)]);

    it('uploads a small file with its original modified time, and refuses an existing one unless told to overwrite', async () => {
      const p = await providerFor(emu);
      const when = new Date('2020-02-02T02:02:02.789Z');
      await p.upload!('Restored/Photos/a.txt', body(Buffer.from('x'.repeat(1500))), 1500, {
        overwrite: false,
        modified: when,
      });
      const node = emu.home.get('Restored/Photos/a.txt')!;
      expect(node.content!.toString()).toBe('x'.repeat(1500));
      expect(node.clientModified).toBe('2020-02-02T02:02:02Z');
      // A closed session committed by finish_batch_v2, not a files/upload of its own.
      expect([
        emu.count('files/upload_session/start'),
        emu.count('files/upload_session/finish_batch_v2'),
        emu.count('files/upload'),
      ]).toEqual([1, 1, 0]);

      const err = await errorOf(
        p.upload!('Restored/Photos/a.txt', body(Buffer.from('y'.repeat(1500))), 1500, { overwrite: false }),
      );
      expect(isSyncguardError(err, 'EXISTS'), String(err)).toBe(true);
      expect(err.message).toMatch(/already exists on Dropbox/);
      expect(emu.home.get('Restored/Photos/a.txt')!.content!.toString()).toBe('x'.repeat(1500));
      // The same bytes again are refused too: add never lands on an existing file.
      expect(
        isSyncguardError(
          await errorOf(
            p.upload!('Restored/Photos/a.txt', body(Buffer.from('x'.repeat(1500))), 1500, {
              overwrite: false,
            }),
          ),
          'EXISTS',
        ),
      ).toBe(true);

      await p.upload!('Restored/Photos/a.txt', body(Buffer.from('z'.repeat(1500))), 1500, {
        overwrite: true,
      });
      expect(emu.home.get('Restored/Photos/a.txt')!.content!.toString()).toBe('z'.repeat(1500));
      expect(emu.home.get('Restored/Photos/a.txt')!.id).toBe(node.id);
    });

    it('uploads a large file through an upload session in 8 MiB chunks, exact bytes', async () => {
      const data = pattern(20 * 1024 * 1024 + 5, 9);
      const p = await providerFor(emu);
      await p.upload!(
        'Restored/big.bin',
        Readable.from([data.subarray(0, 3_000_000), data.subarray(3_000_000)]),
        data.length,
        { overwrite: false, modified: new Date('2019-01-01T00:00:00Z') },
      );
      const node = emu.home.get('Restored/big.bin')!;
      expect(node.content!.equals(data)).toBe(true);
      expect(node.clientModified).toBe('2019-01-01T00:00:00Z');
      expect([
        emu.count('files/upload_session/start'),
        emu.count('files/upload_session/append_v2'),
        emu.count('files/upload_session/finish_batch_v2'),
        emu.count('files/upload_session/finish'),
      ]).toEqual([1, 2, 1, 0]);

      const err = await errorOf(
        p.upload!('Restored/big.bin', Readable.from([pattern(data.length, 2)]), data.length, {
          overwrite: false,
        }),
      );
      expect(isSyncguardError(err, 'EXISTS'), String(err)).toBe(true);
      expect(emu.count('files/upload_session/start')).toBe(1);

      const other = pattern(17 * 1024 * 1024, 4);
      await p.upload!('Restored/big.bin', Readable.from([other]), other.length, { overwrite: true });
      expect(emu.home.get('Restored/big.bin')!.content!.equals(other)).toBe(true);
    });

    it('carries on after an answer lost in transit (incorrect_offset) and after a lost commit', async () => {
      const data = pattern(25 * 1024 * 1024, 5);
      const p = await providerFor(emu);
      emu.inject('files/upload_session/append_v2', { kind: 'drop-response' });
      emu.inject('files/upload_session/finish_batch_v2', { kind: 'drop-response' });
      emu.inject('files/upload_session/append_v2', { kind: 'status', status: 429 });
      await p.upload!('lost.bin', Readable.from([data]), data.length, { overwrite: false });
      expect(emu.home.get('lost.bin')!.content!.equals(data)).toBe(true);

      const appends = emu.requests
        .filter((r) => r.route === 'files/upload_session/append_v2')
        .map((r) => r.status);
      expect(appends).toContain(409);
      expect(appends).toContain(429);
      // The commit went through but its answer was lost: the retried batch finds the session gone and
      // the file there with our content_hash, which is success, not a conflict.
      expect(
        emu.requests.filter((r) => r.route === 'files/upload_session/finish_batch_v2').map((r) => r.status),
      ).toEqual([undefined, 200]);
      expect(emu.count('files/get_metadata')).toBe(2);

      emu.inject('files/upload_session/finish_batch_v2', { kind: 'drop-response' });
      await p.upload!('small.txt', Readable.from([Buffer.from('small')]), 5, { overwrite: false });
      expect(emu.home.get('small.txt')!.content!.toString()).toBe('small');
      expect(emu.count('files/upload_session/finish_batch_v2')).toBe(4);
      // Someone else's file of other content is still a conflict, retried commit or not.
      emu.home.put('theirs.txt', 'theirs');
      emu.inject('files/upload_session/finish_batch_v2', { kind: 'drop-response' });
      const err = await errorOf(
        p.upload!('theirs.txt', Readable.from([Buffer.from('mine!!')]), 6, { overwrite: false }),
      );
      expect(isSyncguardError(err, 'EXISTS'), String(err)).toBe(true);
    });

    it('commits a restore of many files in batches (finish_batch_v2), so uploads in parallel never meet too_many_write_operations', async () => {
      const p = await providerFor(emu);
      const files = Array.from({ length: 24 }, (_, i): [string, Buffer] => [
        `Restored/f${i}.txt`,
        Buffer.from(`file ${i} `.repeat(i + 1)),
      ]);
      // As a restore does: four files at a time.
      await forEachLimit(files, 4, ([path, data]) =>
        p.upload!(path, Readable.from([data]), data.length, { overwrite: false }),
      );
      for (const [path, data] of files) expect(emu.home.get(path)!.content!.equals(data)).toBe(true);
      expect(emu.contention).toBe(0);
      expect(emu.count('files/upload')).toBe(0);
      expect(emu.count('files/upload_session/finish_batch_v2')).toBeLessThanOrEqual(12);
    });

    it('emulator: a commit meets too_many_write_operations while another holds the write lock; with writeLockMs 0 never', async () => {
      // Four files/upload at once, as the connector committed before batches.
      const raw = async (e: DropboxEmulator) => {
        const f = e.fetch;
        const dbx = new Dropbox({
          auth: new DropboxAuth({ refreshToken: e.issueRefreshToken(), clientId: e.appKey, fetch: f }),
          fetch: f,
        });
        const got = await Promise.allSettled(
          [0, 1, 2, 3].map((i) => dbx.filesUpload({ path: `/y${i}.txt`, contents: Buffer.from('y') })),
        );
        return got.filter((g) => g.status === 'rejected').length;
      };
      expect(await raw(emu)).toBeGreaterThan(0);
      expect(emu.contention).toBeGreaterThan(0);
      const off = await startDropboxEmulator({ writeLockMs: 0 });
      try {
        expect(await raw(off)).toBe(0);
        expect(off.contention).toBe(0);
      } finally {
        await off.close();
      }
    });

    it('an upload whose answers are lost at every step (append, closing piece, commit) is committed once, as ours', async () => {
      const p = await providerFor(emu);
      const big = pattern(17 * 1024 * 1024 + 3, 7);
      // The emulator applies each call, then closes the connection: the client never hears of it.
      emu.inject('files/upload_session/append_v2', { kind: 'drop-response' }, 2);
      emu.inject('files/upload_session/finish', { kind: 'drop-response' });
      emu.inject('files/upload_session/finish_batch_v2', { kind: 'drop-response' });
      await p.upload!('Restored/lost-everywhere.bin', Readable.from([big]), big.length, { overwrite: false });
      expect(emu.home.get('Restored/lost-everywhere.bin')!.content!.equals(big)).toBe(true);
      expect(emu.home.get('Restored/lost-everywhere (1).bin')).toBeUndefined();
      const offsets = emu.requests
        .filter((r) => r.route === 'files/upload_session/append_v2' && r.status === 409)
        .map((r) => (r.arg as { cursor: { offset: number } }).cursor.offset);
      expect(offsets.length).toBeGreaterThan(0);
      // A file of one session piece and a closing one: the closing append's answer is lost.
      const two = pattern(9 * 1024 * 1024, 8);
      emu.inject('files/upload_session/append_v2', { kind: 'drop-response' });
      emu.inject('files/upload_session/finish', { kind: 'drop-response' });
      emu.inject('files/upload_session/finish_batch_v2', { kind: 'drop-response' });
      await p.upload!('Restored/closing.bin', Readable.from([two]), two.length, { overwrite: false });
      expect(emu.home.get('Restored/closing.bin')!.content!.equals(two)).toBe(true);

      // Restores upload several files at once; each commit takes the namespace's write lock, and a
      // finish that carries data keeps it when its commit is refused: the retry resumes at correct_offset.
      const files = [0, 1, 2, 3].map((i): [string, Buffer] => [
        `Restored/par${i}.bin`,
        pattern(9 * 1024 * 1024, 20 + i),
      ]);
      await Promise.all(
        files.map(([path, data]) =>
          p.upload!(path, Readable.from([data]), data.length, { overwrite: false }),
        ),
      );
      for (const [path, data] of files) expect(emu.home.get(path)!.content!.equals(data)).toBe(true);
    });

    it('refuses a body whose length is not the announced size', async () => {
      const p = await providerFor(emu);
      const err = await errorOf(
        p.upload!('short.txt', Readable.from([Buffer.from('abc')]), 10, { overwrite: false }),
      );
      expect(isSyncguardError(err, 'INTEGRITY'), String(err)).toBe(true);
      expect(emu.home.get('short.txt')).toBeUndefined();
    });

    it('makes folders, says whether a path exists, and refuses a folder where a file is', async () => {
      const p = await providerFor(emu);
      await p.mkdir!('Restored/2024/empty');
      await p.mkdir!('Restored/2024/empty');
      expect(emu.home.get('Restored/2024/empty')?.tag).toBe('folder');
      expect(await p.exists!('restored/2024')).toBe(true);
      expect(await p.exists!('Restored/nothing')).toBe(false);
      emu.home.put('Restored/file', 'f');
      expect(isSyncguardError(await errorOf(p.mkdir!('Restored/file')), 'EXISTS')).toBe(true);
      expect(
        isSyncguardError(
          await errorOf(p.upload!('../x', Readable.from([]), 0, { overwrite: false })),
          'UNSAFE_PATH',
        ),
      ).toBe(true);
    });
  });

  describe('Dropbox Business', () => {
    let team: DropboxEmulator;
    beforeAll(async () => {
      team = await startDropboxEmulator({ team: { members: ['dbmid:AADbob'] } });
    });
    afterAll(async () => {
      await team.close();
    });

    it('lists the team space with Dropbox-API-Path-Root from root_info', async () => {
      team.teamRoot!.put('Finance/q1.xlsx', 'numbers');
      team.home.put('mine.txt', 'home only');
      const p = await providerFor(team, { root: 'team' });
      const state = applyChanges(new Map(), await collect(p), true);
      expect([...state.keys()].sort()).toEqual(['Finance', 'Finance/q1.xlsx']);
      expect((await readStream(p, state.get('Finance/q1.xlsx')!)).bytes.toString()).toBe('numbers');
      const listed = team.requests.filter(
        (r) => r.route === 'files/list_folder' || r.route === 'files/download',
      );
      expect(listed.length).toBeGreaterThan(0);
      for (const r of listed)
        expect(JSON.parse(r.pathRoot!)).toEqual({ '.tag': 'root', root: team.teamRoot!.id });
      expect(team.requests.find((r) => r.route === 'users/get_current_account')!.pathRoot).toBeUndefined();

      const byNs = await providerFor(team, { root: { namespaceId: team.teamRoot!.id } });
      expect([...applyChanges(new Map(), await collect(byNs), true).keys()].sort()).toEqual([
        'Finance',
        'Finance/q1.xlsx',
      ]);
      expect(JSON.parse(team.requests.at(-1)!.pathRoot!)).toEqual({
        '.tag': 'namespace_id',
        namespace_id: team.teamRoot!.id,
      });
    });

    it('starts over with a reset when the team space root changes (422 invalid_root)', async () => {
      team.replaceTeamRoot().put('Old/a.txt', 'a');
      const p = await providerFor(team, { root: 'team' });
      const first = await collect(p);
      expect(first.changes.map((c) => (c.kind === 'upsert' ? c.entry.path : c.kind))).toEqual([
        'Old',
        'Old/a.txt',
      ]);
      const fresh = team.replaceTeamRoot();
      fresh.put('New/b.txt', 'b');
      const second = await collect(p, first.cursor);
      expect(second.changes.map((c) => (c.kind === 'upsert' ? c.entry.path : c.kind))).toEqual([
        'reset',
        'New',
        'New/b.txt',
      ]);
      expect(
        team.requests.filter((r) => r.route === 'files/list_folder/continue').map((r) => r.status),
      ).toContain(422);
      expect(
        JSON.parse(team.requests.filter((r) => r.route === 'files/list_folder').at(-1)!.pathRoot!),
      ).toEqual({ '.tag': 'root', root: fresh.id });
      const third = await collect(p, second.cursor);
      expect(third.changes).toEqual([]);
    });

    it('acts as a team member with Dropbox-API-Select-User, and says so when the member is wrong', async () => {
      team.members.get('dbmid:AADbob')!.home.put('bob.txt', 'bob');
      const p = await providerFor(team, {
        refreshToken: team.issueRefreshToken({ team: true }),
        selectUser: 'dbmid:AADbob',
      });
      const state = applyChanges(new Map(), await collect(p), true);
      expect([...state.keys()]).toEqual(['bob.txt']);
      expect(team.requests.filter((r) => r.route === 'files/list_folder').at(-1)!.selectUser).toBe(
        'dbmid:AADbob',
      );

      const wrong = await providerFor(team, {
        refreshToken: team.issueRefreshToken({ team: true }),
        selectUser: 'dbmid:nobody',
      });
      const err = await errorOf(collect(wrong));
      expect(isSyncguardError(err, 'CONFIG'), String(err)).toBe(true);
      expect(err.message).toMatch(/selectUser/);
    });
  });

  describe("Dropbox team space (the emulator's teamSpace switch)", () => {
    interface RawAnswer {
      root_info?: Record<string, string>;
      entries?: Array<{ path_display: string; sharing_info?: { shared_folder_id?: string } }>;
    }
    /** A call made without the connector, with an access token the emulator gave. */
    async function rawCall(emu: DropboxEmulator, route: string, body: unknown, pathRoot?: string) {
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: emu.issueRefreshToken(),
        client_id: emu.appKey,
      });
      const token = (await (
        await fetch(`${emu.url}/oauth2/token`, { method: 'POST', body: form })
      ).json()) as {
        access_token: string;
      };
      const res = await fetch(`${emu.url}/2/${route}`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${token.access_token}`,
          'Content-Type': 'application/json',
          ...(pathRoot ? { 'Dropbox-API-Path-Root': pathRoot } : {}),
        },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as RawAnswer };
    }

    async function teamSpaceAccount(rootInfoTag: 'team' | 'user') {
      const emu = await startDropboxEmulator({
        team: { members: ['dbmid:AADbob'] },
        teamSpace: { folders: ['Finance', 'Marketing'], rootInfoTag },
      });
      emu.teamFolders.get('Finance')!.put('Reports/q1.xlsx', 'numbers');
      emu.teamFolders.get('Marketing')!.put('plan.txt', 'plan');
      emu.home.put('mine.txt', 'home only');
      emu.members.get('dbmid:AADbob')!.home.put('bob.txt', 'private to Bob');
      return emu;
    }

    it.each(['team', 'user'] as const)(
      'root: team of a team-space account (root_info %s) takes the team folders and the member folder, night after night',
      async (tag) => {
        const emu = await teamSpaceAccount(tag);
        try {
          const p = await providerFor(emu, { root: 'team' });
          const first = await collect(p);
          const state = applyChanges(new Map(), first, true);
          expect([...state.keys()].sort()).toEqual([
            'Ada Lovelace',
            'Ada Lovelace/mine.txt',
            'Finance',
            'Finance/Reports',
            'Finance/Reports/q1.xlsx',
            'Marketing',
            'Marketing/plan.txt',
          ]);
          expect((await readStream(p, state.get('Finance/Reports/q1.xlsx')!)).bytes.toString()).toBe(
            'numbers',
          );
          expect((await readStream(p, state.get('Ada Lovelace/mine.txt')!)).bytes.toString()).toBe(
            'home only',
          );

          emu.teamFolders.get('Finance')!.put('Reports/q2.xlsx', 'more numbers');
          emu.home.put('mine.txt', 'home, edited');
          emu.teamFolders.get('Marketing')!.remove('plan.txt');
          const second = await collect(p, first.cursor);
          const next = applyChanges(state, second, true);
          expect([...next.keys()].sort()).toEqual([
            'Ada Lovelace',
            'Ada Lovelace/mine.txt',
            'Finance',
            'Finance/Reports',
            'Finance/Reports/q1.xlsx',
            'Finance/Reports/q2.xlsx',
            'Marketing',
          ]);
          expect((await readStream(p, next.get('Ada Lovelace/mine.txt')!)).bytes.toString()).toBe(
            'home, edited',
          );
          expect(emu.count('files/list_folder')).toBe(1);

          // A restore back into the team space writes into the mounted namespaces.
          await p.upload!('Finance/Reports/q3.xlsx', Readable.from([Buffer.from('q3')]), 2, {
            overwrite: false,
          });
          await p.mkdir!('Ada Lovelace/Restored');
          expect(emu.teamFolders.get('Finance')!.get('Reports/q3.xlsx')!.content!.toString()).toBe('q3');
          expect(emu.home.get('Restored')?.tag).toBe('folder');
          expect(await p.exists!('Finance/Reports/q3.xlsx')).toBe(true);
        } finally {
          await emu.close();
        }
      },
    );

    it("a team folder by namespace id lists that folder's tree only; a namespace out of reach is refused", async () => {
      const emu = await teamSpaceAccount('user');
      try {
        const finance = emu.teamFolders.get('Finance')!;
        const p = await providerFor(emu, { root: { namespaceId: finance.id } });
        const state = applyChanges(new Map(), await collect(p), true);
        expect([...state.keys()].sort()).toEqual(['Reports', 'Reports/q1.xlsx']);
        expect((await readStream(p, state.get('Reports/q1.xlsx')!)).bytes.toString()).toBe('numbers');
        expect(JSON.parse(emu.requests.at(-1)!.pathRoot!)).toEqual({
          '.tag': 'namespace_id',
          namespace_id: finance.id,
        });

        const bobs = emu.members.get('dbmid:AADbob')!.home.id;
        const err = await errorOf(collect(await providerFor(emu, { root: { namespaceId: bobs } })));
        expect(isSyncguardError(err, 'PROVIDER_ERROR'), String(err)).toBe(true);
        expect(err.message).toMatch(/accounts\[\]\.root/);
      } finally {
        await emu.close();
      }
    });

    it('on: root_info names a team space root that holds the member folder at home_path; off: a bare team root', async () => {
      const on = await teamSpaceAccount('user');
      const off = await startDropboxEmulator({ team: {} });
      try {
        const info = (await rawCall(on, 'users/get_current_account', null)).body.root_info;
        expect(info).toEqual({
          '.tag': 'user',
          root_namespace_id: on.teamRoot!.id,
          home_namespace_id: on.home.id,
          home_path: '/Ada Lovelace',
        });
        const root = JSON.stringify({ '.tag': 'root', root: on.teamRoot!.id });
        const top = await rawCall(on, 'files/list_folder', { path: '' }, root);
        const folders = top.body.entries!.map((e) => [e.path_display, e.sharing_info?.shared_folder_id]);
        expect(folders.sort()).toEqual([
          ['/Ada Lovelace', on.home.id],
          ['/Finance', on.teamFolders.get('Finance')!.id],
          ['/Marketing', on.teamFolders.get('Marketing')!.id],
        ]);
        const wrong = await rawCall(
          on,
          'files/list_folder',
          { path: '' },
          JSON.stringify({ '.tag': 'root', root: on.home.id }),
        );
        expect(wrong).toEqual({
          status: 422,
          body: { error_summary: 'invalid_root/..', error: { '.tag': 'invalid_root', invalid_root: info } },
        });

        off.home.put('mine.txt', 'home only');
        const offInfo = (await rawCall(off, 'users/get_current_account', null)).body.root_info!;
        expect(offInfo['.tag']).toBe('team');
        expect(offInfo.root_namespace_id).toBe(off.teamRoot!.id);
        const bare = await rawCall(
          off,
          'files/list_folder',
          { path: '' },
          JSON.stringify({ '.tag': 'root', root: off.teamRoot!.id }),
        );
        expect(bare.body.entries).toEqual([]);
        expect(off.teamFolders.size).toBe(0);
      } finally {
        await on.close();
        await off.close();
      }
    });
  });

  it('reaches every Dropbox host through the endpoint, telling them apart by X-Forwarded-Host', async () => {
    emu.home.put('a.txt', 'a');
    const p = await providerFor(emu);
    await readStream(p, applyChanges(new Map(), await collect(p), true).get('a.txt')!);
    const hosts = Object.fromEntries(emu.requests.map((r) => [r.route, r.host]));
    expect(hosts).toEqual({
      'oauth2/token': 'api.dropboxapi.com',
      'files/list_folder': 'api.dropboxapi.com',
      'files/download': 'content.dropboxapi.com',
    });
  });
});
