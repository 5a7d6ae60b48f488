import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  ManifestWriter,
  manifestFileStream,
  readManifest,
  type ManifestEntry,
  type ManifestHeader,
} from '../../src/snapshot/manifest.js';

const header: ManifestHeader = {
  format: MANIFEST_FORMAT,
  version: MANIFEST_VERSION,
  account: 'bench',
  provider: 'local',
  id: '20261127T020000.000Z',
  started: '2026-11-27T02:00:00.000Z',
  finished: '2026-11-27T02:01:00.000Z',
  tool: 'syncguard test',
  counts: { files: 0, dirs: 0, failed: 0, skipped: 0 },
  bytes: 0,
  bytesAdded: 0,
  failures: [],
  skipped: [],
};

function entry(i: number): ManifestEntry {
  const sha256 = createHash('sha256').update(String(i)).digest('hex');
  return {
    path: `d${i % 7}/f${String(i).padStart(5, '0')}`,
    type: 'file',
    size: i,
    mtime: new Date(Date.UTC(2026, 0, 1) + i).toISOString(),
    sha256,
    object: `blobs/sha256/${sha256.slice(0, 2)}/${sha256}`,
  };
}

async function roundTrip(n: number): Promise<ManifestEntry[]> {
  const w = new ManifestWriter({ ...header, counts: { ...header.counts, files: n } });
  try {
    for (let i = 0; i < n; i++) await w.add(entry(i));
    const m = await w.finish();
    const bytes = await fsp.readFile(m.file);
    expect(m.size).toBe(bytes.length);
    expect(m.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    const read = await readManifest(manifestFileStream(m.file), 'test');
    expect(read.header.counts.files).toBe(n);
    const got: ManifestEntry[] = [];
    for await (const e of read.entries) got.push(e);
    return got;
  } finally {
    await w.discard();
  }
}

describe('snapshot: manifest writer', () => {
  // The writer hands lines to gzip in batches; a line lost at a batch's edge or at the end is a file
  // missing from the snapshot.
  it('keeps every entry, in order, when the lines span many batches and end mid-batch', async () => {
    const n = 3001; // about 700 KiB of lines: ten batches and a remainder
    const got = await roundTrip(n);
    expect(got).toHaveLength(n);
    expect(got.map((e) => e.path)).toEqual(Array.from({ length: n }, (_, i) => entry(i).path));
    expect(got[n - 1]).toEqual(entry(n - 1));
  });

  it('writes a manifest with the header alone when there are no entries', async () => {
    expect(await roundTrip(0)).toEqual([]);
  });
});
