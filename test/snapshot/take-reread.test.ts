import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Change, Provider } from '../../src/providers/types.js';
import { rereadDue } from '../../src/snapshot/take.js';
import { writeFile } from '../helpers/tree.js';
import { DAY, counting, engine, local, manifestOf, snap, sourceDir } from './_fixtures.js';

const roots: string[] = [];
async function src(): Promise<string> {
  const d = await sourceDir();
  roots.push(d);
  return d;
}
afterEach(async () => {
  for (const d of roots.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

const FILES = 300;
const DAYS = 30;

async function tree(root: string): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < FILES; i++) {
    const p = `d${i % 7}/file-${i}.txt`;
    await writeFile(root, p, `content ${i}`);
    paths.push(p);
  }
  return paths.sort();
}

describe('snapshot: reread (issue 8, point 7)', () => {
  it('reads every unchanged file again once in 30 nights, about 1/30 of them each night, never all at once', async () => {
    const root = await src();
    const { repo, clock } = engine();
    const paths = await tree(root);
    const first = await snap(repo, local(root), { rereadDays: DAYS });
    expect(first.filesRead).toBe(FILES);

    const times = new Map<string, number>();
    const perNight: number[] = [];
    for (let night = 1; night <= DAYS; night++) {
      clock.advance(DAY);
      const { provider, opened } = counting(local(root));
      const r = await snap(repo, provider, { rereadDays: DAYS });
      expect(r.filesReread).toBe(opened.length);
      expect(r.filesRead).toBe(opened.length);
      expect(r.warnings).toEqual([]);
      perNight.push(opened.length);
      for (const p of opened) times.set(p, (times.get(p) ?? 0) + 1);
    }
    // Each file exactly once in the period, and the nights share the work.
    expect([...times.keys()].sort()).toEqual(paths);
    expect([...times.values()].every((n) => n === 1)).toBe(true);
    expect(Math.max(...perNight)).toBeLessThanOrEqual(3 * (FILES / DAYS));
    expect(perNight.filter((n) => n > 0).length).toBeGreaterThanOrEqual(DAYS - 3);
  });

  it('reads a file whose night was missed (the machine was off) on the next run, so none waits 30 days', async () => {
    const root = await src();
    const { repo, clock } = engine();
    const paths = await tree(root);
    await snap(repo, local(root), { rereadDays: DAYS });
    const lastRead = new Map<string, number>();
    const read = (ps: string[]) => ps.forEach((p) => lastRead.set(p, clock.t));
    read(paths);
    for (let night = 1; night <= 3 * DAYS; night++) {
      clock.advance(DAY);
      // Off every 4th night and for a week in the middle.
      if (night % 4 === 0 || (night > 40 && night <= 47)) continue;
      const { provider, opened } = counting(local(root));
      await snap(repo, provider, { rereadDays: DAYS });
      read(opened);
      // After every run, no file was last read 30 days ago or more.
      expect(Math.max(...[...lastRead.values()].map((t) => clock.t - t))).toBeLessThan(DAYS * DAY);
    }
  });

  it('spreads the files of an older manifest (no readAt) over the nights too, instead of reading them all', () => {
    const now = Date.parse('2026-11-20T02:00:00Z');
    const due = Array.from({ length: 3000 }, (_, i) => rereadDue(`f/${i}`, undefined, now, DAYS)).filter(
      Boolean,
    );
    expect(due.length).toBeGreaterThan(0);
    expect(due.length).toBeLessThan(3000 / 10);
    // Read in the last half day: never again the same night; read 30 days ago: due whatever its slot.
    expect(rereadDue('f/1', new Date(now - DAY / 4).toISOString(), now, DAYS)).toBe(false);
    expect(rereadDue('f/1', new Date(now - DAYS * DAY).toISOString(), now, DAYS)).toBe(true);
  });

  it('warns when a file read again has other content although its size, times, device and inode did not change', async () => {
    const root = await src();
    const { repo, clock } = engine();
    await writeFile(root, 'vault.hc', 'AAAA-original');
    const listedAs = new Map<string, Change>();
    // Silent corruption, or a rewrite no metadata shows: the listing says what it said the first time.
    const frozen: Provider = {
      ...local(root),
      features: local(root).features,
      open: (e, s) => local(root).open(e, s),
      async *changes(cursor, o) {
        for await (const c of local(root).changes(cursor, o)) {
          if (c.kind === 'upsert' && c.entry.type === 'file') {
            const was = listedAs.get(c.entry.path);
            if (was?.kind === 'upsert')
              yield { kind: 'upsert', entry: { ...c.entry, ctime: was.entry.ctime, ino: was.entry.ino } };
            else {
              listedAs.set(c.entry.path, c);
              yield c;
            }
          } else yield c;
        }
        return undefined;
      },
    };
    const first = await snap(repo, frozen, { rereadDays: DAYS });
    const mtime = (await fsp.stat(join(root, 'vault.hc'))).mtime;
    await fsp.writeFile(join(root, 'vault.hc'), 'BBBB-changed!');
    await fsp.utimes(join(root, 'vault.hc'), mtime, mtime);
    const seen: number[] = [];
    for (let night = 1; night <= DAYS; night++) {
      clock.advance(DAY);
      const r = await snap(repo, frozen, { rereadDays: DAYS });
      if (r.filesReread === 0) {
        expect(r.warnings).toEqual([]);
        continue;
      }
      seen.push(night);
      expect(r.warnings).toEqual([
        expect.stringMatching(
          /^vault\.hc was read again .* but its content differs from the previous snapshot's/,
        ),
      ]);
      const { entries } = await manifestOf(repo, r.key);
      expect(entries.find((e) => e.path === 'vault.hc')!.sha256).not.toBe(
        (await manifestOf(repo, first.key)).entries.find((e) => e.path === 'vault.hc')!.sha256,
      );
    }
    expect(seen).toHaveLength(1);
  });
});
