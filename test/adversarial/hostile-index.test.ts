/**
 * A damaged or forged pack index, a damaged pack (issue 8, point 3): index entries were trusted as
 * read, so one wrong offset made every later snapshot reuse a location that restores other bytes,
 * exit 0, and the content was never stored again. Now an index is checked against its pack's listed
 * size before it is trusted, a packed location of another run is read back before it is reused, and
 * a location that failed a read check (in verify or a snapshot) is never reused.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openContent } from '../../src/snapshot/content.js';
import { Repository } from '../../src/snapshot/repository.js';
import { verify } from '../../src/snapshot/verify.js';
import { MemoryStore } from '../../src/store/memory.js';
import { readAll, type Store } from '../../src/store/types.js';
import { runCli, tempDir, writeFiles } from '../schedule/_helpers.js';
import { FS_STORE_YAML, configYaml, writeConfig } from '../helpers/cli.js';
import { ACCOUNT, Clock, keys, local, manifestOf, sha256, snap, sourceDir } from '../snapshot/_fixtures.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function tree(files: Record<string, string>): Promise<string> {
  const root = await sourceDir('hostile-index');
  dirs.push(root);
  for (const [p, c] of Object.entries(files)) await fsp.writeFile(join(root, p), c);
  return root;
}

/** A store without Object Lock (so the test can rewrite an object, as a damaged disk or a hostile
 *  writer of an unlocked store can), and a repository over it. */
function setup(damagedFile?: string) {
  const clock = new Clock();
  const store = new MemoryStore({ objectLock: false, now: clock.now });
  const repo = (s: Store = store) =>
    new Repository({
      store: s,
      packThreshold: 64 * 1024,
      packSize: 1024 * 1024,
      now: clock.now,
      damagedFile,
    });
  return { clock, store, repo };
}

async function rewrite(store: Store, key: string, edit: (b: Buffer) => Buffer): Promise<void> {
  const body = edit(await readAll(store, key));
  await store.delete(key);
  await store.put(key, body);
}

async function restoresRight(repo: Repository, key: string, path: string, want: string): Promise<void> {
  const e = (await manifestOf(repo, key)).entries.find((x) => x.path === path)!;
  const chunks: Buffer[] = [];
  for await (const c of await openContent(repo.store, e)) chunks.push(c as Buffer);
  expect(Buffer.concat(chunks).toString()).toBe(want);
}

describe('adversarial: damaged pack indexes and packs (point 3)', () => {
  it('an index whose offset was damaged is not trusted: the next snapshot stores the content again', async () => {
    const { clock, store, repo } = setup();
    const root = await tree({ 'a.txt': 'alpha', 'b.txt': 'beta, longer' });
    await snap(repo(), local(root));
    const [idx] = (await keys(store, 'packs/')).filter((k) => k.endsWith('.idx'));
    await rewrite(store, idx, (b) => {
      const j = JSON.parse(b.toString()) as { entries: Array<[string, number, number]> };
      const beta = j.entries.find(([sha]) => sha === sha256('beta, longer'))!;
      beta[1] = beta[1] === 0 ? 5 : 0; // b.txt's content "starts" elsewhere: still within the pack
      return Buffer.from(JSON.stringify(j));
    });
    await writeFiles(root, { 'c.txt': 'beta, longer' });
    clock.advance(60_000);
    const s2 = await snap(repo(), local(root));
    expect(s2.damaged).toEqual([expect.objectContaining({ object: idx })]);
    await restoresRight(repo(), s2.key, 'c.txt', 'beta, longer');
    await restoresRight(repo(), s2.key, 'b.txt', 'beta, longer');
  });

  it('a forged index with offsets that look right is caught by reading before reuse', async () => {
    const { clock, store, repo } = setup();
    const root = await tree({ 'a.txt': 'aaaa', 'b.txt': 'bbbb' });
    await snap(repo(), local(root));
    const [idx] = (await keys(store, 'packs/')).filter((k) => k.endsWith('.idx'));
    await rewrite(store, idx, (b) => {
      const j = JSON.parse(b.toString()) as { entries: Array<[string, number, number]> };
      [j.entries[0][0], j.entries[1][0]] = [j.entries[1][0], j.entries[0][0]]; // same lengths, swapped
      return Buffer.from(JSON.stringify(j));
    });
    await writeFiles(root, { 'c.txt': 'bbbb' });
    clock.advance(60_000);
    const s2 = await snap(repo(), local(root));
    expect(s2.damaged.map((d) => d.object)).toEqual([idx.replace(/\.idx$/, '.pack')]);
    await restoresRight(repo(), s2.key, 'c.txt', 'bbbb');
  });

  it('verify names every snapshot that needs a damaged content, and the next snapshot stores it again', async () => {
    const state = await tempDir('hostile-index-state');
    dirs.push(state);
    const { clock, store, repo } = setup(join(state, 'damaged.json'));
    const root = await tree({ 'a.txt': 'alpha', 'b.txt': 'beta' });
    const s1 = await snap(repo(), local(root));
    clock.advance(60_000);
    const s2 = await snap(repo(), local(root));
    const [pack] = (await keys(store, 'packs/')).filter((k) => k.endsWith('.pack'));
    // The file packed first (files are read at once: either may be) is damaged.
    const first = (await manifestOf(repo(), s1.key)).entries.find((e) => e.offset === 0)!;
    await rewrite(store, pack, (b) => Buffer.concat([Buffer.from('X'), b.subarray(1)]));

    const r = await verify(repo());
    expect(r.problems).toEqual([
      expect.objectContaining({ object: pack, path: first.path, snapshots: [s1.key, s2.key] }),
    ]);

    // Another process (a new repository over the same state folder) does not reuse the location.
    clock.advance(60_000);
    const s3 = await snap(repo(), local(root));
    const again = (await manifestOf(repo(), s3.key)).entries.find((e) => e.path === first.path)!;
    expect(again.object).not.toBe(pack);
    await restoresRight(repo(), s3.key, first.path, first.path === 'a.txt' ? 'alpha' : 'beta');
    expect((await verify(repo(), { account: ACCOUNT.name })).problems.map((p) => p.snapshots)).toEqual([
      [s1.key, s2.key],
    ]);
  });

  it('from the CLI: verify lists the snapshots that name a damaged content; the next snapshot is sound', async () => {
    const dir = await tempDir('hostile-index-cli');
    dirs.push(dir);
    await writeFiles(join(dir, 'docs'), { 'a.txt': 'alpha', 'b.txt': 'beta' });
    await writeConfig(
      dir,
      configYaml({ store: FS_STORE_YAML, accounts: [{ name: 'docs', provider: 'local', path: './docs' }] }),
    );
    expect((await runCli(['snapshot'], dir)).code).toBe(0);
    await new Promise((r) => setTimeout(r, 20));
    expect((await runCli(['snapshot'], dir)).code).toBe(0);
    const packs: string[] = [];
    for await (const e of await fsp.opendir(join(dir, 'store', 'packs'), { recursive: true }))
      if (e.name.endsWith('.pack')) packs.push(join(e.parentPath, e.name));
    const [pack] = packs;
    const bytes = await fsp.readFile(pack);
    await fsp.chmod(pack, 0o644);
    await fsp.writeFile(pack, Buffer.concat([Buffer.from('X'), bytes.subarray(1)]));

    const v = await runCli(['verify'], dir);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(
      /PROBLEM packs\/\S+\.pack: content at offset 0 does not match its hash \(needed by \S+ in 2 snapshots: /,
    );

    expect((await runCli(['snapshot'], dir)).code).toBe(0);
    const after = JSON.parse((await runCli(['verify', '--json'], dir)).stdout) as {
      problems: Array<{ snapshots: string[] }>;
    };
    expect(after.problems).toHaveLength(1);
    expect(after.problems[0].snapshots).toHaveLength(2);
  }, 60_000);
});
