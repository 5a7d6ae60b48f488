import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../src/store/fs.js';
import { createStore } from '../../src/store/index.js';
import { readAll } from '../../src/store/types.js';
import { collectList, expectCode, sha, storeSuite, streamOf } from './store-suite.js';

const roots: string[] = [];
async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'sg-fs-store-'));
  roots.push(root);
  return root;
}
afterAll(async () => {
  for (const r of roots) {
    await chmod(r, 0o755).catch(() => {});
    await rm(r, { recursive: true, force: true });
  }
});

/** Every file below `dir`, relative, temp files included. */
async function filesBelow(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath ?? d.path, d.name).slice(dir.length + 1))
    .sort();
}

storeSuite('fs', async () => new FsStore(await tempRoot()));
storeSuite('fs with a prefix', async () => {
  const store = new FsStore(await tempRoot(), 'syncguard/');
  await store.prepare({ create: true });
  return store;
});

describe('store: fs', () => {
  it('lays the keys out as files below root/prefix, read-only, with no temp file left', async () => {
    const root = await tempRoot();
    const store = new FsStore(root, '/backups/main/');
    const data = Buffer.from('content');
    await store.put('blobs/sha256/ab/abcd', data, { sha256: sha(data) });
    await store.put('snapshots/acc/2026-11-20T02:00:00.000Z.ndjson.gz', streamOf(Buffer.from('m')));
    expect(await filesBelow(root)).toEqual([
      'backups/main/blobs/sha256/ab/abcd',
      'backups/main/snapshots/acc/2026-11-20T02:00:00.000Z.ndjson.gz',
    ]);
    expect((await stat(join(root, 'backups/main/blobs/sha256/ab/abcd'))).mode & 0o777).toBe(0o400);
    expect(store.description).toBe(`folder ${join(root, 'backups/main')}`);
  });

  it('keeps objects readable by their owner only: 0400 files in 0700 folders (regression: 0444 in 0755 folders left a 0600 key world-readable)', async () => {
    const root = await tempRoot();
    const store = new FsStore(join(root, 'store'));
    await store.prepare({ create: true });
    await store.put('blobs/sha256/ab/abcd', Buffer.from('private key'));
    await store.put('snapshots/acc/20261120T020000.000Z.ndjson.gz', Buffer.from('m'));
    const mode = async (p: string) => (await stat(join(root, 'store', p))).mode & 0o777;
    expect(await mode('')).toBe(0o700);
    for (const d of ['blobs', 'blobs/sha256', 'blobs/sha256/ab', 'snapshots', 'snapshots/acc'])
      expect(await mode(d), d).toBe(0o700);
    expect(await mode('blobs/sha256/ab/abcd')).toBe(0o400);
    expect(await mode('snapshots/acc/20261120T020000.000Z.ndjson.gz')).toBe(0o400);

    // A store folder an older version made readable by others is not changed, but init says how.
    const old = join(root, 'old');
    await mkdir(old, { mode: 0o755 });
    await chmod(old, 0o755);
    const report = await new FsStore(old).prepare({ create: true });
    expect(report.notes.join('\n')).toContain(`can be read by others (mode 755): \`chmod -R go-rwx ${old}\``);
  });

  it('leaves no temp file behind when a put is refused for its sha256 or fails mid-stream', async () => {
    const root = await tempRoot();
    const store = new FsStore(root);
    await expectCode(
      store.put('blobs/x', Buffer.from('abc'), { sha256: sha(Buffer.from('abd')) }),
      'INTEGRITY',
    );
    let n = 0;
    const failing = new Readable({
      read() {
        if (n++ < 3) this.push(Buffer.alloc(1000));
        else this.destroy(new Error('the provider dropped the download'));
      },
    });
    await expect(store.put('blobs/y', failing)).rejects.toThrow(/dropped the download/);
    expect(await filesBelow(root)).toEqual([]);
  });

  it('does not list temp files of writes in progress, and refuses keys that look like them', async () => {
    const root = await tempRoot();
    const store = new FsStore(root);
    await store.put('blobs/a', Buffer.from('a'));
    await writeFile(join(root, 'blobs', '.tmp-0123456789abcdef'), 'half written');
    expect((await collectList(store, '')).map((o) => o.key)).toEqual(['blobs/a']);
    await expectCode(store.put('blobs/.tmp-1', Buffer.from('x')), 'UNSAFE_PATH');
  });

  it('never overwrites a file that appeared while the body was being written', async () => {
    const root = await tempRoot();
    const store = new FsStore(root);
    await mkdir(join(root, 'snapshots'), { recursive: true });
    let reads = 0;
    const body = new Readable({
      read() {
        // Another writer creates the key after this put has checked for it and started writing.
        if (reads++ === 0)
          void writeFile(join(root, 'snapshots', 'm'), 'the other writer').then(
            () => this.push(Buffer.from('mine')),
            (e: Error) => this.destroy(e),
          );
        else this.push(null);
      },
    });
    await expectCode(store.put('snapshots/m', body), 'STORE_CONFLICT');
    expect((await readAll(store, 'snapshots/m')).toString()).toBe('the other writer');
    expect(await filesBelow(root)).toEqual(['snapshots/m']);
  });

  it('prepare creates the folder, or says to run init when it is missing', async () => {
    const root = await tempRoot();
    const store = new FsStore(join(root, 'nas', 'syncguard'));
    await expectCode(store.prepare({ create: false }), 'NOT_FOUND', /syncguard init/);
    const report = await store.prepare({ create: true });
    expect(report).toMatchObject({ created: true, objectLock: 'off', versioning: 'off' });
    expect((await stat(join(root, 'nas', 'syncguard'))).isDirectory()).toBe(true);
    expect((await store.prepare({ create: true })).created).toBe(false);
  });

  it.skipIf(process.getuid?.() === 0)('prepare says when the folder is not writable', async () => {
    const root = await tempRoot();
    await chmod(root, 0o555);
    await expectCode(
      new FsStore(root).prepare({ create: false }),
      'STORE_ERROR',
      /not writable.*permissions/,
    );
  });

  it('prepare refuses a path that is a file', async () => {
    const root = await tempRoot();
    await writeFile(join(root, 'file'), 'x');
    await expectCode(
      new FsStore(join(root, 'file')).prepare({ create: true }),
      'STORE_ERROR',
      /not a folder/,
    );
  });

  it('createStore resolves a relative path from the config folder and ~ from home', async () => {
    const root = await tempRoot();
    const rel = createStore({ type: 'fs', path: 'vault', prefix: '' }, { configDir: root }) as FsStore;
    expect(rel.base).toBe(join(root, 'vault'));
    const home = createStore({ type: 'fs', path: '~/vault', prefix: 'p' }, { configDir: root }) as FsStore;
    expect(home.base).toBe(join(homedir(), 'vault', 'p'));
    expect(home.features.objectLock).toBe(false);
  });

  it('refuses a prefix that climbs out of the root', () => {
    expect(() => new FsStore('/tmp/x', '../elsewhere')).toThrow(/\.\./);
  });
});
