/**
 * Running the built command line (`node dist/cli/main.js`) as a user would: a subprocess in a folder
 * that holds a syncguard.yaml. `npm run build` must have run first (as `npm test` does).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, inject } from 'vitest';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd: string;
  /** Added to a minimal environment (PATH, HOME=cwd, TZ=UTC); the parent's AWS_* are not passed on. */
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Give the child a stdin the test writes to (`child.stdin`), as a user types; else it has none. */
  stdin?: boolean;
}

function assertBuilt(): void {
  if (!existsSync(CLI))
    throw new Error(`${CLI} does not exist: run \`npm run build\` before the end-to-end tests`);
}

/**
 * The environment of a CLI child process: a minimal one (PATH, HOME=cwd, TZ=UTC) plus `extra`; the
 * parent's AWS_* are not passed on. While coverage runs, the child writes its V8 coverage where
 * test/helpers/coverage.ts reads it.
 */
export function cliEnv(cwd: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: cwd,
    TZ: 'UTC',
    LANG: 'C.UTF-8',
    NODE_NO_WARNINGS: '1',
  };
  const coverage = inject('childCoverage');
  if (coverage) env.NODE_V8_COVERAGE = coverage;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Starts the CLI; the caller waits for it with `finished`. */
export function startCli(
  args: string[],
  opts: CliOptions,
): { child: ChildProcess; finished: Promise<CliResult> } {
  assertBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: cliEnv(opts.cwd, opts.env),
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  const finished = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, finished };
}

export async function runCli(args: string[], opts: CliOptions): Promise<CliResult> {
  return startCli(args, opts).finished;
}

/** Runs the CLI, expects `code`, and returns the result; on a mismatch the message shows the output. */
export async function expectCli(args: string[], opts: CliOptions, code: number): Promise<CliResult> {
  const r = await runCli(args, opts);
  expect(
    r.code,
    `syncguard ${args.join(' ')} exited ${r.code} (signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`,
  ).toBe(code);
  return r;
}

/** Runs the CLI with --json, expects `code`, and parses stdout, which must hold exactly one JSON document. */
export async function cliJson<T = unknown>(args: string[], opts: CliOptions, code = 0): Promise<T> {
  const r = await expectCli([...args, '--json'], opts, code);
  try {
    return JSON.parse(r.stdout) as T;
  } catch (e) {
    throw new Error(
      `syncguard ${args.join(' ')} --json printed something other than one JSON document:\n${r.stdout}\n(${(e as Error).message})`,
      { cause: e },
    );
  }
}

/** A fresh folder for one test, removed by the returned cleanup. */
export async function tempDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(join(tmpdir(), `sg-${prefix}-`));
}

/** A bucket name no other test run uses. */
export function uniqueBucket(label: string): string {
  return `sg-${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`.slice(0, 63);
}

export interface S3Access {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** The `store:` block of a config for the test S3 server; the keys come from the environment (s3Env). */
export function s3StoreYaml(
  bucket: string,
  s3: S3Access,
  objectLock = '{ mode: GOVERNANCE, days: 1 }',
  prefix?: string,
): string {
  return [
    'store:',
    '  type: s3',
    `  bucket: ${bucket}`,
    `  endpoint: ${s3.endpoint}`,
    '  forcePathStyle: true',
    '  region: us-east-1',
    ...(prefix ? [`  prefix: ${prefix}`] : []),
    '  accessKeyId: ${AWS_ACCESS_KEY_ID}',
    '  secretAccessKey: ${AWS_SECRET_ACCESS_KEY}',
    `  objectLock: ${objectLock}`,
  ].join('\n');
}

export function s3Env(s3: S3Access): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
}

/** The `store:` line of a config for a folder store inside the config's folder. */
export const FS_STORE_YAML = 'store: { type: fs, path: ./store }';

export interface ConfigYaml {
  /** The `store:` block: FS_STORE_YAML or s3StoreYaml(…). */
  store: string;
  /** Top-level settings after `stateDir: ./state` (schedule, keep, prune, alerts), one line each. */
  settings?: string[];
  /** Each account as its keys in order; values are YAML, written as they are (undefined: left out). */
  accounts: Array<Record<string, string | undefined>>;
}

/** A whole config file, its state folder beside it. */
export function configYaml({ store, settings = [], accounts }: ConfigYaml): string {
  const account = (a: Record<string, string | undefined>) =>
    Object.entries(a)
      .filter(([, v]) => v !== undefined)
      .map(([k, v], i) => `${i === 0 ? '  - ' : '    '}${k}: ${v}`);
  return [store, 'stateDir: ./state', ...settings, 'accounts:', ...accounts.flatMap(account), ''].join('\n');
}

/** A config with one local account `name` reading `source`, with its state folder inside `dir`. */
export function localConfigYaml(storeYaml: string, source: string, name = 'laptop'): string {
  return configYaml({
    store: storeYaml,
    accounts: [{ name, provider: 'local', path: JSON.stringify(source) }],
  });
}

export async function writeConfig(dir: string, yaml: string, file = 'syncguard.yaml'): Promise<string> {
  const path = join(dir, file);
  await fsp.writeFile(path, yaml);
  return path;
}

/** Fails when a secret shows up anywhere in what the CLI printed. */
export function expectNoSecret(r: CliResult, ...secrets: string[]): void {
  for (const s of secrets) {
    if (!s) continue;
    expect(r.stdout.includes(s), 'a secret was printed on stdout').toBe(false);
    expect(r.stderr.includes(s), 'a secret was printed on stderr').toBe(false);
  }
}

/** What `snapshots --json` prints per snapshot (DESIGN.md, "For scripts and monitors"). */
export interface SnapshotJson {
  id: string;
  account: string;
  time: string;
  files: number;
  bytes: number;
  failed: number;
  lockedUntil: string | null;
}
