import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { startCli, type CliResult } from '../helpers/cli.js';
import { KiB, bytesOf, sha256, type TreeItem } from '../helpers/tree.js';
import { startDropboxEmulator, type DropboxEmulator, type DropboxNamespace } from '../emulators/dropbox.js';
import {
  cloudCliSuite,
  sortByName,
  treeItem,
  type CloudSession,
  type SnapshotRun,
} from './cloud-cli-suite.js';

const ACCOUNT = 'family-dropbox';
const ENV_ACCOUNT = 'ci-dropbox';
/** Tokens as the emulator issues them (refresh "rt-…", access "sl.…"): none may ever be printed. */
const TOKEN_SHAPES = [/rt-[A-Za-z0-9_-]{30,}/, /sl\.[A-Za-z0-9_-]{40,}/];

/**
 * What the emulated Dropbox holds below `base` ('' for all of it), as `readTree` pictures a folder on
 * disk: names as Dropbox spells them, bytes, and times (a file's client_modified; Dropbox gives folders
 * none, and a restore dates them 1970-01-01).
 */
function picture(ns: DropboxNamespace, base = ''): TreeItem[] {
  const prefix = base === '' ? '/' : `/${base}/`.toLowerCase();
  const out: TreeItem[] = [];
  for (const n of ns.nodes.values()) {
    if (!n.pathLower.startsWith(prefix)) continue;
    const name = ns.trueDisplay(n).slice(prefix.length);
    out.push(
      n.tag === 'file'
        ? treeItem(name, {
            type: 'file',
            size: n.content!.length,
            sha256: sha256(n.content!),
            mtimeMs: Date.parse(n.clientModified!),
          })
        : treeItem(name, { type: 'dir', size: 0, mtimeMs: 0 }),
    );
  }
  return sortByName(out);
}

/** A Dropbox as a family's might be: photos by year, documents (one file above the pack threshold),
 *  names in several scripts, an old folder, an empty one. Whole-second times, as Dropbox keeps them. */
function fill(ns: DropboxNamespace): void {
  const t = (i: number) => new Date(Date.UTC(2025, 5, 1, 8, 0, 0) + i * 61_000);
  let i = 0;
  const put = (path: string, size: number) =>
    ns.put(path, bytesOf(`dbx:${path}`, size), { clientModified: t(i++) });
  for (let k = 0; k < 25; k++) put(`/Photos/2023/IMG_${String(k).padStart(4, '0')}.jpg`, 2 * KiB + k * 97);
  for (let k = 0; k < 10; k++) put(`/Photos/2024/IMG_${String(k).padStart(4, '0')}.jpg`, 3 * KiB + k * 131);
  for (let k = 0; k < 6; k++) put(`/Documents/report-${String(k).padStart(2, '0')}.txt`, 500 + k * 37);
  put('/Documents/scan.pdf', 1536 * KiB);
  put('/Documents/Notes/café.txt', 321);
  put('/Documents/Notes/Grüße 📷.md', 654);
  put('/Documents/Notes/заметки.txt', 987);
  for (let k = 0; k < 9; k++) put(`/Old/${k % 3 === 0 ? 'deep/er/' : ''}old-${k}.dat`, 700 + k * 11);
  put('/Old/empty.txt', 0);
  ns.mkdir('/Empty folder');
}

async function until<T>(what: string, probe: () => T | undefined, finished: Promise<unknown>): Promise<T> {
  let done = false;
  void finished.then(() => {
    done = true;
  });
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (done) throw new Error(`the CLI ended before ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The whole command line against the Dropbox emulator and the real S3 server (cloud-cli-suite.ts):
 * `auth dropbox` with the code typed in, a second account whose refresh token is in the environment
 * (as in CI), listings by cursor, path casing that drifts, and a revoked authorization.
 */
let emu: DropboxEmulator;
let envToken: string;
/** emu.requests.length when the counts were last reset. */
let mark = 0;

const credsFile = (s: CloudSession) => join(s.ws.dir, 'family-dropbox.json');
const savedToken = async (s: CloudSession) =>
  (JSON.parse(await fsp.readFile(credsFile(s), 'utf8')) as { refreshToken: string }).refreshToken;
/** Requests of a route since the counts were reset, by the status answered. */
const answered = (route: string) =>
  emu.requests
    .slice(mark)
    .filter((r) => r.route === route)
    .map((r) => r.status);

/** `syncguard auth dropbox`: the user opens the printed address, clicks Allow, and pastes the code. */
async function authDropbox(s: CloudSession): Promise<CliResult> {
  const { child, finished } = startCli(['auth', 'dropbox', '--account', ACCOUNT], {
    ...s.ws.cli,
    stdin: true,
  });
  let stderr = '';
  child.stderr!.on('data', (text: string) => {
    stderr += text;
  });
  const url = await until(
    'it printed the address to open',
    () => /^\s*(https:\/\/\S+)$/m.exec(stderr)?.[1],
    finished,
  );
  const page = await (await emu.fetch(url)).text();
  const code = /value="([^"]+)"/.exec(page)![1];
  await until(
    'it asked for the code',
    () => (stderr.includes('Paste the access code here') ? true : undefined),
    finished,
  );
  child.stdin!.end(`${code}\n`);
  const r = await finished;
  expect(r.code, `auth dropbox exited ${r.code}\n${r.stderr}`).toBe(0);
  expect(r.stderr.includes(code), 'the code was echoed').toBe(false);
  await s.expectNoToken(r);
  const authorize = new URL(url);
  expect(authorize.searchParams.get('token_access_type')).toBe('offline');
  expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
  return r;
}

cloudCliSuite({
  name: 'Dropbox',
  target: 'dropbox',
  account: ACCOUNT,
  label: 'e2e-dbx',
  async start() {
    emu = await startDropboxEmulator();
    envToken = emu.issueRefreshToken();
  },
  close: async () => emu?.close(),
  accounts: () => [
    {
      name: ACCOUNT,
      provider: 'dropbox',
      appKey: emu.appKey,
      credentials: './family-dropbox.json',
      endpoint: emu.url,
    },
    {
      name: ENV_ACCOUNT,
      provider: 'dropbox',
      appKey: emu.appKey,
      refreshToken: '${DROPBOX_REFRESH_TOKEN}',
      endpoint: emu.url,
      folders: '["/Documents"]',
    },
  ],
  env: () => ({ DROPBOX_REFRESH_TOKEN: envToken }),
  async secrets(s) {
    try {
      return [envToken, await savedToken(s)];
    } catch {
      return [envToken]; // not signed in yet
    }
  },
  tokenShapes: TOKEN_SHAPES,
  picture: (base) => picture(emu.home, base),
  comparable: (pic) => pic,
  writes: () => emu.home.log.length,
  resetCounts() {
    mark = emu.requests.length;
    emu.resetCounts();
  },
  signIn: authDropbox,

  signInTest: {
    title:
      'init; without a sign-in, snapshot says to run `auth dropbox`, which signs in through PKCE with the code typed in',
    async run(s) {
      const before = await s.run(['snapshot', ACCOUNT], 1);
      expect(before.stderr).toContain(
        `syncguard: ${ACCOUNT}: no Dropbox authorization saved for account "${ACCOUNT}" (${credsFile(s)} does not exist): run \`syncguard auth dropbox --account ${ACCOUNT}\``,
      );

      const r = await authDropbox(s);
      expect(r.stderr).toContain('Linked to the Dropbox account of Ada Lovelace <ada@example.com>.');
      expect(r.stdout).toBe(`saved the refresh token for "${ACCOUNT}" to ${credsFile(s)}\n`);
      expect((await fsp.stat(credsFile(s))).mode & 0o777).toBe(0o600);
      const saved: unknown = JSON.parse(await fsp.readFile(credsFile(s), 'utf8'));
      expect(saved).toMatchObject({
        version: 1,
        provider: 'dropbox',
        appKey: emu.appKey,
        accountId: emu.user.accountId,
      });
      expect(emu.count('oauth2/token')).toBe(1);
    },
  },

  fill: () => fill(emu.home),
  firstSnapshotChecks(_s, files) {
    expect(emu.count('files/list_folder')).toBe(1);
    expect(emu.count('files/list_folder/continue')).toBe(0);
    expect(answered('files/download').filter((s) => s === 200)).toHaveLength(files.length);
  },

  night: {
    title:
      'a night of changes under throttling and casing drift (add, edit, delete a folder, rename a folder): only the changes are listed, only changed files are read',
    filesRead: 4,
    prepare() {
      const t = new Date('2026-11-26T21:30:00Z');
      const added = [
        emu.home.put('/Documents/new/added.txt', bytesOf('added', 4321), { clientModified: t }),
        // Written by clients that spell the folder otherwise: path_display says "/photos/2024/…" and
        // "/PHOTOS/2024/…" (casing drift, on in the emulator as on Dropbox); the folder is still "Photos".
        emu.home.put('/photos/2024/IMG_9999.jpg', bytesOf('new photo', 5432), { clientModified: t }),
      ];
      const edited = [
        emu.home.put('/Documents/report-03.txt', bytesOf('edited report', 777), { clientModified: t }),
        emu.home.put('/PHOTOS/2024/IMG_0005.jpg', bytesOf('edited photo', 3333), { clientModified: t }),
      ];
      emu.home.remove('/Old');
      emu.home.move('/Photos/2023', '/Photos/2023 Holiday');
      const renamedIds = new Set(emu.home.subtree(emu.home.get('/Photos/2023 Holiday')!).map((n) => n.id));

      // The throttled night: Dropbox says too_many_requests on the listing and on two downloads.
      emu.inject('files/list_folder/continue', { kind: 'status', status: 429, retryAfter: 1 });
      emu.inject('files/download', { kind: 'status', status: 429, retryAfter: 0 }, 2);
      return (second: SnapshotRun) => {
        // Listing: the stored cursor's changes only, no full listing; the throttled call was repeated.
        expect(emu.count('files/list_folder')).toBe(0);
        expect(emu.count('files/get_metadata')).toBe(0);
        expect(answered('files/list_folder/continue')).toEqual([429, 200]);
        // Reading: one download per new or edited file (plus the two refused ones), none for the renamed folder.
        const downloads = emu.requests.slice(mark).filter((r) => r.route === 'files/download');
        expect(downloads.filter((r) => r.status === 429)).toHaveLength(2);
        const read = downloads.filter((r) => r.status === 200).map((r) => (r.arg as { path: string }).path);
        expect(read.sort()).toEqual([...added, ...edited].map((n) => n.id).sort());
        expect(read.some((id) => renamedIds.has(id))).toBe(false);
        expect(second.bytesAdded).toBeGreaterThanOrEqual(4321 + 5432 + 777 + 3333);
        expect(Date.parse(second.lockedUntil!)).toBeGreaterThan(Date.now() + 86_400_000 - 60_000);
      };
    },
  },

  deleted: { path: 'Old', files: 10 },

  revoked: {
    title:
      'a revoked refresh token ends `snapshot` with exit 1 and says to run `syncguard auth dropbox`, printing no token',
    async run(s) {
      // The environment's token works until it is revoked, as in CI.
      const [ci] = await s.json<SnapshotRun[]>(['snapshot', ENV_ACCOUNT]);
      expect(ci).toMatchObject({
        ok: true,
        failed: [],
        files: picture(emu.home, 'Documents').filter((i) => i.type === 'file').length,
      });

      emu.revokeRefreshToken(await savedToken(s));
      emu.revokeRefreshToken(envToken);
      const r = await s.run(['snapshot'], 1);
      expect(r.stderr).toContain(
        `syncguard: ${ACCOUNT}: Dropbox no longer accepts the saved authorization of account "${ACCOUNT}" (invalid_grant: refresh token is invalid or revoked): run \`syncguard auth dropbox --account ${ACCOUNT}\` again`,
      );
      expect(r.stderr).toContain(
        `syncguard: ${ENV_ACCOUNT}: Dropbox no longer accepts the saved authorization of account "${ENV_ACCOUNT}"`,
      );
      expect(r.stdout).toMatch(/^0 of 2 accounts done in /);
    },
    afterSignIn(_s, after) {
      expect(emu.count('files/list_folder')).toBe(0);
      expect(answered('files/download').filter((s) => s === 200)).toHaveLength(after.filesRead);
    },
  },
});
