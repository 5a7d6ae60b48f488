/**
 * Versioned buckets (issue 8, point 12), against the real S3 server with Object Lock: anyone with
 * write access can put a newer version over any key, and a crash between completing an upload and
 * locking it leaves a manifest without a lock. Locks are read from the store and set on every version.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { snapshot, snapshots } from '../../src/api.js';
import { configSchema } from '../../src/config/schema.js';
import { Repository } from '../../src/snapshot/repository.js';
import { restore } from '../../src/snapshot/restore.js';
import { verify } from '../../src/snapshot/verify.js';
import type { Log } from '../../src/log.js';
import { expectCli, localConfigYaml, s3Env, s3StoreYaml, uniqueBucket, writeConfig } from '../helpers/cli.js';
import { listKeys, removeBucket } from '../helpers/s3-client.js';
import { s3Bucket, snap, tempDir, withOverrides, writeFiles, type S3Access } from '../schedule/_helpers.js';

const s3 = inject('s3');
const dirs: string[] = [];
afterAll(async () => {
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

async function retentions(client: S3Client, bucket: string, key: string): Promise<Array<number | undefined>> {
  const r = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  const out: Array<number | undefined> = [];
  for (const v of (r.Versions ?? []).filter((x) => x.Key === key)) {
    const h = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: v.VersionId }));
    out.push(h.ObjectLockRetainUntilDate?.getTime());
  }
  return out;
}

describe.skipIf(!s3)('adversarial: versioned buckets (point 12), on the real S3 server', () => {
  it('extending a lock extends every version of the key, not only a newer one someone put over it', async () => {
    const { store, bucket } = await s3Bucket(s3!, 'versions-extend');
    const client = raw(s3!);
    try {
      const key = 'packs/2026/11/20/' + 'a'.repeat(32) + '.pack';
      await store.put(key, Buffer.from('the real pack'), { retainUntil: new Date(Date.now() + 5_000) });
      // A hostile writer puts a newer version over it (Object Lock cannot stop that).
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'planted' }));
      const until = new Date(Date.now() + 3_600_000);
      await store.extendRetention(key, until);
      const got = await retentions(client, bucket, key);
      expect(got).toHaveLength(2);
      for (const t of got) expect(t).toBeGreaterThanOrEqual(Math.floor(until.getTime() / 1000) * 1000);
    } finally {
      store.close();
      client.destroy();
    }
  });

  it('`snapshots` shows the lock the store holds, not the header; the next run locks a manifest left unlocked', async () => {
    const { store, config, bucket } = await s3Bucket(s3!, 'versions-unlocked');
    const client = raw(s3!);
    const root = await tempDir('versions-unlocked');
    dirs.push(root);
    try {
      await writeFiles(root, { 'a.txt': 'alpha', 'b.txt': 'beta' });
      // A crash between CompleteMultipartUpload and PutObjectRetention: the manifest is written unlocked.
      const crashing = withOverrides(store, {
        put: (k, b, o) => store.put(k, b, k.startsWith('snapshots/') ? { ...o, retainUntil: undefined } : o),
      });
      const s1 = await snap(new Repository({ store: crashing, lockDays: 1 }), root);
      expect(s1.header.lockedUntil).toBeDefined();
      expect((await store.head(s1.key))!.retainUntil).toBeUndefined();

      const ctx = {
        config: configSchema.parse({
          store: config,
          stateDir: `${root}/state`,
          keep: { last: 10 },
          accounts: [{ name: 'docs', provider: 'local', path: root }],
        }),
        file: '/dev/null',
        dir: root,
        store,
      };
      const [shown] = await snapshots(ctx, 'docs');
      expect(shown.id).toBe(s1.id);
      expect(shown.lockedUntil).toBeUndefined();

      await new Promise((r) => setTimeout(r, 5));
      const [run] = await snapshot(ctx, ['docs']);
      expect(run.ok, run.ok ? '' : run.error.message).toBe(true);
      const locked = (await store.head(s1.key))!.retainUntil;
      expect(locked?.getTime()).toBeGreaterThan(Date.now() + 23 * 3_600_000);
      expect((await retentions(client, bucket, s1.key))[0]).toBe(locked?.getTime());
    } finally {
      store.close();
      client.destroy();
    }
  }, 60_000);

  /** A repository on a fresh bucket whose warnings are kept; files of at least 64 bytes are blobs. */
  async function planted(label: string) {
    const { store, bucket } = await s3Bucket(s3!, label);
    const client = raw(s3!);
    const root = await tempDir(label);
    dirs.push(root);
    const warnings: string[] = [];
    const log: Log = (level, message) => {
      if (level === 'warn') warnings.push(message);
    };
    const repo = new Repository({ store, lockDays: 1, packThreshold: 64, log });
    const plant = (key: string, body: string | Buffer) =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    const restored = async () => {
      const to = join(root, `out-${warnings.length}-${Math.random().toString(36).slice(2)}`);
      const r = await restore({ repo, account: 'docs', to: { kind: 'dir', dir: to } });
      const files: Record<string, string> = {};
      for (const f of ['big.txt', 'a.txt', 'b.txt'])
        files[f] = await fsp.readFile(join(to, f), 'utf8').catch(() => '(missing)');
      return { r, files };
    };
    const objectOf = async (key: string, path: string) => {
      for await (const e of (await repo.readManifest(key)).entries) if (e.path === path) return e.object!;
      throw new Error(`${path} is not in ${key}`);
    };
    return { store, bucket, client, root, warnings, repo, plant, restored, objectOf };
  }

  const BIG = 'the real large file, stored as a blob of its own. '.repeat(4);
  const FILES = { 'big.txt': BIG, 'a.txt': 'alpha', 'b.txt': 'beta' };

  it('a newer version planted over a blob: restore gets the original bytes and warns; verify reports it', async () => {
    const t = await planted('versions-blob');
    try {
      await writeFiles(t.root, FILES);
      const s1 = await snap(t.repo, t.root);
      const blob = await t.objectOf(s1.key, 'big.txt');
      expect(blob.startsWith('blobs/')).toBe(true);
      await t.plant(blob, 'ransomed '.repeat(20));

      const { r, files } = await t.restored();
      expect(r.failed).toEqual([]);
      expect(files).toEqual(FILES);
      expect(t.warnings.join('\n')).toMatch(
        new RegExp(`the latest version of ${blob} does not match its hash; using version \\S+ of \\d{4}-`),
      );

      const v = await verify(t.repo, { account: 'docs' });
      expect(v.problems.map((p) => p.problem).join('\n')).toMatch(/newer version was written over it/);
    } finally {
      t.store.close();
      t.client.destroy();
    }
  }, 60_000);

  it('a newer version planted over a pack: restore gets the original bytes and warns; verify reports it', async () => {
    const t = await planted('versions-pack');
    try {
      await writeFiles(t.root, FILES);
      const s1 = await snap(t.repo, t.root);
      const pack = await t.objectOf(s1.key, 'a.txt');
      expect(pack.endsWith('.pack')).toBe(true);
      const original = await t.client.send(new GetObjectCommand({ Bucket: t.bucket, Key: pack }));
      const bytes = Buffer.from(await original.Body!.transformToByteArray());
      // Same size, every byte changed: the index still fits, only the hashes tell.
      await t.plant(pack, Buffer.from(bytes.map((b) => b ^ 0x5a)));

      const { r, files } = await t.restored();
      expect(r.failed).toEqual([]);
      expect(files).toEqual(FILES);
      expect(t.warnings.join('\n')).toMatch(`the latest version of ${pack} does not match its hash`);

      const v = await verify(t.repo, { account: 'docs' });
      expect(v.problems.map((p) => p.problem).join('\n')).toMatch(
        `the latest version of ${pack} does not match its hash`,
      );
    } finally {
      t.store.close();
      t.client.destroy();
    }
  }, 60_000);

  it('a newer version planted over a manifest: the oldest version is read, with a warning', async () => {
    const t = await planted('versions-manifest');
    try {
      await writeFiles(t.root, FILES);
      const s1 = await snap(t.repo, t.root);
      // The attacker's manifest: a real one of the same account, naming other content.
      await writeFiles(t.root, { 'a.txt': 'ALPHA, REWRITTEN', 'b.txt': 'BETA, REWRITTEN' });
      await new Promise((r) => setTimeout(r, 1100));
      const s2 = await snap(t.repo, t.root);
      const got = await t.client.send(new GetObjectCommand({ Bucket: t.bucket, Key: s2.key }));
      await t.plant(s1.key, Buffer.from(await got.Body!.transformToByteArray()));

      const r = await restore({
        repo: t.repo,
        account: 'docs',
        at: s1.time,
        to: { kind: 'dir', dir: join(t.root, 'out') },
      });
      expect(r.failed).toEqual([]);
      expect(await fsp.readFile(join(t.root, 'out', 'a.txt'), 'utf8')).toBe('alpha');
      expect(await fsp.readFile(join(t.root, 'out', 'b.txt'), 'utf8')).toBe('beta');
      expect(t.warnings.join('\n')).toMatch(`${s1.key} has more than one version`);
    } finally {
      t.store.close();
      t.client.destroy();
    }
  }, 60_000);

  it('a newer version planted over a pack index: the oldest is read, with a warning, and the pack is still reused', async () => {
    const t = await planted('versions-index');
    try {
      await writeFiles(t.root, FILES);
      const s1 = await snap(t.repo, t.root);
      const idx = (await t.objectOf(s1.key, 'a.txt')).replace(/\.pack$/, '.idx');
      await t.plant(idx, '{"format":"planted"}');
      await writeFiles(t.root, { 'c.txt': 'gamma' });
      await new Promise((r) => setTimeout(r, 5));
      const s2 = await snap(t.repo, t.root);
      expect(s2.damaged).toEqual([]);
      expect(t.warnings.join('\n')).toMatch(`${idx} has more than one version`);
      expect(await t.objectOf(s2.key, 'a.txt')).toBe(idx.replace(/\.idx$/, '.pack'));
    } finally {
      t.store.close();
      t.client.destroy();
    }
  }, 60_000);

  it('from the CLI: restore of a blob with a planted newer version gets the original and warns; verify exits 1', async () => {
    const cwd = await tempDir('versions-cli');
    dirs.push(cwd);
    const bucket = uniqueBucket('versions-cli');
    const client = raw(s3!);
    const env = s3Env(s3!);
    try {
      // Larger than the pack threshold (1 MiB): stored as a blob of its own.
      const big = Buffer.alloc(1536 * 1024, 'a document of the family, line after line.\n');
      await writeFiles(join(cwd, 'src'), { 'big.txt': big });
      await writeConfig(cwd, localConfigYaml(s3StoreYaml(bucket, s3!), './src'));
      await expectCli(['init'], { cwd, env }, 0);
      await expectCli(['snapshot'], { cwd, env }, 0);
      const [blob] = (await listKeys(client, bucket, 'blobs/')).map((k) => k.key);
      expect(blob).toBeDefined();
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: blob, Body: 'ransomed' }));

      const r = await expectCli(['restore', 'laptop', '--at', 'latest', '--to', 'out'], { cwd, env }, 0);
      expect(r.stderr).toMatch(`the latest version of ${blob} does not match its hash; using version`);
      expect((await fsp.readFile(join(cwd, 'out', 'big.txt'))).equals(big)).toBe(true);

      const v = await expectCli(['verify'], { cwd, env }, 1);
      expect(v.stdout + v.stderr).toMatch(/newer version was written over it/);
    } finally {
      await removeBucket(client, bucket).catch(() => {});
      client.destroy();
    }
  }, 120_000);
});
