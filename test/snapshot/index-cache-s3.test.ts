/**
 * The content index cached in the state folder (issue 10, "nightly cost independent of history"),
 * against the real S3 server: a night reads only the pack indexes it has not read before, the store's
 * listing decides what the cache may answer, and a damaged cache is rebuilt, never fatal.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Repository, type ContentIndex } from '../../src/snapshot/repository.js';
import { S3Store } from '../../src/store/s3.js';
import { readAll, type Store } from '../../src/store/types.js';
import { expectCli, localConfigYaml, s3Env, s3StoreYaml, uniqueBucket, writeConfig } from '../helpers/cli.js';
import { listKeys, removeBucket } from '../helpers/s3-client.js';
import { s3Bucket, s3Config, snap, tempDir, writeFiles, type S3Access } from '../schedule/_helpers.js';

const s3 = inject('s3');
const dirs: string[] = [];
const cleanup: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanup) await c();
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

function raw(a: S3Access): S3Client {
  return new S3Client({
    endpoint: a.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A store with three nights of packs (one small pack each) and a state folder for the cache. */
async function threeNights(store: Store, lockDays?: number) {
  const state = await tempDir('index-cache');
  const root = await tempDir('index-cache-src');
  dirs.push(state, root);
  const cacheFile = join(state, 'index', 'store.json');
  const repo = () => new Repository({ store, lockDays, packThreshold: 64 * 1024, indexCacheFile: cacheFile });
  for (let night = 0; night < 3; night++) {
    await writeFiles(root, { [`n${night}.txt`]: `night ${night} ${randomBytes(8).toString('hex')}` });
    await snap(repo(), root);
  }
  const idxs: string[] = [];
  for await (const o of store.list('packs/')) if (o.key.endsWith('.idx')) idxs.push(o.key);
  return { repo, cacheFile, idxs };
}

function locations(index: ContentIndex, shas: string[]) {
  return shas.map((s) => index.get(s));
}

async function shasOf(store: Store, idx: string): Promise<string[]> {
  const j = JSON.parse((await readAll(store, idx)).toString()) as {
    entries: Array<[string, number, number]>;
  };
  return j.entries.map(([sha]) => sha);
}

describe.skipIf(!s3)('index cache in the state folder (issue 10), on the real S3 server', () => {
  it('a second run reads no pack index and finds every content where the pack indexes of the store say', async () => {
    const { store } = await s3Bucket(s3!, 'idxcache');
    cleanup.push(async () => store.close());
    const { repo, cacheFile, idxs } = await threeNights(store, 1);
    expect(idxs).toHaveLength(3);
    await fsp.rm(cacheFile, { force: true });
    const cold = repo();
    const a = await cold.loadIndex();
    expect(cold.indexesRead).toBe(3);
    const warm = repo();
    const b = await warm.loadIndex();
    expect(warm.indexesRead).toBe(0);
    const shas = (await Promise.all(idxs.map((k) => shasOf(store, k)))).flat();
    expect(locations(b, shas)).toEqual(locations(a, shas));
    expect(b.size).toBe(a.size);
    // A damaged cache file is a cold cache: every index is read again, and the file rewritten.
    await fsp.writeFile(cacheFile, '{"format":"syncguard-index-cache","version":1,"indexes":{"x":');
    const again = repo();
    expect(locations(await again.loadIndex(), shas)).toEqual(locations(a, shas));
    expect(again.indexesRead).toBe(3);
    const after = repo();
    await after.loadIndex();
    expect(after.indexesRead).toBe(0);
  });

  it('a cached index whose entries were tampered with locally is read from the store again', async () => {
    const { store } = await s3Bucket(s3!, 'idxcache-tamper');
    cleanup.push(async () => store.close());
    const { repo, cacheFile, idxs } = await threeNights(store, 1);
    const cold = await repo().loadIndex();
    const file = JSON.parse(await fsp.readFile(cacheFile, 'utf8')) as {
      indexes: Record<string, { entries: Array<[string, number, number]> }>;
    };
    file.indexes[idxs[0]].entries[0][2] += 1; // no longer covers its pack exactly
    await fsp.writeFile(cacheFile, JSON.stringify(file));
    const r = repo();
    const index = await r.loadIndex();
    expect(r.indexesRead).toBe(1);
    const shas = await shasOf(store, idxs[0]);
    expect(locations(index, shas)).toEqual(locations(cold, shas));
  });

  it('a newer version planted over a cached pack index: the oldest is read from the store, not the cache', async () => {
    const { store, bucket } = await s3Bucket(s3!, 'idxcache-planted');
    const client = raw(s3!);
    cleanup.push(async () => {
      store.close();
      client.destroy();
    });
    const { repo, idxs } = await threeNights(store, 1);
    const before = await repo().loadIndex();
    const shas = await shasOf(store, idxs[1]);
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: idxs[1], Body: '{"format":"syncguard-pack-index"}' }),
    );
    const r = repo();
    const after = await r.loadIndex();
    expect(r.indexesRead).toBe(1);
    expect(after.damaged).toEqual([]);
    expect(locations(after, shas)).toEqual(locations(before, shas));
  });

  it('a hostile index rewritten in an unlocked store: the listing contradicts the cache, the index is read and refused', async () => {
    const s = s3!;
    const bucket = `sg-idxcache-open-${randomBytes(5).toString('hex')}`;
    const store = new S3Store(s3Config(s, bucket, { objectLock: 'off' }), {
      retry: { sleep: async () => {} },
    });
    await store.prepare({ create: true });
    const client = raw(s);
    cleanup.push(async () => {
      store.close();
      await removeBucket(client, bucket);
      client.destroy();
    });
    const { repo, idxs } = await threeNights(store);
    await repo().loadIndex();
    const victim = idxs[2];
    const j = JSON.parse((await readAll(store, victim)).toString()) as {
      entries: Array<[string, number, number]>;
    };
    j.entries.push([j.entries[0][0].replace(/^./, (c) => (c === 'a' ? 'b' : 'a')), 0, 1]); // a content it does not hold
    await store.delete(victim);
    await store.put(victim, Buffer.from(JSON.stringify(j)));
    const r = repo();
    const index = await r.loadIndex();
    expect(r.indexesRead).toBe(1);
    expect(index.damaged.map((d) => d.object)).toEqual([victim]);
    // An index the store no longer lists is dropped from the cache, not answered from it.
    const pruned = await shasOf(store, idxs[0]);
    await store.delete(idxs[0]);
    const r2 = repo();
    const index2 = await r2.loadIndex();
    expect(r2.indexesRead).toBe(1); // the refused one, again
    expect(index2.damaged.map((d) => d.object)).toEqual([victim]);
    for (const sha of pruned) expect(index2.get(sha)).toBeUndefined();
  });

  it('from the CLI: `snapshot` keeps the cache in the state folder; a damaged cache file does not fail the next run', async () => {
    const cwd = await tempDir('idxcache-cli');
    dirs.push(cwd);
    const bucket = uniqueBucket('idxcache-cli');
    const client = raw(s3!);
    const env = s3Env(s3!);
    cleanup.push(async () => {
      await removeBucket(client, bucket).catch(() => {});
      client.destroy();
    });
    await writeFiles(join(cwd, 'src'), { 'a.txt': 'alpha', 'b.txt': 'beta' });
    await writeConfig(cwd, localConfigYaml(s3StoreYaml(bucket, s3!), './src'));
    await expectCli(['init'], { cwd, env }, 0);
    await expectCli(['snapshot'], { cwd, env }, 0);
    const [file] = await fsp.readdir(join(cwd, 'state', 'index'));
    const cached = JSON.parse(await fsp.readFile(join(cwd, 'state', 'index', file), 'utf8')) as {
      indexes: Record<string, unknown>;
    };
    const idxs = (await listKeys(client, bucket, 'packs/'))
      .map((k) => k.key)
      .filter((k) => k.endsWith('.idx'));
    expect(Object.keys(cached.indexes)).toEqual(idxs);
    await fsp.writeFile(join(cwd, 'state', 'index', file), 'not json');
    await writeFiles(join(cwd, 'src'), { 'c.txt': 'gamma' });
    await expectCli(['snapshot'], { cwd, env }, 0);
    const rebuilt = JSON.parse(await fsp.readFile(join(cwd, 'state', 'index', file), 'utf8')) as {
      indexes: Record<string, unknown>;
    };
    const now = (await listKeys(client, bucket, 'packs/'))
      .map((k) => k.key)
      .filter((k) => k.endsWith('.idx'));
    expect(now).toHaveLength(2);
    expect(Object.keys(rebuilt.indexes).sort()).toEqual(now);
  }, 120_000);
});
