import { appendFile, chmod, mkdtemp, mkdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalProvider } from '../../src/providers/local.js';
import type { Change, RemoteEntry } from '../../src/providers/types.js';
import { collect, providerSuite } from './provider-suite.js';

async function localFixture() {
  const root = await mkdtemp(join(tmpdir(), 'sg-local-'));
  const at = (p: string) => join(root, ...p.split('/'));
  return {
    root,
    provider: new LocalProvider({ path: root }, { configDir: '/' }),
    async write(p: string, content: Buffer | string, mtime?: Date) {
      await mkdir(dirname(at(p)), { recursive: true });
      await writeFile(at(p), content);
      if (mtime) await utimes(at(p), mtime, mtime);
    },
    mkdir: async (p: string) => {
      await mkdir(at(p), { recursive: true });
    },
    remove: async (p: string) => rm(at(p), { recursive: true }),
    rename: async (a: string, b: string) => rename(at(a), at(b)),
    cleanup: async () => rm(root, { recursive: true, force: true }),
  };
}

providerSuite('local', localFixture);

describe('provider: local', () => {
  it('skips symbolic links and says so, instead of following them out of the folder', async () => {
    const fx = await localFixture();
    await fx.write('real.txt', 'r');
    await symlink('/etc', join(fx.root, 'escape'));
    const { changes } = await collect(fx.provider);
    expect(changes).toContainEqual({
      kind: 'skip',
      path: 'escape',
      reason: expect.stringContaining('symbolic link'),
    });
    expect(changes.some((c) => c.kind === 'upsert' && c.entry.path.startsWith('escape'))).toBe(false);
    await fx.cleanup();
  });

  it('fails with a clear error when the folder does not exist', async () => {
    const p = new LocalProvider({ path: '/nonexistent/sg-folder' }, { configDir: '/' });
    await expect(collect(p)).rejects.toThrow(/cannot be read.*check the account's path/);
  });
  /** Lists the folder, then hands the listed file at `path` over (swapped, grown…) before reading it. */
  async function listed(fx: Awaited<ReturnType<typeof localFixture>>, path: string): Promise<RemoteEntry> {
    const { changes } = await collect(fx.provider);
    const c = changes.find((x) => x.kind === 'upsert' && x.entry.path === path);
    if (!c || c.kind !== 'upsert') throw new Error(`${path} was not listed`);
    return c.entry;
  }
  async function read(fx: Awaited<ReturnType<typeof localFixture>>, entry: RemoteEntry): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of await fx.provider.open(entry)) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString();
  }

  describe('reads only what it listed (issue 8, point 6)', () => {
    it('refuses a file swapped for a symbolic link after listing, and never reads what the link points to', async () => {
      const fx = await localFixture();
      const outside = await mkdtemp(join(tmpdir(), 'sg-outside-'));
      await writeFile(join(outside, 'secret'), 'private-key-bytes');
      await chmod(join(outside, 'secret'), 0o600);
      await fx.write('doc.txt', 'ordinary-content');
      const entry = await listed(fx, 'doc.txt');
      await rm(join(fx.root, 'doc.txt'));
      await symlink(join(outside, 'secret'), join(fx.root, 'doc.txt'));
      await expect(read(fx, entry)).rejects.toThrow(
        /doc\.txt.*replaced by a symbolic link after it was listed/,
      );
      await rm(outside, { recursive: true, force: true });
      await fx.cleanup();
    });

    it('refuses a file replaced by another one (another inode) after listing', async () => {
      const fx = await localFixture();
      await fx.write('a.txt', 'first');
      await fx.write('b.txt', 'other');
      const entry = await listed(fx, 'a.txt');
      await fx.rename('b.txt', 'a.txt');
      await expect(read(fx, entry)).rejects.toThrow(/a\.txt.*replaced by another file after it was listed/);
      await fx.cleanup();
    });

    it('fails a file whose size changed between listing and reading: changed while being read', async () => {
      const fx = await localFixture();
      await fx.write('log.txt', 'line 1\n');
      const entry = await listed(fx, 'log.txt');
      await appendFile(join(fx.root, 'log.txt'), 'line 2\n');
      await expect(read(fx, entry)).rejects.toThrow(/log\.txt.*changed while being read/);
      await fx.cleanup();
    });

    it('fails a large file that grows while it is read, instead of storing more than it listed', async () => {
      const fx = await localFixture();
      const big = Buffer.alloc(3 * 1024 * 1024, 7);
      await fx.write('growing.bin', big);
      const entry = await listed(fx, 'growing.bin');
      const stream = await fx.provider.open(entry);
      const chunks: Buffer[] = [];
      const done = (async () => {
        let first = true;
        for await (const c of stream) {
          chunks.push(c as Buffer);
          if (first) await appendFile(join(fx.root, 'growing.bin'), 'more');
          first = false;
        }
      })();
      await expect(done).rejects.toThrow(/growing\.bin.*changed while being read/);
      await fx.cleanup();
    });

    it('does not let a folder on the path, swapped for a symbolic link after listing, redirect the read', async () => {
      const fx = await localFixture();
      const outside = await mkdtemp(join(tmpdir(), 'sg-outside-'));
      await writeFile(join(outside, 'f.txt'), 'outside!');
      await fx.write('sub/f.txt', 'inside!!');
      const entry = await listed(fx, 'sub/f.txt');
      await fx.rename('sub', 'sub-moved');
      await symlink(outside, join(fx.root, 'sub'));
      await expect(read(fx, entry)).rejects.toThrow(
        /sub\/f\.txt.*replaced by another file after it was listed/,
      );
      await rm(outside, { recursive: true, force: true });
      await fx.cleanup();
    });

    it('does not list through a folder swapped for a symbolic link while the listing goes on', async () => {
      const fx = await localFixture();
      const outside = await mkdtemp(join(tmpdir(), 'sg-outside-'));
      await writeFile(join(outside, 'secret.txt'), 'outside');
      await fx.write('sub/f.txt', 'inside');
      const gen = fx.provider.changes(undefined, {});
      const changes: Change[] = [];
      for (;;) {
        const r = await gen.next();
        if (r.done) break;
        changes.push(r.value);
        // The folder was listed (lstat said: a folder); it is swapped before its contents are listed.
        if (r.value.kind === 'upsert' && r.value.entry.path === 'sub') {
          await fx.rename('sub', 'sub-moved');
          await symlink(outside, join(fx.root, 'sub'));
        }
      }
      expect(
        changes.filter((c) => c.kind === 'upsert').map((c) => c.kind === 'upsert' && c.entry.path),
      ).toEqual(['sub']);
      expect(changes).toContainEqual({
        kind: 'error',
        path: 'sub',
        message: expect.stringContaining('replaced after it was listed'),
      });
      await rm(outside, { recursive: true, force: true });
      await fx.cleanup();
    });

    it('reads a file listed through a symbolic link when followSymlinks is on, and still checks it is the one listed', async () => {
      const fx = await localFixture();
      await fx.write('real/data.txt', 'data');
      await symlink('real', join(fx.root, 'alias'));
      const provider = new LocalProvider({ path: fx.root, followSymlinks: true }, { configDir: '/' });
      const { changes } = await collect(provider);
      const c = changes.find((x) => x.kind === 'upsert' && x.entry.path === 'alias/data.txt');
      if (!c || c.kind !== 'upsert') throw new Error('alias/data.txt was not listed');
      const chunks: Buffer[] = [];
      for await (const b of await provider.open(c.entry)) chunks.push(b as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe('data');
      await fx.cleanup();
    });

    it('lists a symbolic link loop once, as skipped, when followSymlinks is on', async () => {
      const fx = await localFixture();
      await fx.write('top.txt', 't');
      await fx.write('a/b/leaf.txt', 'l');
      await symlink('..', join(fx.root, 'a', 'b', 'up'));
      await symlink('.', join(fx.root, 'self'));
      const provider = new LocalProvider({ path: fx.root, followSymlinks: true }, { configDir: '/' });
      const { changes } = await collect(provider);
      const upserts = changes
        .filter((c) => c.kind === 'upsert')
        .map((c) => c.kind === 'upsert' && c.entry.path);
      expect(upserts.sort()).toEqual(['a', 'a/b', 'a/b/leaf.txt', 'top.txt']);
      expect(changes.filter((c) => c.kind === 'skip')).toEqual([
        {
          kind: 'skip',
          path: 'self',
          reason: expect.stringMatching(/loop.*leads back to the account's folder/),
        },
        { kind: 'skip', path: 'a/b/up', reason: expect.stringMatching(/loop.*leads back to the folder a,/) },
      ]);
      expect(changes.filter((c) => c.kind === 'error')).toEqual([]);
      await fx.cleanup();
    });
  });
});
