/**
 * The command line against a cloud provider's emulator (in the test process, over HTTP, through the
 * real SDK) and the real S3 server, the same story for every provider: sign in, init, a first snapshot,
 * a night of changes under throttling, restores to disk and back into the account, a revoked sign-in
 * and signing in again. `cloudCliSuite` runs it; each provider's file gives a `CloudCli`: its emulator,
 * its config, how its account is pictured, and the checks only it has (requests counted by route, how
 * its sign-in goes, what it says when the sign-in is revoked).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { configYaml, expectCli, s3StoreYaml, type CliResult } from '../helpers/cli.js';
import { listKeys } from '../helpers/s3-client.js';
import { readTree, type TreeItem } from '../helpers/tree.js';
import { s3Workspace, type S3Workspace } from '../helpers/workspace.js';

/** What `snapshot --json` prints per account. */
export interface SnapshotRun {
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

/** What `restore --json` prints. */
export interface RestoreJson {
  snapshot: string;
  target: string;
  files: number;
  dirs: number;
  overwritten: number;
  failed: unknown[];
  dryRun: boolean;
}

/** A picture of a tree (readTree's form) sorted as readTree sorts it: by the bytes of the names. */
export const sortByName = (items: TreeItem[]): TreeItem[] =>
  items.sort((a, b) => Buffer.compare(Buffer.from(a.hex, 'hex'), Buffer.from(b.hex, 'hex')));

/** One entry of a picture. */
export const treeItem = (name: string, rest: Omit<TreeItem, 'name' | 'hex'>): TreeItem => ({
  name,
  hex: Buffer.from(name).toString('hex'),
  ...rest,
});

/** The part of a picture below `base`, with names relative to it. */
export function below(pic: TreeItem[], base: string): TreeItem[] {
  return pic
    .filter((i) => i.name.startsWith(base + '/'))
    .map((i) => {
      const name = i.name.slice(base.length + 1);
      return { ...i, name, hex: Buffer.from(name).toString('hex') };
    });
}

/** The config of the cloud end-to-end tests: the test S3 server's `bucket`, `accounts`, `settings`. */
export function cloudConfig(
  bucket: string,
  accounts: Array<Record<string, string | undefined>>,
  settings: string[] = [],
): string {
  return configYaml({ store: s3StoreYaml(bucket, inject('s3')!), settings, accounts });
}

/** What the provider's tests share while they run, in order. */
export interface CloudSession {
  readonly ws: S3Workspace;
  /** Runs the CLI, expects `code`, and checks that no secret was printed. */
  run(args: string[], code: number): Promise<CliResult>;
  /** `run` with --json, parsed. */
  json<T>(args: string[], code?: number): Promise<T>;
  /** No secret the provider knows of, nor the S3 secret, in what the CLI printed. */
  expectNoToken(r: CliResult): Promise<void>;
  /** The account before and after the night of changes, and the snapshots taken of it. */
  state1: TreeItem[];
  state2: TreeItem[];
  first: SnapshotRun;
  second: SnapshotRun;
}

export interface CloudCli {
  /** In test names: "Dropbox", "OneDrive". */
  readonly name: string;
  /** `restore --to` for the account itself: "dropbox", "onedrive". */
  readonly target: string;
  readonly account: string;
  /** Labels of the temporary folder and bucket. */
  readonly label: string;
  start(): Promise<void>;
  close(): Promise<void>;
  /** The accounts of the config (the emulator's address in them). */
  accounts(): Array<Record<string, string | undefined>>;
  /** More of the CLI's environment (a refresh token). */
  env?(): Record<string, string>;
  /** Strings the CLI must never print (tokens); the S3 secret is checked besides. */
  secrets(s: CloudSession): Promise<string[]>;
  /** Shapes of the provider's tokens: nothing printed may look like one. */
  readonly tokenShapes: RegExp[];
  /** The account below `base` ('' for all of it), as readTree pictures a folder. */
  picture(base?: string): TreeItem[];
  /** What a restore back into the account is compared on (all of an item, or its times for files only). */
  comparable(pic: TreeItem[]): TreeItem[];
  /** Changes made in the account so far (its log of writes). */
  writes(): number;
  /** Zeroes the emulator's request counts, from which the checks below count. */
  resetCounts(): void;
  /** Signs in through the CLI as a user does (`auth …`), with the provider's own checks. */
  signIn(s: CloudSession): Promise<CliResult>;

  /** The first test: after `init`, signs in; `title` starts with "init; ". */
  signInTest: { title: string; run(s: CloudSession): Promise<void> };
  /** Puts a family's or a company's files into the empty account; checks the first snapshot's requests. */
  fill(): void;
  firstSnapshotChecks(s: CloudSession, files: TreeItem[]): void;
  /** Changes the account and makes the provider throttle; returns the checks of the night's snapshot. */
  night: {
    title: string;
    filesRead: number;
    prepare(s: CloudSession): (run: SnapshotRun) => void | Promise<void>;
  };
  /** A folder the night deleted, and how many files it held. */
  deleted: { path: string; files: number };
  /** Revokes the sign-in and checks what `snapshot` says then; afterwards, the run after signing in again. */
  revoked: {
    title: string;
    run(s: CloudSession): Promise<void>;
    afterSignIn(s: CloudSession, after: SnapshotRun, r: CliResult): void;
  };
}

export function cloudCliSuite(p: CloudCli): void {
  const s3 = inject('s3');
  if (!s3)
    console.warn(
      `\n!!! e2e: CLI with ${p.name} SKIPPED: no S3 server (S3_ENDPOINT unset and SYNCGUARD_NO_S3=1) !!!\n`,
    );

  describe.skipIf(!s3)(`e2e: CLI with ${p.name} (emulated) and the S3 store`, () => {
    // The emulator first: the config names its address.
    beforeAll(() => p.start());
    afterAll(() => p.close());
    const ws = s3Workspace(s3, p.label, {
      config: (bucket) => cloudConfig(bucket, p.accounts()),
      env: () => p.env?.() ?? {},
    });

    const s: CloudSession = {
      ws,
      async expectNoToken(r) {
        const secrets = [...(await p.secrets(s)), s3!.secretAccessKey];
        for (const text of [r.stdout, r.stderr]) {
          for (const secret of secrets) expect(text.includes(secret), 'a secret was printed').toBe(false);
          for (const shape of p.tokenShapes)
            expect(shape.test(text), 'something shaped like a token was printed').toBe(false);
        }
      },
      async run(args, code) {
        const r = await expectCli(args, ws.cli, code);
        await s.expectNoToken(r);
        return r;
      },
      async json<T>(args: string[], code = 0) {
        return JSON.parse((await s.run([...args, '--json'], code)).stdout) as T;
      },
      state1: [],
      state2: [],
      first: undefined as unknown as SnapshotRun,
      second: undefined as unknown as SnapshotRun,
    };
    const ACCOUNT = p.account;

    it(p.signInTest.title, async () => {
      expect((await s.run(['init'], 0)).stdout).toMatch(/^created s3:\/\//);
      await p.signInTest.run(s);
    });

    it('a first snapshot lists the whole account once and reads every file once', async () => {
      p.fill();
      s.state1 = p.picture();
      const files = s.state1.filter((i) => i.type === 'file');
      p.resetCounts();
      [s.first] = await s.json<SnapshotRun[]>(['snapshot', ACCOUNT]);
      expect(s.first).toMatchObject({
        account: ACCOUNT,
        ok: true,
        files: files.length,
        dirs: s.state1.length - files.length,
        failed: [],
        filesRead: files.length,
      });
      expect(s.first.bytes).toBe(files.reduce((n, f) => n + f.size, 0));
      p.firstSnapshotChecks(s, files);
    });

    it(p.night.title, async () => {
      const check = p.night.prepare(s);
      s.state2 = p.picture();
      p.resetCounts();
      [s.second] = await s.json<SnapshotRun[]>(['snapshot', ACCOUNT]);
      const files = s.state2.filter((i) => i.type === 'file');
      expect(s.second).toMatchObject({
        ok: true,
        files: files.length,
        bytes: files.reduce((n, f) => n + f.size, 0),
        failed: [],
        filesRead: p.night.filesRead,
      });
      await check(s.second);
    });

    it('restores the earlier date to disk byte for byte (names, contents, times), and the later one too', async () => {
      const r1 = await s.json<RestoreJson>(['restore', ACCOUNT, '--at', s.first.id, '--to', 'restored-1']);
      expect(r1).toMatchObject({ snapshot: s.first.id, files: s.first.files, failed: [] });
      expect(await readTree(join(ws.dir, 'restored-1'))).toEqual(s.state1);
      await s.run(['restore', ACCOUNT, '--at', s.second.id, '--to', join(ws.dir, 'restored-2')], 0);
      expect(await readTree(join(ws.dir, 'restored-2'))).toEqual(s.state2);
    });

    it(`restores the earlier date back into the ${p.name} account, under "Restored <date>/", with the right bytes and times`, async () => {
      const { first } = s;
      const r = await s.json<RestoreJson>(['restore', ACCOUNT, '--at', first.id, '--to', p.target]);
      expect(r.target).toBe(
        `Restored ${first.id.slice(0, 4)}-${first.id.slice(4, 6)}-${first.id.slice(6, 8)}`,
      );
      expect(r).toMatchObject({ snapshot: first.id, files: first.files, overwritten: 0, failed: [] });
      expect(p.comparable(p.picture(r.target))).toEqual(p.comparable(s.state1));
      // What was there is untouched.
      expect(p.picture().filter((i) => !i.name.startsWith(r.target))).toEqual(s.state2);
    });

    it('in place (--into ""), refuses to overwrite and writes nothing; a deleted folder goes back; --overwrite puts the earlier state back', async () => {
      const { first, state1 } = s;
      const writesBefore = p.writes();
      const refused = await s.run(['restore', ACCOUNT, '--at', first.id, '--to', p.target, '--into', ''], 1);
      expect(refused.stderr).toMatch(
        /^syncguard: \d+ file\(s\) already exist in the account \(.*\); nothing was written\. .*add --overwrite to replace them\n$/,
      );
      expect(p.writes()).toBe(writesBefore);

      // The folder deleted that night is not in the way of anything: it goes back where it was.
      const { path, files } = p.deleted;
      const restoreArgs = ['restore', ACCOUNT, '--at', first.id, '--to', p.target, '--into', ''];
      const old = await s.json<RestoreJson>([...restoreArgs, '--path', path]);
      expect(old).toMatchObject({ target: '', failed: [], overwritten: 0, files });
      expect(p.comparable(p.picture(path))).toEqual(p.comparable(below(state1, path)));

      const back = await s.json<RestoreJson>([...restoreArgs, '--overwrite']);
      expect(back).toMatchObject({ target: '', files: first.files, failed: [] });
      // Regression: with --overwrite the replaced files were not counted (overwritten: 0).
      expect(back.overwritten).toBeGreaterThan(0);
      expect(back.overwritten).toBeLessThanOrEqual(first.files);
      const names = new Set(state1.map((i) => i.name));
      expect(p.comparable(p.picture().filter((i) => names.has(i.name)))).toEqual(p.comparable(state1));
    });

    it(p.revoked.title, async () => {
      await p.revoked.run(s);
      // Nothing was stored for the failed run.
      expect((await listKeys(ws.raw, ws.bucket, `snapshots/${ACCOUNT}/`)).map((k) => k.key)).toEqual(
        [s.first.id, s.second.id].map((id) => `snapshots/${ACCOUNT}/${id}.ndjson.gz`),
      );

      // Signing in again is all it takes: the next run goes on from the stored cursor, with no snapshot
      // missing in between. It reads only the contents the last snapshot does not hold (what the restores
      // brought back: the deleted folder, the earlier versions of the edited files), and stores nothing new.
      await p.signIn(s);
      const known = new Set(s.state2.map((i) => i.sha256));
      const now = p.picture().filter((i) => i.type === 'file');
      p.resetCounts();
      const r = await s.run(['snapshot', ACCOUNT, '--json'], 0);
      const [after] = JSON.parse(r.stdout) as SnapshotRun[];
      expect(after).toMatchObject({
        ok: true,
        failed: [],
        files: now.length,
        filesRead: now.filter((i) => !known.has(i.sha256)).length,
        bytesAdded: 0,
      });
      p.revoked.afterSignIn(s, after, r);
    });
  });
}
