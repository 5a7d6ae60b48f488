import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { expectCli, startCli, type CliOptions, type CliResult } from '../helpers/cli.js';
import { KiB, bytesOf, readTree, sha256, type TreeItem } from '../helpers/tree.js';
import { s3Workspace } from '../helpers/workspace.js';
import { realistic, startGraphEmulator, type EmuDrive, type GraphEmulator } from '../emulators/graph.js';
import {
  cloudCliSuite,
  cloudConfig,
  sortByName,
  treeItem,
  type CloudSession,
  type SnapshotRun,
} from './cloud-cli-suite.js';

const ACCOUNT = 'work-onedrive';
/** Items per delta page: small, so that a full listing takes several pages and an incremental one takes one. */
const PAGE = 25;
const s3 = inject('s3');

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
        ? treeItem(name, { type: 'file', size: v.content!.length, sha256: sha256(v.content!), mtimeMs })
        : treeItem(name, { type: 'dir', size: 0, mtimeMs }),
    );
  }
  return sortByName(out);
}

/** Folders made by a restore back into the drive are dated when they were made: compare files' times only. */
const fileTimes = (pic: TreeItem[]) => pic.map((i) => (i.type === 'dir' ? { ...i, mtimeMs: 0 } : i));

/** The account in the config: a work account signed in by device code, its token cache beside the config. */
const onedriveAccount = (emu: GraphEmulator) => ({
  name: ACCOUNT,
  provider: 'onedrive',
  clientId: '11111111-2222-3333-4444-555555555555',
  tenant: 'organizations',
  credentials: './work-onedrive.json',
  endpoint: emu.url,
  authority: emu.url,
});

/** `syncguard auth onedrive`: the user reads the code the CLI prints and enters it on the sign-in page. */
function signIn(
  emu: GraphEmulator,
  args: string[],
  cli: CliOptions,
): { approved: () => boolean; finished: Promise<CliResult> } {
  const { child, finished } = startCli(['auth', 'onedrive', '--account', ACCOUNT, ...args], cli);
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
  return { approved: () => approved, finished };
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
 * The whole command line against the Graph emulator (through the real Graph client and MSAL) and the
 * real S3 server (cloud-cli-suite.ts): `auth onedrive` through the device code flow, delta listings
 * page by page, an access token that runs out overnight, and a revoked sign-in.
 */
let emu: GraphEmulator;
const drive = () => emu.drive;
const cacheFile = (s: CloudSession) => join(s.ws.dir, 'work-onedrive.json');

/** `syncguard auth onedrive --write`, approved on the sign-in page; the token cache is never printed. */
async function authOnedrive(s: CloudSession): Promise<CliResult> {
  const { approved, finished } = signIn(emu, ['--write'], s.ws.cli);
  const r = await finished;
  expect(r.code, `auth onedrive exited ${r.code}\n${r.stderr}`).toBe(0);
  expect(approved()).toBe(true);
  await s.expectNoToken(r);
  return r;
}

cloudCliSuite({
  name: 'OneDrive',
  target: 'onedrive',
  account: ACCOUNT,
  label: 'e2e-od',
  async start() {
    emu = await startGraphEmulator({
      driveType: 'business',
      pageSize: PAGE,
      user: { name: 'Ada Example', username: 'ada@contoso.com' },
    });
  },
  close: async () => emu?.close(),
  accounts: () => [onedriveAccount(emu)],
  // None of the tokens the emulator ever issued.
  secrets: async () => [...emu.refreshTokensIssued, ...emu.accessTokensIssued],
  tokenShapes: [],
  picture: (base) => picture(drive(), base),
  comparable: fileTimes,
  writes: () => drive().log.length,
  resetCounts: () => emu.resetCounters(),
  signIn: authOnedrive,

  signInTest: {
    title: 'init; auth onedrive: device code sign-in, the token cache saved to a 0600 file and never printed',
    async run(s) {
      const r = await authOnedrive(s);
      expect(r.stderr).toMatch(
        /^To sign in to OneDrive for account "work-onedrive", open https:\/\/microsoft\.com\/devicelogin and enter the code [0-9A-F]+$/m,
      );
      expect(r.stdout).toBe(
        `signed in as ada@contoso.com; saved the token cache for "${ACCOUNT}" to ${cacheFile(s)}\n`,
      );
      expect((await fsp.stat(cacheFile(s))).mode & 0o777).toBe(0o600);
      const cache = await fsp.readFile(cacheFile(s), 'utf8');
      expect(cache.includes(emu.refreshTokensIssued.at(-1)!), 'the cache holds the refresh token').toBe(true);
      expect(emu.count('devicecode')).toBe(1);
    },
  },

  fill: () => fill(drive()),
  firstSnapshotChecks(s, files) {
    // The root and every item, PAGE items a page.
    expect(emu.count('delta')).toBe(Math.ceil((s.state1.length + 1) / PAGE));
    expect(emu.count('download')).toBe(files.length);
    expect(emu.bytesDownloaded).toBe(s.first.bytes);
  },

  night: {
    title:
      'a night of changes under throttling (rename a folder, delete a subtree, edit files): one delta page, only the edited files read',
    filesRead: 3,
    prepare(s) {
      drive().rename('Projects/Alpha', 'Alpha (2026)');
      drive().remove('Archive/2019');
      const t = new Date('2026-11-26T22:15:30.456Z');
      const edited = [
        drive().write('Documents/notes-02.txt', bytesOf('edited notes', 4444), { modified: t }),
        drive().write('Projects/Beta/b-05.txt', bytesOf('edited beta', 3210), { modified: t }),
        drive().write('Archive/2020/a-01.csv', bytesOf('edited archive', 999), { modified: t }),
      ];

      // The access token ran out overnight, and Graph throttles: 429 on the listing, 503 and 429 on reads.
      emu.expireAccessTokens();
      const spent = emu.refreshTokensIssued.at(-1)!;
      emu.failNext(1, { status: 429, retryAfter: 1, route: 'delta' });
      emu.failNext(2, { status: 503, retryAfter: 0, route: 'content' });
      emu.failNext(1, { status: 429, retryAfter: 0, route: 'download' });
      return async () => {
        // One page of changes since the stored delta link (plus the throttled try), nothing listed folder by folder.
        expect(emu.count('delta')).toBe(1 + 1);
        expect(emu.count('children')).toBe(0);
        // Only the edited files were read (plus the refused tries): the renamed folder's 35 files cost nothing.
        expect(emu.count('content')).toBe(2 + 3);
        expect(emu.count('download')).toBe(1 + 3);
        expect(emu.bytesDownloaded).toBe(edited.reduce((n, e) => n + e.size, 0));
        // The expired access token was renewed with the saved refresh token, and the rotated one saved back.
        const cache = await fsp.readFile(cacheFile(s), 'utf8');
        expect(cache.includes(spent), 'the spent refresh token is still saved').toBe(false);
        expect(cache.includes(emu.refreshTokensIssued.at(-1)!), 'the new refresh token is saved').toBe(true);
      };
    },
  },

  deleted: { path: 'Archive/2019', files: 14 },

  revoked: {
    title:
      'a revoked sign-in ends `snapshot` with exit 1 and says to run `syncguard auth onedrive`, printing no token',
    async run(s) {
      emu.revokeSignIn();
      const r = await s.run(['snapshot', ACCOUNT], 1);
      expect(r.stderr).toMatch(
        new RegExp(
          `^syncguard: ${ACCOUNT}: .*run \`syncguard auth onedrive --account ${ACCOUNT}\` again`,
          'm',
        ),
      );
      expect(r.stderr).toMatch(/expired or was revoked|refused the sign-in/);
    },
    afterSignIn(_s, after, r) {
      expect(emu.count('download')).toBe(after.filesRead);
      expect(r.stderr).not.toMatch(/listing everything/);
    },
  },
});

/**
 * Several nights of a Business drive with the realistic switches on (files listed without hashes,
 * files SharePoint rewrites on download, delta links in OData form, a OneNote notebook that is a
 * folder), then `snapshot --full`; each night restores byte for byte: as OneDrive serves the files.
 */
describe.skipIf(!s3)('e2e: CLI with a realistic OneDrive for Business, night after night', () => {
  let emu: GraphEmulator;

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
  });
  afterAll(async () => {
    await emu?.close();
  });
  const ws = s3Workspace(s3, 'e2e-odr', { config: (bucket) => cloudConfig(bucket, [onedriveAccount(emu)]) });
  beforeAll(async () => {
    expect((await signIn(emu, [], ws.cli).finished).code).toBe(0);
    await expectCli(['init'], ws.cli, 0);
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
      const out = await expectCli(['snapshot', ACCOUNT, '--json', ...args], ws.cli, 0);
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
      const to = join(ws.dir, `restored-${k}`);
      await expectCli(['restore', ACCOUNT, '--at', run.id, '--to', to], ws.cli, 0);
      expect(await readTree(to), `night ${k + 1}`).toEqual(want);
    }
  }, 240_000);
});
