import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  expectCli,
  s3Env,
  s3StoreYaml,
  startCli,
  tempDir,
  uniqueBucket,
  writeConfig,
  type CliOptions,
  type CliResult,
} from '../helpers/cli.js';
import { listKeys, rawClient, removeBucket } from '../helpers/s3-client.js';
import { KiB, bytesOf, readTree, sha256, type TreeItem } from '../helpers/tree.js';
import { realistic, startGraphEmulator, type EmuDrive, type GraphEmulator } from '../emulators/graph.js';

const s3 = inject('s3');
if (!s3)
  console.warn(
    '\n!!! e2e: CLI with OneDrive SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n',
  );

const ACCOUNT = 'work-onedrive';
/** Items per delta page: small, so that a full listing takes several pages and an incremental one takes one. */
const PAGE = 25;

interface SnapshotRun {
  account: string;
  ok: boolean;
  id: string;
  files: number;
  dirs: number;
  bytes: number;
  bytesAdded: number;
  filesRead: number;
  failed: Array<{ path: string; error: string }>;
}

interface RestoreJson {
  snapshot: string;
  target: string;
  files: number;
  overwritten: number;
  failed: unknown[];
  dryRun: boolean;
}

const byBytes = (a: TreeItem, b: TreeItem) =>
  Buffer.compare(Buffer.from(a.hex, 'hex'), Buffer.from(b.hex, 'hex'));
const item = (name: string, rest: Omit<TreeItem, 'name' | 'hex'>): TreeItem => ({
  name,
  hex: Buffer.from(name).toString('hex'),
  ...rest,
});

/** What the emulated drive holds below `base` ('' for all of it), as `readTree` pictures a folder on
 *  disk: names, bytes, and the times OneDrive keeps (fileSystemInfo.lastModifiedDateTime). */
function picture(drive: EmuDrive, base = ''): TreeItem[] {
  const prefix = base === '' ? '' : base + '/';
  const out: TreeItem[] = [];
  for (const path of drive.paths()) {
    if (!path.startsWith(prefix)) continue;
    const v = drive.item(path)!;
    const mtimeMs = Date.parse(v.fileSystemInfo.lastModifiedDateTime);
    const name = path.slice(prefix.length);
    out.push(
      v.kind === 'file'
        ? item(name, { type: 'file', size: v.content!.length, sha256: sha256(v.content!), mtimeMs })
        : item(name, { type: 'dir', size: 0, mtimeMs }),
    );
  }
  return out.sort(byBytes);
}

/** Folders made by a restore back into the drive are dated when they were made: compare files' times only. */
const fileTimes = (pic: TreeItem[]) => pic.map((i) => (i.type === 'dir' ? { ...i, mtimeMs: 0 } : i));

/** The part of a picture below `base`, with names relative to it. */
function below(pic: TreeItem[], base: string): TreeItem[] {
  return pic
    .filter((i) => i.name.startsWith(base + '/'))
    .map((i) =>
      item(i.name.slice(base.length + 1), {
        type: i.type,
        size: i.size,
        sha256: i.sha256,
        mtimeMs: i.mtimeMs,
      }),
    );
}

/** A work drive: projects (one of 35 files to be renamed), an archive by year, documents (one above
 *  the pack threshold, names in several scripts), an empty folder. */
function fill(drive: EmuDrive): void {
  const t = (i: number) => new Date(Date.UTC(2025, 8, 1, 9, 0, 0, 123) + i * 60_007);
  let i = 0;
  const put = (path: string, size: number) =>
    drive.write(path, bytesOf(`od:${path}`, size), { modified: t(i++) });
  for (let k = 0; k < 30; k++) put(`Projects/Alpha/spec-${String(k).padStart(2, '0')}.txt`, 1 * KiB + k * 53);
  for (let k = 0; k < 5; k++) put(`Projects/Alpha/drafts/draft-${k}.md`, 900 + k * 41);
  for (let k = 0; k < 10; k++) put(`Projects/Beta/b-${String(k).padStart(2, '0')}.txt`, 2 * KiB + k * 71);
  for (let k = 0; k < 14; k++) put(`Archive/2019/${k < 7 ? 'Q1' : 'Q2'}/a-${k}.csv`, 600 + k * 29);
  for (let k = 0; k < 6; k++) put(`Archive/2020/a-${String(k).padStart(2, '0')}.csv`, 700 + k * 31);
  for (let k = 0; k < 5; k++) put(`Documents/notes-${String(k).padStart(2, '0')}.txt`, 400 + k * 13);
  put('Documents/Budget 2026.xlsx.bin', 1536 * KiB);
  put('Documents/Résumé.txt', 432);
  put('Documents/日本語のメモ.txt', 765);
  drive.mkdir('Empty', { modified: t(i++) });
}

/**
 * The whole command line against the Graph emulator (in this process, over HTTP, through the real
 * Graph client and MSAL) and the real S3 server: `auth onedrive` through the device code flow, init,
 * snapshots, a night of changes under throttling, restores to disk and back into the drive, and a
 * revoked sign-in.
 */
describe.skipIf(!s3)('e2e: CLI with OneDrive (emulated) and the S3 store', () => {
  let emu: GraphEmulator;
  let dir: string;
  let raw: S3Client;
  let bucket: string;
  let cli: CliOptions;
  let state1: TreeItem[];
  let state2: TreeItem[];
  let first: SnapshotRun;
  let second: SnapshotRun;

  const cacheFile = () => join(dir, 'work-onedrive.json');
  const drive = () => emu.drive;

  /** None of the tokens the emulator ever issued, nor the S3 secret, in what the CLI printed. */
  function expectNoToken(r: CliResult): void {
    const secrets = [...emu.refreshTokensIssued, ...emu.accessTokensIssued, s3!.secretAccessKey];
    for (const text of [r.stdout, r.stderr])
      for (const s of secrets) expect(text.includes(s), 'a secret was printed').toBe(false);
  }
  const run = async (args: string[], code: number) => {
    const r = await expectCli(args, cli, code);
    expectNoToken(r);
    return r;
  };
  const json = async <T>(args: string[], code = 0): Promise<T> =>
    JSON.parse((await run([...args, '--json'], code)).stdout) as T;

  /** `syncguard auth onedrive --write`: the user reads the code the CLI prints and enters it on the sign-in page. */
  async function authOnedrive(): Promise<CliResult> {
    const { child, finished } = startCli(['auth', 'onedrive', '--account', ACCOUNT, '--write'], cli);
    let stderr = '';
    let approved = false;
    child.stderr!.on('data', (s: string) => {
      stderr += s;
      const code = /enter the code (\S+)/.exec(stderr)?.[1];
      if (code && !approved) {
        approved = true;
        emu.approve(code);
      }
    });
    const r = await finished;
    expect(r.code, `auth onedrive exited ${r.code}\n${r.stderr}`).toBe(0);
    expect(approved).toBe(true);
    expectNoToken(r);
    return r;
  }

  beforeAll(async () => {
    emu = await startGraphEmulator({
      driveType: 'business',
      pageSize: PAGE,
      user: { name: 'Ada Example', username: 'ada@contoso.com' },
    });
    dir = await tempDir('e2e-onedrive');
    raw = rawClient(s3!);
    bucket = uniqueBucket('e2e-od');
    await writeConfig(
      dir,
      [
        s3StoreYaml(bucket, s3!),
        'stateDir: ./state',
        'accounts:',
        `  - name: ${ACCOUNT}`,
        '    provider: onedrive',
        '    clientId: 11111111-2222-3333-4444-555555555555',
        '    tenant: organizations',
        '    credentials: ./work-onedrive.json',
        `    endpoint: ${emu.url}`,
        `    authority: ${emu.url}`,
        '',
      ].join('\n'),
    );
    cli = { cwd: dir, env: s3Env(s3!), timeoutMs: 60_000 };
  });
  afterAll(async () => {
    await emu?.close();
    if (raw) {
      await removeBucket(raw, bucket);
      raw.destroy();
    }
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('auth onedrive: device code sign-in, the token cache saved to a 0600 file and never printed', async () => {
    const r = await authOnedrive();
    expect(r.stderr).toMatch(
      /^To sign in to OneDrive for account "work-onedrive", open https:\/\/microsoft\.com\/devicelogin and enter the code [0-9A-F]+$/m,
    );
    expect(r.stdout).toBe(
      `signed in as ada@contoso.com; saved the token cache for "${ACCOUNT}" to ${cacheFile()}\n`,
    );
    expect((await fsp.stat(cacheFile())).mode & 0o777).toBe(0o600);
    const cache = await fsp.readFile(cacheFile(), 'utf8');
    expect(cache.includes(emu.refreshTokensIssued.at(-1)!), 'the cache holds the refresh token').toBe(true);
    expect(emu.count('devicecode')).toBe(1);
  });

  it('init, then a first snapshot that enumerates the drive once and reads every file once', async () => {
    expect((await run(['init'], 0)).stdout).toMatch(/^created s3:\/\//);
    fill(drive());
    state1 = picture(drive());
    const files = state1.filter((i) => i.type === 'file');
    emu.resetCounters();
    [first] = await json<SnapshotRun[]>(['snapshot', ACCOUNT]);
    expect(first).toMatchObject({
      account: ACCOUNT,
      ok: true,
      files: files.length,
      dirs: state1.length - files.length,
      failed: [],
      filesRead: files.length,
    });
    expect(first.bytes).toBe(files.reduce((n, f) => n + f.size, 0));
    // The root and every item, PAGE items a page.
    expect(emu.count('delta')).toBe(Math.ceil((state1.length + 1) / PAGE));
    expect(emu.count('download')).toBe(files.length);
    expect(emu.bytesDownloaded).toBe(first.bytes);
  });

  it('a night of changes under throttling (rename a folder, delete a subtree, edit files): one delta page, only the edited files read', async () => {
    drive().rename('Projects/Alpha', 'Alpha (2026)');
    drive().remove('Archive/2019');
    const t = new Date('2026-11-26T22:15:30.456Z');
    const edited = [
      drive().write('Documents/notes-02.txt', bytesOf('edited notes', 4444), { modified: t }),
      drive().write('Projects/Beta/b-05.txt', bytesOf('edited beta', 3210), { modified: t }),
      drive().write('Archive/2020/a-01.csv', bytesOf('edited archive', 999), { modified: t }),
    ];
    state2 = picture(drive());

    // The access token ran out overnight, and Graph throttles: 429 on the listing, 503 and 429 on reads.
    emu.expireAccessTokens();
    const spent = emu.refreshTokensIssued.at(-1)!;
    emu.failNext(1, { status: 429, retryAfter: 1, route: 'delta' });
    emu.failNext(2, { status: 503, retryAfter: 0, route: 'content' });
    emu.failNext(1, { status: 429, retryAfter: 0, route: 'download' });
    emu.resetCounters();
    [second] = await json<SnapshotRun[]>(['snapshot', ACCOUNT]);
    const files = state2.filter((i) => i.type === 'file');
    expect(second).toMatchObject({
      ok: true,
      files: files.length,
      bytes: files.reduce((n, f) => n + f.size, 0),
      failed: [],
      filesRead: 3,
    });

    // One page of changes since the stored delta link (plus the throttled try), nothing listed folder by folder.
    expect(emu.count('delta')).toBe(1 + 1);
    expect(emu.count('children')).toBe(0);
    // Only the edited files were read (plus the refused tries): the renamed folder's 35 files cost nothing.
    expect(emu.count('content')).toBe(2 + 3);
    expect(emu.count('download')).toBe(1 + 3);
    expect(emu.bytesDownloaded).toBe(edited.reduce((n, e) => n + e.size, 0));
    // The expired access token was renewed with the saved refresh token, and the rotated one saved back.
    const cache = await fsp.readFile(cacheFile(), 'utf8');
    expect(cache.includes(spent), 'the spent refresh token is still saved').toBe(false);
    expect(cache.includes(emu.refreshTokensIssued.at(-1)!), 'the new refresh token is saved').toBe(true);
  });

  it('restores the earlier date to disk byte for byte (names, contents, times), and the later one too', async () => {
    const r1 = await json<RestoreJson>(['restore', ACCOUNT, '--at', first.id, '--to', 'restored-1']);
    expect(r1).toMatchObject({ snapshot: first.id, files: first.files, failed: [] });
    expect(await readTree(join(dir, 'restored-1'))).toEqual(state1);
    await run(['restore', ACCOUNT, '--at', second.id, '--to', join(dir, 'restored-2')], 0);
    expect(await readTree(join(dir, 'restored-2'))).toEqual(state2);
  });

  it('restores the earlier date back into the drive, under "Restored <date>/", with the right bytes and times', async () => {
    const r = await json<RestoreJson>(['restore', ACCOUNT, '--at', first.id, '--to', 'onedrive']);
    expect(r.target).toBe(`Restored ${first.id.slice(0, 4)}-${first.id.slice(4, 6)}-${first.id.slice(6, 8)}`);
    expect(r).toMatchObject({ snapshot: first.id, files: first.files, overwritten: 0, failed: [] });
    expect(fileTimes(picture(drive(), r.target))).toEqual(fileTimes(state1));
    expect(picture(drive()).filter((i) => !i.name.startsWith(r.target))).toEqual(state2);
  });

  it('in place (--into ""), refuses to overwrite and writes nothing; a deleted subtree goes back; --overwrite puts the earlier state back', async () => {
    const logBefore = drive().log.length;
    const refused = await run(['restore', ACCOUNT, '--at', first.id, '--to', 'onedrive', '--into', ''], 1);
    expect(refused.stderr).toMatch(
      /^syncguard: \d+ file\(s\) already exist in the account \(.*\); nothing was written\. .*add --overwrite to replace them\n$/,
    );
    expect(drive().log.length).toBe(logBefore);

    const archive = await json<RestoreJson>([
      'restore',
      ACCOUNT,
      '--at',
      first.id,
      '--path',
      'Archive/2019',
      '--to',
      'onedrive',
      '--into',
      '',
    ]);
    expect(archive).toMatchObject({ target: '', failed: [], overwritten: 0, files: 14 });
    expect(fileTimes(picture(drive(), 'Archive/2019'))).toEqual(fileTimes(below(state1, 'Archive/2019')));

    const back = await json<RestoreJson>([
      'restore',
      ACCOUNT,
      '--at',
      first.id,
      '--to',
      'onedrive',
      '--into',
      '',
      '--overwrite',
    ]);
    expect(back).toMatchObject({ target: '', files: first.files, failed: [] });
    // Regression: with --overwrite the replaced files were not counted (overwritten: 0).
    expect(back.overwritten).toBeGreaterThan(0);
    expect(back.overwritten).toBeLessThanOrEqual(first.files);
    const names = new Set(state1.map((i) => i.name));
    expect(fileTimes(picture(drive()).filter((i) => names.has(i.name)))).toEqual(fileTimes(state1));
  });

  it('a revoked sign-in ends `snapshot` with exit 1 and says to run `syncguard auth onedrive`, printing no token', async () => {
    emu.revokeSignIn();
    const r = await run(['snapshot', ACCOUNT], 1);
    expect(r.stderr).toMatch(
      new RegExp(`^syncguard: ${ACCOUNT}: .*run \`syncguard auth onedrive --account ${ACCOUNT}\` again`, 'm'),
    );
    expect(r.stderr).toMatch(/expired or was revoked|refused the sign-in/);
    expect((await listKeys(raw, bucket, `snapshots/${ACCOUNT}/`)).map((k) => k.key)).toEqual(
      [first.id, second.id].map((id) => `snapshots/${ACCOUNT}/${id}.ndjson.gz`),
    );

    // Signing in again is all it takes: the next run goes on from the stored delta link. It reads only
    // the contents the last snapshot does not hold (what the restores brought back), and stores nothing new.
    await authOnedrive();
    const known = new Set(state2.map((i) => i.sha256));
    const now = picture(drive()).filter((i) => i.type === 'file');
    emu.resetCounters();
    const out = await run(['snapshot', ACCOUNT, '--json'], 0);
    const [after] = JSON.parse(out.stdout) as SnapshotRun[];
    expect(after).toMatchObject({
      ok: true,
      failed: [],
      files: now.length,
      filesRead: now.filter((i) => !known.has(i.sha256)).length,
      bytesAdded: 0,
    });
    expect(emu.count('download')).toBe(after.filesRead);
    expect(out.stderr).not.toMatch(/listing everything/);
  });
});

/**
 * Several nights of a Business drive with the realistic switches on (files listed without hashes,
 * files SharePoint rewrites on download, delta links in OData form, a OneNote notebook that is a
 * folder), then `snapshot --full`; each night restores byte for byte: as OneDrive serves the files.
 */
describe.skipIf(!s3)('e2e: CLI with a realistic OneDrive for Business, night after night', () => {
  let emu: GraphEmulator;
  let dir: string;
  let raw: S3Client;
  let bucket: string;
  let cli: CliOptions;

  /** What a restore must give: each file as OneDrive serves it. */
  function served(drive: EmuDrive): TreeItem[] {
    return picture(drive).map((i) => {
      if (i.type !== 'file') return i;
      const bytes = emu.served(drive, Buffer.from(i.hex, 'hex').toString());
      return { ...i, size: bytes.length, sha256: sha256(bytes) };
    });
  }

  beforeAll(async () => {
    emu = await startGraphEmulator({ ...realistic('business'), pageSize: PAGE });
    dir = await tempDir('e2e-onedrive-real');
    raw = rawClient(s3!);
    bucket = uniqueBucket('e2e-odr');
    await writeConfig(
      dir,
      [
        s3StoreYaml(bucket, s3!),
        'stateDir: ./state',
        'accounts:',
        `  - name: ${ACCOUNT}`,
        '    provider: onedrive',
        '    clientId: 11111111-2222-3333-4444-555555555555',
        '    tenant: organizations',
        '    credentials: ./work-onedrive.json',
        `    endpoint: ${emu.url}`,
        `    authority: ${emu.url}`,
        '',
      ].join('\n'),
    );
    cli = { cwd: dir, env: s3Env(s3!), timeoutMs: 60_000 };
    const { child, finished } = startCli(['auth', 'onedrive', '--account', ACCOUNT], cli);
    let stderr = '';
    child.stderr!.on('data', (s: string) => {
      stderr += s;
      const code = /enter the code (\S+)/.exec(stderr)?.[1];
      if (code && !emu.userCodes.includes(code + '!')) {
        emu.userCodes.push(code + '!');
        emu.approve(code);
      }
    });
    expect((await finished).code).toBe(0);
    await expectCli(['init'], cli, 0);
  });
  afterAll(async () => {
    await emu?.close();
    if (raw) {
      await removeBucket(raw, bucket);
      raw.destroy();
    }
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('snapshots three nights and a --full listing, and restores each night as OneDrive served it', async () => {
    const drive = emu.drive;
    const t = (i: number) => new Date(Date.UTC(2025, 2, 3, 8, 0, 0, 250) + i * 61_001);
    for (let k = 0; k < 30; k++)
      drive.write(`Bulk/b-${k}.csv`, bytesOf(`bulk ${k}`, 600 + k * 29), { modified: t(10 + k) });
    drive.write('Archive/2019/a.csv', bytesOf('archive', 640), { modified: t(9) });
    drive.write('Documents/Budget 2026.xlsx', bytesOf('budget', 1536 * KiB), { modified: t(30) });
    drive.write('Photos/IMG_0001.jpg', bytesOf('jpeg 1', 7000), { modified: t(1) });
    drive.write('Photos/IMG_0002.jpg', bytesOf('jpeg 2', 9000), { modified: t(2) });
    drive.write('Archive/old-ledger.csv', bytesOf('an old file without hashes', 3000), { modified: t(3) });
    drive.write('Letters/old-letter.doc', bytesOf('a .doc SharePoint rewrites', 2500), { modified: t(4) });
    drive.addPackage('Notes/Team Notebook', { 'Minutes.one': 'minutes', 'Open Notebook.onetoc2': 'toc' });

    const nights: Array<{ run: SnapshotRun; want: TreeItem[] }> = [];
    const night = async (args: string[] = []) => {
      const want = served(drive);
      const out = await expectCli(['snapshot', ACCOUNT, '--json', ...args], cli, 0);
      const [run] = JSON.parse(out.stdout) as SnapshotRun[];
      expect(run).toMatchObject({
        ok: true,
        failed: [],
        files: want.filter((i) => i.type === 'file').length,
      });
      nights.push({ run, want });
      return { run, stderr: out.stderr };
    };

    const one = await night();
    expect(one.run.filesRead).toBe(one.run.files);

    drive.rename('Photos', 'Pictures');
    drive.write('Pictures/IMG_0003.jpg', bytesOf('jpeg 3', 8000), { modified: t(5) });
    drive.write('Archive/old-ledger.csv', bytesOf('an old file, edited', 3000), { modified: t(3) });
    drive.remove('Archive/2019');
    emu.resetCounters();
    const two = await night();
    expect(two.run.filesRead).toBe(2);
    expect(emu.count('delta')).toBe(1);

    drive.write('Notes/Team Notebook/Ideas.one', 'ideas');
    const three = await night();
    expect(three.run.filesRead).toBe(1);

    // A full listing on demand: the whole drive listed again, nothing read again.
    emu.resetCounters();
    const full = await night(['--full']);
    expect(full.run.filesRead).toBe(0);
    expect(emu.count('delta')).toBeGreaterThan(1);
    expect(emu.count('download')).toBe(0);

    for (const [k, { run, want }] of nights.entries()) {
      const to = join(dir, `restored-${k}`);
      await expectCli(['restore', ACCOUNT, '--at', run.id, '--to', to], cli, 0);
      expect(await readTree(to), `night ${k + 1}`).toEqual(want);
    }
  }, 240_000);
});
