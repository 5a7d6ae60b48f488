import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeError, isSyncguardError, type ErrorCode } from '../../src/errors.js';
import { manifestKey, snapshotId } from '../../src/snapshot/layout.js';
import type { ManifestEntry } from '../../src/snapshot/manifest.js';
import { Repository } from '../../src/snapshot/repository.js';
import { restore, type RestoreOptions } from '../../src/snapshot/restore.js';
import { FsStore } from '../../src/store/fs.js';
import type { Store } from '../../src/store/types.js';
import { KiB, ODD_NAMES, bytesOf, readTree, snapshotOfFolder, writeFile } from '../helpers/tree.js';
import { DAY, engine, gzipLines, local, manifestOf, sha256, snap, sourceDir } from './_fixtures.js';

const dirs: string[] = [];
async function temp(label: string): Promise<string> {
  const d = await sourceDir(label);
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>, code: ErrorCode): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isSyncguardError(err))
    throw new Error(
      `expected a SyncguardError ${code}, got ${err === undefined ? 'success' : describeError(err)}`,
    );
  expect(err.code, err.message).toBe(code);
  return err;
}

const toDir = (repo: Repository, dir: string, extra: Partial<RestoreOptions> = {}) =>
  restore({ repo, account: 'laptop', to: { kind: 'dir', dir }, ...extra });

/** The store, with `hook` run once, before the first content (a pack or a blob) is read: by then the
 *  restore has made and checked every folder, and writes nothing until the content arrives. */
function beforeFirstContent(store: Store, hook: () => Promise<void>): Store {
  let fired = false;
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'get')
        return async (key: string, opts?: object) => {
          if (!fired && /^(packs|blobs)\//.test(key)) {
            fired = true;
            await hook();
          }
          return target.get(key, opts);
        };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const modeOf = async (p: string) => (await fsp.stat(p)).mode & 0o777;
const UMASK = process.umask();

/** A source folder with a few files in folders, snapshot into a memory store. */
async function snapshotted(
  files: Record<string, Buffer | string> = {
    'docs/a.txt': 'alpha',
    'docs/sub/b.txt': 'bravo',
    'top.txt': 'top',
    'big.bin': bytesOf('big', 300 * KiB),
  },
) {
  const root = await temp('src');
  for (const [p, c] of Object.entries(files))
    await writeFile(root, p, c, new Date('2026-11-01T10:00:00.123Z'));
  const e = engine();
  const r = await snap(e.repo, local(root));
  return { root, ...e, result: r };
}

describe('snapshot: restore', () => {
  it('gives back every name byte for byte (NFC and NFD twins, newlines, control characters, 255 bytes, emoji), with its bytes and times', async () => {
    const root = await temp('src');
    let i = 0;
    for (const name of Object.values(ODD_NAMES)) {
      await writeFile(root, name, bytesOf(name, 100 + i), new Date(Date.UTC(2026, 5, 1, 0, 0, i)));
      await writeFile(root, `nested \u{1F4C1}/${name}`, bytesOf(`n:${name}`, 50 + i++));
    }
    await writeFile(root, 'dossier-\u00e9/x.txt', 'nfc folder');
    await writeFile(root, 'dossier-e\u0301/x.txt', 'nfd folder');
    await fsp.mkdir(join(root, 'empty\nfolder'));
    const before = await readTree(root);
    const { repo } = engine();
    const r = await snap(repo, local(root));
    expect(r.header.failures).toEqual([]);

    const target = join(await temp('out'), 'restored');
    const res = await toDir(repo, target);
    expect(res.failed).toEqual([]);
    expect(await readTree(target)).toEqual(before);
    // Both spellings of "café.txt" are there, as two files.
    const names = (await fsp.readdir(target, { encoding: 'buffer' })).map((b) => b.toString('hex'));
    expect(names).toContain(Buffer.from(ODD_NAMES.nfc).toString('hex'));
    expect(names).toContain(Buffer.from(ODD_NAMES.nfd).toString('hex'));
  });

  it('refuses the unsafe entries of a tampered manifest, reports them as failed, restores the good ones, and writes nothing outside the target', async () => {
    const { repo, store, clock, result } = await snapshotted();
    const sandbox = await temp('sandbox');
    const target = join(sandbox, 'target');
    const { header, entries } = await manifestOf(repo, result.key);
    const a = entries.find((x) => x.path === 'docs/a.txt')!;
    const hostile = [
      '../escaped.txt',
      'a/../../b.txt',
      '/etc/passwd',
      `${sandbox}/absolute.txt`,
      'a\u0000b',
      '',
      './dot.txt',
      'x//y.txt',
      'docs/../../up.txt',
    ];
    const forged: ManifestEntry[] = [
      ...entries,
      ...hostile.map((path) => ({ ...a, path })),
      { path: '../escaped-dir', type: 'dir', size: 0, mtime: a.mtime },
    ];
    clock.advance(DAY);
    const id = snapshotId(clock.now());
    await store.put(manifestKey('laptop', id), await gzipLines([{ ...header, id }, ...forged]));
    const passwd = readFileSync('/etc/passwd');

    const res = await toDir(repo, target, { at: id });
    expect(res.failed.map((f) => f.path).sort()).toEqual([...hostile, '../escaped-dir'].sort());
    for (const f of res.failed) expect(f.error).toMatch(/^refused: the path /);
    expect(await fsp.readdir(sandbox)).toEqual(['target']);
    expect(readFileSync('/etc/passwd').equals(passwd)).toBe(true);
    const restored = await readTree(target);
    expect(restored.map((x) => x.name)).toEqual([
      'big.bin',
      'docs',
      'docs/a.txt',
      'docs/sub',
      'docs/sub/b.txt',
      'top.txt',
    ]);
    expect(readFileSync(join(target, 'docs/a.txt'), 'utf8')).toBe('alpha');
  });

  it('fails with INTEGRITY, naming the manifest and the line, when a manifest line is damaged, and writes nothing', async () => {
    const { repo, store, clock, result } = await snapshotted();
    const { header, entries } = await manifestOf(repo, result.key);
    const cases: Array<[string, Array<string | object>, RegExp]> = [
      ['not JSON', [header, entries[0], '{"path": "docs/x", "type": "file", '], /is damaged at line 3/],
      [
        'no sha256',
        [header, { ...entries.find((x) => x.type === 'file')!, sha256: undefined }],
        /damaged at line 2: .* has no valid sha256/,
      ],
      [
        'a blob of other content',
        [header, { ...entries.find((x) => x.path === 'big.bin')!, sha256: sha256('other') }],
        /names a blob of other content/,
      ],
      [
        'an object outside the layout',
        [header, { ...entries.find((x) => x.path === 'big.bin')!, object: '../../etc/passwd' }],
        /names no valid object/,
      ],
      ['no header', ['{"hello": 1}', entries[0]], /is not a syncguard manifest/],
      ['a newer format', [{ ...header, version: 99 }], /format version 99.*upgrade syncguard/],
    ];
    for (const [what, lines, message] of cases) {
      clock.advance(DAY);
      const id = snapshotId(clock.now());
      await store.put(manifestKey('laptop', id), await gzipLines(lines));
      const target = join(await temp('out'), 'target');
      const err = await rejection(toDir(repo, target, { at: id }), 'INTEGRITY');
      expect(err.message, what).toMatch(message);
      expect(err.message, what).toContain(manifestKey('laptop', id));
      expect(await snapshotOfFolder(target), what).toEqual([]);
    }
    // Not gzip at all.
    clock.advance(DAY);
    const id = snapshotId(clock.now());
    await store.put(manifestKey('laptop', id), Buffer.from('this is not a manifest'));
    const err = await rejection(toDir(repo, join(await temp('out'), 't'), { at: id }), 'INTEGRITY');
    expect(err.message).toMatch(/cannot be read/);
  });

  it('reports INTEGRITY for files whose stored bytes were altered and leaves no file with the bad content', async () => {
    const root = await temp('src');
    const storeDir = await temp('store');
    await writeFile(root, 'docs/before.txt', 'before');
    await writeFile(root, 'docs/victim.txt', bytesOf('victim', 5000));
    await writeFile(root, 'docs/after.txt', 'after');
    await writeFile(root, 'victim-big.bin', bytesOf('victim-big', 300 * KiB));
    await writeFile(root, 'safe-big.bin', bytesOf('safe-big', 300 * KiB));
    const fs = new FsStore(storeDir);
    const repo = new Repository({ store: fs, packThreshold: 256 * KiB });
    const r = await snap(repo, local(root));
    const { entries } = await manifestOf(repo, r.key);
    const victim = entries.find((x) => x.path === 'docs/victim.txt')!;
    const big = entries.find((x) => x.path === 'victim-big.bin')!;
    // The store's files are read-only: whoever damages them has to make them writable first.
    for (const [object, at] of [
      [victim.object!, victim.offset! + 100],
      [big.object!, 200_000],
    ] as const) {
      const file = join(storeDir, object);
      await fsp.chmod(file, 0o644);
      const fh = await fsp.open(file, 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] ^= 0x55;
      await fh.write(b, 0, 1, at);
      await fh.close();
    }

    const target = join(await temp('out'), 'target');
    const res = await toDir(repo, target);
    expect(res.failed.map((f) => f.path).sort()).toEqual(['docs/victim.txt', 'victim-big.bin']);
    for (const f of res.failed) expect(f.error).toMatch(/^INTEGRITY: .*does not match its hash/);
    const tree = await readTree(target);
    expect(tree.map((x) => x.name)).toEqual(['docs', 'docs/after.txt', 'docs/before.txt', 'safe-big.bin']);
    expect(tree.find((x) => x.name === 'safe-big.bin')!.sha256).toBe(sha256(bytesOf('safe-big', 300 * KiB)));
  });

  it('refuses a target that is a file, not a folder, and leaves the file as it was (even with --overwrite)', async () => {
    const { repo } = await snapshotted();
    const parent = await temp('out');
    const target = join(parent, 'not-a-folder');
    await writeFile(parent, 'not-a-folder', 'a file');
    for (const overwrite of [false, true]) {
      const err = await rejection(toDir(repo, target, { overwrite }), 'EXISTS');
      expect(err.message).toMatch(/exists and is not a folder; nothing was written/);
      expect(readFileSync(target, 'utf8')).toBe('a file');
    }
  });

  it('refuses with EXISTS and writes nothing when files of the snapshot exist in the target; --overwrite replaces them', async () => {
    const { repo } = await snapshotted();
    const target = await temp('out');
    await writeFile(target, 'docs/a.txt', 'local edit');
    await writeFile(target, 'unrelated.txt', 'mine');
    const before = await readTree(target);
    const err = await rejection(toDir(repo, target), 'EXISTS');
    expect(err.message).toMatch(/1 file\(s\) already exist.*docs\/a\.txt.*nothing was written.*--overwrite/);
    expect(await readTree(target)).toEqual(before);

    const res = await toDir(repo, target, { overwrite: true });
    expect(res.overwritten).toBe(1);
    expect(res.failed).toEqual([]);
    expect(readFileSync(join(target, 'docs/a.txt'), 'utf8')).toBe('alpha');
    expect(readFileSync(join(target, 'unrelated.txt'), 'utf8')).toBe('mine');
    expect(readFileSync(join(target, 'docs/sub/b.txt'), 'utf8')).toBe('bravo');
  });

  it('does not write through a symbolic link planted in the target that leads outside it (regression: mkdir -p made folders, and utimes set times, at its far end)', async () => {
    const { repo } = await snapshotted();
    const sandbox = await temp('sandbox');
    const outside = join(sandbox, 'outside');
    const target = join(sandbox, 'target');
    await fsp.mkdir(outside);
    await fsp.mkdir(target);
    await fsp.symlink(outside, join(target, 'docs'));
    const outsideTime = new Date('2020-01-01T00:00:00Z');
    await fsp.utimes(outside, outsideTime, outsideTime);

    // Without --overwrite the link counts as something in the way.
    await rejection(toDir(repo, target), 'EXISTS');
    expect(await fsp.readdir(outside)).toEqual([]);
    // With it, everything that would go through the link is refused; the rest is restored.
    const res = await toDir(repo, target, { overwrite: true });
    expect(res.failed.map((f) => f.path).sort()).toEqual([
      'docs',
      'docs/a.txt',
      'docs/sub',
      'docs/sub/b.txt',
    ]);
    for (const f of res.failed) expect(f.error).toMatch(/UNSAFE_PATH: .*symbolic link.*could lead outside/);
    expect(await fsp.readdir(outside)).toEqual([]);
    // Not even the far end's times were touched.
    expect((await fsp.stat(outside)).mtime).toEqual(outsideTime);
    expect(readFileSync(join(target, 'top.txt'), 'utf8')).toBe('top');
  });

  for (const pinFolders of [true, false]) {
    it(`never writes outside the target when a checked folder is swapped for a symbolic link during the restore (regression: ensureDir's cache; ${pinFolders ? 'folders pinned through /proc/self/fd' : 'each folder lstat-checked before each write'})`, async () => {
      const { repo: plain, store } = await snapshotted();
      const sandbox = await temp('sandbox');
      const outside = join(sandbox, 'outside');
      const target = join(sandbox, 'target');
      await fsp.mkdir(outside);
      const swap = async () => {
        await fsp.rm(join(target, 'docs'), { recursive: true });
        await fsp.symlink(outside, join(target, 'docs'));
      };
      const repo = new Repository({
        store: beforeFirstContent(store, swap),
        packThreshold: plain.packThreshold,
        lockDays: 30,
      });
      const res = await toDir(repo, target, { testing: { pinFolders } });
      expect(await fsp.readdir(outside)).toEqual([]);
      // The files below the swapped folder fail (and, lstat-checked, the folders' times and modes too).
      const failed = res.failed.map((f) => f.path).sort();
      expect(failed.filter((p) => p.endsWith('.txt'))).toEqual(['docs/a.txt', 'docs/sub/b.txt']);
      expect(failed.filter((p) => !p.endsWith('.txt'))).toEqual(pinFolders ? [] : ['docs', 'docs/sub']);
      for (const f of res.failed) expect(f.error).toMatch(/^UNSAFE_PATH: /);
      expect(readFileSync(join(target, 'top.txt'), 'utf8')).toBe('top');
    });

    it(`refuses a write whose folder is swapped for a link right before it (a seam between the folder's check and the write; ${pinFolders ? 'pinned' : 'checked'})`, async () => {
      const { repo } = await snapshotted();
      const sandbox = await temp('sandbox');
      const outside = join(sandbox, 'outside');
      const target = join(sandbox, 'target');
      await fsp.mkdir(outside);
      const res = await toDir(repo, target, {
        concurrency: 1,
        testing: {
          pinFolders,
          beforeWrite: async (path) => {
            if (path !== 'docs/sub/b.txt') return;
            await fsp.rm(join(target, 'docs/sub'), { recursive: true });
            await fsp.symlink(outside, join(target, 'docs/sub'));
          },
        },
      });
      expect(await fsp.readdir(outside)).toEqual([]);
      const why = pinFolders
        ? /^UNSAFE_PATH: docs\/sub in \S+ was removed or replaced while the restore ran/
        : /^UNSAFE_PATH: docs\/sub in \S+ is a symbolic link/;
      // Checked through paths, the folder's own time and mode are refused too; pinned, they go to the
      // removed folder, which is no longer anywhere.
      expect(res.failed).toEqual(
        (pinFolders ? ['docs/sub/b.txt'] : ['docs/sub/b.txt', 'docs/sub']).map((path) => ({
          path,
          error: expect.stringMatching(why) as string,
        })),
      );
      expect(readFileSync(join(target, 'docs/a.txt'), 'utf8')).toBe('alpha');
    });
  }

  it('gives each file and folder back its recorded mode (a 0600 key comes back 0600), keeps a new target 0700 until the end, and gives entries without a mode the umask default', async () => {
    const root = await temp('src');
    const modes: Record<string, number> = {
      ssh: 0o700,
      'ssh/id_ed25519': 0o600,
      'ssh/id_ed25519.pub': 0o644,
      bin: 0o750,
      'bin/run.sh': 0o755,
      'bin/readonly.txt': 0o444,
    };
    for (const p of Object.keys(modes)) if (p.includes('/')) await writeFile(root, p, p);
    for (const [p, m] of Object.entries(modes)) await fsp.chmod(join(root, p), m);
    const e = engine();
    const r = await snap(e.repo, local(root));
    const { header, entries } = await manifestOf(e.repo, r.key);
    expect(Object.fromEntries(entries.map((x) => [x.path, x.mode]))).toEqual(modes);

    const target = join(await temp('out'), 'restored');
    const during: number[] = [];
    const repo = new Repository({
      store: beforeFirstContent(e.store, async () => {
        for (const p of ['', 'ssh', 'bin']) during.push(await modeOf(join(target, p)));
      }),
      lockDays: 30,
    });
    expect((await toDir(repo, target)).failed).toEqual([]);
    expect(during).toEqual([0o700, 0o700, 0o700]);
    expect(await modeOf(target)).toBe(0o777 & ~UMASK);
    for (const [p, m] of Object.entries(modes)) expect(await modeOf(join(target, p)), p).toBe(m & ~UMASK);

    // A manifest written before modes were recorded (or a cloud account's): the umask decides.
    e.clock.advance(DAY);
    const id = snapshotId(e.clock.now());
    await e.store.put(
      manifestKey('laptop', id),
      await gzipLines([{ ...header, id }, ...entries.map((x) => ({ ...x, mode: undefined }))]),
    );
    const old = join(await temp('out'), 'old');
    expect((await toDir(e.repo, old, { at: id })).failed).toEqual([]);
    for (const p of Object.keys(modes)) {
      expect(await modeOf(join(old, p)), p).toBe((p.includes('/') ? 0o666 : 0o777) & ~UMASK);
    }
  });

  it('restores onto a disk without hard links (link fails with EPERM, as on FAT and exFAT): each file is created exclusively, and one that appears meanwhile is never overwritten', async () => {
    const { repo, root } = await snapshotted();
    const target = join(await temp('out'), 'target');
    let links = 0;
    const res = await toDir(repo, target, {
      testing: {
        link: () => {
          links++;
          return Promise.reject(
            Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' }),
          );
        },
        beforeWrite: async (path) => {
          if (path === 'top.txt') await fsp.writeFile(join(target, 'top.txt'), 'mine');
        },
      },
    });
    expect(links).toBeGreaterThan(0);
    expect(res.failed).toEqual([
      {
        path: 'top.txt',
        error: expect.stringMatching(
          /^EXISTS: top\.txt appeared in the target while the restore ran/,
        ) as string,
      },
    ]);
    expect(readFileSync(join(target, 'top.txt'), 'utf8')).toBe('mine');
    const want = (await readTree(root)).filter((x) => x.name !== 'top.txt');
    expect((await readTree(target)).filter((x) => x.name !== 'top.txt')).toEqual(want);
  });

  it('finishes an interrupted restore when run again: files already there with the right content are skipped and counted, temp files left by a crash removed, a file that differs refused', async () => {
    const files: Record<string, string | Buffer> = { 'big.bin': bytesOf('big', 300 * KiB) };
    for (let i = 0; i < 12; i++) files[`f/${String(i).padStart(2, '0')}.txt`] = `file ${i}`;
    const { repo, root } = await snapshotted(files);
    const target = join(await temp('out'), 'target');
    const ac = new AbortController();
    const err = await rejection(
      toDir(repo, target, {
        concurrency: 1,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.filesDone === 5) ac.abort(new Error('stopped by Ctrl-C (SIGINT)'));
        },
      }),
      'ABORTED',
    );
    expect(err.message).toMatch(
      /^the restore of snapshot \S+ of "laptop" to \S+target was interrupted after 5 of 13 files; every file restored so far is complete\. To finish it, run the same restore again .*: syncguard restore laptop --at \S+Z --to \S+target$/,
    );
    expect((await fsp.readdir(join(target, 'f'))).length).toBe(5);
    // A crash (kill -9, power cut) leaves a temp file behind.
    const leftover = join(target, 'f', '.syncguard-restore-0123456789ab');
    await fsp.writeFile(leftover, 'half a fi');

    // A file that differs from the snapshot is refused, and nothing is written.
    const name = (await fsp.readdir(join(target, 'f'))).sort()[2];
    const one = join(target, 'f', name);
    const kept = readFileSync(one, 'utf8');
    const { mtime } = await fsp.stat(one);
    await fsp.writeFile(one, kept.replace('file', 'FILE'));
    const refused = await rejection(toDir(repo, target), 'EXISTS');
    expect(refused.message).toContain(
      `1 file(s) already exist in ${target} with other content (f/${name}); nothing was written`,
    );
    await fsp.writeFile(one, kept);
    await fsp.utimes(one, mtime, mtime);

    const res = await toDir(repo, target);
    expect(res).toMatchObject({ files: 13, skipped: 5, overwritten: 0, failed: [] });
    expect(await readTree(target)).toEqual(await readTree(root));
    // And once more: everything is there.
    expect(await toDir(repo, target)).toMatchObject({ skipped: 13, failed: [] });
  });

  it('restores only the folder (or file) --path names', async () => {
    const { repo, root } = await snapshotted();
    const target = join(await temp('out'), 'target');
    const res = await toDir(repo, target, { path: '/docs/' });
    expect(res.files).toBe(2);
    const all = await readTree(root);
    expect(await readTree(target)).toEqual(
      all.filter((x) => x.name === 'docs' || x.name.startsWith('docs/')),
    );

    for (const pinFolders of [true, false]) {
      const one = join(await temp('out'), 'one');
      await toDir(repo, one, { path: 'docs/sub/b.txt', testing: { pinFolders } });
      expect((await readTree(one, { dirTimes: false })).map((x) => x.name)).toEqual([
        'docs',
        'docs/sub',
        'docs/sub/b.txt',
      ]);
      // Folders the snapshot does not name here were 0700 while the restore ran, then the umask's default.
      expect((await fsp.stat(join(one, 'docs/sub'))).mode & 0o777).toBe(0o777 & ~UMASK);
    }

    const err = await rejection(toDir(repo, join(await temp('out'), 'x'), { path: 'nope' }), 'NOT_FOUND');
    expect(err.message).toMatch(/holds nothing at nope.*syncguard ls laptop/);
    await rejection(toDir(repo, join(await temp('out'), 'x'), { path: '../docs' }), 'UNSAFE_PATH');
  });

  it('writes nothing in a dry run, and says what it would do', async () => {
    const { repo } = await snapshotted();
    const target = join(await temp('out'), 'target');
    const res = await toDir(repo, target, { dryRun: true });
    expect(res).toMatchObject({
      dryRun: true,
      files: 4,
      dirs: 2,
      bytes: 5 + 5 + 3 + 300 * KiB,
      overwritten: 0,
      failed: [],
    });
    expect(await snapshotOfFolder(join(target, '..'))).toEqual([]);

    const existing = await temp('out');
    await writeFile(existing, 'top.txt', 'changed');
    const before = await readTree(existing);
    const over = await toDir(repo, existing, { dryRun: true, overwrite: true });
    expect(over.overwritten).toBe(1);
    expect(await readTree(existing)).toEqual(before);
  });

  it('picks the last snapshot at or before --at: an id, a date-time, or a date', async () => {
    const root = await temp('src');
    const { repo, clock } = engine();
    await writeFile(root, 'v.txt', 'one');
    const first = await snap(repo, local(root));
    await writeFile(root, 'v.txt', 'two', new Date('2026-11-21T01:00:00Z'));
    clock.advance(DAY);
    const second = await snap(repo, local(root));
    const read = async (at: string) => {
      const t = join(await temp('out'), 't');
      const res = await toDir(repo, t, { at });
      return { id: res.snapshot.id, text: readFileSync(join(t, 'v.txt'), 'utf8') };
    };
    expect(await read(first.id)).toEqual({ id: first.id, text: 'one' });
    expect(await read(second.id)).toEqual({ id: second.id, text: 'two' });
    expect(await read('2026-11-20T23:00:00Z')).toEqual({ id: first.id, text: 'one' });
    expect(await read('2026-11-21T02:00:00Z')).toEqual({ id: second.id, text: 'two' });
    expect((await read('2026-11-20')).id).toBe(first.id);
    const early = await rejection(
      toDir(repo, join(await temp('out'), 'x'), { at: '2026-11-19T00:00:00Z' }),
      'NOT_FOUND',
    );
    expect(early.message).toContain(`the first is ${first.id}`);
    await rejection(toDir(repo, join(await temp('out'), 'x'), { at: 'last tuesday' }), 'USAGE');
  });
});
