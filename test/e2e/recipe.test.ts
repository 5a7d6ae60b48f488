import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  cliJson,
  expectCli,
  localConfigYaml,
  s3Env,
  s3StoreYaml,
  tempDir,
  uniqueBucket,
  writeConfig,
} from '../helpers/cli.js';
import { getObject, rawClient, removeBucket } from '../helpers/s3-client.js';
import { KiB, MiB, bytesOf, writeFile } from '../helpers/tree.js';

const s3 = inject('s3');
if (!s3)
  console.warn(
    '\n!!! e2e: the README recipe SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n',
  );

const RECIPE = fileURLToPath(new URL('./recipe.sh', import.meta.url));
const PREFIX = 'syncguard/';

/** The README's promise: a manifest plus zcat, jq and any S3 client restore a file without syncguard. */
describe.skipIf(!s3)('e2e: restore with zcat, jq and curl (the README recipe)', () => {
  let dir: string;
  let raw: S3Client;
  let bucket: string;
  let snapshotId: string;
  const files: Record<string, Buffer> = {
    'docs/report.txt': bytesOf('report', 3 * KiB),
    'docs/empty.txt': Buffer.alloc(0),
    'Fotos/Urlaub \u{1F3D6}\u{FE0F} "Sommer".jpg': bytesOf('photo', 90 * KiB),
    'media/video.bin': bytesOf('video', Math.round(1.5 * MiB)),
  };
  const mtime = new Date('2026-07-14T09:30:15.250Z');

  beforeAll(async () => {
    dir = await tempDir('recipe');
    raw = rawClient(s3!);
    bucket = uniqueBucket('recipe');
    for (const [p, c] of Object.entries(files)) await writeFile(join(dir, 'src'), p, c, mtime);
    await writeFile(join(dir, 'src'), 'filler/other.txt', 'other', mtime);
    await writeConfig(
      dir,
      localConfigYaml(s3StoreYaml(bucket, s3!, '{ mode: GOVERNANCE, days: 1 }', PREFIX), './src'),
    );
    const cli = { cwd: dir, env: s3Env(s3!) };
    await expectCli(['init'], cli, 0);
    const [run] = await cliJson<Array<{ id: string; ok: boolean }>>(['snapshot'], cli);
    expect(run.ok).toBe(true);
    snapshotId = run.id;
  }, 180_000);
  afterAll(async () => {
    if (raw && bucket) await removeBucket(raw, bucket);
    raw?.destroy();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  async function recipe(path: string, out: string, id?: string) {
    const env = {
      PATH: process.env.PATH,
      S3_ENDPOINT: s3!.endpoint,
      BUCKET: bucket,
      PREFIX,
      AWS_REGION: 'us-east-1',
      ...s3Env(s3!),
    };
    const r = await promisify(execFile)('bash', [RECIPE, 'laptop', path, out, ...(id ? [id] : [])], {
      env,
      cwd: dir,
    });
    expect(r.stdout + r.stderr).not.toContain(s3!.secretAccessKey);
    return r;
  }

  it('restores a packed file (a byte range of a pack) and a blob file, byte for byte, with their times', async () => {
    // The two ways a manifest names content are both in play.
    const manifest = gunzipSync(
      await getObject(raw, bucket, `${PREFIX}snapshots/laptop/${snapshotId}.ndjson.gz`),
    )
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const entry = (p: string) => manifest.find((e) => e.path === p);
    expect(entry('docs/report.txt')).toMatchObject({
      object: expect.stringMatching(/^packs\//),
      offset: expect.any(Number),
      length: 3 * KiB,
    });
    expect(entry('media/video.bin')).toMatchObject({ object: expect.stringMatching(/^blobs\/sha256\//) });
    expect(entry('media/video.bin').offset).toBeUndefined();
    for (const path of [
      'docs/report.txt',
      'media/video.bin',
      'Fotos/Urlaub \u{1F3D6}\u{FE0F} "Sommer".jpg',
      'docs/empty.txt',
    ]) {
      const out = join(dir, `out-${Object.keys(files).indexOf(path)}`);
      const r = await recipe(path, out);
      expect(r.stdout).toContain(`restored ${path} from ${PREFIX}snapshots/laptop/${snapshotId}.ndjson.gz`);
      expect((await fsp.readFile(out)).equals(files[path]), path).toBe(true);
      expect((await fsp.stat(out)).mtime.getTime(), path).toBe(mtime.getTime());
    }
  });

  it('takes a snapshot id, and fails clearly for a file the snapshot does not hold', async () => {
    await recipe('docs/report.txt', join(dir, 'by-id'), snapshotId);
    expect((await fsp.readFile(join(dir, 'by-id'))).equals(files['docs/report.txt'])).toBe(true);
    const err = await recipe('docs/nope.txt', join(dir, 'nope')).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain(
      `no file docs/nope.txt in ${PREFIX}snapshots/laptop/${snapshotId}.ndjson.gz`,
    );
  });
});
