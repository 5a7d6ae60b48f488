/**
 * What the nightly-operation tests share: a clock the test moves, repositories over a memory store on
 * that clock or over a real S3 bucket with Object Lock, trees of files, an HTTP receiver, a proxy that
 * holds S3 writes until the test lets them through, and the built CLI as a subprocess.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import {
  createServer,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll } from 'vitest';
import type { S3StoreConfig } from '../../src/config/schema.js';
import { LocalProvider } from '../../src/providers/local.js';
import { Repository } from '../../src/snapshot/repository.js';
import { takeSnapshot, type SnapshotResult, type TakeOptions } from '../../src/snapshot/take.js';
import { MemoryStore } from '../../src/store/memory.js';
import { S3Store } from '../../src/store/s3.js';
import type { Store } from '../../src/store/types.js';
import { CLI, FS_STORE_YAML, cliEnv, configYaml, writeConfig } from '../helpers/cli.js';

export const DAY = 86_400_000;
export const HOUR = 3_600_000;

export class Clock {
  t: number;
  constructor(iso = '2026-11-20T02:00:00.000Z') {
    this.t = Date.parse(iso);
  }
  readonly now = (): Date => new Date(this.t);
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A memory store with simulated Object Lock and a repository over it, both on `clock`. */
export function memoryRepo(
  opts: { clock?: Clock; lockDays?: number; packThreshold?: number; wrap?: (s: Store) => Store } = {},
) {
  const clock = opts.clock ?? new Clock();
  const memory = new MemoryStore({ objectLock: true, now: clock.now });
  const store = opts.wrap ? opts.wrap(memory) : memory;
  const repo = new Repository({
    store,
    lockDays: opts.lockDays ?? 30,
    packThreshold: opts.packThreshold ?? 64 * 1024,
    packSize: 1024 * 1024,
    now: clock.now,
  });
  return { clock, memory, store, repo };
}

/** The same store, with some methods replaced (to record or fail calls). */
export function withOverrides(
  store: Store,
  o: Partial<Pick<Store, 'put' | 'get' | 'head' | 'list' | 'extendRetention' | 'delete'>>,
): Store {
  return {
    get description() {
      return store.description;
    },
    get features() {
      return store.features;
    },
    prepare: (opts) => store.prepare(opts),
    put: o.put ?? ((k, b, opts) => store.put(k, b, opts)),
    get: o.get ?? ((k, opts) => store.get(k, opts)),
    head: o.head ?? ((k) => store.head(k)),
    list: o.list ?? ((p, signal) => store.list(p, signal)),
    extendRetention: o.extendRetention ?? ((k, until) => store.extendRetention(k, until)),
    delete: o.delete ?? ((k) => store.delete(k)),
  };
}

export type S3Access = { endpoint: string; accessKeyId: string; secretAccessKey: string };

export function s3Config(s3: S3Access, bucket: string, extra: Partial<S3StoreConfig> = {}): S3StoreConfig {
  return {
    type: 's3',
    bucket,
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    prefix: '',
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    objectLock: { mode: 'GOVERNANCE', days: 1 },
    checksum: 'md5',
    ...extra,
  };
}

/** A new bucket with Object Lock on the real S3 server. */
export async function s3Bucket(
  s3: S3Access,
  label: string,
): Promise<{ store: S3Store; config: S3StoreConfig; bucket: string }> {
  const bucket = `sg-${label}-${randomBytes(5).toString('hex')}`;
  const config = s3Config(s3, bucket);
  const store = new S3Store(config, { retry: { sleep: async () => {} } });
  await store.prepare({ create: true });
  return { store, config, bucket };
}

export async function tempDir(label: string): Promise<string> {
  return fsp.mkdtemp(join(tmpdir(), `sg-${label}-`));
}

export async function writeFiles(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [p, content] of Object.entries(files)) {
    const full = join(root, ...p.split('/'));
    await fsp.mkdir(dirname(full), { recursive: true });
    await fsp.writeFile(full, content);
  }
}

export function local(root: string): LocalProvider {
  return new LocalProvider({ path: root }, { configDir: '/' });
}

export async function snap(
  repo: Repository,
  root: string,
  account = 'docs',
  extra: Partial<TakeOptions> = {},
): Promise<SnapshotResult> {
  return takeSnapshot({
    repo,
    provider: local(root),
    account: { name: account, provider: 'local' },
    concurrency: 4,
    ...extra,
  });
}

/** Text that reads like a document: it compresses well. */
export function prose(seed: number, bytes = 6000): string {
  const words = [
    'the',
    'invoice',
    'for',
    'march',
    'was',
    'paid',
    'on',
    'time',
    'and',
    'our',
    'garden',
    'needs',
    'water',
    'photos',
    'from',
    'summer',
  ];
  let s = `note ${seed}:`;
  for (let i = 0; s.length < bytes; i++) s += ' ' + words[(seed * 7 + i * 13 + (i >> 3)) % words.length];
  return s;
}

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** An HTTP server that records every request; `reply` decides each answer (default 200). */
export async function receiver(
  reply: (r: Received, n: number) => { status: number; headers?: Record<string, string> } = () => ({
    status: 200,
  }),
) {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      got.push(r);
      const a = reply(r, got.length);
      res.writeHead(a.status, a.headers).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    got,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/**
 * A proxy in front of the S3 server that holds every request `holds` picks (by default every PUT of a
 * pack or blob) until release(); `heldOnce` resolves when the first one arrives: a test can stop a run
 * in the middle, for certain.
 */
export async function holdingProxy(
  target: string,
  /** Which requests are held until release() (default: uploads of packs and blobs). */
  holds: (req: IncomingMessage) => boolean = (req) =>
    req.method === 'PUT' && /\/(packs|blobs)\//.test(req.url ?? '') && !/[?&]retention/.test(req.url ?? ''),
) {
  const t = new URL(target);
  let held = true;
  const waiting: Array<() => void> = [];
  let firstHeld: () => void = () => {};
  const heldOnce = new Promise<void>((r) => {
    firstHeld = r;
  });
  const server = createServer((req, res) => {
    const forward = () => {
      const up = request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (held && holds(req)) {
      firstHeld();
      waiting.push(forward);
      req.on('close', () => {
        if (!res.writableEnded) res.destroy();
      });
    } else {
      forward();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    heldOnce,
    release() {
      held = false;
      for (const f of waiting.splice(0)) f();
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves when stderr holds a line matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The built CLI (`npm run build` first, as `npm test` does) in `cwd`, with a small environment. */
export function startCli(args: string[], cwd: string, env: Record<string, string> = {}): CliRun {
  if (!existsSync(CLI))
    throw new Error(`${CLI} does not exist: run \`npm run build\` before the end-to-end tests`);
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cliEnv(cwd, env),
  });
  let out = '',
    err = '';
  const waiters: Array<{ re: RegExp; resolve: () => void }> = [];
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    out += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    err += s;
    for (const w of [...waiters])
      if (w.re.test(err)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 60_000) {
      if (re.test(err)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`stderr never matched ${re} in ${timeoutMs} ms:\n${err}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        });
      });
    },
  };
}

export async function runCli(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = startCli(args, cwd, env);
  const { code } = await r.exited;
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

/**
 * A folder for the tripwire's end-to-end tests: 60 letters in tree/docs, and a config that snapshots
 * them into an fs store, keeps only the last snapshot and prunes at once; `settings` adds alerts.
 */
export async function lettersFolder(label: string, settings: string[] = []): Promise<string> {
  const dir = await tempDir(label);
  await writeFiles(
    join(dir, 'tree'),
    Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`docs/d${i % 3}/letter-${i}.txt`, prose(i)])),
  );
  await writeConfig(
    dir,
    configYaml({
      store: FS_STORE_YAML,
      settings: [
        'schedule: { cron: "0 2 * * *", timezone: UTC }',
        'keep: { last: 1, daily: 0, weekly: 0, monthly: 0, yearly: 0 }',
        'prune: { graceHours: 0 }',
        ...settings,
      ],
      accounts: [{ name: 'docs', provider: 'local', path: './tree' }],
    }),
  );
  return dir;
}

/** Registers the cleanup of a test file: the CLI processes still running are killed, the folders removed. */
export function leftovers(): { dirs: string[]; children: CliRun[] } {
  const dirs: string[] = [];
  const children: CliRun[] = [];
  afterAll(async () => {
    for (const c of children)
      if (c.child.exitCode === null && c.child.signalCode === null) {
        c.child.kill('SIGKILL');
        await c.exited;
      }
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
  });
  return { dirs, children };
}
