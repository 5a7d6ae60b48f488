import { mkdtemp, mkdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalProvider } from '../../src/providers/local.js';
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
    const { symlink } = await import('node:fs/promises');
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
});
