import { promises as fsp } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncguardError } from '../../src/errors.js';
import type { Change, ChangesOptions, Provider, RemoteEntry } from '../../src/providers/types.js';
import { Readable } from 'node:stream';
import {
  MANIFEST_FORMAT,
  readManifest,
  staleSummary,
  type ManifestEntry,
} from '../../src/snapshot/manifest.js';
import { writeFile } from '../helpers/tree.js';
import {
  DAY,
  FeedProvider,
  engine,
  gzipLines,
  intercepting,
  local,
  manifestOf,
  sha256,
  snap,
  sourceDir,
  type Engine,
} from './_fixtures.js';

const roots: string[] = [];
async function src(): Promise<string> {
  const d = await sourceDir('stale');
  roots.push(d);
  return d;
}
afterEach(async () => {
  for (const d of roots.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

/** The provider, with open() failing as a download that fails every retry does, for the paths in `failing`. */
function failingFor(
  inner: Provider,
  failing: Set<string>,
  code: 'PROVIDER_ERROR' | 'NOT_FOUND' = 'PROVIDER_ERROR',
) {
  return intercepting(inner, (e) => {
    if (failing.has(e.path))
      throw new SyncguardError(
        code,
        `downloading ${e.path}: HTTP 500 Internal Server Error (gave up after 5 tries)`,
      );
  });
}

async function entryOf(eng: Engine, key: string, path: string): Promise<ManifestEntry | undefined> {
  return (await manifestOf(eng.repo, key)).entries.find((e) => e.path === path);
}

describe('snapshot: a file that cannot be read keeps its previous version (issue 8, point 1)', () => {
  it('carries the previous content of a changed file whose download fails, and reads it on a later run although the cursor moved on', async () => {
    const eng = engine();
    const feed = new FeedProvider();
    feed.write('docs/report.txt', 'version 1');
    feed.write('other.txt', 'other');
    const first = await snap(eng.repo, feed);
    const v1 = (await entryOf(eng, first.key, 'docs/report.txt'))!;

    // Edited in the account; every download of it fails this night.
    feed.write('docs/report.txt', 'version 2, edited', new Date('2026-11-20T10:00:00.000Z'));
    const failing = new Set(['docs/report.txt']);
    const provider = failingFor(feed, failing);
    eng.clock.advance(DAY);
    const second = await snap(eng.repo, provider);
    expect(second.header.counts.failed).toBe(1);
    expect(second.header.failures).toEqual([
      { path: 'docs/report.txt', error: expect.stringContaining('HTTP 500') },
    ]);
    const carried = (await entryOf(eng, second.key, 'docs/report.txt'))!;
    // The previous version, marked as not refreshed, with the reason.
    expect(carried).toMatchObject({
      sha256: v1.sha256,
      object: v1.object,
      size: v1.size,
      stale: { reason: expect.stringContaining('HTTP 500'), since: second.id, runs: 1 },
    });
    expect(second.header.retry).toEqual([
      expect.objectContaining({
        path: 'docs/report.txt',
        size: 'version 2, edited'.length,
        providerHash: `sha256:${sha256('version 2, edited')}`,
        kept: true,
        staleSince: second.id,
        staleRuns: 1,
      }),
    ]);

    // The next night: nothing changed in the account (the cursor lists nothing), the download still fails.
    eng.clock.advance(DAY);
    feed.opened = [];
    const third = await snap(eng.repo, provider);
    expect(feed.opened).toEqual([]); // refused before the inner provider (the interceptor threw)
    expect(third.header.counts.failed).toBe(1);
    expect(await entryOf(eng, third.key, 'docs/report.txt')).toMatchObject({
      sha256: v1.sha256,
      stale: { since: second.id, runs: 2 },
    });
    expect(third.header.retry).toEqual([
      expect.objectContaining({ path: 'docs/report.txt', staleSince: second.id, staleRuns: 2 }),
    ]);
    expect(staleSummary(third.header)).toEqual({
      files: 1,
      maxRuns: 2,
      since: second.id,
      byRuns: [{ runs: 2, files: 1 }],
    });

    // The download works again: the new content appears though the listing does not name the file.
    failing.clear();
    eng.clock.advance(DAY);
    const fourth = await snap(eng.repo, provider);
    expect(feed.opened).toEqual(['docs/report.txt']);
    expect(fourth.header.counts.failed).toBe(0);
    expect(fourth.header.retry ?? []).toEqual([]);
    const fresh = (await entryOf(eng, fourth.key, 'docs/report.txt'))!;
    expect(fresh.sha256).toBe(sha256('version 2, edited'));
    expect(fresh.stale).toBeUndefined();
    expect(fresh.providerHash).toBe(`sha256:${sha256('version 2, edited')}`);
    expect(staleSummary(fourth.header)).toEqual({ files: 0, maxRuns: 0, byRuns: [] });

    // And the night after, it is neither read nor retried again.
    eng.clock.advance(DAY);
    feed.opened = [];
    const fifth = await snap(eng.repo, provider);
    expect(feed.opened).toEqual([]);
    expect((await entryOf(eng, fifth.key, 'docs/report.txt'))!.sha256).toBe(sha256('version 2, edited'));
  });

  it('retries a new file that failed (nothing to carry) on the next run, whatever the cursor says', async () => {
    const eng = engine();
    const feed = new FeedProvider();
    feed.write('a.txt', 'a');
    await snap(eng.repo, feed);
    feed.write('new.txt', 'brand new');
    const failing = new Set(['new.txt']);
    const provider = failingFor(feed, failing);
    eng.clock.advance(DAY);
    const second = await snap(eng.repo, provider);
    expect(second.header.failures.map((f) => f.path)).toEqual(['new.txt']);
    expect(await entryOf(eng, second.key, 'new.txt')).toBeUndefined();
    expect(second.header.retry).toEqual([
      expect.objectContaining({ path: 'new.txt', kept: false, staleRuns: 1, staleSince: second.id }),
    ]);

    failing.clear();
    eng.clock.advance(DAY);
    const third = await snap(eng.repo, provider);
    expect(third.header.counts.failed).toBe(0);
    expect((await entryOf(eng, third.key, 'new.txt'))!.sha256).toBe(sha256('brand new'));
  });

  it('drops a file to retry that the account deleted: named by the listing, or NOT_FOUND on open; never retried forever', async () => {
    const eng = engine();
    const feed = new FeedProvider();
    feed.write('listed-delete.txt', 'one');
    feed.write('silent-delete.txt', 'two');
    await snap(eng.repo, feed);
    feed.write('listed-delete.txt', 'one, edited');
    feed.write('silent-delete.txt', 'two, edited');
    const failing = new Set(['listed-delete.txt', 'silent-delete.txt']);
    eng.clock.advance(DAY);
    const second = await snap(eng.repo, failingFor(feed, failing));
    expect(second.header.retry!.map((r) => r.path).sort()).toEqual([
      'listed-delete.txt',
      'silent-delete.txt',
    ]);

    // One is deleted and the listing says so; the other is gone without the listing saying so.
    feed.remove('listed-delete.txt');
    eng.clock.advance(DAY);
    const third = await snap(eng.repo, failingFor(feed, new Set(['silent-delete.txt']), 'NOT_FOUND'));
    expect(third.header.counts.failed).toBe(0);
    expect(third.header.retry ?? []).toEqual([]);
    expect((await manifestOf(eng.repo, third.key)).entries.map((e) => e.path)).toEqual([]);
  });

  it('counts the runs again from one when a file is read and then fails once more', async () => {
    const eng = engine();
    const feed = new FeedProvider();
    feed.write('f.txt', 'v1');
    await snap(eng.repo, feed);
    const failing = new Set(['f.txt']);
    const provider = failingFor(feed, failing);
    feed.write('f.txt', 'v2');
    eng.clock.advance(DAY);
    await snap(eng.repo, provider);
    failing.clear();
    eng.clock.advance(DAY);
    await snap(eng.repo, provider);
    feed.write('f.txt', 'v3');
    failing.add('f.txt');
    eng.clock.advance(DAY);
    const r = await snap(eng.repo, provider);
    expect(await entryOf(eng, r.key, 'f.txt')).toMatchObject({
      sha256: sha256('v2'),
      stale: { since: r.id, runs: 1 },
    });
  });

  it('local provider: an unreadable changed file keeps its previous content and is read once it can be', async () => {
    const root = await src();
    const eng = engine();
    await writeFile(root, 'notes.txt', 'old notes', new Date('2026-11-01T00:00:00.000Z'));
    await writeFile(root, 'keep.txt', 'keep');
    const first = await snap(eng.repo, local(root));
    const old = (await entryOf(eng, first.key, 'notes.txt'))!;

    // Rewritten, and unreadable (EACCES, say: tests run as root, where chmod 000 stops nothing).
    await writeFile(root, 'notes.txt', 'new notes, longer', new Date('2026-11-19T00:00:00.000Z'));
    const failing = new Set(['notes.txt']);
    const provider = failingFor(local(root), failing);
    eng.clock.advance(DAY);
    const second = await snap(eng.repo, provider);
    expect(second.header.counts.failed).toBe(1);
    expect(await entryOf(eng, second.key, 'notes.txt')).toMatchObject({
      sha256: old.sha256,
      mtime: old.mtime,
      stale: { runs: 1, since: second.id },
    });

    eng.clock.advance(DAY);
    const third = await snap(eng.repo, provider);
    expect(await entryOf(eng, third.key, 'notes.txt')).toMatchObject({
      sha256: old.sha256,
      stale: { runs: 2, since: second.id },
    });

    failing.clear();
    eng.clock.advance(DAY);
    const fourth = await snap(eng.repo, provider);
    expect(fourth.header.counts.failed).toBe(0);
    const fresh = (await entryOf(eng, fourth.key, 'notes.txt'))!;
    expect(fresh.sha256).toBe(sha256('new notes, longer'));
    expect(fresh.stale).toBeUndefined();
  });

  it('local provider: a file that cannot be read even with its size and mtime put back is read again on the next run', async () => {
    const root = await src();
    const eng = engine();
    const t = new Date('2026-11-01T00:00:00.000Z');
    await writeFile(root, 'a.txt', 'aaaa', t);
    await snap(eng.repo, local(root));
    // The same size and mtime: only the failed read says the file must be read.
    await writeFile(root, 'a.txt', 'bbbb', t);
    const failing = new Set(['a.txt']);
    const provider = failingFor(local(root), failing);
    // Forces the read this once (as a re-read or a changed ctime would).
    const forced: Provider = {
      ...provider,
      changes: async function* (cursor?: string, o?: ChangesOptions) {
        for await (const c of provider.changes(cursor, o) as AsyncGenerator<Change, string | undefined>)
          yield c.kind === 'upsert' && c.entry.path === 'a.txt'
            ? { kind: 'upsert', entry: { ...c.entry, modified: new Date(t.getTime() + 1) } }
            : c;
        return undefined;
      },
    };
    eng.clock.advance(DAY);
    const second = await snap(eng.repo, forced);
    expect(second.header.retry!.map((r) => r.path)).toEqual(['a.txt']);
    failing.clear();
    eng.clock.advance(DAY);
    const third = await snap(eng.repo, provider);
    expect((await entryOf(eng, third.key, 'a.txt'))!.sha256).toBe(sha256('bbbb'));
  });

  it('local provider: the files of a folder that cannot be listed keep their previous version, marked stale', async () => {
    const root = await src();
    const eng = engine();
    await writeFile(root, 'private/key.pem', 'secret key');
    await writeFile(root, 'private/deep/x.txt', 'x');
    await writeFile(root, 'public.txt', 'public');
    const first = await snap(eng.repo, local(root));
    const inner = local(root);
    // readdir of "private" fails (EACCES), as the local provider reports it.
    const blind: Provider = {
      ...inner,
      features: inner.features,
      open: (e: RemoteEntry, s?: AbortSignal) => inner.open(e, s),
      changes: async function* (cursor?: string, o?: ChangesOptions) {
        for await (const c of inner.changes(cursor, o) as AsyncGenerator<Change, string | undefined>) {
          if (c.kind === 'upsert' && c.entry.path.startsWith('private/')) continue;
          yield c;
          if (c.kind === 'upsert' && c.entry.path === 'private')
            yield { kind: 'error', path: 'private', message: 'cannot list the folder: EACCES' };
        }
        return undefined;
      },
    };
    eng.clock.advance(DAY);
    const second = await snap(eng.repo, blind);
    expect(second.header.failures).toEqual([{ path: 'private', error: 'cannot list the folder: EACCES' }]);
    const before = (await manifestOf(eng.repo, first.key)).entries;
    const after = (await manifestOf(eng.repo, second.key)).entries;
    expect(after.map((e) => e.path)).toEqual(before.map((e) => e.path));
    expect(after.find((e) => e.path === 'private/key.pem')).toMatchObject({
      sha256: sha256('secret key'),
      stale: { reason: 'cannot list the folder: EACCES', runs: 1 },
    });
    expect(staleSummary(second.header).files).toBe(2);

    eng.clock.advance(DAY);
    const third = await snap(eng.repo, local(root));
    expect(third.header.counts.failed).toBe(0);
    expect((await manifestOf(eng.repo, third.key)).entries.every((e) => !e.stale)).toBe(true);
  });

  it('reads manifests written before `retry` and `stale` existed, and refuses a damaged retry list or stale mark', async () => {
    const header = {
      format: MANIFEST_FORMAT,
      version: 1,
      account: 'laptop',
      provider: 'dropbox',
      id: '20261101T020000.000Z',
      started: '2026-11-01T02:00:00.000Z',
      finished: '2026-11-01T02:00:01.000Z',
      tool: 'syncguard 0.1.0',
      counts: { files: 1, dirs: 0, failed: 0, skipped: 0 },
      bytes: 1,
      bytesAdded: 1,
      failures: [],
      skipped: [],
    };
    const sha = sha256('a');
    const entry = {
      path: 'a.txt',
      type: 'file',
      size: 1,
      mtime: '2026-11-01T00:00:00.000Z',
      sha256: sha,
      object: `blobs/sha256/${sha.slice(0, 2)}/${sha}`,
    };
    const read = async (lines: object[]) => {
      const m = await readManifest(Readable.from([await gzipLines(lines)]), 'm');
      const out: ManifestEntry[] = [];
      for await (const e of m.entries) out.push(e);
      return { header: m.header, entries: out };
    };
    const old = await read([header, entry]);
    expect(old.header.retry).toBeUndefined();
    expect(staleSummary(old.header)).toEqual({ files: 0, maxRuns: 0, byRuns: [] });
    expect(old.entries[0].stale).toBeUndefined();

    await expect(read([{ ...header, retry: [{ path: 'x.txt', size: -1 }] }, entry])).rejects.toThrow(
      /the manifest m has a header that is not valid: retry\[0\] x\.txt has no valid size/,
    );
    await expect(read([header, { ...entry, stale: { reason: 'x', since: 'y', runs: 0 } }])).rejects.toThrow(
      /the manifest m is damaged at line 2: a\.txt has no valid stale mark/,
    );
  });
});
