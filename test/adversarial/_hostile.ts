/**
 * Hostile objects for the adversarial suites: what anyone who can create a key in the store can plant.
 * Large decompressed bodies are built from repeated gzip members (a gzip file may hold many; every
 * reader decompresses them all), so a 600 MB line costs the test about a megabyte.
 */
import { gzipSync } from 'node:zlib';
import { MANIFEST_FORMAT, MANIFEST_VERSION, type ManifestHeader } from '../../src/snapshot/manifest.js';

const MiB = 1024 * 1024;

export function header(account: string, id: string, over: Partial<ManifestHeader> = {}): ManifestHeader {
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    account,
    provider: 'local',
    id,
    started: new Date().toISOString(),
    finished: new Date().toISOString(),
    tool: 'syncguard test',
    counts: { files: 0, dirs: 0, failed: 0, skipped: 0 },
    bytes: 0,
    bytesAdded: 0,
    failures: [],
    skipped: [],
    ...over,
  };
}

/** Gzip members of `text` repeated until `bytes` decompressed bytes. */
function repeated(text: string, bytes: number): Buffer[] {
  const unit = text.repeat(Math.max(1, Math.floor(MiB / text.length)));
  const member = gzipSync(unit, { level: 9 });
  return Array.from({ length: Math.ceil(bytes / unit.length) }, () => member);
}

/** A manifest whose first entry is one line of `lineBytes` bytes (a valid header before it). */
export function longLineManifest(account: string, id: string, lineBytes = 600 * MiB): Buffer {
  return Buffer.concat([
    gzipSync(JSON.stringify(header(account, id)) + '\n{"path":"'),
    ...repeated('a', lineBytes),
    gzipSync('","type":"dir","size":0,"mtime":"2026-11-20T02:00:00.000Z"}\n'),
  ]);
}

/** A gzip bomb: a small object of valid entry lines (each with a long run of one letter, which gzip
 *  packs about a thousand to one) that decompresses to `bytes`. */
export function bombManifest(account: string, id: string, bytes = 64 * MiB): Buffer {
  const line =
    JSON.stringify({
      path: 'a',
      type: 'dir',
      size: 0,
      mtime: '2026-11-20T02:00:00.000Z',
      pad: 'a'.repeat(500_000),
    }) + '\n';
  return Buffer.concat([gzipSync(JSON.stringify(header(account, id)) + '\n'), ...repeated(line, bytes)]);
}

/** A manifest of the given raw lines. */
export function linesManifest(lines: string[]): Buffer {
  return gzipSync(lines.join('\n') + '\n');
}

/** JSON nested `depth` deep: [[[…]]]. */
export function deep(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}
