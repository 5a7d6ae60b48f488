import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, expectCli, localConfigYaml, tempDir, writeConfig } from '../helpers/cli.js';
import { bytesOf } from '../helpers/tree.js';

interface Run {
  account: string;
  ok: boolean;
  id: string;
  filesRead: number;
  filesReread: number;
}

/** What only a folder on disk can do to the change detection, from the command line. */
describe('e2e: CLI with a local folder', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
  });

  it('sees a same-size rewrite whose mtime was put back (touch -r), and restores the new content (issue 8, point 7)', async () => {
    const dir = await tempDir('e2e-local');
    dirs.push(dir);
    const src = join(dir, 'src');
    await fsp.mkdir(src);
    const vault = join(src, 'vault.hc');
    const before = bytesOf('container, before', 64 * 1024);
    const after = bytesOf('container, after', 64 * 1024);
    await fsp.writeFile(vault, before);
    await fsp.writeFile(join(src, 'notes.txt'), 'notes');
    const old = new Date('2026-10-01T08:00:00Z');
    await fsp.utimes(vault, old, old);
    await fsp.utimes(join(src, 'notes.txt'), old, old);
    await writeConfig(dir, localConfigYaml('store: { type: fs, path: ./store }', src));
    const cli = { cwd: dir };
    await expectCli(['init'], cli, 0);
    const [one] = await cliJson<Run[]>(['snapshot', 'laptop'], cli);
    expect(one.filesRead).toBe(2);

    // Rewritten in place, same size, and its modified time put back, as VeraCrypt does by default.
    await fsp.writeFile(vault, after);
    execFileSync('touch', ['-r', join(src, 'notes.txt'), vault]);
    expect((await fsp.stat(vault)).mtime).toEqual(old);
    const [two] = await cliJson<Run[]>(['snapshot', 'laptop'], cli);
    expect(two.filesRead).toBe(1);
    expect(two.filesReread).toBe(0);

    await expectCli(['restore', 'laptop', '--at', two.id, '--to', 'restored'], cli, 0);
    expect((await fsp.readFile(join(dir, 'restored', 'vault.hc'))).equals(after)).toBe(true);
    // Nothing changed since: the next night reads nothing again.
    const [three] = await cliJson<Run[]>(['snapshot', 'laptop'], cli);
    expect(three.filesRead).toBe(0);
  });
});
