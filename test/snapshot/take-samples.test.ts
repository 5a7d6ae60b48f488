import { promises as fsp } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { InspectInput } from '../../src/snapshot/take.js';
import { bytesOf, writeFile } from '../helpers/tree.js';
import { DAY, engine, local, snap, sourceDir } from './_fixtures.js';

const roots: string[] = [];
afterEach(async () => {
  for (const d of roots.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

describe('snapshot: take, content samples for the tripwire', () => {
  // Regression: every file read kept its first 4 KiB in memory until the end of the run, so a first
  // snapshot of 200,000 small files held all their content (884 MB RSS in the benchmark).
  it("keeps no sample on a first snapshot, and a changed file's first bytes on the next one", async () => {
    const root = await sourceDir();
    roots.push(root);
    await writeFile(root, 'a.txt', bytesOf('a0', 6000));
    await writeFile(root, 'b.txt', bytesOf('b0', 100));
    const { repo, clock } = engine();
    const seen: Array<Record<string, number | undefined>> = [];
    const inspect = (input: InspectInput) => {
      seen.push({ 'a.txt': input.sample('a.txt')?.length, 'b.txt': input.sample('b.txt')?.length });
      return undefined;
    };
    await snap(repo, local(root), { inspect });
    clock.advance(DAY);
    await writeFile(root, 'a.txt', bytesOf('a1', 6000), new Date(Date.now() + 5000));
    await snap(repo, local(root), { inspect });
    expect(seen).toEqual([
      { 'a.txt': undefined, 'b.txt': undefined },
      { 'a.txt': 4096, 'b.txt': undefined },
    ]);
  });
});
