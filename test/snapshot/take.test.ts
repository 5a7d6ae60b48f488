import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncguardError, isSyncguardError } from '../../src/errors.js';
import { comparePaths } from '../../src/paths.js';
import { blobKey, manifestKey, snapshotId } from '../../src/snapshot/layout.js';
import { MANIFEST_FORMAT, MANIFEST_VERSION } from '../../src/snapshot/manifest.js';
import { Repository } from '../../src/snapshot/repository.js';
import { faulty, type FaultyStore } from '../../src/store/faulty.js';
import { readAll } from '../../src/store/types.js';
import { KiB, bytesOf, makeTree, writeFile } from '../helpers/tree.js';
import {
  ACCOUNT,
  DAY,
  FeedProvider,
  allObjects,
  counting,
  engine,
  failingStream,
  gzipLines,
  intercepting,
  keys,
  local,
  manifestOf,
  sha256,
  snap,
  sourceDir,
} from './_fixtures.js';

const roots: string[] = [];
async function src(): Promise<string> {
  const d = await sourceDir();
  roots.push(d);
  return d;
}
afterEach(async () => {
  for (const d of roots.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

const packs = (ks: string[]) => ks.filter((k) => k.endsWith('.pack'));
const idxs = (ks: string[]) => ks.filter((k) => k.endsWith('.idx'));
const blobs = (ks: string[]) => ks.filter((k) => k.startsWith('blobs/'));
const manifests = (ks: string[]) => ks.filter((k) => k.startsWith('snapshots/'));

describe('snapshot: take', () => {
  it('stores every content once on a first run: small files in a few packs, large files as blobs', async () => {
    const root = await src();
    const { repo, memory } = engine({ packThreshold: 256 * KiB, packSize: 1024 * KiB });
    const files = await makeTree(root, { small: 150, large: [300 * KiB, 700 * KiB], odd: false });
    const r = await snap(repo, local(root));

    const all = await allObjects(memory);
    const ks = all.map((o) => o.key);
    const small = files.filter((f) => f.size < 256 * KiB);
    const smallBytes = small.reduce((n, f) => n + f.size, 0);
    // Every large file is one blob, named by its SHA-256; nothing else is a blob.
    const largeShas = files
      .filter((f) => f.size >= 256 * KiB)
      .map((f) => sha256(bytesOf(`tree:${f.path}`, f.size)));
    expect(blobs(ks).sort()).toEqual(largeShas.map(blobKey).sort());
    // The small ones went into packs of about 1 MiB, each with its index: a handful of objects, not 150.
    expect(packs(ks).length).toBe(idxs(ks).length);
    expect(packs(ks).length).toBeGreaterThanOrEqual(Math.floor(smallBytes / (1024 * KiB)));
    expect(packs(ks).length).toBeLessThanOrEqual(Math.ceil(smallBytes / (1024 * KiB)) + 1);
    // Each distinct small content is in exactly one pack index, and the packs hold nothing more.
    const distinct = new Map(small.map((f) => [sha256(bytesOf(`tree:${f.path}`, f.size)), f.size]));
    const indexed: string[] = [];
    for (const k of idxs(ks)) {
      const idx = JSON.parse((await readAll(memory, k)).toString());
      expect(idx.pack).toBe(k.replace(/\.idx$/, '.pack'));
      for (const [sha] of idx.entries) indexed.push(sha);
    }
    expect(indexed.sort()).toEqual([...distinct.keys()].sort());
    const packBytes = all.filter((o) => o.key.endsWith('.pack')).reduce((n, o) => n + o.size, 0);
    expect(packBytes).toBe([...distinct.values()].reduce((n, s) => n + s, 0));
    // One manifest; bytesAdded counts every object but the manifest.
    expect(manifests(ks)).toEqual([manifestKey('laptop', r.id)]);
    expect(r.bytesAdded).toBe(
      all.filter((o) => !o.key.startsWith('snapshots/')).reduce((n, o) => n + o.size, 0),
    );
    expect(r.filesRead).toBe(files.length);

    // Every file entry names where its bytes are, and they are the file's bytes.
    const { entries } = await manifestOf(repo, r.key);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    for (const f of files) {
      const e = byPath.get(f.path)!;
      expect(e, f.path).toBeDefined();
      const content = bytesOf(`tree:${f.path}`, f.size);
      expect(e.sha256).toBe(sha256(content));
      if (f.size >= 256 * KiB) {
        expect(e.object).toBe(blobKey(e.sha256!));
        expect(e.offset).toBeUndefined();
      } else {
        expect(e.object).toMatch(/^packs\/2026\/11\/20\/[0-9a-f]{32}\.pack$/);
        expect(e.length).toBe(f.size);
        if (f.size > 0)
          expect(
            (await readAll(memory, e.object!, { offset: e.offset, length: e.length })).equals(content),
          ).toBe(true);
      }
    }
  });

  it('reads no file and adds only its manifest when nothing changed', async () => {
    const root = await src();
    const { repo, memory, clock } = engine();
    await makeTree(root, { small: 60, large: [400 * KiB], odd: true });
    const first = await snap(repo, local(root));
    const before = await keys(memory);

    clock.advance(DAY);
    const { provider, opened } = counting(local(root));
    const second = await snap(repo, provider);
    expect(opened).toEqual([]);
    expect(second.filesRead).toBe(0);
    expect(second.bytesAdded).toBe(0);
    expect(second.header.bytesAdded).toBe(0);
    expect((await keys(memory)).filter((k) => !before.includes(k))).toEqual([second.key]);
    // The same files, naming the same objects.
    const a = (await manifestOf(repo, first.key)).entries;
    const b = (await manifestOf(repo, second.key)).entries;
    expect(b).toEqual(a);
  });

  it("stores a renamed or moved file's content no second time: the new path names the same object", async () => {
    const root = await src();
    const { repo, memory, clock } = engine();
    await makeTree(root, { small: 40, large: [500 * KiB], odd: false });
    const first = await snap(repo, local(root));
    const old = new Map((await manifestOf(repo, first.key)).entries.map((e) => [e.path, e]));
    const before = await allObjects(memory);

    await fsp.mkdir(join(root, 'moved'));
    await fsp.rename(join(root, 'd1/sub1/f0001.dat'), join(root, 'moved/renamed.dat'));
    await fsp.rename(join(root, 'large/big0.bin'), join(root, 'moved/big.bin'));
    clock.advance(DAY);
    const second = await snap(repo, local(root));
    expect(second.bytesAdded).toBe(0);
    const now = new Map((await manifestOf(repo, second.key)).entries.map((e) => [e.path, e]));
    expect(now.has('d1/sub1/f0001.dat')).toBe(false);
    expect(now.get('moved/renamed.dat')).toMatchObject({
      object: old.get('d1/sub1/f0001.dat')!.object,
      offset: old.get('d1/sub1/f0001.dat')!.offset,
      sha256: old.get('d1/sub1/f0001.dat')!.sha256,
    });
    expect(now.get('moved/big.bin')).toMatchObject({
      object: old.get('large/big0.bin')!.object,
      sha256: old.get('large/big0.bin')!.sha256,
    });
    const after = await allObjects(memory);
    expect(after.filter((o) => !o.key.startsWith('snapshots/'))).toEqual(
      before.filter((o) => !o.key.startsWith('snapshots/')),
    );
  });

  it('reads and uploads only what changed when 1% of the files changed', async () => {
    const root = await src();
    const { repo, clock } = engine();
    const files = await makeTree(root, { small: 200, large: [300 * KiB, 600 * KiB], odd: false });
    await snap(repo, local(root));

    const changed = ['d3/sub0/f0003.dat', 'd4/sub1/f0109.dat'];
    for (const p of changed)
      await writeFile(root, p, bytesOf(`changed:${p}`, 9000), new Date('2026-11-20T12:00:00.000Z'));
    await writeFile(
      root,
      'large/big1.bin',
      bytesOf('changed:big1', 600 * KiB),
      new Date('2026-11-20T12:00:00.000Z'),
    );
    clock.advance(DAY);
    const { provider, opened } = counting(local(root));
    const second = await snap(repo, provider);

    expect([...new Set(opened)].sort()).toEqual([...changed, 'large/big1.bin'].sort());
    expect(second.filesRead).toBe(3);
    const changedBytes = 2 * 9000 + 600 * KiB;
    // The new contents, plus one pack index of a few hundred bytes.
    expect(second.bytesAdded).toBeGreaterThanOrEqual(changedBytes);
    expect(second.bytesAdded).toBeLessThan(changedBytes + 2 * KiB);
    expect(second.header.counts.files).toBe(files.length);
  });

  it('stores identical content in two files once', async () => {
    const root = await src();
    const { repo, memory } = engine();
    const small = bytesOf('same-small', 5000);
    const large = bytesOf('same-large', 400 * KiB);
    await writeFile(root, 'a/one.txt', small);
    await writeFile(root, 'b/two.txt', small);
    await writeFile(root, 'a/one.bin', large);
    await writeFile(root, 'b/two.bin', large);
    await writeFile(root, 'c/three.bin', large);
    const r = await snap(repo, local(root));
    const ks = await keys(memory);
    expect(blobs(ks)).toEqual([blobKey(sha256(large))]);
    expect(packs(ks)).toHaveLength(1);
    expect((await allObjects(memory, 'packs/')).find((o) => o.key.endsWith('.pack'))!.size).toBe(5000);
    const { entries } = await manifestOf(repo, r.key);
    const e = (p: string) => entries.find((x) => x.path === p)!;
    expect(e('a/one.txt')).toMatchObject({ object: e('b/two.txt').object, offset: e('b/two.txt').offset });
    expect(e('a/one.bin').object).toBe(e('c/three.bin').object);
    expect(r.header.counts.files).toBe(5);
  });

  it('takes only what the include globs name and leaves out what the exclude globs name', async () => {
    const root = await src();
    const { repo } = engine();
    for (const p of [
      'docs/a.txt',
      'docs/b.tmp',
      'docs/private/secret.txt',
      'docs/sub/c.txt',
      'other/d.txt',
      'top.txt',
      'docs/.hidden',
    ]) {
      await writeFile(root, p, p);
    }
    await fsp.mkdir(join(root, 'docs/empty'));
    const { provider, opened } = counting(local(root));
    const r = await snap(repo, provider, {
      account: { ...ACCOUNT, include: ['docs/**'], exclude: ['**/*.tmp', 'docs/private/**'] },
    });
    const paths = (await manifestOf(repo, r.key)).entries.map((e) => e.path);
    // With an include list, only folders that hold something taken are kept.
    expect(paths).toEqual(['docs', 'docs/.hidden', 'docs/a.txt', 'docs/sub', 'docs/sub/c.txt']);
    expect(opened.sort()).toEqual(['docs/.hidden', 'docs/a.txt', 'docs/sub/c.txt']);
  });

  it('leaves out everything below an excluded folder (regression: excluding "docs/private" dropped the folder but kept the files in it)', async () => {
    const root = await src();
    const { repo } = engine();
    for (const p of [
      'docs/a.txt',
      'docs/b.tmp',
      'docs/private/secret.txt',
      'docs/private/deeper/more.txt',
      'other/cache.tmp/inside.txt',
      'top.txt',
    ]) {
      await writeFile(root, p, p);
    }
    await fsp.mkdir(join(root, 'docs/empty'));
    const { provider, opened } = counting(local(root));
    // Without an include list, every folder not excluded is kept, empty ones too.
    const r = await snap(repo, provider, { account: { ...ACCOUNT, exclude: ['**/*.tmp', 'docs/private'] } });
    expect((await manifestOf(repo, r.key)).entries.map((e) => e.path)).toEqual([
      'docs',
      'docs/a.txt',
      'docs/empty',
      'other',
      'top.txt',
    ]);
    expect(opened.sort()).toEqual(['docs/a.txt', 'top.txt']);
  });

  it('records a file that vanished between listing and reading as failed, and goes on', async () => {
    const root = await src();
    const { repo } = engine();
    await writeFile(root, 'keep.txt', 'keep');
    await writeFile(root, 'gone.txt', 'gone');
    await writeFile(root, 'gone-big.bin', bytesOf('gone-big', 300 * KiB));
    const provider = intercepting(local(root), async (e) => {
      if (e.path.startsWith('gone')) await fsp.rm(join(root, e.path), { force: true });
    });
    const r = await snap(repo, provider);
    expect(r.header.failures.sort((a, b) => comparePaths(a.path, b.path))).toEqual([
      { path: 'gone-big.bin', error: 'vanished during the run' },
      { path: 'gone.txt', error: 'vanished during the run' },
    ]);
    expect(r.header.counts).toMatchObject({ files: 1, failed: 2 });
    expect((await manifestOf(repo, r.key)).entries.map((e) => e.path)).toEqual(['keep.txt']);
  });

  it('records a file swapped for a symbolic link between listing and reading as failed, and stores nothing of its target (issue 8, point 6)', async () => {
    const root = await src();
    const outside = await src();
    const { repo, memory } = engine();
    await writeFile(root, 'keep.txt', 'keep');
    await writeFile(root, 'id_rsa', 'ordinary-bytes');
    await writeFile(outside, 'secret', 'private-key-bytes');
    await fsp.chmod(join(outside, 'secret'), 0o600);
    const provider = intercepting(local(root), async (e) => {
      if (e.path !== 'id_rsa') return;
      await fsp.rm(join(root, 'id_rsa'));
      await fsp.symlink(join(outside, 'secret'), join(root, 'id_rsa'));
    });
    const r = await snap(repo, provider);
    expect(r.header.failures).toEqual([
      {
        path: 'id_rsa',
        error: expect.stringMatching(/id_rsa was replaced by a symbolic link after it was listed/),
      },
    ]);
    expect((await manifestOf(repo, r.key)).entries.map((e) => e.path)).toEqual(['keep.txt']);
    for (const o of await allObjects(memory))
      expect((await readAll(memory, o.key)).includes('private-key-bytes'), o.key).toBe(false);
  });

  it('records a file whose name is not UTF-8 as failed (regression: the local provider dropped it without a word)', async () => {
    const root = await src();
    const { repo } = engine();
    await writeFile(root, 'good.txt', 'good');
    await fsp.mkdir(join(root, 'dir'));
    await fsp.writeFile(
      Buffer.concat([Buffer.from(`${root}/dir/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]),
      'bad',
    );
    const r = await snap(repo, local(root));
    expect(r.header.failures).toEqual([
      {
        path: 'dir/bad-\uFFFD\uFFFD.txt',
        error: 'the name is not valid UTF-8 and cannot be kept byte for byte',
      },
    ]);
    expect(r.header.counts).toMatchObject({ files: 1, failed: 1 });
  });

  it('records a file that cannot be read as failed, with the reason, and keeps the others', async () => {
    const root = await src();
    const { repo } = engine();
    await writeFile(root, 'a.txt', 'a');
    await writeFile(root, 'locked.txt', 'no access');
    await writeFile(root, 'broken.txt', bytesOf('broken', 20_000));
    await writeFile(root, 'z.txt', 'z');
    // Tests run as root, where chmod 000 does not stop a read: the provider refuses instead, as it does for EACCES.
    const inner = local(root);
    const provider = {
      ...intercepting(inner, (e) => {
        if (e.path === 'locked.txt')
          throw new SyncguardError('PROVIDER_ERROR', 'cannot open locked.txt: EACCES');
      }),
      open: async (e: Parameters<typeof inner.open>[0], s?: AbortSignal) => {
        if (e.path === 'locked.txt')
          throw new SyncguardError('PROVIDER_ERROR', 'cannot open locked.txt: EACCES');
        if (e.path === 'broken.txt')
          return failingStream(
            Buffer.alloc(1000),
            Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' }),
          );
        return inner.open(e, s);
      },
    };
    const r = await snap(repo, provider);
    expect(r.header.failures).toEqual(
      expect.arrayContaining([
        { path: 'locked.txt', error: 'PROVIDER_ERROR: cannot open locked.txt: EACCES' },
        { path: 'broken.txt', error: expect.stringContaining('EIO') },
      ]),
    );
    expect(r.header.counts.failed).toBe(2);
    expect((await manifestOf(repo, r.key)).entries.map((e) => e.path)).toEqual(['a.txt', 'z.txt']);
  });

  it('ends the run on a store failure and leaves no manifest; the next run reuses what was stored', async () => {
    const root = await src();
    await makeTree(root, { small: 50, large: [300 * KiB, 400 * KiB], odd: false });
    for (const fault of [
      { op: 'put' as const, key: '.pack' },
      { op: 'put' as const, key: 'blobs/' },
      { op: 'put' as const, key: 'snapshots/' },
    ]) {
      const e = engine();
      const failing = faulty(e.memory, fault);
      const err = await snap(e.repoOver(failing), local(root)).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(isSyncguardError(err, 'STORE_UNAVAILABLE'), `${fault.key}: ${String(err)}`).toBe(true);
      expect(await keys(e.memory, 'snapshots/'), fault.key).toEqual([]);
      expect(await e.repo.listSnapshots('laptop')).toEqual([]);
      if (fault.key === 'snapshots/') {
        // Everything but the manifest was stored: the next run finds it all and uploads nothing again.
        e.clock.advance(60_000);
        const next = await snap(e.repo, local(root));
        expect(next.bytesAdded).toBe(0);
        expect(next.header.counts.files).toBe(52);
      }
    }
  });

  it('builds on the last readable snapshot when the latest manifest is damaged (regression: one damaged manifest stopped every later snapshot)', async () => {
    const root = await src();
    const logged: string[] = [];
    const e = engine();
    const repo = new Repository({
      store: e.store,
      lockDays: 30,
      now: e.clock.now,
      log: (level, m) => logged.push(`${level}: ${m}`),
    });
    await makeTree(root, { small: 20, large: [300 * KiB], odd: false });
    const good = await snap(repo, local(root));
    // Someone holding the store's keys writes a new, broken manifest (or a store damaged one).
    e.clock.advance(DAY);
    const broken = manifestKey('laptop', snapshotId(e.clock.now()));
    await e.store.put(
      broken,
      await gzipLines([{ ...good.header, id: snapshotId(e.clock.now()) }, '{"path": "x", broken']),
    );
    e.clock.advance(DAY);
    const { provider, opened } = counting(local(root));
    const next = await snap(repo, provider);
    expect(next.header.previous).toBe(good.key);
    expect(opened).toEqual([]);
    expect(next.bytesAdded).toBe(0);
    expect(logged).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^warn: the snapshot ${broken.replace(/[.]/g, '\\.')} cannot be read .*damaged at line 2.*; the next snapshot builds on the one before it`,
        ),
      ),
    );
  });

  it('extends the lock of reused objects that would end before the new horizon, and records the horizon', async () => {
    const root = await src();
    let store!: FaultyStore;
    const e = engine({ lockDays: 10, wrap: (m) => (store = faulty(m, [])) });
    await makeTree(root, { small: 30, large: [300 * KiB, 400 * KiB], odd: false });
    const t0 = e.clock.t;
    const first = await snap(e.repo, local(root));
    // New objects are locked for the configured days plus a slack of a quarter of them (here 3 days).
    const written = t0 + (10 + 3) * DAY;
    expect(first.header.lockedUntil).toBe(new Date(written).toISOString());
    for (const o of await allObjects(e.memory)) {
      expect((await e.memory.head(o.key))!.retainUntil!.getTime(), o.key).toBe(written);
    }
    expect(store.calls.extendRetention).toBe(0);

    // Eleven days later the old locks end before the new horizon; one file is deleted (its blob is not named again) and one is new.
    await fsp.rm(join(root, 'large/big0.bin'));
    await writeFile(root, 'new.txt', 'new content');
    e.clock.advance(11 * DAY);
    const t1 = e.clock.t;
    const second = await snap(e.repo, local(root));
    const { entries } = await manifestOf(e.repo, second.key);
    const named = new Set(entries.filter((x) => x.object).map((x) => x.object!));
    const old = (await manifestOf(e.repo, first.key)).entries;
    const reused = new Set(old.filter((x) => x.object && named.has(x.object)).map((x) => x.object!));
    expect(second.objectsExtended).toBe(reused.size);
    expect(store.calls.extendRetention).toBe(reused.size);
    const horizon = t1 + 10 * DAY;
    let min = Infinity;
    for (const k of named) {
      const until = (await e.memory.head(k))!.retainUntil!.getTime();
      expect(until, k).toBeGreaterThanOrEqual(horizon);
      min = Math.min(min, until);
    }
    const locked = Date.parse(second.header.lockedUntil!);
    expect(locked).toBeGreaterThanOrEqual(horizon);
    expect(locked).toBeLessThanOrEqual(min);
    // The manifest itself is kept at least as long as it says its objects are.
    expect((await e.memory.head(second.key))!.retainUntil!.getTime()).toBeGreaterThanOrEqual(locked);
    // The blob of the deleted file is no longer named: its lock is left as it was.
    const gone = old.find((x) => x.path === 'large/big0.bin')!.object!;
    expect((await e.memory.head(gone))!.retainUntil!.getTime()).toBe(written);
  });

  it("extends a reused object's lock once every few nights, not every night (regression: every object was extended nightly)", async () => {
    const root = await src();
    const extended: string[][] = [];
    const e = engine({
      lockDays: 8,
      wrap: (m) =>
        new Proxy(m, {
          get(target, prop, receiver) {
            if (prop === 'extendRetention')
              return (key: string, until: Date) => {
                extended[extended.length - 1].push(key);
                return target.extendRetention(key, until);
              };
            const v = Reflect.get(target, prop, receiver);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
    });
    await makeTree(root, { small: 20, large: [300 * KiB, 300 * KiB + 1], odd: false });
    for (let night = 0; night < 10; night++) {
      // A new file every night, as a real folder has.
      await writeFile(root, `night/${night}.txt`, `night ${night}`, new Date(e.clock.t));
      extended.push([]);
      const r = await snap(e.repo, local(root));
      const horizon = e.clock.t + 8 * DAY;
      // Safety first: whatever the snapshot names is locked at least until its horizon, as the header says.
      expect(Date.parse(r.header.lockedUntil!)).toBeGreaterThanOrEqual(horizon);
      for (const x of (await manifestOf(e.repo, r.key)).entries) {
        if (x.object)
          expect(
            (await e.memory.head(x.object))!.retainUntil!.getTime(),
            `night ${night}: ${x.object}`,
          ).toBeGreaterThanOrEqual(Date.parse(r.header.lockedUntil!));
      }
      e.clock.advance(DAY);
    }
    // No object is extended on two nights in a row, and most nights extend nothing.
    for (let n = 1; n < extended.length; n++) {
      const again = extended[n].filter((k) => extended[n - 1].includes(k));
      expect(again, `night ${n}`).toEqual([]);
    }
    expect(extended.filter((keysOfNight) => keysOfNight.length > 0).length).toBeLessThanOrEqual(4);
  });

  it('writes the header: counts, bytes, times, tool, previous snapshot, cursor, failures and skipped entries', async () => {
    const root = await src();
    const { repo, clock } = engine();
    await writeFile(root, 'a.txt', 'aaaa');
    await writeFile(root, 'dir/b.bin', bytesOf('b', 300 * KiB));
    await fsp.mkdir(join(root, 'empty'));
    await fsp.symlink('/etc', join(root, 'link'));
    const failing = intercepting(local(root), (x) => {
      if (x.path === 'a.txt' && clock.t > Date.parse('2026-11-21T00:00:00Z'))
        throw new SyncguardError('PROVIDER_ERROR', 'cannot open a.txt: EIO');
    });
    const t0 = clock.now();
    const first = await snap(repo, failing);
    expect(first.header).toEqual({
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      account: 'laptop',
      provider: 'local',
      id: snapshotId(t0),
      started: t0.toISOString(),
      finished: t0.toISOString(),
      tool: expect.stringMatching(/^syncguard \d+\.\d+\.\d+/),
      counts: { files: 2, dirs: 2, failed: 0, skipped: 1 },
      bytes: 4 + 300 * KiB,
      bytesAdded: first.bytesAdded,
      lockedUntil: new Date(t0.getTime() + (30 + 8) * DAY).toISOString(),
      failures: [],
      skipped: [{ path: 'link', reason: expect.stringContaining('symbolic link') }],
    });
    expect(first.header.cursor).toBeUndefined();
    expect(first.header.previous).toBeUndefined();
    expect(first.id).toBe(snapshotId(t0));
    expect(first.key).toBe(manifestKey('laptop', first.id));
    // What is read back is what was written.
    expect((await manifestOf(repo, first.key)).header).toEqual(JSON.parse(JSON.stringify(first.header)));

    await writeFile(root, 'a.txt', 'changed!', new Date('2026-11-20T10:00:00Z'));
    clock.advance(DAY);
    const second = await snap(repo, failing);
    expect(second.header.previous).toBe(first.key);
    // The file that could not be read keeps its previous version (issue 8, point 1).
    expect(second.header.counts).toEqual({ files: 2, dirs: 2, failed: 1, skipped: 1 });
    expect(second.header.failures).toEqual([
      { path: 'a.txt', error: 'PROVIDER_ERROR: cannot open a.txt: EIO' },
    ]);
    expect(second.header.retry).toEqual([
      {
        path: 'a.txt',
        size: 8,
        mtime: '2026-11-20T10:00:00.000Z',
        error: 'PROVIDER_ERROR: cannot open a.txt: EIO',
        kept: true,
        staleSince: second.id,
        staleRuns: 1,
      },
    ]);
    expect(second.header.bytes).toBe(4 + 300 * KiB);
  });

  it("keeps the provider's cursor, lists only what changed since, and reads nothing a hash already names", async () => {
    const { repo, clock } = engine();
    const feed = new FeedProvider();
    feed.folder('docs');
    feed.write('docs/a.txt', 'alpha');
    feed.write('docs/b.bin', bytesOf('b', 300 * KiB));
    feed.write('c.txt', 'gamma');
    const first = await snap(repo, feed);
    expect(first.header.cursor).toBe('seq:4');
    expect(feed.opened.sort()).toEqual(['c.txt', 'docs/a.txt', 'docs/b.bin']);

    feed.opened = [];
    feed.rename('docs/b.bin', 'moved.bin');
    feed.write('c.txt', 'gamma, edited');
    feed.remove('docs/a.txt');
    clock.advance(DAY);
    const second = await snap(repo, feed);
    expect(second.header.cursor).toBe('seq:8');
    expect(second.header.previous).toBe(first.key);
    // The moved file's provider hash was seen before: it costs neither a read nor an upload.
    expect(feed.opened).toEqual(['c.txt']);
    const { entries } = await manifestOf(repo, second.key);
    expect(entries.map((x) => x.path)).toEqual(['c.txt', 'docs', 'moved.bin']);
    const firstEntries = (await manifestOf(repo, first.key)).entries;
    expect(entries.find((x) => x.path === 'moved.bin')!.object).toBe(
      firstEntries.find((x) => x.path === 'docs/b.bin')!.object,
    );
    expect(entries.find((x) => x.path === 'moved.bin')!.providerHash).toBe(
      `sha256:${sha256(bytesOf('b', 300 * KiB))}`,
    );
  });

  it("writes the manifest in comparePaths order: a folder's entries follow it directly", async () => {
    const root = await src();
    const { repo } = engine();
    for (const p of ['a.b', 'a-b', 'a/b', 'a/a/z', 'a/\u00e9', 'a/e\u0301', 'A', 'a0', 'a/B'])
      await writeFile(root, p, p);
    const r = await snap(repo, local(root));
    const paths = (await manifestOf(repo, r.key)).entries.map((e) => e.path);
    expect(paths).toEqual([
      'A',
      'a',
      'a/B',
      'a/a',
      'a/a/z',
      'a/b',
      'a/e\u0301',
      'a/\u00e9',
      'a-b',
      'a.b',
      'a0',
    ]);
    expect([...paths].sort(comparePaths)).toEqual(paths);
  });
});
