import { resolve, sep } from 'node:path';
import { SyncguardError } from './errors.js';

/**
 * Paths from a provider and from a manifest are untrusted. A relative path is safe when it is not
 * empty, has no leading '/', no empty, '.' or '..' segment, and no NUL. Every other name a file
 * system allows (newlines, control characters, any Unicode form, 255 bytes) is kept as it is.
 * Returns why the path is unsafe, or undefined when it is safe.
 */
export function unsafeReason(path: string): string | undefined {
  if (typeof path !== 'string' || path.length === 0) return 'the path is empty';
  if (path.includes('\0')) return 'the path holds a NUL character';
  if (path.startsWith('/')) return 'the path is absolute';
  // A drive letter or a backslash is an ordinary character in a name on Linux and macOS, but leads
  // elsewhere on Windows: refused only there.
  if (process.platform === 'win32' && (/^[A-Za-z]:/.test(path) || path.includes('\\')))
    return 'the path is absolute or holds a backslash';
  for (const seg of path.split('/')) {
    if (seg === '') return 'the path has an empty segment';
    if (seg === '.' || seg === '..') return `the path has a "${seg}" segment`;
  }
  return undefined;
}

export function assertSafePath(path: string, what = 'path'): void {
  const reason = unsafeReason(path);
  if (reason) throw new SyncguardError('UNSAFE_PATH', `refused ${what} ${showPath(path)}: ${reason}`);
}

/** Joins a safe relative path under root, and checks that the result stays below root. */
export function joinUnder(root: string, rel: string): string {
  assertSafePath(rel);
  const base = resolve(root);
  const full = resolve(base, ...rel.split('/'));
  if (full !== base && !full.startsWith(base.endsWith(sep) ? base : base + sep)) {
    throw new SyncguardError('UNSAFE_PATH', `refused path ${showPath(rel)}: it resolves outside ${base}`);
  }
  return full;
}

/** A path as it is safe to print: control characters, backslashes and quotes escaped, in quotes
 *  when anything was escaped or it has spaces. Never used to name a file. */
export function showPath(path: string): string {
  const escaped = JSON.stringify(String(path))
    .slice(1, -1)
    .replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  return escaped !== path || /\s/.test(path) ? `"${escaped}"` : path;
}

/** Whether `path` is `folder` itself or lies below it ('' is the root and holds everything). */
export function isUnder(path: string, folder: string): boolean {
  return folder === '' || path === folder || path.startsWith(folder + '/');
}

/** Normalises a folder given on the command line or in the config: no leading or trailing '/'. */
export function normaliseFolder(folder: string | undefined): string {
  if (!folder) return '';
  const f = folder.replace(/^\/+|\/+$/g, '');
  if (f !== '') assertSafePath(f, 'folder');
  return f;
}

/** Byte-order comparison of two paths, '/' sorting before every other character, so that a folder's
 *  entries follow it directly. The order of manifests. */
export function comparePaths(a: string, b: string): number {
  // Without allocating (a sort of 200,000 paths makes millions of comparisons): below U+D800, the order
  // of UTF-16 code units is the order of UTF-8 bytes. Surrogates (and so astral characters, and lone
  // surrogates, which UTF-8 encodes as U+FFFD) take the encoding's own comparison.
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 || y >= 0xd800) return compareEncoded(a, b);
    const d = (x === 0x2f ? 0 : x) - (y === 0x2f ? 0 : y);
    if (d !== 0) return d;
  }
  if (n > 0 && a.length !== b.length && (a.charCodeAt(n - 1) & 0xfc00) === 0xd800)
    return compareEncoded(a, b);
  return a.length - b.length;
}

function compareEncoded(a: string, b: string): number {
  const x = Buffer.from(a.replaceAll('/', '\0'));
  const y = Buffer.from(b.replaceAll('/', '\0'));
  return Buffer.compare(x, y);
}
