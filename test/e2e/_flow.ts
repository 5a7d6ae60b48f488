/**
 * The end-to-end story every store goes through, from the command line: init, snapshot a tree,
 * delete/modify/rename, snapshot again, and get both snapshots back byte for byte. The store-specific
 * test files call it and then do what only their store can (corrupt a file, try to delete a locked object).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import {
  expectCli,
  expectNoSecret,
  localConfigYaml,
  writeConfig,
  type CliOptions,
  type SnapshotJson,
} from '../helpers/cli.js';
import {
  MiB,
  ODD_NAMES,
  bytesOf,
  makeTree,
  readTree,
  treeBytes,
  writeFile,
  type TreeItem,
  type TreeOptions,
} from '../helpers/tree.js';

export interface FlowOptions {
  dir: string;
  storeYaml: string;
  env?: Record<string, string>;
  /** Strings that must never appear in any output. */
  secrets?: string[];
  tree?: TreeOptions;
  /** Extra accounts (YAML lines under `accounts:`). */
  moreAccounts?: string;
  /** What `snapshots --json` says of lockedUntil: null without Object Lock, a date with it. */
  locked: boolean;
}

export interface FlowResult {
  cli: CliOptions;
  src: string;
  first: SnapshotJson;
  second: SnapshotJson;
  expected1: TreeItem[];
  expected2: TreeItem[];
  /** Every CLI call's output went through the secret check; more calls can use this. */
  run: (args: string[], code: number) => ReturnType<typeof expectCli>;
  json: <T>(args: string[], code?: number) => Promise<T>;
}

interface SnapshotRun {
  account: string;
  ok: boolean;
  id: string;
  files: number;
  bytes: number;
  bytesAdded: number;
  filesRead: number;
  failed: Array<{ path: string; error: string }>;
}

/** What changed between two tree pictures, as `diff --json` should say it. */
export function treeDiff(
  a: TreeItem[],
  b: TreeItem[],
): { added: string[]; changed: string[]; deleted: string[] } {
  const before = new Map(a.map((x) => [x.name, x]));
  const after = new Map(b.map((x) => [x.name, x]));
  const added = b.filter((x) => !before.has(x.name)).map((x) => x.name);
  const deleted = a.filter((x) => !after.has(x.name)).map((x) => x.name);
  const changed = b
    .filter(
      (x) =>
        before.has(x.name) &&
        (before.get(x.name)!.type !== x.type || before.get(x.name)!.sha256 !== x.sha256),
    )
    .map((x) => x.name);
  return { added: added.sort(), changed: changed.sort(), deleted: deleted.sort() };
}

export async function endToEnd(o: FlowOptions): Promise<FlowResult> {
  const src = join(o.dir, 'src');
  await fsp.mkdir(src);
  await writeConfig(o.dir, localConfigYaml(o.storeYaml, './src') + (o.moreAccounts ?? ''));
  const cli: CliOptions = { cwd: o.dir, env: o.env, timeoutMs: 180_000 };
  const run = async (args: string[], code: number) => {
    const r = await expectCli(args, cli, code);
    expectNoSecret(r, ...(o.secrets ?? []));
    return r;
  };
  const json = async <T>(args: string[], code = 0): Promise<T> => {
    const r = await run([...args, '--json'], code);
    return JSON.parse(r.stdout) as T;
  };

  // init, then a first snapshot of a fresh tree.
  const init = await run(['init'], 0);
  expect(init.stdout).toMatch(/^created /);
  expect((await run(['init'], 0)).stdout).toMatch(/^checked /);
  const files = await makeTree(src, o.tree);
  const [one] = await json<SnapshotRun[]>(['snapshot', 'laptop']);
  expect(one).toMatchObject({
    account: 'laptop',
    ok: true,
    files: files.length,
    bytes: files.reduce((n, f) => n + f.size, 0),
    failed: [],
    filesRead: files.length,
  });
  const expected1 = await readTree(src);

  // A day's work: deletions (a file, a whole folder), edits, renames, new files.
  await fsp.rm(join(src, 'd1/sub1/f0001.dat'));
  await fsp.rm(join(src, 'd6/sub0'), { recursive: true });
  const edited = new Date('2026-11-25T08:00:00.000Z');
  await writeFile(src, 'd3/sub0/f0003.dat', bytesOf('edited f0003', 12_345), edited);
  await writeFile(src, 'large/big1.bin', bytesOf('edited big1', Math.round(1.3 * MiB)), edited);
  await writeFile(src, `odd/${ODD_NAMES.nfd}`, 'edited NFD twin', edited);
  await fsp.mkdir(join(src, 'renamed'));
  await fsp.rename(join(src, 'd4/sub1/f0004.dat'), join(src, 'renamed/f0004 moved.dat'));
  await fsp.rename(join(src, 'large/big0.bin'), join(src, 'large/big0 renamed.bin'));
  await writeFile(src, 'added/new.txt', 'new today', edited);
  const [two] = await json<SnapshotRun[]>(['snapshot', 'laptop']);
  const expected2 = await readTree(src);
  expect(two).toMatchObject({
    ok: true,
    files: expected2.filter((x) => x.type === 'file').length,
    bytes: treeBytes(expected2),
    failed: [],
  });
  // Only what changed was read (renamed files are read, as a local folder has no hash) ...
  expect(two.filesRead).toBe(6);
  // ... and only new content was stored: the edits, and a pack index or two.
  const editedBytes = 12_345 + Math.round(1.3 * MiB) + 'edited NFD twin'.length + 'new today'.length;
  expect(two.bytesAdded).toBeGreaterThanOrEqual(editedBytes);
  expect(two.bytesAdded).toBeLessThan(editedBytes + 8 * 1024);

  // snapshots --json: the documented shape, newest last.
  const list = await json<SnapshotJson[]>(['snapshots']);
  expect(list).toHaveLength(2);
  for (const s of list) {
    expect(Object.keys(s)).toEqual(
      expect.arrayContaining(['id', 'account', 'time', 'files', 'bytes', 'failed', 'lockedUntil']),
    );
    expect(s.account).toBe('laptop');
    expect(s.time).toBe(new Date(s.time).toISOString());
    expect(s.id).toBe(s.time.replace(/[-:]/g, ''));
    expect(s.failed).toBe(0);
    if (o.locked) {
      // Locked at least the configured day, and not much more (a quarter, at least a day, of slack).
      expect(Date.parse(s.lockedUntil!)).toBeGreaterThan(Date.parse(s.time) + 86_400_000 - 1);
      expect(Date.parse(s.lockedUntil!)).toBeLessThan(Date.now() + 3 * 86_400_000);
    } else {
      expect(s.lockedUntil).toBeNull();
    }
  }
  const [first, second] = list;
  expect(first.id).toBe(one.id);
  expect(second.id).toBe(two.id);
  expect(Date.parse(first.time)).toBeLessThan(Date.parse(second.time));
  expect(first).toMatchObject({
    files: expected1.filter((x) => x.type === 'file').length,
    bytes: treeBytes(expected1),
  });
  expect(second).toMatchObject({
    files: expected2.filter((x) => x.type === 'file').length,
    bytes: treeBytes(expected2),
  });
  expect(await json<SnapshotJson[]>(['snapshots', 'laptop'])).toEqual(list);

  // Both snapshots come back byte for byte, names, contents and times.
  await run(['restore', 'laptop', '--at', first.id, '--to', 'restored-1'], 0);
  expect(await readTree(join(o.dir, 'restored-1'))).toEqual(expected1);
  const r2 = await json<{ snapshot: string; files: number; failed: unknown[] }>([
    'restore',
    'laptop',
    '--at',
    second.id,
    '--to',
    join(o.dir, 'restored-2'),
  ]);
  expect(r2).toMatchObject({ snapshot: second.id, files: second.files, failed: [] });
  expect(await readTree(join(o.dir, 'restored-2'))).toEqual(expected2);

  // ls: a folder's children, or all below it.
  const top = await json<{
    snapshot: string;
    entries: Array<{ path: string; type: string; size: number; sha256: string | null }>;
  }>(['ls', 'laptop', '--at', first.id]);
  expect(top.snapshot).toBe(first.id);
  expect(top.entries.map((e) => e.path)).toEqual(
    expected1.filter((x) => !x.name.includes('/')).map((x) => x.name),
  );
  const deep = await json<typeof top>(['ls', 'laptop', 'd3', '-r']);
  expect(deep.snapshot).toBe(second.id);
  expect(deep.entries.map((e) => [e.path, e.type, e.size, e.sha256])).toEqual(
    expected2.filter((x) => x.name.startsWith('d3/')).map((x) => [x.name, x.type, x.size, x.sha256 ?? null]),
  );

  // diff: exactly what the day's work did.
  const d = await json<{
    from: string;
    to: string;
    added: Array<{ path: string }>;
    changed: Array<{ path: string; before: { sha256: string }; after: { sha256: string } }>;
    deleted: Array<{ path: string }>;
  }>(['diff', 'laptop', first.id, second.id]);
  const want = treeDiff(expected1, expected2);
  expect({ from: d.from, to: d.to }).toEqual({ from: first.id, to: second.id });
  expect(d.added.map((e) => e.path).sort()).toEqual(want.added);
  expect(d.changed.map((e) => e.path).sort()).toEqual(want.changed);
  expect(d.deleted.map((e) => e.path).sort()).toEqual(want.deleted);
  expect(want.changed).toEqual(['d3/sub0/f0003.dat', 'large/big1.bin', `odd/${ODD_NAMES.nfd}`].sort());

  // verify: everything stored is sound.
  const v = await run(['verify'], 0);
  expect(v.stdout).toContain('no problems found');
  const vj = await json<{ snapshots: number; problems: unknown[]; objectsChecked: number; objects: number }>([
    'verify',
    'laptop',
  ]);
  expect(vj).toMatchObject({ snapshots: 2, problems: [] });
  expect(vj.objectsChecked).toBe(vj.objects);

  return { cli, src, first, second, expected1, expected2, run, json };
}

/** Every top-level command lists the exit codes in its --help. The top-level help runs the built CLI;
 *  each command's help runs in this process through the same entry point (run()), which is much faster. */
export async function expectHelpWithExitCodes(cli: CliOptions): Promise<string[]> {
  const top = await expectCli(['--help'], cli, 0);
  expect(top.stdout).toMatch(/^ {2}3 {2}done, but some files could not be read/m);
  const commands = [...top.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]).filter((c) => c !== 'help');
  expect(commands).toEqual(
    expect.arrayContaining(['init', 'snapshot', 'snapshots', 'ls', 'diff', 'restore', 'verify', 'config']),
  );
  const { run } = await import('../../src/cli/main.js');
  for (const c of commands) {
    let out = '';
    const sink = {
      write: (s: string) => {
        out += s;
        return true;
      },
    } as unknown as NodeJS.WritableStream;
    expect(await run([c, '--help'], { stdout: sink, stderr: sink }, {}), `${c} --help`).toBe(0);
    expect(out, `${c} --help`).toContain('Exit codes:');
    expect(out, `${c} --help`).toMatch(/^ {2}3 {2}done, but some files could not be read/m);
  }
  return commands;
}
