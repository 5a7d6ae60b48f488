#!/usr/bin/env node
/**
 * Cloud scenarios of the benchmark (issues 3 and 4): the CLI snapshots an emulated Dropbox and an
 * emulated OneDrive of 100,000 small files into the real S3 server, then again after a night with
 * 10 changes (OneDrive: and a renamed folder of 1,000 files). Printed and written to
 * bench/.work/cloud-results.json: API calls by route, bytes downloaded, wall time and peak RSS of the
 * CLI process, against the targets.
 *
 *   npm run build && node bench/cloud.mjs                  both providers, 100,000 files
 *   node bench/cloud.mjs --quick                           10,000 files, for a try
 *   node bench/cloud.mjs --only dropbox --files 20000 --profile
 *   node bench/cloud.mjs --help
 *
 * The emulators (test/emulators/*.ts) are compiled with bench/tsconfig.cloud.json into
 * bench/.work/cloud-build and run in a child process (bench/cloud/emulator-server.mjs), so the CLI's
 * peak RSS and CPU are its own. The CLI is a copy of dist/ taken at the start. Each run works in
 * bench/.work/cloud/<run id>/ (its logs and profiles stay there; the copy of dist/ and the configs go).
 * Store: S3_ENDPOINT (+ AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), e.g. `source /tmp/ceph-s3/s3.env`;
 * a bucket per provider and run, Object Lock GOVERNANCE 1 day (--no-lock: off), removed at the end.
 *
 * Also a module: `runCloudBench(options)` runs the scenarios and returns the results;
 * `benchCloud({ quick, keep, profile, s3 })` does that, writes the JSON and returns the report as text
 * (what bench/run.mjs calls, so that `npm run bench` runs these scenarios too).
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { hottest as hottestOf } from './cpu-profile.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MiB = 1024 * 1024;
const MB = 1e6;

const USAGE = `usage: node bench/cloud.mjs [--quick] [--files N] [--only dropbox,onedrive] [--no-lock] [--keep] [--profile]

  --quick       10,000 files instead of 100,000 (the renamed folder then holds 100)
  --files N     the number of files (at least 1,000)
  --only LIST   providers to run, comma-separated: dropbox, onedrive
  --no-lock     buckets without Object Lock (objectLock: off) instead of GOVERNANCE, 1 day
  --keep        keep the buckets, and everything in bench/.work/cloud/<run id>
  --profile     run each snapshot under --cpu-prof, with its memory sampled every second
                (bench/cloud/memwatch.mjs): the hottest functions and the memory peaks (RSS, heap,
                Buffers) go into the results (bench/.work/cloud/<run id>/profiles); times include the overhead
  --node-options "FLAGS"  NODE_OPTIONS for the measured CLI (experiments: --max-old-space-size=…)

Store: S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (e.g. \`source /tmp/ceph-s3/s3.env\`).
Run \`npm run build\` first: the CLI measured is dist/cli/main.js.`;

/**
 * @typedef {{ endpoint: string, accessKeyId: string, secretAccessKey: string }} S3Access
 * @typedef {{ providers?: string[], files?: number, changes?: number, lock?: boolean, keep?: boolean,
 *   profile?: boolean, nodeOptions?: string, s3?: S3Access, work?: string, log?: (line: string) => void }} CloudBenchOptions
 */

/**
 * Runs the cloud scenarios and returns { rows, runs, targets, notes }; never prints to stdout (the
 * caller prints `formatTable(result)`). Throws when the setup fails (no S3, no build).
 * @param {CloudBenchOptions} o
 */
export async function runCloudBench(o = {}) {
  const files = o.files ?? 100_000;
  if (!Number.isInteger(files) || files < 1000)
    throw new Error(`--files must be a whole number of at least 1,000, got ${o.files}`);
  const providers = o.providers ?? ['dropbox', 'onedrive'];
  for (const p of providers)
    if (!['dropbox', 'onedrive'].includes(p))
      throw new Error(`unknown provider "${p}": expected dropbox or onedrive`);
  const s3 = o.s3 ?? s3FromEnv();
  const log = o.log ?? ((line) => process.stderr.write(line + '\n'));
  const runId = randomBytes(3).toString('hex');
  // A folder per run: two runs at once (this script and `npm run bench`, say) must not share one.
  const work = resolve(o.work ?? join(ROOT, 'bench', '.work', 'cloud', runId));
  const ctx = {
    files,
    changes: o.changes ?? 10,
    nodeOptions: o.nodeOptions,
    lock: o.lock ?? true,
    keep: !!o.keep,
    profile: !!o.profile,
    s3,
    log,
    work,
    runId,
  };

  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const build = compileEmulators(log);
  ctx.build = build;
  ctx.cli = freezeDist(work);

  const result = {
    started: new Date().toISOString(),
    files,
    changes: ctx.changes,
    lock: ctx.lock,
    s3: s3.endpoint,
    work,
    runs: [],
    rows: [],
    targets: [],
    notes: [],
  };
  result.env = {
    node: process.version,
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    loadavgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
  if (!TIME)
    result.notes.push(
      '/usr/bin/time is missing: peak RSS was sampled from /proc/<pid>/status VmHWM every 20 ms',
    );
  for (const provider of providers) {
    log(
      `[cloud: ${provider}] ${files.toLocaleString('en-US')} files (load average ${loadavg()[0].toFixed(2)})`,
    );
    try {
      const r = await scenario(provider, ctx);
      result.runs.push(r);
      addRows(result, r);
    } catch (e) {
      log(`[cloud: ${provider}] failed: ${e.message}`);
      result.runs.push({ provider, error: e.message });
    }
  }
  result.loadavgAtEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  if (!ctx.keep) rmSync(join(work, 'dist'), { recursive: true, force: true });
  return result;
}

function s3FromEnv() {
  const endpoint = process.env.S3_ENDPOINT;
  if (!endpoint)
    throw new Error(
      'S3_ENDPOINT is not set: point it at an S3 server with Object Lock (for the development server: `source /tmp/ceph-s3/s3.env`)',
    );
  return {
    endpoint,
    accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'testsecret',
  };
}

// ---------------------------------------------------------------------------------------------
// Setup: the emulators compiled, the CLI copied

/** Compiles test/emulators/{dropbox,graph}.ts when a source is newer than its output. */
function compileEmulators(log) {
  const out = join(ROOT, 'bench', '.work', 'cloud-build');
  const pairs = [
    ['test/emulators/dropbox.ts', 'test/emulators/dropbox.js'],
    ['test/emulators/dropbox-tree.ts', 'test/emulators/dropbox-tree.js'],
    ['test/emulators/graph.ts', 'test/emulators/graph.js'],
    ['src/providers/dropbox/content-hash.ts', 'src/providers/dropbox/content-hash.js'],
  ];
  const stale = pairs.some(
    ([src, js]) =>
      !existsSync(join(out, js)) || statSync(join(ROOT, src)).mtimeMs > statSync(join(out, js)).mtimeMs,
  );
  if (stale) {
    log('compiling the emulators (bench/tsconfig.cloud.json → bench/.work/cloud-build)');
    execFileSync(
      process.execPath,
      [
        join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
        '-p',
        join(ROOT, 'bench', 'tsconfig.cloud.json'),
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
  }
  return out;
}

/** A copy of dist/ taken now: others may rebuild dist/ while the benchmark runs. */
function freezeDist(work) {
  const main = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} does not exist: run \`npm run build\` first`);
  cpSync(join(ROOT, 'dist'), join(work, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(work, 'package.json'));
  return join(work, 'dist', 'cli', 'main.js');
}

// ---------------------------------------------------------------------------------------------
// The emulator in its own process

async function startEmulator(provider, build) {
  const child = fork(join(ROOT, 'bench', 'cloud', 'emulator-server.mjs'), [provider, build], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: ['--max-old-space-size=4096'],
  });
  const pending = new Map();
  let next = 0;
  const ready = new Promise((res, rej) => {
    child.once('error', rej);
    child.once('exit', (code) =>
      rej(new Error(`the ${provider} emulator exited with ${code} before it was ready`)),
    );
    child.on('message', (/** @type {any} */ m) => {
      if (m.ready) return res(m);
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.ok) p.res(m.result);
      else p.rej(new Error(`emulator: ${m.error}`));
    });
  });
  const info = await ready;
  child.removeAllListeners('exit');
  child.on('exit', () => {
    for (const p of pending.values()) p.rej(new Error(`the ${provider} emulator exited`));
    pending.clear();
  });
  return {
    url: info.url,
    child,
    call: (cmd, args) =>
      new Promise((res, rej) => {
        const id = ++next;
        pending.set(id, { res, rej });
        child.send({ id, cmd, args });
      }),
    async stop() {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      try {
        child.send({ id: 0, cmd: 'close' });
      } catch {
        child.kill();
      }
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Running the CLI: wall time, CPU seconds and peak RSS (GNU time's %U+%S and %M; without it, no CPU
// and VmHWM polled), exit code

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

function measure(ctx, name, args, { cwd, env, profileDir }) {
  const base = join(ctx.work, 'logs', name);
  mkdirSync(dirname(base), { recursive: true });
  const outFile = `${base}.out`;
  const logFile = `${base}.log`;
  const timeFile = `${base}.time`;
  const nodeArgs = profileDir
    ? [
        '--expose-gc',
        '--cpu-prof',
        `--cpu-prof-dir=${profileDir}`,
        `--cpu-prof-name=${name}.cpuprofile`,
        '--import',
        pathToFileURL(join(ROOT, 'bench', 'cloud', 'memwatch.mjs')).href,
      ]
    : [];
  const cmd = [process.execPath, ...nodeArgs, ctx.cli, ...args];
  const out = openSync(outFile, 'w');
  const errFd = openSync(logFile, 'w');
  writeSync(errFd, `$ syncguard ${args.join(' ')}\n`);
  const argv = TIME ? [TIME, ['-f', '%e %M %U %S', '-o', timeFile, ...cmd]] : [cmd[0], cmd.slice(1)];
  return new Promise((res) => {
    const t0 = performance.now();
    const child = spawn(argv[0], argv[1], { cwd, env, stdio: ['ignore', out, errFd] });
    let hwm = 0;
    const poll = TIME
      ? undefined
      : setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
            if (m) hwm = Math.max(hwm, Number(m[1]) * 1024);
          } catch {
            /* gone */
          }
        }, 20);
    const done = (code, error) => {
      const wall = (performance.now() - t0) / 1000;
      if (poll) clearInterval(poll);
      closeSync(out);
      closeSync(errFd);
      let rssBytes = hwm;
      let cpu;
      if (TIME && existsSync(timeFile)) {
        const m = /([\d.]+) (\d+) ([\d.]+) ([\d.]+)\s*$/.exec(readFileSync(timeFile, 'utf8'));
        if (m) {
          rssBytes = Number(m[2]) * 1024;
          cpu = Number(m[3]) + Number(m[4]);
        }
      }
      res({ name, wall, cpu, rssBytes, code, error, stdout: readFileSync(outFile, 'utf8'), logFile });
    };
    child.on('error', (e) => done(-1, e.message));
    child.on('exit', (code, signal) => done(code ?? (signal ? 128 : -1)));
  });
}

function failure(r, what) {
  const tail = readFileSync(r.logFile, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('memwatch'))
    .slice(-6)
    .join('\n    ');
  // With --json the CLI says why on stdout.
  let said = '';
  try {
    said = JSON.parse(r.stdout)
      .map((x) => x.error?.message)
      .filter(Boolean)
      .join('; ');
  } catch {
    /* not JSON */
  }
  return new Error(
    `${what} exited ${r.code}${r.error ? ` (${r.error})` : ''}${said ? `: ${said}` : ''}; log ${r.logFile}:\n    ${tail}`,
  );
}

/** The peaks of what bench/cloud/memwatch.mjs wrote to a log (MB), under --profile. */
function memoryPeaks(logFile) {
  const peaks = {};
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.startsWith('memwatch ')) continue;
    for (const [, k, v] of line.matchAll(/(\w+)=([\d.]+)(?!s)/g))
      if (k !== 't') peaks[k] = Math.max(peaks[k] ?? 0, Number(v));
  }
  return Object.keys(peaks).length ? peaks : undefined;
}

// ---------------------------------------------------------------------------------------------
// One provider: fill, first snapshot, night, second snapshot

async function scenario(provider, ctx) {
  const dir = join(ctx.work, provider);
  mkdirSync(dir, { recursive: true });
  const bucket = `sgcloud-${ctx.runId}-${provider}`;
  const emu = await startEmulator(provider, ctx.build);
  const env = {
    PATH: process.env.PATH,
    HOME: dir,
    TZ: 'UTC',
    LANG: 'C.UTF-8',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    AWS_ACCESS_KEY_ID: ctx.s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: ctx.s3.secretAccessKey,
    ...(ctx.nodeOptions ? { NODE_OPTIONS: ctx.nodeOptions } : {}),
  };
  let created = false;
  try {
    const t0 = performance.now();
    const tree = await emu.call('fill', { files: ctx.files, seed: `cloud-${provider}` });
    ctx.log(
      `  emulator filled in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${tree.files.toLocaleString('en-US')} files, ${(tree.bytes / MiB).toFixed(1)} MiB`,
    );
    const account =
      provider === 'dropbox'
        ? ['    provider: dropbox', '    appKey: bench-app-key', '    refreshToken: ${DROPBOX_REFRESH_TOKEN}']
        : [
            '    provider: onedrive',
            '    clientId: 11111111-2222-3333-4444-555555555555',
            '    credentials: ./onedrive-token-cache.json',
            `    authority: ${emu.url}`,
          ];
    if (provider === 'dropbox')
      /** @type {Record<string, string>} */ (env).DROPBOX_REFRESH_TOKEN = await emu.call('token');
    const config = join(dir, 'syncguard.yaml');
    writeFileSync(
      config,
      [
        'store:',
        '  type: s3',
        `  bucket: ${bucket}`,
        `  endpoint: ${ctx.s3.endpoint}`,
        '  forcePathStyle: true',
        '  region: us-east-1',
        '  accessKeyId: ${AWS_ACCESS_KEY_ID}',
        '  secretAccessKey: ${AWS_SECRET_ACCESS_KEY}',
        `  objectLock: ${ctx.lock ? '{ mode: GOVERNANCE, days: 1 }' : 'off'}`,
        'stateDir: ./state',
        'accounts:',
        '  - name: bench',
        ...account,
        `    endpoint: ${emu.url}`,
        '',
      ].join('\n'),
    );
    const cli = (name, args, profile = false) =>
      measure(ctx, `${provider}-${name}`, ['-c', config, ...args], {
        cwd: dir,
        env,
        profileDir: profile && ctx.profile ? join(ctx.work, 'profiles') : undefined,
      });

    const init = await cli('init', ['init']);
    if (init.code !== 0) throw failure(init, 'syncguard init');
    created = true;
    if (provider === 'onedrive') {
      // The device code flow against the emulator, which approves the code at the second poll.
      const auth = await cli('auth', ['auth', 'onedrive', '--account', 'bench']);
      if (auth.code !== 0) throw failure(auth, 'syncguard auth onedrive');
    }

    await emu.call('reset');
    const first = await cli('first', ['--json', 'snapshot', 'bench'], true);
    if (first.code !== 0) throw failure(first, 'the first snapshot');
    const firstCalls = await emu.call('counts');
    const [firstRun] = JSON.parse(first.stdout);
    ctx.log(
      `  first snapshot: ${first.wall.toFixed(1)} s, ${(first.rssBytes / MiB).toFixed(0)} MiB peak RSS`,
    );

    const night = await emu.call('night', { changes: ctx.changes, rename: provider === 'onedrive' });
    await emu.call('reset');
    const second = await cli('second', ['--json', 'snapshot', 'bench'], true);
    if (second.code !== 0) throw failure(second, 'the second snapshot');
    const secondCalls = await emu.call('counts');
    const [secondRun] = JSON.parse(second.stdout);
    ctx.log(
      `  second snapshot: ${second.wall.toFixed(2)} s, ${(second.rssBytes / MiB).toFixed(0)} MiB peak RSS`,
    );

    const hot = (name) => {
      const file = join(ctx.work, 'profiles', `${provider}-${name}.cpuprofile`);
      return ctx.profile && existsSync(file) ? hottestOf(file, 10) : undefined;
    };
    return {
      provider,
      bucket,
      tree,
      night,
      first: {
        wall: first.wall,
        cpu: first.cpu,
        rssBytes: first.rssBytes,
        calls: firstCalls.calls,
        downloadedBytes: firstCalls.downloadedBytes,
        run: summary(firstRun),
        profile: hot('first'),
        memory: ctx.profile ? memoryPeaks(first.logFile) : undefined,
      },
      second: {
        wall: second.wall,
        cpu: second.cpu,
        rssBytes: second.rssBytes,
        calls: secondCalls.calls,
        downloadedBytes: secondCalls.downloadedBytes,
        run: summary(secondRun),
        profile: hot('second'),
        memory: ctx.profile ? memoryPeaks(second.logFile) : undefined,
      },
    };
  } finally {
    await emu.stop();
    if (created && !ctx.keep)
      await dropBucket(ctx.s3, bucket).catch((e) =>
        ctx.log(`  could not remove the bucket ${bucket}: ${e.message}`),
      );
    if (!ctx.keep) rmSync(dir, { recursive: true, force: true });
  }
}

function summary(run) {
  if (!run?.ok) throw new Error(`the snapshot failed: ${run?.error?.message ?? 'no result'}`);
  return {
    id: run.id,
    files: run.files,
    dirs: run.dirs,
    bytes: run.bytes,
    filesRead: run.filesRead,
    bytesAdded: run.bytesAdded,
    failed: run.failed.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Rows and targets

const LISTING = {
  dropbox: ['files/list_folder', 'files/list_folder/continue', 'files/get_metadata'],
  onedrive: ['delta', 'children', 'item'],
};
const DOWNLOADS = { dropbox: ['files/download'], onedrive: ['download'] };
const sum = (calls, routes) => routes.reduce((n, r) => n + (calls[r] ?? 0), 0);
const total = (calls) => Object.values(calls).reduce((n, v) => n + v, 0);

function addRows(result, r) {
  const p = r.provider;
  for (const which of ['first', 'second']) {
    const s = r[which];
    result.rows.push({
      scenario: `${p}: ${which} snapshot`,
      files: s.run.files,
      filesRead: s.run.filesRead,
      wall: s.wall,
      cpu: s.cpu,
      rssBytes: s.rssBytes,
      calls: total(s.calls),
      listing: sum(s.calls, LISTING[p]),
      downloads: sum(s.calls, DOWNLOADS[p]),
      other: total(s.calls) - sum(s.calls, LISTING[p]) - sum(s.calls, DOWNLOADS[p]),
      downloadedBytes: s.downloadedBytes,
      byRoute: s.calls,
    });
  }
  const target = (what, met, value) => result.targets.push({ provider: p, what, met, value });
  const ratio = r.second.wall / r.first.wall;
  const listing2 = sum(r.second.calls, LISTING[p]);
  const downloads2 = sum(r.second.calls, DOWNLOADS[p]);
  if (p === 'dropbox') {
    target('second snapshot: at most 10 listing calls', listing2 <= 10, `${listing2} listing calls`);
  }
  target(
    `second snapshot: one download per changed file (${r.night.changed})`,
    downloads2 === r.night.changed && r.second.run.filesRead === r.night.changed,
    `${downloads2} downloads, ${r.second.run.filesRead} files read`,
  );
  if (p === 'onedrive') {
    target(
      `second snapshot: downloads only the changed files' ${r.night.changedBytes.toLocaleString('en-US')} bytes (renamed folder: ${r.night.renamed.files.toLocaleString('en-US')} files, none read)`,
      r.second.downloadedBytes === r.night.changedBytes,
      `${r.second.downloadedBytes.toLocaleString('en-US')} bytes`,
    );
  }
  const cpuRatio =
    r.first.cpu && r.second.cpu !== undefined
      ? `; CPU ${((r.second.cpu / r.first.cpu) * 100).toFixed(2)}% (${r.second.cpu.toFixed(2)} s of ${r.first.cpu.toFixed(1)} s)`
      : '';
  target(
    "second snapshot under 5% of the first's wall time",
    ratio < 0.05,
    `${(ratio * 100).toFixed(2)}% (${r.second.wall.toFixed(2)} s of ${r.first.wall.toFixed(1)} s)${cpuRatio}`,
  );
  target(
    'first snapshot peak RSS under 300 MB',
    r.first.rssBytes < 300 * MB,
    `${(r.first.rssBytes / MB).toFixed(0)} MB`,
  );
  const expectedFiles = r.tree.files + Math.floor(r.night.changed * 0.4);
  target(
    'second snapshot holds every file, none failed',
    r.second.run.files === expectedFiles && r.second.run.failed === 0 && r.first.run.failed === 0,
    `${r.second.run.files.toLocaleString('en-US')} files (expected ${expectedFiles.toLocaleString('en-US')}), ${r.second.run.failed} failed`,
  );
}

/** The results as text: one table of runs, then the targets. */
export function formatTable(result) {
  const n = (v) => v.toLocaleString('en-US');
  const secs = (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1));
  const head = [
    'scenario',
    'files',
    'read',
    'wall s',
    'CPU s',
    'peak RSS',
    'API calls',
    'listing',
    'downloads',
    'other',
    'downloaded',
  ];
  const body = result.rows.map((r) => [
    r.scenario,
    n(r.files),
    n(r.filesRead),
    secs(r.wall),
    r.cpu === undefined ? '-' : secs(r.cpu),
    `${(r.rssBytes / MB).toFixed(0)} MB`,
    n(r.calls),
    n(r.listing),
    n(r.downloads),
    n(r.other),
    r.downloadedBytes >= MiB ? `${(r.downloadedBytes / MiB).toFixed(1)} MiB` : `${n(r.downloadedBytes)} B`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line), ''];
  for (const r of result.rows)
    out.push(
      `${r.scenario}: ${Object.entries(r.byRoute)
        .sort()
        .map(([k, v]) => `${k} ${n(v)}`)
        .join(', ')}`,
    );
  for (const run of result.runs.filter((x) => !x.error)) {
    for (const which of ['first', 'second']) {
      const s = run[which];
      if (s.memory)
        out.push(
          `${run.provider}: ${which} snapshot, memory peaks (MB, sampled each second): ${Object.entries(
            s.memory,
          )
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}`,
        );
      if (s.profile) {
        out.push(
          `${run.provider}: ${which} snapshot, CPU ${s.profile.seconds} s by area: ${s.profile.areas
            .slice(0, 8)
            .map((a) => `${a.what} ${(a.share * 100).toFixed(0)}%`)
            .join(', ')}`,
        );
        out.push(
          `  hottest: ${s.profile.functions
            .slice(0, 6)
            .map((f) => `${f.what} ${(f.share * 100).toFixed(0)}%`)
            .join('; ')}`,
        );
      }
    }
  }
  out.push('');
  for (const t of result.targets)
    out.push(`${t.met ? 'met   ' : 'MISSED'}  ${t.provider}: ${t.what}: ${t.value}`);
  for (const run of result.runs.filter((x) => x.error)) out.push(`FAILED  ${run.provider}: ${run.error}`);
  for (const note of result.notes) out.push(`note: ${note}`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Buckets

async function dropBucket(s3, name) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const sdk = await import('@aws-sdk/client-s3');
  const c = new sdk.S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  try {
    let KeyMarker;
    let VersionIdMarker;
    for (;;) {
      const page = await c.send(
        new sdk.ListObjectVersionsCommand({ Bucket: name, KeyMarker, VersionIdMarker }),
      );
      const versions = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])];
      for (let i = 0; i < versions.length; i += 16) {
        // GOVERNANCE locks give way to the bucket's owner when asked explicitly.
        await Promise.all(
          versions.slice(i, i + 16).map((v) =>
            c.send(
              new sdk.DeleteObjectCommand({
                Bucket: name,
                Key: v.Key,
                VersionId: v.VersionId,
                BypassGovernanceRetention: true,
              }),
            ),
          ),
        );
      }
      if (!page.IsTruncated) break;
      KeyMarker = page.NextKeyMarker;
      VersionIdMarker = page.NextVersionIdMarker;
    }
    const ups = await c.send(new sdk.ListMultipartUploadsCommand({ Bucket: name }));
    for (const u of ups.Uploads ?? [])
      await c.send(new sdk.AbortMultipartUploadCommand({ Bucket: name, Key: u.Key, UploadId: u.UploadId }));
    await c.send(new sdk.DeleteBucketCommand({ Bucket: name }));
  } finally {
    c.destroy();
  }
}

/**
 * For bench/run.mjs: runs the scenarios (`quick`: 10,000 files), writes bench/.work/cloud-results.json
 * and returns the report as text. Never throws for a failed run (the text says FAILED).
 * @param {{ quick?: boolean, keep?: boolean, profile?: boolean, s3?: S3Access }} o
 */
export async function benchCloud(o = {}) {
  try {
    const result = await runCloudBench({
      files: o.quick ? 10_000 : 100_000,
      keep: o.keep,
      profile: o.profile,
      s3: o.s3 && {
        endpoint: o.s3.endpoint,
        accessKeyId: o.s3.accessKeyId,
        secretAccessKey: o.s3.secretAccessKey,
      },
    });
    const out = writeResults(result);
    return `${header(result)}\n\n${formatTable(result)}\n\nresults: ${out}`;
  } catch (e) {
    return `FAILED: ${e.message}`;
  }
}

function header(result) {
  return [
    `syncguard cloud benchmark, ${result.started}, ${result.files.toLocaleString('en-US')} files, store ${result.s3}${result.lock ? ' (Object Lock GOVERNANCE, 1 day)' : ' (no Object Lock)'}`,
    `node ${result.env.node}, ${result.env.cpus}, ${result.env.memory}; load average at start ${result.env.loadavgAtStart.join(' ')}, at end ${result.loadavgAtEnd.join(' ')}`,
  ].join('\n');
}

/** The results in the run's folder, and as the latest ones in bench/.work/cloud-results.json. */
function writeResults(result) {
  const text = JSON.stringify(result, null, 2);
  if (existsSync(result.work)) writeFileSync(join(result.work, 'results.json'), text);
  const out = join(ROOT, 'bench', '.work', 'cloud-results.json');
  writeFileSync(out, text);
  return out;
}

// ---------------------------------------------------------------------------------------------
// As a script

async function main() {
  let opts;
  try {
    opts = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        files: { type: 'string' },
        only: { type: 'string' },
        'no-lock': { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
        'node-options': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (e) {
    console.error(`bench/cloud.mjs: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const files = opts.files !== undefined ? Number(opts.files) : opts.quick ? 10_000 : 100_000;
  let result;
  try {
    result = await runCloudBench({
      files,
      providers: opts.only
        ?.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      lock: !opts['no-lock'],
      keep: opts.keep,
      profile: opts.profile,
      nodeOptions: opts['node-options'],
    });
  } catch (e) {
    console.error(`bench/cloud.mjs: ${e.message}`);
    process.exit(2);
  }
  console.log(`\n${header(result)}\n`);
  console.log(formatTable(result));
  console.log(`\nresults: ${writeResults(result)}`);
  if (result.runs.some((r) => r.error)) process.exitCode = 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) await main();
