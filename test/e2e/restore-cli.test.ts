import { execFile } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  cliJson,
  expectCli,
  localConfigYaml,
  s3Env,
  s3StoreYaml,
  startCli,
  tempDir,
  uniqueBucket,
  writeConfig,
  type CliOptions,
  type SnapshotJson,
} from '../helpers/cli.js';
import { rawClient, removeBucket } from '../helpers/s3-client.js';
import { KiB, MiB, bytesOf, readTree, writeFile } from '../helpers/tree.js';
import { holdingProxy } from '../schedule/_helpers.js';

/** `syncguard restore` from the command line: private files stay private, a stopped restore says how
 *  to finish it and finishes when run again, and disks without hard links (FAT, exFAT) take a restore. */
const s3 = inject('s3');
const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function folder(label: string): Promise<string> {
  const d = await tempDir(label);
  dirs.push(d);
  return d;
}

const modeOf = async (p: string) => (await fsp.stat(p)).mode & 0o777;

async function latest(cli: CliOptions, account = 'laptop'): Promise<string> {
  const list = await cliJson<SnapshotJson[]>(['snapshots', account], cli);
  return list[list.length - 1].id;
}

describe('e2e: restore from the command line', () => {
  it('gives a 0600 file back 0600, and keeps the fs store readable by its owner only (regression: 0644 restores, 0444 objects in 0755 folders)', async () => {
    const dir = await folder('e2e-private');
    const cli: CliOptions = { cwd: dir };
    await writeFile(dir, 'home/.ssh/id_ed25519', 'PRIVATE KEY');
    await writeFile(dir, 'home/.ssh/id_ed25519.pub', 'public key');
    await writeFile(dir, 'home/notes.txt', 'notes');
    await fsp.chmod(join(dir, 'home/.ssh/id_ed25519'), 0o600);
    await fsp.chmod(join(dir, 'home/.ssh/id_ed25519.pub'), 0o644);
    await fsp.chmod(join(dir, 'home/.ssh'), 0o700);
    await writeConfig(dir, localConfigYaml('store: { type: fs, path: ./store }', './home'));
    await expectCli(['init'], cli, 0);
    await expectCli(['snapshot'], cli, 0);

    const open: string[] = [];
    for (const d of await fsp.readdir(join(dir, 'store'), { recursive: true, withFileTypes: true })) {
      const p = join(d.parentPath, d.name);
      if ((await modeOf(p)) & 0o077) open.push(`${p} ${(await modeOf(p)).toString(8)}`);
    }
    expect(open).toEqual([]);
    expect(await modeOf(join(dir, 'store'))).toBe(0o700);

    await expectCli(['restore', 'laptop', '--at', await latest(cli), '--to', 'back'], cli, 0);
    expect(await modeOf(join(dir, 'back/.ssh/id_ed25519'))).toBe(0o600);
    expect(await modeOf(join(dir, 'back/.ssh'))).toBe(0o700);
    expect(await modeOf(join(dir, 'back/.ssh/id_ed25519.pub'))).toBe(0o644 & ~process.umask());
    expect(await readTree(join(dir, 'back'))).toEqual(await readTree(join(dir, 'home')));
  });

  it.skipIf(!s3)(
    'exits 130 on Ctrl-C in the middle of a restore, says how to finish it, and the same command then finishes it, skipping what was there',
    async () => {
      const dir = await folder('e2e-resume');
      const bucket = uniqueBucket('resume');
      const raw: S3Client = rawClient(s3!);
      const proxy = await holdingProxy(
        s3!.endpoint,
        (req) => req.method === 'GET' && /\/blobs\//.test(req.url ?? ''),
      );
      try {
        // 30 small files (packed, restored first) and two blobs (held at the proxy).
        for (let i = 0; i < 30; i++)
          await writeFile(dir, `src/docs/${String(i).padStart(2, '0')}.txt`, bytesOf(`s${i}`, 2 * KiB));
        await writeFile(dir, 'src/media/a.bin', bytesOf('a', MiB + 1000));
        await writeFile(dir, 'src/media/b.bin', bytesOf('b', MiB + 2000));
        const env = s3Env(s3!);
        const cli: CliOptions = { cwd: dir, env };
        await writeConfig(dir, localConfigYaml(s3StoreYaml(bucket, s3!), './src'));
        await writeConfig(
          dir,
          localConfigYaml(s3StoreYaml(bucket, { ...s3!, endpoint: proxy.url }), './src'),
          'held.yaml',
        );
        await expectCli(['init'], cli, 0);
        await expectCli(['snapshot'], cli, 0);
        const id = await latest(cli);

        const stopped = startCli(['-c', 'held.yaml', 'restore', 'laptop', '--at', id, '--to', 'out'], cli);
        await proxy.heldOnce; // every packed file is written; the first blob is on its way
        stopped.child.kill('SIGINT');
        const r = await stopped.finished;
        expect(r.code, r.stderr).toBe(130);
        expect(r.stderr).toContain('stopping the restore: every file restored so far is complete');
        expect(r.stderr).toContain(
          `syncguard: the restore of snapshot ${id} of "laptop" to ${join(dir, 'out')} was interrupted after 30 of 32 files; every file restored so far is complete. To finish it, run the same restore again (files already there with the right content are checked and skipped): syncguard restore laptop --at ${id} --to ${join(dir, 'out')}`,
        );
        expect(r.stderr).not.toContain('snapshot is abandoned');
        expect((await fsp.readdir(join(dir, 'out/docs'))).length).toBe(30);
        proxy.release();

        const again = await cliJson<{ files: number; skipped: number; failed: unknown[] }>(
          ['restore', 'laptop', '--at', id, '--to', 'out'],
          cli,
        );
        expect(again).toMatchObject({ files: 32, skipped: 30, failed: [] });
        expect(await readTree(join(dir, 'out'))).toEqual(await readTree(join(dir, 'src')));
        const text = await expectCli(['restore', 'laptop', '--at', id, '--to', 'out'], cli, 0);
        expect(text.stdout).toContain('32 of the files were already there with the right content');
      } finally {
        proxy.release();
        await proxy.close();
        await removeBucket(raw, bucket);
        raw.destroy();
      }
    },
    180_000,
  );
});

/**
 * A real FAT or exFAT file system, as on a USB stick: an image made with mkfs and mounted through
 * FUSE (this kernel may have no vfat module; .ci/run installs the tools). Neither has hard links.
 */
interface Disk {
  kind: string;
  /** Why it cannot be mounted here, or undefined. */
  missing?: string;
  mount(image: string, at: string): Promise<() => Promise<void>>;
}

async function has(tool: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${tool}`]).then(
    () => true,
    () => false,
  );
}

async function disk(kind: string, tools: string[], mount: Disk['mount']): Promise<Disk> {
  const why: string[] = [];
  if (process.getuid?.() !== 0) why.push('not root');
  if (!existsSync('/dev/fuse')) why.push('no /dev/fuse');
  for (const t of tools) if (!(await has(t))) why.push(`no ${t}`);
  return { kind, missing: why.length ? why.join(', ') : undefined, mount };
}

const disks = [
  await disk('exFAT', ['mkfs.exfat', 'mount.exfat-fuse', 'losetup'], async (image, at) => {
    await run('mkfs.exfat', [image]);
    const loop = (await run('losetup', ['-f', '--show', image])).stdout.trim();
    await run('mount.exfat-fuse', [loop, at]);
    return async () => {
      await run('umount', [at]);
      await run('losetup', ['-d', loop]);
    };
  }),
  await disk('FAT', ['mkfs.vfat', 'fusefat'], async (image, at) => {
    await run('mkfs.vfat', [image]);
    await run('fusefat', ['-o', 'rw+', image, at]);
    return async () => {
      await run('umount', [at]);
    };
  }),
];

for (const d of disks) {
  if (d.missing)
    console.warn(
      `\n!!! e2e: restore onto ${d.kind} SKIPPED: ${d.missing} (apt-get install dosfstools fusefat exfatprogs exfat-fuse) !!!\n`,
    );
  describe.skipIf(!!d.missing)(`e2e: restore onto ${d.kind} (no hard links)`, () => {
    let dir: string;
    let unmount: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      dir = await folder(`e2e-${d.kind}`);
      const image = join(dir, 'disk.img');
      await fsp.writeFile(image, '');
      await fsp.truncate(image, 64 * MiB);
      await fsp.mkdir(join(dir, 'usb'));
      unmount = await d.mount(image, join(dir, 'usb'));
    }, 60_000);
    afterAll(async () => {
      await unmount?.();
    });

    it('restores every file (regression: link() failed with EPERM for each), never over an existing one, and a rerun skips them', async () => {
      const cli: CliOptions = { cwd: dir };
      for (let i = 0; i < 12; i++) await writeFile(dir, `src/d${i % 3}/f${i}.txt`, `file ${i}`);
      await writeFile(dir, 'src/big.bin', bytesOf('big', MiB + 5));
      await writeConfig(dir, localConfigYaml('store: { type: fs, path: ./store }', './src'));
      await expectCli(['init'], cli, 0);
      await expectCli(['snapshot'], cli, 0);
      const id = await latest(cli);

      await expectCli(['restore', 'laptop', '--at', id, '--to', 'usb/restored'], cli, 0);
      // Names, types, sizes and content (FAT keeps times to 2 s only).
      const tree = async (p: string) =>
        (await readTree(join(dir, p))).map(({ name, type, size, sha256 }) => ({ name, type, size, sha256 }));
      const want = await tree('src');
      expect(await tree('usb/restored')).toEqual(want);

      // A file of the target that differs is refused; with it put back, a rerun finishes at once.
      await fsp.writeFile(join(dir, 'usb/restored/d1/f1.txt'), 'edited');
      const refused = await expectCli(['restore', 'laptop', '--at', id, '--to', 'usb/restored'], cli, 1);
      expect(refused.stderr).toContain('1 file(s) already exist');
      expect(await fsp.readFile(join(dir, 'usb/restored/d1/f1.txt'), 'utf8')).toBe('edited');
      await fsp.rm(join(dir, 'usb/restored/d1/f1.txt'));
      const again = await cliJson<{ skipped: number; failed: unknown[] }>(
        ['restore', 'laptop', '--at', id, '--to', 'usb/restored'],
        cli,
      );
      expect(again).toMatchObject({ skipped: 12, failed: [] });
      expect(await tree('usb/restored')).toEqual(want);
    }, 120_000);
  });
}
