/**
 * Deterministic folder trees for snapshot and end-to-end tests, and a byte-exact picture of a tree
 * to compare a restore against. Names are handled as Buffers throughout, so NFC/NFD twins, newlines
 * and control characters are compared byte for byte.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** `size` pseudo-random bytes that depend only on `seed` (AES-128-CTR keystream: fast and repeatable). */
export function bytesOf(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Names a file system allows and a careless tool loses or rewrites. */
export const ODD_NAMES = {
  nfc: 'caf\u00e9.txt',
  nfd: 'cafe\u0301.txt',
  newline: 'line\nbreak.txt',
  control: 'ctl\u0001\u001f\u007f.txt',
  emoji: '\u{1F4F7} photo \u{1F600}.jpg',
  long: 'L'.repeat(251) + '.txt', // 255 bytes, the longest name most file systems allow
  spaces: '  leading and trailing  ',
  quotes: 'it\'s "quoted" & <odd>.txt',
  dash: '-rf',
  glob: '*star?[x].txt',
  backslash: 'back\\slash.txt',
  percent: '100%25 %s.txt',
  tab: 'tab\there.txt',
  rtl: '\u202Eevil\u202C.txt',
} as const;

export interface TreeOptions {
  seed?: string;
  /** Small files spread over nested folders (default 300). */
  small?: number;
  /** Sizes of the files at or above the pack threshold (default: three of 1.1–1.6 MiB). */
  large?: number[];
  /** Add the odd names of ODD_NAMES under "odd/" (default true). */
  odd?: boolean;
  /** Empty folders to create (default ["empty", "nested/empty/deeper"]). */
  emptyDirs?: string[];
  /** The time files are dated from (deterministic mtimes, whole milliseconds). */
  epoch?: number;
}

export interface TreeFile {
  path: string;
  size: number;
}

/** Writes a tree below `root` (which may exist) and returns the files it wrote. */
export async function makeTree(root: string, opts: TreeOptions = {}): Promise<TreeFile[]> {
  const seed = opts.seed ?? 'tree';
  const epoch = opts.epoch ?? Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  const files: TreeFile[] = [];
  let n = 0;
  const put = async (path: string, size: number) => {
    await writeFile(root, path, bytesOf(`${seed}:${path}`, size), new Date(epoch + n++ * 1_001));
    files.push({ path, size });
  };
  const small = opts.small ?? 300;
  for (let i = 0; i < small; i++) {
    const dir = `d${i % 7}/sub${i % 3}${i % 5 === 0 ? '/deep' : ''}`;
    // Sizes from 0 bytes to ~40 KiB, a few of them equal so that equal sizes do not mean equal content.
    await put(`${dir}/f${String(i).padStart(4, '0')}.dat`, i % 50 === 0 ? 0 : ((i * 7919) % (40 * KiB)) + 1);
  }
  for (const [i, size] of (opts.large ?? [1.1 * MiB, 1.3 * MiB, 1.6 * MiB].map(Math.round)).entries()) {
    await put(`large/big${i}.bin`, size);
  }
  if (opts.odd ?? true) {
    for (const [k, name] of Object.entries(ODD_NAMES)) await put(`odd/${name}`, 10 + k.length);
  }
  for (const d of opts.emptyDirs ?? ['empty', 'nested/empty/deeper'])
    await fsp.mkdir(join(root, ...d.split('/')), { recursive: true });
  return files;
}

/** Writes one file (parents made as needed) and sets its mtime when given. */
export async function writeFile(
  root: string,
  path: string,
  content: Buffer | string,
  mtime?: Date,
): Promise<void> {
  const full = join(root, ...path.split('/'));
  await fsp.mkdir(join(full, '..'), { recursive: true });
  await fsp.writeFile(full, content);
  if (mtime) await fsp.utimes(full, mtime, mtime);
}

export interface TreeItem {
  /** The path as UTF-8 text, for messages. */
  name: string;
  /** The path's exact bytes, hex. */
  hex: string;
  type: 'file' | 'dir';
  size: number;
  sha256?: string;
  /** Rounded to whole milliseconds, as Node dates a file and as a manifest keeps it. */
  mtimeMs: number;
}

export interface ReadTreeOptions {
  /** Compare folders' mtimes too (default true). */
  dirTimes?: boolean;
}

/** Everything below `root` (not root itself), names as bytes, in byte order. Symbolic links and other
 *  non-regular entries are listed as errors: a restore must not create them. */
export async function readTree(root: string, opts: ReadTreeOptions = {}): Promise<TreeItem[]> {
  const out: TreeItem[] = [];
  const walk = async (dir: Buffer, rel: Buffer | undefined) => {
    const names = (await fsp.readdir(dir, { encoding: 'buffer' })).sort((a, b) => Buffer.compare(a, b));
    for (const name of names) {
      const full = Buffer.concat([dir, Buffer.from('/'), name]);
      const path = rel ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const st = await fsp.lstat(full);
      const base = {
        name: path.toString('utf8'),
        hex: path.toString('hex'),
        mtimeMs: Math.round(st.mtimeMs),
      };
      if (st.isDirectory()) {
        await walk(full, path);
        out.push({
          ...base,
          type: 'dir',
          size: 0,
          mtimeMs: opts.dirTimes === false ? 0 : Math.round((await fsp.lstat(full)).mtimeMs),
        });
      } else if (st.isFile()) {
        out.push({ ...base, type: 'file', size: st.size, sha256: sha256(await fsp.readFile(full)) });
      } else {
        throw new Error(`${base.name} in ${root} is neither a file nor a folder`);
      }
    }
  };
  await walk(Buffer.from(root), undefined);
  return out.sort((a, b) => Buffer.compare(Buffer.from(a.hex, 'hex'), Buffer.from(b.hex, 'hex')));
}

/** The total bytes of the files in a tree picture. */
export function treeBytes(items: TreeItem[]): number {
  return items.reduce((n, i) => n + i.size, 0);
}

/** Every path in or below `dir`, recursively, as raw byte strings (hex), for "nothing was written" checks. */
export async function snapshotOfFolder(dir: string): Promise<TreeItem[]> {
  try {
    return await readTree(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
