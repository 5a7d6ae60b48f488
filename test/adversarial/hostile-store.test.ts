/**
 * A hostile writer of the store (issue 8, points 2 and 3): anyone who can create a key can plant an
 * object beside the real ones, and Object Lock cannot stop new keys. No such object may crash a
 * reader, and none may poison a later snapshot: each becomes an INTEGRITY error for that object,
 * and the run falls back to what is still readable.
 */
import { promises as fsp } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ls } from '../../src/snapshot/browse.js';
import { manifestKey, snapshotId } from '../../src/snapshot/layout.js';
import { accountRetention, extendKeptLocks, namedObjects } from '../../src/snapshot/retention.js';
import { readManifest } from '../../src/snapshot/manifest.js';
import type { Repository } from '../../src/snapshot/repository.js';
import { ACCOUNT, DAY, engine, keys, manifestOf, snap, sourceDir, local } from '../snapshot/_fixtures.js';
import { bombManifest, deep, header, linesManifest, longLineManifest } from './_hostile.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function tree(files: Record<string, string>): Promise<string> {
  const root = await sourceDir('hostile');
  dirs.push(root);
  for (const [p, c] of Object.entries(files)) await fsp.writeFile(`${root}/${p}`, c);
  return root;
}

/** Every entry of a manifest, read as `ls`, `restore` and `snapshot` read it. */
async function readAllEntries(body: Buffer, what = 'planted'): Promise<number> {
  const { Readable } = await import('node:stream');
  const m = await readManifest(Readable.from([body]), what);
  let n = 0;
  for await (const _ of m.entries) n++;
  return n;
}

/** The same repository, its log kept in `lines`. */
function watching(repo: Repository, lines: string[]): Repository {
  return Object.assign(Object.create(repo) as Repository, {
    log: (_level: string, m: string) => lines.push(m),
  });
}

const later = (ms: number) => snapshotId(new Date(Date.parse('2026-11-20T02:00:00.000Z') + ms));

describe('adversarial: hostile objects in the store (point 2)', () => {
  it('a manifest holding a 600 MB line is an INTEGRITY error for that manifest, not a crash', async () => {
    const body = longLineManifest(ACCOUNT.name, later(1000));
    await expect(readAllEntries(body)).rejects.toMatchObject({
      code: 'INTEGRITY',
      message: expect.stringMatching(/line 2 is longer than 1 MiB/),
    });
  });

  it('a gzip bomb of valid lines stops at a decompressed size proportionate to the object', async () => {
    const body = bombManifest(ACCOUNT.name, later(1000));
    await expect(readAllEntries(body)).rejects.toMatchObject({
      code: 'INTEGRITY',
      message: expect.stringMatching(/decompresses to more than/),
    });
  });

  it('a header that is not an object, nests too deep, or names a previous snapshot elsewhere is refused', async () => {
    const id = later(1000);
    const bad: Array<[string, RegExp]> = [
      ['42', /no valid header/],
      ['null', /no valid header/],
      ['[]', /no valid header/],
      ['"syncguard-manifest"', /no valid header/],
      [JSON.stringify({ ...header(ACCOUNT.name, id), tripwire: JSON.parse(deep(40)) }), /nests deeper/],
      [JSON.stringify({ ...header(ACCOUNT.name, id), failures: 'x' }), /failures/],
      [JSON.stringify({ ...header(ACCOUNT.name, id), counts: { files: 'many' } }), /counts/],
      [
        JSON.stringify({ ...header(ACCOUNT.name, id), previous: 'blobs/sha256/../../etc/passwd' }),
        /previous/,
      ],
      [JSON.stringify({ ...header(ACCOUNT.name, id), previous: manifestKey('other', id) }), /previous/],
    ];
    for (const [line, why] of bad)
      await expect(readAllEntries(linesManifest([line])), line.slice(0, 60)).rejects.toMatchObject({
        code: 'INTEGRITY',
        message: expect.stringMatching(why),
      });
  });

  it('an entry line nested too deep, or not gzip at all, is an INTEGRITY error', async () => {
    const h = JSON.stringify(header(ACCOUNT.name, later(1)));
    await expect(
      readAllEntries(linesManifest([h, `{"path":"a","type":"dir","size":0,"x":${deep(100)}}`])),
    ).rejects.toMatchObject({ code: 'INTEGRITY', message: expect.stringMatching(/nests deeper/) });
    await expect(readAllEntries(Buffer.from('not gzip at all'))).rejects.toMatchObject({
      code: 'INTEGRITY',
    });
  });

  it('snapshot, ls and prune survive a planted 600 MB-line manifest: the snapshot builds on the last readable one', async () => {
    const { repo, memory, clock } = engine();
    const root = await tree({ 'a.txt': 'alpha', 'b.txt': 'beta' });
    const warnings: string[] = [];
    const s1 = await snap(repo, local(root));
    const planted = manifestKey(ACCOUNT.name, later(60_000));
    await memory.put(planted, longLineManifest(ACCOUNT.name, later(60_000)));

    await expect(ls(repo, ACCOUNT.name, {})).rejects.toMatchObject({ code: 'INTEGRITY' });
    await expect(namedObjects(repo, planted)).rejects.toMatchObject({ code: 'INTEGRITY' });

    clock.advance(120_000);
    const s2 = await snap(watching(repo, warnings), local(root));
    expect(s2.header.previous).toBe(s1.key);
    expect(s2.damaged).toEqual([expect.objectContaining({ object: planted })]);
    expect(warnings.join('\n')).toMatch(/cannot be read/);
    expect((await manifestOf(repo, s2.key)).entries.map((e) => e.path)).toEqual(['a.txt', 'b.txt']);
  });

  it('lock extension passes over a damaged manifest and extends the kept ones', async () => {
    const { repo, memory, clock } = engine({ lockDays: 30 });
    const root = await tree({ 'a.txt': 'alpha' });
    const s1 = await snap(repo, local(root));
    await memory.put(manifestKey(ACCOUNT.name, later(60_000)), longLineManifest(ACCOUNT.name, later(60_000)));
    clock.advance(30 * DAY);
    const r = await accountRetention(
      repo,
      ACCOUNT.name,
      {
        keep: { last: 5, daily: 0, weekly: 0, monthly: 0, yearly: 0 },
      },
      undefined,
      { skipDamaged: true },
    );
    const ext = await extendKeptLocks(repo, r);
    expect(ext.snapshots).toEqual([s1.id]);
    expect((await memory.head(s1.key))!.retainUntil!.getTime()).toBeGreaterThan(clock.t + 29 * DAY);
  });

  it('a huge pack index is ignored with a warning, not read into memory, and its contents are stored again', async () => {
    const { repo, memory } = engine();
    const root = await tree({ 'a.txt': 'alpha' });
    await snap(repo, local(root));
    const [idx] = await keys(memory, 'packs/');
    const hugeKey = idx.replace(/[0-9a-f]{32}\.idx$/, 'f'.repeat(32) + '.idx');
    await memory.put(hugeKey.replace(/\.idx$/, '.pack'), Buffer.from('x'));
    await memory.put(hugeKey, Buffer.alloc(1024 * 1024, 0x20));
    const warnings: string[] = [];
    const index = await watching(repo, warnings).loadIndex();
    expect(index.size).toBe(1);
    expect(warnings.join('\n')).toMatch(/too large/);
  });
});
