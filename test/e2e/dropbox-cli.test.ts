import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  CLI,
  expectCli,
  s3Env,
  s3StoreYaml,
  tempDir,
  uniqueBucket,
  writeConfig,
  type CliOptions,
  type CliResult,
} from '../helpers/cli.js';
import { listKeys, rawClient, removeBucket } from '../helpers/s3-client.js';
import { KiB, bytesOf, readTree, sha256, type TreeItem } from '../helpers/tree.js';
import { startDropboxEmulator, type DropboxEmulator, type DropboxNamespace } from '../emulators/dropbox.js';

const s3 = inject('s3');
if (!s3)
  console.warn(
    '\n!!! e2e: CLI with Dropbox SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n',
  );

const ACCOUNT = 'family-dropbox';
const ENV_ACCOUNT = 'ci-dropbox';
/** Tokens as the emulator issues them (refresh "rt-…", access "sl.…"): none may ever be printed. */
const TOKEN_SHAPES = [/rt-[A-Za-z0-9_-]{30,}/, /sl\.[A-Za-z0-9_-]{40,}/];

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
  lockedUntil: string | null;
  error?: { code: string; message: string };
}

interface RestoreJson {
  snapshot: string;
  target: string;
  files: number;
  dirs: number;
  overwritten: number;
  failed: unknown[];
}

const byBytes = (a: TreeItem, b: TreeItem) =>
  Buffer.compare(Buffer.from(a.hex, 'hex'), Buffer.from(b.hex, 'hex'));

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
    const item: TreeItem =
      n.tag === 'file'
        ? {
            name,
            hex: Buffer.from(name).toString('hex'),
            type: 'file',
            size: n.content!.length,
            sha256: sha256(n.content!),
            mtimeMs: Date.parse(n.clientModified!),
          }
        : { name, hex: Buffer.from(name).toString('hex'), type: 'dir', size: 0, mtimeMs: 0 };
    out.push(item);
  }
  return out.sort(byBytes);
}

/** The part of a picture below `base`, with names relative to it. */
function below(pic: TreeItem[], base: string): TreeItem[] {
  return pic
    .filter((i) => i.name.startsWith(base + '/'))
    .map((i) => {
      const name = i.name.slice(base.length + 1);
      return { ...i, name, hex: Buffer.from(name).toString('hex') };
    });
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

/** The CLI as a subprocess whose stdin a test can type into (the auth command reads the code there). */
function startInteractive(
  args: string[],
  cli: CliOptions,
): { stdin: NodeJS.WritableStream; stderrSoFar: () => string; finished: Promise<CliResult> } {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: cli.cwd,
    TZ: 'UTC',
    LANG: 'C.UTF-8',
    NODE_NO_WARNINGS: '1',
    ...cli.env,
  };
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: cli.cwd,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const finished = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { stdin: child.stdin, stderrSoFar: () => stderr, finished };
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
 * The whole command line against the Dropbox emulator (in this process, over HTTP, through the real
 * SDK) and the real S3 server: `auth dropbox` with the code typed in, init, snapshots, a night of
 * changes under throttling, restores to disk and back into the Dropbox, and a revoked authorization.
 */
describe.skipIf(!s3)('e2e: CLI with Dropbox (emulated) and the S3 store', () => {
  let emu: DropboxEmulator;
  let dir: string;
  let raw: S3Client;
  let bucket: string;
  let envToken: string;
  let cli: CliOptions;
  let state1: TreeItem[];
  let state2: TreeItem[];
  let first: SnapshotRun;
  let second: SnapshotRun;

  const credsFile = () => join(dir, 'family-dropbox.json');
  const savedToken = async () =>
    (JSON.parse(await fsp.readFile(credsFile(), 'utf8')) as { refreshToken: string }).refreshToken;

  /** Nothing that looks like a token, and none of the known secrets, in what the CLI printed. */
  async function expectNoToken(r: CliResult): Promise<void> {
    const secrets = [envToken, s3!.secretAccessKey];
    try {
      secrets.push(await savedToken());
    } catch {
      /* not signed in yet */
    }
    for (const text of [r.stdout, r.stderr]) {
      for (const s of secrets) expect(text.includes(s), 'a secret was printed').toBe(false);
      for (const shape of TOKEN_SHAPES)
        expect(shape.test(text), 'something shaped like a token was printed').toBe(false);
    }
  }
  const run = async (args: string[], code: number) => {
    const r = await expectCli(args, cli, code);
    await expectNoToken(r);
    return r;
  };
  const json = async <T>(args: string[], code = 0): Promise<T> =>
    JSON.parse((await run([...args, '--json'], code)).stdout) as T;

  /** `syncguard auth dropbox`: the user opens the printed address, clicks Allow, and pastes the code. */
  async function authDropbox(): Promise<CliResult> {
    const child = startInteractive(['auth', 'dropbox', '--account', ACCOUNT], cli);
    const url = await until(
      'it printed the address to open',
      () => /^\s*(https:\/\/\S+)$/m.exec(child.stderrSoFar())?.[1],
      child.finished,
    );
    const page = await (await emu.fetch(url)).text();
    const code = /value="([^"]+)"/.exec(page)![1];
    await until(
      'it asked for the code',
      () => (child.stderrSoFar().includes('Paste the access code here') ? true : undefined),
      child.finished,
    );
    child.stdin.end(`${code}\n`);
    const r = await child.finished;
    expect(r.code, `auth dropbox exited ${r.code}\n${r.stderr}`).toBe(0);
    expect(r.stderr.includes(code), 'the code was echoed').toBe(false);
    await expectNoToken(r);
    const authorize = new URL(url);
    expect(authorize.searchParams.get('token_access_type')).toBe('offline');
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    return r;
  }

  /** Requests of a route since `from` (an index into emu.requests), by the status answered. */
  const answered = (from: number, route: string) =>
    emu.requests
      .slice(from)
      .filter((r) => r.route === route)
      .map((r) => r.status);

  beforeAll(async () => {
    emu = await startDropboxEmulator();
    dir = await tempDir('e2e-dropbox');
    raw = rawClient(s3!);
    bucket = uniqueBucket('e2e-dbx');
    envToken = emu.issueRefreshToken();
    await writeConfig(
      dir,
      [
        s3StoreYaml(bucket, s3!),
        'stateDir: ./state',
        'accounts:',
        `  - name: ${ACCOUNT}`,
        '    provider: dropbox',
        `    appKey: ${emu.appKey}`,
        '    credentials: ./family-dropbox.json',
        `    endpoint: ${emu.url}`,
        `  - name: ${ENV_ACCOUNT}`,
        '    provider: dropbox',
        `    appKey: ${emu.appKey}`,
        '    refreshToken: ${DROPBOX_REFRESH_TOKEN}',
        `    endpoint: ${emu.url}`,
        '    folders: ["/Documents"]',
        '',
      ].join('\n'),
    );
    cli = { cwd: dir, env: { ...s3Env(s3!), DROPBOX_REFRESH_TOKEN: envToken }, timeoutMs: 60_000 };
  });
  afterAll(async () => {
    await emu?.close();
    if (raw) {
      await removeBucket(raw, bucket);
      raw.destroy();
    }
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('init; without a sign-in, snapshot says to run `auth dropbox`, which signs in through PKCE with the code typed in', async () => {
    expect((await run(['init'], 0)).stdout).toMatch(/^created s3:\/\//);
    const before = await run(['snapshot', ACCOUNT], 1);
    expect(before.stderr).toContain(
      `syncguard: ${ACCOUNT}: no Dropbox authorization saved for account "${ACCOUNT}" (${credsFile()} does not exist): run \`syncguard auth dropbox --account ${ACCOUNT}\``,
    );

    const r = await authDropbox();
    expect(r.stderr).toContain('Linked to the Dropbox account of Ada Lovelace <ada@example.com>.');
    expect(r.stdout).toBe(`saved the refresh token for "${ACCOUNT}" to ${credsFile()}\n`);
    expect((await fsp.stat(credsFile())).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(await fsp.readFile(credsFile(), 'utf8'));
    expect(saved).toMatchObject({
      version: 1,
      provider: 'dropbox',
      appKey: emu.appKey,
      accountId: emu.user.accountId,
    });
    expect(emu.count('oauth2/token')).toBe(1);
  });

  it('a first snapshot lists everything once and reads every file once', async () => {
    fill(emu.home);
    state1 = picture(emu.home);
    const files = state1.filter((i) => i.type === 'file');
    const mark = emu.requests.length;
    emu.resetCounts();
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
    expect(emu.count('files/list_folder')).toBe(1);
    expect(emu.count('files/list_folder/continue')).toBe(0);
    expect(answered(mark, 'files/download').filter((s) => s === 200)).toHaveLength(files.length);
  });

  it('a night of changes under throttling and casing drift (add, edit, delete a folder, rename a folder): only the changes are listed, only changed files are read', async () => {
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
    state2 = picture(emu.home);

    // The throttled night: Dropbox says too_many_requests on the listing and on two downloads.
    emu.inject('files/list_folder/continue', { kind: 'status', status: 429, retryAfter: 1 });
    emu.inject('files/download', { kind: 'status', status: 429, retryAfter: 0 }, 2);
    const mark = emu.requests.length;
    emu.resetCounts();
    [second] = await json<SnapshotRun[]>(['snapshot', ACCOUNT]);
    const files = state2.filter((i) => i.type === 'file');
    expect(second).toMatchObject({
      ok: true,
      files: files.length,
      bytes: files.reduce((n, f) => n + f.size, 0),
      failed: [],
      filesRead: 4,
    });

    // Listing: the stored cursor's changes only, no full listing; the throttled call was repeated.
    expect(emu.count('files/list_folder')).toBe(0);
    expect(emu.count('files/get_metadata')).toBe(0);
    expect(answered(mark, 'files/list_folder/continue')).toEqual([429, 200]);
    // Reading: one download per new or edited file (plus the two refused ones), none for the renamed folder.
    const downloads = emu.requests.slice(mark).filter((r) => r.route === 'files/download');
    expect(downloads.filter((r) => r.status === 429)).toHaveLength(2);
    const read = downloads.filter((r) => r.status === 200).map((r) => (r.arg as { path: string }).path);
    expect(read.sort()).toEqual([...added, ...edited].map((n) => n.id).sort());
    expect(read.some((id) => renamedIds.has(id))).toBe(false);
    expect(second.bytesAdded).toBeGreaterThanOrEqual(4321 + 5432 + 777 + 3333);
    expect(Date.parse(second.lockedUntil!)).toBeGreaterThan(Date.now() + 86_400_000 - 60_000);
  });

  it('restores the earlier date to disk byte for byte (names, contents, times), and the later one too', async () => {
    const r1 = await json<RestoreJson>(['restore', ACCOUNT, '--at', first.id, '--to', 'restored-1']);
    expect(r1).toMatchObject({ snapshot: first.id, files: first.files, failed: [] });
    expect(await readTree(join(dir, 'restored-1'))).toEqual(state1);
    await run(['restore', ACCOUNT, '--at', second.id, '--to', join(dir, 'restored-2')], 0);
    expect(await readTree(join(dir, 'restored-2'))).toEqual(state2);
  });

  it('restores the earlier date back into the Dropbox, under "Restored <date>/", with the right bytes and times', async () => {
    const r = await json<RestoreJson>(['restore', ACCOUNT, '--at', first.id, '--to', 'dropbox']);
    expect(r.target).toBe(`Restored ${first.id.slice(0, 4)}-${first.id.slice(4, 6)}-${first.id.slice(6, 8)}`);
    expect(r).toMatchObject({ snapshot: first.id, files: first.files, overwritten: 0, failed: [] });
    expect(picture(emu.home, r.target)).toEqual(state1);
    // What was there is untouched.
    expect(picture(emu.home).filter((i) => !i.name.startsWith(r.target))).toEqual(state2);
  });

  it('in place (--into ""), refuses to overwrite and writes nothing; a deleted folder goes back; --overwrite puts the earlier state back', async () => {
    const logBefore = emu.home.log.length;
    const refused = await run(['restore', ACCOUNT, '--at', first.id, '--to', 'dropbox', '--into', ''], 1);
    expect(refused.stderr).toMatch(
      /^syncguard: \d+ file\(s\) already exist in the account \(.*\); nothing was written\. .*add --overwrite to replace them\n$/,
    );
    expect(emu.home.log.length).toBe(logBefore);

    // The folder deleted that night is not in the way of anything: it goes back where it was.
    const old = await json<RestoreJson>([
      'restore',
      ACCOUNT,
      '--at',
      first.id,
      '--path',
      'Old',
      '--to',
      'dropbox',
      '--into',
      '',
    ]);
    expect(old).toMatchObject({ target: '', failed: [], overwritten: 0 });
    expect(picture(emu.home, 'Old')).toEqual(below(state1, 'Old'));

    const back = await json<RestoreJson>([
      'restore',
      ACCOUNT,
      '--at',
      first.id,
      '--to',
      'dropbox',
      '--into',
      '',
      '--overwrite',
    ]);
    expect(back).toMatchObject({ target: '', files: first.files, failed: [] });
    // Regression: with --overwrite the replaced files were not counted (overwritten: 0).
    expect(back.overwritten).toBeGreaterThan(0);
    expect(back.overwritten).toBeLessThanOrEqual(first.files);
    const names = new Set(state1.map((i) => i.name));
    expect(picture(emu.home).filter((i) => names.has(i.name))).toEqual(state1);
  });

  it('a revoked refresh token ends `snapshot` with exit 1 and says to run `syncguard auth dropbox`, printing no token', async () => {
    // The environment's token works until it is revoked, as in CI.
    const [ci] = await json<SnapshotRun[]>(['snapshot', ENV_ACCOUNT]);
    expect(ci).toMatchObject({
      ok: true,
      failed: [],
      files: picture(emu.home, 'Documents').filter((i) => i.type === 'file').length,
    });

    emu.revokeRefreshToken(await savedToken());
    emu.revokeRefreshToken(envToken);
    const r = await run(['snapshot'], 1);
    expect(r.stderr).toContain(
      `syncguard: ${ACCOUNT}: Dropbox no longer accepts the saved authorization of account "${ACCOUNT}" (invalid_grant: refresh token is invalid or revoked): run \`syncguard auth dropbox --account ${ACCOUNT}\` again`,
    );
    expect(r.stderr).toContain(
      `syncguard: ${ENV_ACCOUNT}: Dropbox no longer accepts the saved authorization of account "${ENV_ACCOUNT}"`,
    );
    expect(r.stdout).toMatch(/^0 of 2 accounts done in /);
    expect((await listKeys(raw, bucket, `snapshots/${ACCOUNT}/`)).map((k) => k.key)).toEqual(
      [first.id, second.id].map((id) => `snapshots/${ACCOUNT}/${id}.ndjson.gz`),
    );

    // Signing in again is all it takes: the next run goes on from the stored cursor, with no snapshot
    // missing in between. It reads only the contents the last snapshot does not hold (what the restores
    // brought back: the deleted folder, the earlier versions of the edited files), and stores nothing new.
    await authDropbox();
    const known = new Set(state2.map((i) => i.sha256));
    const now = picture(emu.home).filter((i) => i.type === 'file');
    const mark = emu.requests.length;
    emu.resetCounts();
    const [after] = await json<SnapshotRun[]>(['snapshot', ACCOUNT]);
    expect(after).toMatchObject({
      ok: true,
      failed: [],
      files: now.length,
      filesRead: now.filter((i) => !known.has(i.sha256)).length,
      bytesAdded: 0,
    });
    expect(emu.count('files/list_folder')).toBe(0);
    expect(answered(mark, 'files/download').filter((s) => s === 200)).toHaveLength(after.filesRead);
  });
});
