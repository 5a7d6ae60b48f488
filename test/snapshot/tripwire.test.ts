import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tripwireSchema, type TripwireConfig } from '../../src/config/schema.js';
import { createTripwire, isRansomNote, looksRandom } from '../../src/snapshot/tripwire.js';
import { DAY, memoryRepo, prose, snap, tempDir, writeFiles } from '../schedule/_helpers.js';

const defaults: TripwireConfig = tripwireSchema.parse({});
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

const FOLDERS = ['Documents', 'Documents/Taxes', 'Photos', 'Projects/garden'];

/** 120 documents that compress (text), and 10 photos that do not, in four folders. */
async function household(): Promise<{ root: string; docs: string[] }> {
  const root = await tempDir('trip');
  dirs.push(root);
  const files: Record<string, string | Buffer> = {};
  const docs: string[] = [];
  for (let i = 0; i < 120; i++) {
    const p = `${FOLDERS[i % FOLDERS.length]}/doc-${i}.${['txt', 'docx', 'csv'][i % 3]}`;
    files[p] = prose(i);
    docs.push(p);
  }
  for (let i = 0; i < 10; i++) files[`Photos/IMG_${1000 + i}.jpg`] = randomBytes(5000);
  await writeFiles(root, files);
  return { root, docs };
}

/** Takes a first snapshot, lets `change` act on the folder, takes a second with the tripwire. */
async function nightAfter(
  change: (root: string, docs: string[]) => Promise<void>,
  settings: Partial<TripwireConfig> = {},
) {
  const m = memoryRepo({ packThreshold: 1024 * 1024 });
  const { root, docs } = await household();
  await snap(m.repo, root);
  m.clock.advance(DAY);
  await change(root, docs);
  const tripwire = createTripwire({ ...defaults, ...settings }, m.store);
  const s2 = await snap(m.repo, root, 'docs', { inspect: (input) => tripwire.inspect(input) });
  return { header: s2.header, analysis: tripwire.analysis()!, root };
}

async function encryptInPlace(root: string, paths: string[], suffix = ''): Promise<void> {
  for (const p of paths) {
    const full = join(root, ...p.split('/'));
    await fsp.writeFile(full, randomBytes(6000));
    if (suffix) await fsp.rename(full, full + suffix);
  }
}

describe('tripwire', () => {
  it('fires when most files are encrypted, renamed to a new extension, with a ransom note in every folder', async () => {
    const { header, analysis } = await nightAfter(async (root, docs) => {
      await encryptInPlace(root, docs.slice(0, 108), '.locked');
      await writeFiles(
        root,
        Object.fromEntries(
          FOLDERS.map((f) => [`${f}/HOW_TO_DECRYPT_FILES.txt`, 'Your files are encrypted. Send 1 BTC.']),
        ),
      );
    });
    expect(header.tripwire?.fired).toBe(true);
    const reasons = header.tripwire!.reasons.join('\n');
    expect(reasons).toMatch(
      /83% of the files reappeared under another extension \(108 of 130: \.locked: 108/,
    );
    expect(reasons).toMatch(
      /4 new files named like a ransom note, such as .*HOW_TO_DECRYPT_FILES\.txt \(in 4 folders\)/,
    );
    expect(reasons).toMatch(/\d+ changed files now look encrypted .*100% of the \d+ looked at/);
    expect(analysis).toMatchObject({
      previousFiles: 130,
      renamed: 108,
      deleted: 0,
      ransomNotes: expect.arrayContaining(['Documents/HOW_TO_DECRYPT_FILES.txt']),
    });
    expect(analysis.encrypted).toBeGreaterThanOrEqual(100);
  });

  it('fires when files are encrypted where they are, names unchanged', async () => {
    const { header, analysis } = await nightAfter(async (root, docs) =>
      encryptInPlace(root, docs.slice(0, 80)),
    );
    expect(header.tripwire?.fired).toBe(true);
    expect(header.tripwire!.reasons[0]).toMatch(
      /^62% of the files changed content \(80 of 130; the threshold is 50%\)/,
    );
    expect(analysis).toMatchObject({ modified: 80, renamed: 0, encrypted: 80, judged: 80 });
  });

  it('fires on content that turned to ciphertext even below the share thresholds', async () => {
    const { header, analysis } = await nightAfter(async (root, docs) =>
      encryptInPlace(root, docs.slice(0, 30)),
    );
    expect(analysis.modified).toBe(30);
    expect(header.tripwire?.reasons).toEqual([expect.stringMatching(/^30 changed files now look encrypted/)]);
  });

  it('fires on a ransom note alone, and on a note name from the config', async () => {
    const { header } = await nightAfter(async (root) =>
      writeFiles(root, { 'Documents/_readme.txt': 'ATTENTION! Your files...' }),
    );
    expect(header.tripwire?.reasons).toEqual([
      '1 new file named like a ransom note, such as Documents/_readme.txt',
    ]);
    const custom = await nightAfter(
      async (root) => writeFiles(root, { 'Photos/Taxes/GIVE_US_MONEY.TXT': 'pay' }),
      { ransomNotes: ['give_us_*.txt'] },
    );
    expect(custom.header.tripwire?.reasons).toEqual([
      '1 new file named like a ransom note, such as Photos/Taxes/GIVE_US_MONEY.TXT',
    ]);
  });

  it('does not judge names on a first snapshot, where every file is new', async () => {
    const m = memoryRepo();
    const { root } = await household();
    await writeFiles(root, { 'Documents/DECRYPT_INSTRUCTIONS.txt': 'how to use gpg --decrypt' });
    const tripwire = createTripwire(defaults, m.store);
    const first = await snap(m.repo, root, 'docs', { inspect: (input) => tripwire.inspect(input) });
    expect(first.header.tripwire).toBeUndefined();
    expect(tripwire.analysis()).toMatchObject({ previousFiles: 0, ransomNotes: [], fired: false });
  });

  it('stays quiet through an ordinary day: edits, new files, deletions, a renamed folder, new photos', async () => {
    const { header, analysis } = await nightAfter(async (root, all) => {
      const docs = all.filter((p) => !p.startsWith('Projects/'));
      for (const p of docs.slice(0, 6))
        await fsp.appendFile(join(root, ...p.split('/')), '\nP.S. one more line, written by hand.');
      for (const p of docs.slice(6, 9)) await fsp.rm(join(root, ...p.split('/')));
      await fsp.rename(join(root, 'Projects'), join(root, 'Projects 2026'));
      await writeFiles(
        root,
        Object.fromEntries(
          Array.from({ length: 40 }, (_, i) => [`Photos/holiday/IMG_${2000 + i}.jpg`, randomBytes(5000)]),
        ),
      );
      await writeFiles(root, {
        'Documents/new letter.docx': prose(999),
        'Documents/README.md': '# my notes',
      });
    });
    expect(header.tripwire).toBeUndefined();
    expect(analysis).toMatchObject({
      fired: false,
      reasons: [],
      modified: 6,
      deleted: 3,
      renamed: 0,
      encrypted: 0,
    });
    expect(analysis.added).toBe(72); // 40 photos, 2 documents, and 30 moved with their folder
  });

  it('stays quiet when compressed files are replaced by other compressed files', async () => {
    const { header, analysis } = await nightAfter(async (root) => {
      for (let i = 0; i < 10; i++)
        await fsp.writeFile(join(root, 'Photos', `IMG_${1000 + i}.jpg`), randomBytes(5000));
    });
    expect(header.tripwire).toBeUndefined();
    expect(analysis).toMatchObject({ modified: 10, sampled: 10, judged: 0, encrypted: 0 });
  });

  it('follows the thresholds of the config, and can be switched off', async () => {
    const change = async (root: string, docs: string[]) => encryptInPlace(root, docs.slice(0, 80));
    const lenient = await nightAfter(change, { modified: 0.9, encrypted: 100 });
    expect(lenient.header.tripwire).toBeUndefined();
    expect(lenient.analysis.reasons).toEqual([]);
    const off = await nightAfter(change, { enabled: false });
    expect(off.header.tripwire).toBeUndefined();
    expect(off.analysis.reasons.length).toBeGreaterThan(0); // looked, and said nothing
  });

  it('fires, with a reason of its own, when an empty snapshot follows a non-empty one, however small', async () => {
    const tripwire = createTripwire(
      { ...defaults, minFiles: 50 },
      { get: () => Promise.reject(new Error('unused')) },
    );
    const previous = new Map(
      ['a.txt', 'b.txt'].map((p) => [
        p,
        {
          path: p,
          type: 'file' as const,
          size: 1,
          mtime: '2026-01-01T00:00:00.000Z',
          sha256: 'a'.repeat(64),
        },
      ]),
    );
    const fired = await tripwire.inspect({ previous, next: [], sample: () => undefined });
    expect(fired?.fired).toBe(true);
    expect(fired?.reasons).toEqual([expect.stringContaining('holds no files while the previous one held 2')]);
    expect(
      await tripwire.inspect({ previous: undefined, next: [], sample: () => undefined }),
    ).toBeUndefined();
    const dirsOnly = [{ path: 'Docs', type: 'dir' as const, size: 0, mtime: '2026-01-01T00:00:00.000Z' }];
    expect((await tripwire.inspect({ previous, next: dirsOnly, sample: () => undefined }))?.fired).toBe(true);
  });

  it('knows ransom note names, and leaves ordinary names alone', () => {
    for (const n of [
      'HOW_TO_DECRYPT.txt',
      'a/b/DECRYPT-FILES.html',
      '#DECRYPT_MY_FILES#.txt',
      'RESTORE_FILES.txt',
      'HOW TO RECOVER YOUR FILES.html',
      '_readme.txt',
      'YOUR_FILES_ARE_ENCRYPTED.HTML',
      '!!!READ_ME!!!.txt',
      'ransom_note.txt',
    ]) {
      expect(isRansomNote(n), n).toBe(true);
    }
    for (const n of [
      'README.md',
      'readme.txt',
      'decrypt.py',
      'restore-files.sh',
      'Documents/recovery plan.docx',
      'photos/decryption.jpg',
    ]) {
      expect(isRansomNote(n), n).toBe(false);
    }
  });

  it('tells ciphertext from text by how it compresses', () => {
    expect(looksRandom(randomBytes(4096))).toBe(true);
    expect(looksRandom(Buffer.from(prose(1, 4096)))).toBe(false);
    expect(looksRandom(Buffer.alloc(4096))).toBe(false);
  });
});
