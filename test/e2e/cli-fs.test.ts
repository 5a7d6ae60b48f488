import { existsSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectCli, tempDir } from '../helpers/cli.js';
import { readTree } from '../helpers/tree.js';
import { endToEnd, expectHelpWithExitCodes, type FlowResult } from './_flow.js';

/** The whole command line against the fs store (a folder, as on an external disk or a NAS). */
describe('e2e: CLI with the fs store', () => {
  let dir: string;
  let flow: FlowResult;
  beforeAll(async () => {
    dir = await tempDir('e2e-fs');
  });
  afterAll(async () => {
    // The store's files are read-only (0400); root removes them anyway.
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  const storeDir = () => join(dir, 'store');

  it('snapshots, changes, snapshots again, and restores both snapshots byte for byte; ls, diff and verify agree', async () => {
    flow = await endToEnd({
      dir,
      storeYaml: 'store: { type: fs, path: ./store }',
      locked: false,
      moreAccounts: [
        '  - { name: badnames, provider: local, path: ./badnames }',
        '  - { name: forged, provider: local, path: ./src }',
        '',
      ].join('\n'),
    });
    // The store has the documented layout, and its files are read-only.
    const top = (await fsp.readdir(storeDir())).sort();
    expect(top).toEqual(['blobs', 'leases', 'packs', 'snapshots']);
    // The runs' leases were removed as they ended (their empty folders stay).
    const leases = await fsp.readdir(join(storeDir(), 'leases'), { recursive: true, withFileTypes: true });
    expect(leases.filter((d) => !d.isDirectory())).toEqual([]);
    const manifests = await fsp.readdir(join(storeDir(), 'snapshots/laptop'));
    expect(manifests.sort()).toEqual([`${flow.first.id}.ndjson.gz`, `${flow.second.id}.ndjson.gz`]);
    expect((await fsp.stat(join(storeDir(), 'snapshots/laptop', manifests[0]))).mode & 0o777).toBe(0o400);
  }, 180_000);

  it("lists the exit codes in every command's --help", async () => {
    await expectHelpWithExitCodes(flow.cli);
  });

  it('exits 3 when a file cannot be read, names it, and keeps the rest', async () => {
    const bad = join(dir, 'badnames');
    await fsp.mkdir(bad);
    writeFileSync(join(bad, 'good.txt'), 'good');
    // A name that is not UTF-8 cannot be kept byte for byte in a manifest: it fails, loudly, every time.
    writeFileSync(
      Buffer.concat([Buffer.from(bad + '/bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]),
      'bad',
    );
    const r = await flow.run(['snapshot', 'badnames'], 3);
    expect(r.stdout).toMatch(/badnames: snapshot \S+: 1 files/);
    expect(r.stdout).toMatch(/failed: .*bad-.*: the name is not valid UTF-8/);
    const [run] = await flow.json<Array<{ ok: boolean; failed: Array<{ path: string; error: string }> }>>(
      ['snapshot', 'badnames'],
      3,
    );
    expect(run.ok).toBe(true);
    expect(run.failed).toHaveLength(1);
    const list = await flow.json<Array<{ account: string; failed: number; files: number }>>([
      'snapshots',
      'badnames',
    ]);
    expect(list.map((s) => [s.account, s.files, s.failed])).toEqual([
      ['badnames', 1, 1],
      ['badnames', 1, 1],
    ]);
    // Every account at once: one failed file makes the whole run exit 3.
    await flow.run(['snapshot'], 3);
  });

  it('restores only --path, writes nothing with --dry-run, and refuses to overwrite unless told to', async () => {
    const { first, expected1, run, json } = flow;
    await run(['restore', 'laptop', '--at', first.id, '--path', 'd2/sub2', '--to', 'only-d2'], 0);
    // The folder with its contents and times; the parent folder it sits in is made, without a time of its own.
    const got = (await readTree(join(dir, 'only-d2'))).filter((x) => x.name !== 'd2');
    expect(got).toEqual(expected1.filter((x) => x.name === 'd2/sub2' || x.name.startsWith('d2/sub2/')));
    expect(
      (await readTree(join(dir, 'only-d2'))).filter((x) => !x.name.startsWith('d2/')).map((x) => x.name),
    ).toEqual(['d2']);

    const dry = await json<{ dryRun: boolean; files: number }>([
      'restore',
      'laptop',
      '--at',
      first.id,
      '--to',
      'dry',
      '--dry-run',
    ]);
    expect(dry).toMatchObject({ dryRun: true, files: first.files });
    expect(existsSync(join(dir, 'dry'))).toBe(false);

    // restored-2 holds the second snapshot: the first one's files are in the way.
    const before = await readTree(join(dir, 'restored-2'));
    const refused = await run(['restore', 'laptop', '--at', first.id, '--to', 'restored-2'], 1);
    expect(refused.stderr).toMatch(/already exist in .*restored-2.*nothing was written.*--overwrite/);
    expect(await readTree(join(dir, 'restored-2'))).toEqual(before);
    await run(['restore', 'laptop', '--at', first.id, '--to', 'restored-2', '--overwrite'], 0);
    // Files the first snapshot had are back as they were; files only the second had stay.
    const after = new Map((await readTree(join(dir, 'restored-2'))).map((x) => [x.name, x]));
    for (const x of expected1.filter((i) => i.type === 'file'))
      expect(after.get(x.name)?.sha256, x.name).toBe(x.sha256);
    expect(after.has('added/new.txt')).toBe(true);
  });

  it('refuses the unsafe paths of a forged manifest: exit 3, the rest restored, nothing written outside the target', async () => {
    const { run } = flow;
    const manifest = join(storeDir(), 'snapshots/laptop', `${flow.first.id}.ndjson.gz`);
    const lines = gunzipSync(readFileSync(manifest))
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const header = lines[0];
    const good = lines.find((l) => l.type === 'file' && l.offset !== undefined && l.size > 0);
    const id = '20261126T000000.000Z';
    const forged = [
      { ...header, account: 'forged', id },
      { ...good, path: 'fine.dat' },
      { ...good, path: '../escaped.dat' },
      { ...good, path: '/tmp/sg-absolute-escape.dat' },
      { ...good, path: 'x/../../up.dat' },
    ];
    await fsp.mkdir(join(storeDir(), 'snapshots/forged'), { recursive: true });
    writeFileSync(
      join(storeDir(), 'snapshots/forged', `${id}.ndjson.gz`),
      gzipSync(forged.map((l) => JSON.stringify(l)).join('\n') + '\n'),
    );
    const sandbox = join(dir, 'sandbox');
    await fsp.mkdir(sandbox);
    const r = await run(['restore', 'forged', '--at', id, '--to', 'sandbox/target'], 3);
    expect(r.stdout).toContain('restored 1 files');
    for (const p of ['../escaped.dat', '/tmp/sg-absolute-escape.dat', 'x/../../up.dat'])
      expect(r.stdout).toContain(`failed: ${p}: refused: the path`);
    expect(await fsp.readdir(sandbox)).toEqual(['target']);
    expect(await fsp.readdir(join(sandbox, 'target'))).toEqual(['fine.dat']);
    expect(existsSync('/tmp/sg-absolute-escape.dat')).toBe(false);
    // verify names the forged manifest's unsafe paths as problems.
    const v = await run(['verify', 'forged'], 1);
    expect(v.stdout).toContain('names an unsafe path');
  });

  it("refuses a second run of an account while one is running (BUSY), and lets one account's failure not stop the others", async () => {
    const { run, json } = flow;
    // A live process holds the lock: this test's own.
    await fsp.mkdir(join(dir, 'state/locks'), { recursive: true });
    writeFileSync(join(dir, 'state/locks/laptop.lock'), `${process.pid}\n`);
    const busy = await run(['snapshot', 'laptop'], 1);
    expect(busy.stderr).toContain(
      `a snapshot of "laptop" is already running on this machine (pid ${process.pid}, since `,
    );
    await fsp.rm(join(dir, 'state/locks/laptop.lock'));

    const both = await fsp.readFile(join(dir, 'syncguard.yaml'), 'utf8');
    await fsp.writeFile(
      join(dir, 'two.yaml'),
      both.replace(
        '  - { name: badnames, provider: local, path: ./badnames }',
        '  - { name: gone, provider: local, path: ./no-such-folder }',
      ),
    );
    const before = (await json<unknown[]>(['snapshots', 'laptop'])).length;
    const runs = await json<
      Array<{ account: string; ok: boolean; error?: { code: string; message: string } }>
    >(['-c', 'two.yaml', 'snapshot', 'gone', 'laptop'], 1);
    expect(runs.map((r) => [r.account, r.ok])).toEqual([
      ['gone', false],
      ['laptop', true],
    ]);
    expect(runs[0].error).toEqual({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/no-such-folder cannot be read \(ENOENT\): check the account's path/),
    });
    expect((await json<unknown[]>(['snapshots', 'laptop'])).length).toBe(before + 1);
  });

  it('stops with exit 2 on a wrong command line', async () => {
    const { cli } = flow;
    const nope = await expectCli(['snapshot', 'nope'], cli, 2);
    expect(nope.stderr).toContain(
      'no account "nope" in the config; the accounts are: laptop, badnames, forged',
    );
    await expectCli(['restore', 'laptop', '--at', flow.first.id], cli, 2);
    const at = await expectCli(['restore', 'laptop', '--at', 'yesterday-ish', '--to', 'x'], cli, 2);
    expect(at.stderr).toContain(
      '"yesterday-ish" is not a snapshot id (20261127T131820.416Z), a date (2026-11-20: the end of that day',
    );
    await expectCli(['verify', '--sample', '0%'], cli, 2);
    await expectCli(['frobnicate'], cli, 2);
  });

  it('names a damaged or missing object when verify finds one, and exits 1', async () => {
    const { run, json } = flow;
    // A blob and a pack the laptop's snapshots need (the other accounts have objects of their own).
    const manifest = join(storeDir(), 'snapshots/laptop', `${flow.second.id}.ndjson.gz`);
    const entries = gunzipSync(readFileSync(manifest))
      .toString('utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => JSON.parse(l));
    const blobKey = entries.find((e) => e.type === 'file' && e.offset === undefined).object as string;
    const pack = entries.find((e) => e.offset !== undefined).object as string;
    // A store file is read-only: damage needs a chmod first, as it would for ransomware running as the user.
    const file = join(storeDir(), blobKey);
    await fsp.chmod(file, 0o644);
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(file, bytes);
    const v = await run(['verify', 'laptop'], 1);
    expect(v.stdout).toContain(`PROBLEM ${blobKey}: content does not match its hash`);

    await fsp.rm(join(storeDir(), pack));
    const vj = await json<{
      problems: Array<{ object: string; problem: string; path?: string; snapshot?: string }>;
    }>(['verify', 'laptop'], 1);
    expect(vj.problems).toContainEqual(
      expect.objectContaining({ object: blobKey, problem: 'content does not match its hash' }),
    );
    expect(vj.problems).toContainEqual(
      expect.objectContaining({
        object: pack,
        problem: 'missing from the store',
        snapshot: expect.stringMatching(/^snapshots\/laptop\//),
      }),
    );
    // A restore of a damaged file fails for that file only, with exit 3.
    const r = await run(['restore', 'laptop', '--at', flow.second.id, '--to', 'after-damage'], 3);
    expect(r.stdout).toMatch(/failed: .*INTEGRITY/);
  });
});
