import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isSyncguardError } from '../../src/errors.js';
import { diff, listSnapshots, ls } from '../../src/snapshot/browse.js';
import { manifestKey, snapshotId } from '../../src/snapshot/layout.js';
import { verify } from '../../src/snapshot/verify.js';
import { faulty } from '../../src/store/faulty.js';
import { KiB, bytesOf, writeFile } from '../helpers/tree.js';
import { DAY, engine, gzipLines, local, manifestOf, snap, sourceDir } from './_fixtures.js';

const dirs: string[] = [];
async function src(): Promise<string> {
  const d = await sourceDir();
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

const T = new Date('2026-11-01T00:00:00.000Z');

/** Two snapshots a day apart: some files added, changed, deleted, a file turned into a folder, one only touched. */
async function twoSnapshots() {
  const root = await src();
  const e = engine({ objectLock: false });
  await writeFile(root, 'keep.txt', 'keep', T);
  await writeFile(root, 'touched.txt', 'same bytes', T);
  await writeFile(root, 'edit.txt', 'before', T);
  await writeFile(root, 'gone/x.txt', 'x', T);
  await writeFile(root, 'becomes-dir', 'file', T);
  await writeFile(root, 'big.bin', bytesOf('big', 300 * KiB), T);
  const first = await snap(e.repo, local(root));
  await writeFile(root, 'edit.txt', 'after', new Date('2026-11-02T00:00:00Z'));
  await writeFile(root, 'touched.txt', 'same bytes', new Date('2026-11-02T00:00:00Z'));
  await fsp.rm(join(root, 'gone'), { recursive: true });
  await fsp.rm(join(root, 'becomes-dir'));
  await writeFile(root, 'becomes-dir/inner.txt', 'inner', T);
  await writeFile(root, 'new/added.txt', 'added', T);
  e.clock.advance(DAY);
  const second = await snap(e.repo, local(root));
  return { root, ...e, first, second };
}

describe('snapshot: ls and diff', () => {
  it('lists the snapshots oldest first, with their headers', async () => {
    const { repo, first, second } = await twoSnapshots();
    const list = await listSnapshots(repo, 'laptop');
    expect(list.map((s) => s.id)).toEqual([first.id, second.id]);
    expect(list[1].header).toMatchObject({ previous: first.key, counts: second.header.counts });
    expect(await listSnapshots(repo, 'other')).toEqual([]);
  });

  it("lists a folder's direct children, or everything below it with recursive", async () => {
    const { repo, first } = await twoSnapshots();
    const top = await ls(repo, 'laptop', { at: first.id });
    expect(top.entries.map((e) => e.path)).toEqual([
      'becomes-dir',
      'big.bin',
      'edit.txt',
      'gone',
      'keep.txt',
      'touched.txt',
    ]);
    expect((await ls(repo, 'laptop', { at: first.id, path: 'gone' })).entries.map((e) => e.path)).toEqual([
      'gone/x.txt',
    ]);
    expect((await ls(repo, 'laptop', { at: first.id, recursive: true })).entries).toHaveLength(7);
    expect((await ls(repo, 'laptop', {})).entries.map((e) => e.path)).toContain('new');
    const err = await ls(repo, 'laptop', { path: 'gone' }).catch((e: unknown) => e);
    expect(isSyncguardError(err, 'NOT_FOUND') && err.message).toMatch(/holds nothing at gone/);
  });

  it('says what was added, changed and deleted between two snapshots; a new mtime alone is no change', async () => {
    const { repo, first, second } = await twoSnapshots();
    const d = await diff(repo, 'laptop', first.id, second.id);
    expect(d.from.id).toBe(first.id);
    expect(d.to.id).toBe(second.id);
    expect(d.added.map((e) => e.path)).toEqual(['becomes-dir/inner.txt', 'new', 'new/added.txt']);
    expect(d.changed.map((c) => [c.after.path, c.before.type, c.after.type])).toEqual([
      ['becomes-dir', 'file', 'dir'],
      ['edit.txt', 'file', 'file'],
    ]);
    expect(d.deleted.map((e) => e.path)).toEqual(['gone', 'gone/x.txt']);
    // The other way round, additions and deletions swap.
    const back = await diff(repo, 'laptop', second.id, first.id);
    expect(back.added.map((e) => e.path)).toEqual(['gone', 'gone/x.txt']);
    expect(back.deleted.map((e) => e.path)).toEqual(['becomes-dir/inner.txt', 'new', 'new/added.txt']);
  });
});

describe('snapshot: verify', () => {
  it('finds no problem in a sound store, and checks every content once', async () => {
    const { repo, second } = await twoSnapshots();
    const r = await verify(repo);
    expect(r.problems).toEqual([]);
    expect(r.snapshots).toBe(2);
    const objects = new Set(
      (await manifestOf(repo, second.key)).entries.filter((e) => e.object).map((e) => e.object),
    );
    expect(r.objects).toBeGreaterThanOrEqual(objects.size);
    expect(r.objectsChecked).toBe(r.objects);
    // keep, touched, edit (twice), x, becomes-dir's file, big, inner, added: distinct contents.
    expect(r.contentsChecked).toBe(9);
  });

  it('names a missing object, the file that needs it and the snapshot it is in', async () => {
    const { repo, memory, second } = await twoSnapshots();
    const big = (await manifestOf(repo, second.key)).entries.find((e) => e.path === 'big.bin')!;
    await memory.delete(big.object!);
    const r = await verify(repo, { account: 'laptop' });
    expect(r.problems).toContainEqual({
      object: big.object,
      problem: 'missing from the store',
      path: 'big.bin',
      snapshot: expect.stringMatching(/^snapshots\/laptop\//),
      snapshots: expect.arrayContaining([second.key]),
    });
    expect(r.problems).toHaveLength(1);
  });

  it('names damaged contents: a blob, and a packed file at its offset', async () => {
    const e = await twoSnapshots();
    const entries = (await manifestOf(e.repo, e.second.key)).entries;
    const big = entries.find((x) => x.path === 'big.bin')!;
    const keep = entries.find((x) => x.path === 'keep.txt')!;
    const corrupt = faulty(e.memory, [
      { op: 'get', key: big.object!, corrupt: true },
      { op: 'get', key: keep.object!, corrupt: true, times: 1 },
    ]);
    const r = await verify(e.repoOver(corrupt));
    expect(r.problems).toContainEqual(
      expect.objectContaining({
        object: big.object,
        problem: 'content does not match its hash',
        path: 'big.bin',
      }),
    );
    // The pack span is read once from its first content: the first file in it is the damaged one.
    expect(
      r.problems.some(
        (p) => p.object === keep.object && /^content at offset \d+ does not match its hash$/.test(p.problem),
      ),
    ).toBe(true);
  });

  it('names a manifest it cannot read, and goes on with the others', async () => {
    const { repo, store, clock, first } = await twoSnapshots();
    clock.advance(DAY);
    const bad = manifestKey('laptop', snapshotId(clock.now()));
    await store.put(bad, await gzipLines([{ ...(await manifestOf(repo, first.key)).header }, '{broken']));
    const r = await verify(repo);
    expect(r.snapshots).toBe(3);
    expect(r.problems).toEqual([
      {
        object: bad,
        problem: expect.stringMatching(/^manifest unreadable: INTEGRITY: .*damaged at line 2/),
        snapshot: bad,
      },
    ]);
    expect(r.contentsChecked).toBe(9);
  });

  it('checks about the share --sample asks for', async () => {
    const { repo } = await twoSnapshots();
    const all = await verify(repo);
    const half = await verify(repo, { samplePercent: 50 });
    expect(half.objects).toBe(all.objects);
    expect(half.objectsChecked).toBe(Math.ceil(all.objects / 2));
    expect(half.problems).toEqual([]);
  });
});
