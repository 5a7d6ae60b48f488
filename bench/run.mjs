#!/usr/bin/env node
/**
 * The benchmark: syncguard side by side with `rclone copy` and `restic backup` (Debian's packages),
 * in the same run, against the same S3 server. See bench/README.md for what each number means.
 *
 *   npm run bench                          the whole benchmark (builds first)
 *   npm run bench -- --quick               a smaller tree, for a try
 *   npm run bench -- --only first,second   a subset (scenarios they need run too)
 *   node bench/run.mjs --help
 *
 * Everything it writes lives under bench/.work (or $BENCH_DIR): the generated trees, restores, logs,
 * configs, and results.json. Each tool gets buckets of its own, removed at the end.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hottest as hottestOf } from './cpu-profile.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORK = resolve(process.env.BENCH_DIR ?? join(ROOT, 'bench', '.work'));
const SEED = 'syncguard-bench-1';
const KiB = 1024,
  MiB = 1024 * KiB,
  GiB = 1024 * MiB,
  MB = 1e6;

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `usage: node bench/run.mjs [--quick] [--only a,b] [--tools a,b] [--all-tools] [--repeat N] [--own-s3] [--keep] [--profile]

  --quick       a smaller tree (1,000 small files, 256 MiB instead of 2 GiB, 20,000 instead of 200,000)
  --only LIST   scenarios to run, comma-separated; the ones they need run too:
                ${'first, second, changed, restore, big, many, history'}
  --tools LIST  the tools to run in every scenario, comma-separated: syncguard, rclone, restic
                (default: all three, and syncguard alone in "big" and "many")
  --all-tools   run rclone and restic in the "big" and "many" scenarios too (default: syncguard only;
                they hold memory targets for syncguard alone, and rclone's 200,000 PUTs take long)
  --repeat N    run "second" and "restore" N times, the tools taking turns, and report the median
                wall time (they take seconds, so the machine's load moves them most)
  --own-s3      start a server of the benchmark's own even when S3_ENDPOINT is set
  --keep        keep the buckets and the generated trees
  --profile     run syncguard's snapshots through bench/phases.mjs (the library call the CLI makes) under
                --cpu-prof: seconds per phase, store calls, hottest functions (bench/.work/profiles);
                its times include the profiler's overhead

Server: S3_ENDPOINT (+ AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) when set, else one started with
scripts/s3-server.sh on ports 7482/3312 (CEPH_DIR=$BENCH_CEPH_DIR or /tmp/syncguard-bench-s3,
objectstore $BENCH_CEPH_OBJECTSTORE or bluestore) and stopped at the end.`;

let opts;
try {
  opts = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      tools: { type: 'string' },
      'all-tools': { type: 'boolean', default: false },
      'own-s3': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      repeat: { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  }).values;
} catch (e) {
  console.error(`bench: ${e.message}\n\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}

const REPEAT = Number(opts.repeat);
if (!Number.isInteger(REPEAT) || REPEAT < 1 || REPEAT > 20) {
  console.error(`bench: --repeat takes a whole number from 1 to 20, got "${opts.repeat}"`);
  process.exit(2);
}

const SIZES = opts.quick
  ? {
      small: 1000,
      smallMin: 1 * KiB,
      smallMax: 60 * KiB,
      medium: 4,
      mediumMin: 1 * MiB,
      mediumMax: 8 * MiB,
      huge: 32 * MiB,
      changeSmall: 10,
      changeMedium: 1,
      bigFile: 256 * MiB,
      many: 20_000,
      manyMin: 100,
      manyMax: 2 * KiB,
    }
  : {
      small: 10_000,
      smallMin: 1 * KiB,
      smallMax: 60 * KiB,
      medium: 40,
      mediumMin: 1 * MiB,
      mediumMax: 8 * MiB,
      huge: 256 * MiB,
      changeSmall: 100,
      changeMedium: 1,
      bigFile: 2 * GiB,
      many: 200_000,
      manyMin: 100,
      manyMax: 2 * KiB,
    };

/** Each scenario: what it needs to have run before it, which tools take part, and the function. */
const SCENARIOS = {
  first: { needs: [], run: scenarioFirst },
  second: { needs: ['first'], run: scenarioSecond },
  changed: { needs: ['first'], run: scenarioChanged },
  restore: { needs: ['first'], run: scenarioRestore },
  big: { needs: [], run: scenarioBig },
  many: { needs: [], run: scenarioMany },
  history: { needs: [], run: scenarioHistory },
};

const chosenTools = (opts.tools ?? 'syncguard,rclone,restic')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
{
  const unknown = chosenTools.filter((t) => !['syncguard', 'rclone', 'restic'].includes(t));
  if (unknown.length > 0 || chosenTools.length === 0) {
    console.error(
      `bench: unknown tool(s) ${unknown.join(', ') || '(none given)'}; the tools are: syncguard, rclone, restic`,
    );
    process.exit(2);
  }
}

function chosenScenarios() {
  const all = Object.keys(SCENARIOS);
  if (!opts.only) return all;
  const asked = opts.only
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = asked.filter((s) => !SCENARIOS[s]);
  if (unknown.length > 0) {
    console.error(`bench: unknown scenario(s) ${unknown.join(', ')}; the scenarios are: ${all.join(', ')}`);
    process.exit(2);
  }
  const want = new Set();
  const add = (s) => {
    for (const n of SCENARIOS[s].needs) add(n);
    want.add(s);
  };
  asked.forEach(add);
  return all.filter((s) => want.has(s));
}

// ---------------------------------------------------------------------------------------------
// Deterministic content: sizes and names from a seeded PRNG, bytes from AES-256-CTR keyed by the
// file's label (incompressible, reproducible, ~1 GB/s).

function prng(seed) {
  let a = createHash('sha256').update(seed).digest().readUInt32LE(0);
  return {
    next() {
      // mulberry32
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
    int(min, max) {
      return min + Math.floor(this.next() * (max - min + 1));
    },
  };
}

const ZERO = Buffer.alloc(16 * MiB);
function keystream(label) {
  const key = createHash('sha256').update(`${SEED}:${label}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(n <= ZERO.length ? ZERO.subarray(0, n) : Buffer.alloc(n));
}

/** Writes a file of `size` deterministic bytes; returns its SHA-256. */
function writeContent(file, size, label) {
  mkdirSync(dirname(file), { recursive: true });
  const next = keystream(label);
  const hash = createHash('sha256');
  const fd = openSync(file, 'w');
  try {
    for (let left = size; left > 0;) {
      const chunk = next(Math.min(left, ZERO.length));
      hash.update(chunk);
      writeSync(fd, chunk);
      left -= chunk.length;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** The main tree: small files in nested folders, medium files, one huge file. Returns path → { size, sha256 }. */
function generateTree(dir) {
  rmSync(dir, { recursive: true, force: true });
  const rng = prng(`${SEED}:tree`);
  const files = new Map();
  for (let i = 0; i < SIZES.small; i++) {
    const depth = rng.int(1, 3);
    const parts = [`dir-${String(rng.int(0, 19)).padStart(2, '0')}`];
    if (depth >= 2) parts.push(`sub-${rng.int(0, 9)}`);
    if (depth >= 3) parts.push(`leaf-${rng.int(0, 4)}`);
    const path = `${parts.join('/')}/file-${String(i).padStart(5, '0')}.dat`;
    files.set(path, { size: rng.int(SIZES.smallMin, SIZES.smallMax), label: `${path}:0` });
  }
  for (let i = 0; i < SIZES.medium; i++) {
    const path = `media/clip-${String(i).padStart(2, '0')}.bin`;
    files.set(path, { size: rng.int(SIZES.mediumMin, SIZES.mediumMax), label: `${path}:0` });
  }
  files.set('archive/disk-image.bin', { size: SIZES.huge, label: 'archive/disk-image.bin:0' });
  const expected = new Map();
  for (const [path, f] of files)
    expected.set(path, { size: f.size, sha256: writeContent(join(dir, path), f.size, f.label) });
  return expected;
}

/** The 1% change: rewrite `changeSmall` small files and `changeMedium` medium ones with new content
 *  (new sizes from the same ranges). Returns the bytes rewritten. */
function changeTree(dir, expected) {
  const rng = prng(`${SEED}:change`);
  const small = [...expected.keys()].filter((p) => p.startsWith('dir-'));
  const medium = [...expected.keys()].filter((p) => p.startsWith('media/'));
  const pick = (list, n) => {
    const chosen = new Set();
    while (chosen.size < Math.min(n, list.length)) chosen.add(list[rng.int(0, list.length - 1)]);
    return [...chosen];
  };
  let bytes = 0;
  const changed = [
    ...pick(small, SIZES.changeSmall).map((p) => [p, rng.int(SIZES.smallMin, SIZES.smallMax)]),
    ...pick(medium, SIZES.changeMedium).map((p) => [p, rng.int(SIZES.mediumMin, SIZES.mediumMax)]),
  ];
  for (const [path, size] of changed) {
    expected.set(path, { size, sha256: writeContent(join(dir, path), size, `${path}:1`) });
    bytes += size;
  }
  return { files: changed.length, bytes };
}

/** A tree that is never changed is generated once and kept (a stamp says with which parameters). */
function cachedTree(dir, spec, generate) {
  const stamp = `${dir}.stamp.json`;
  const want = JSON.stringify(spec);
  if (existsSync(stamp)) {
    const got = JSON.parse(readFileSync(stamp, 'utf8'));
    // Kept only when every file is still there with its size (the folder may have been cleaned meanwhile).
    const intact = (path, f) => {
      try {
        return statSync(join(dir, path)).size === f.size;
      } catch {
        return false;
      }
    };
    if (JSON.stringify(got.spec) === want && got.expected.every(([path, f]) => intact(path, f)))
      return new Map(got.expected);
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(stamp, { force: true });
  const expected = generate();
  writeFileSync(stamp, JSON.stringify({ spec, expected: [...expected] }));
  return expected;
}

/** What a restore produced, against what it should hold. */
async function verifyTree(dir, expected) {
  const found = new Map();
  const walk = (rel) => {
    for (const d of readdirSync(rel ? join(dir, rel) : dir, { withFileTypes: true })) {
      const p = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) walk(p);
      else found.set(p, null);
    }
  };
  walk('');
  const missing = [...expected.keys()].filter((p) => !found.has(p));
  const extra = [...found.keys()].filter((p) => !expected.has(p));
  const wrong = [];
  const todo = [...found.keys()].filter((p) => expected.has(p));
  await forEachLimit(todo, 4, async (p) => {
    const sha = await hashFile(join(dir, p));
    if (sha !== expected.get(p).sha256) wrong.push(p);
  });
  return {
    ok: missing.length === 0 && extra.length === 0 && wrong.length === 0,
    files: found.size,
    missing,
    extra,
    wrong,
  };
}

function hashFile(file) {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(file, { highWaterMark: MiB })
      .on('data', (c) => h.update(c))
      .on('error', rej)
      .on('end', () => res(h.digest('hex')));
  });
}

async function forEachLimit(items, limit, fn) {
  let i = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Running a tool: wall time (measured here), peak RSS (GNU time's %M, else polling VmHWM), exit code.

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
let runCounter = 0;

/** Runs one command; resolves to { wall, rssBytes, cpu (user+sys seconds, with GNU time), code,
 *  outFile (stdout), logFile (stderr) }. Never rejects
 *  for a failing command: the caller decides. */
function measure(name, cmd, args, { cwd = WORK, env = process.env } = {}) {
  const n = String(++runCounter).padStart(2, '0');
  const base = join(WORK, 'logs', `${n}-${name}`);
  mkdirSync(dirname(base), { recursive: true });
  const outFile = `${base}.out`,
    logFile = `${base}.log`,
    timeFile = `${base}.time`;
  const out = openSync(outFile, 'w'),
    log = openSync(logFile, 'w');
  writeSync(log, `$ ${[cmd, ...args].join(' ')}\n`);
  const argv = TIME ? [TIME, ['-f', '%e %M %U %S', '-o', timeFile, cmd, ...args]] : [cmd, args];
  return new Promise((res) => {
    const t0 = performance.now();
    const child = spawn(argv[0], argv[1], { cwd, env, stdio: ['ignore', out, log] });
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
    child.on('error', (e) => {
      if (poll) clearInterval(poll);
      closeSync(out);
      closeSync(log);
      res({ name, wall: 0, rssBytes: 0, code: -1, error: e.message, outFile, logFile });
    });
    child.on('exit', (code, signal) => {
      const wall = (performance.now() - t0) / 1000;
      if (poll) clearInterval(poll);
      closeSync(out);
      closeSync(log);
      let rssBytes = hwm,
        cpu;
      if (TIME) {
        const lines = readFileSync(timeFile, 'utf8').trim().split('\n');
        const m = /^([\d.]+) (\d+) ([\d.]+) ([\d.]+)$/.exec(lines[lines.length - 1] ?? '');
        if (m) {
          rssBytes = Number(m[2]) * 1024;
          cpu = Number(m[3]) + Number(m[4]);
        }
      }
      res({ name, wall, rssBytes, cpu, code: code ?? (signal ? 128 : -1), outFile, logFile });
    });
  });
}

function failure(r, what) {
  const tail = readFileSync(r.logFile, 'utf8').trim().split('\n').slice(-6).join('\n    ');
  return new Error(
    `${what} failed (exit ${r.code}${r.error ? `, ${r.error}` : ''}); log ${r.logFile}:\n    ${tail}`,
  );
}

// ---------------------------------------------------------------------------------------------
// The three tools

let S3; // { endpoint, accessKeyId, secretAccessKey, own, stop? }
const DIST = join(ROOT, 'bench', '.work', 'dist');
const buckets = []; // { name, locked }
const RUN_ID = randomBytes(3).toString('hex');

function bucketName(what) {
  const name = `sgbench-${RUN_ID}-${what}`;
  return name;
}

const syncguard = {
  name: 'syncguard',
  /** A config for one account over `tree` into its own bucket (Object Lock, GOVERNANCE, 1 day, or off). */
  async setup(tag, tree, { lock = true } = {}) {
    const bucket = bucketName(`sg-${tag}`);
    const config = join(WORK, 'config', `${tag}.yaml`);
    mkdirSync(dirname(config), { recursive: true });
    // The keys stay in the environment: the file names the variables, as users are told to.
    writeFileSync(
      config,
      [
        'store:',
        '  type: s3',
        `  bucket: ${bucket}`,
        '  endpoint: ${SGBENCH_S3_ENDPOINT}',
        '  forcePathStyle: true',
        '  accessKeyId: ${SGBENCH_S3_KEY_ID}',
        '  secretAccessKey: ${SGBENCH_S3_SECRET}',
        `  objectLock: ${lock ? '{ mode: GOVERNANCE, days: 1 }' : 'off'}`,
        `stateDir: ${JSON.stringify(join(WORK, 'state'))}`,
        'accounts:',
        '  - name: bench',
        '    provider: local',
        `    path: ${JSON.stringify(tree)}`,
        '',
      ].join('\n'),
    );
    buckets.push({ name: bucket, locked: lock });
    const r = await this.cli(`${tag}-syncguard-init`, config, ['init']);
    if (r.code !== 0) throw failure(r, 'syncguard init');
    return { config, bucket };
  },
  env() {
    return {
      ...process.env,
      SGBENCH_S3_ENDPOINT: S3.endpoint,
      SGBENCH_S3_KEY_ID: S3.accessKeyId,
      SGBENCH_S3_SECRET: S3.secretAccessKey,
    };
  },
  cli(name, config, args, { profile = false } = {}) {
    const node = profile
      ? ['--cpu-prof', `--cpu-prof-dir=${join(WORK, 'profiles')}`, `--cpu-prof-name=${name}.cpuprofile`]
      : [];
    return measure(
      name,
      process.execPath,
      [...node, join(DIST, 'cli', 'main.js'), '-c', config, '--json', ...args],
      { env: this.env() },
    );
  },
  async backup(name, setup) {
    let r, run;
    if (opts.profile) {
      r = await profiledBackup(name, setup);
      run = r.run;
    } else {
      r = await this.cli(name, setup.config, ['snapshot']);
      if (r.code !== 0 && r.code !== 3) throw failure(r, 'syncguard snapshot');
      run = JSON.parse(readFileSync(r.outFile, 'utf8'))[0];
      if (!run?.ok) throw failure(r, 'syncguard snapshot');
    }
    setup.last = run.id;
    return { ...r, bytesSent: run.bytesAdded, detail: `${run.files} files, read ${run.filesRead}` };
  },
  async restore(name, setup, target) {
    const r = await this.cli(name, setup.config, ['restore', 'bench', '--at', setup.last, '--to', target], {
      profile: opts.profile,
    });
    if (r.code !== 0) throw failure(r, 'syncguard restore');
    const prof = join(WORK, 'profiles', `${name}.cpuprofile`);
    if (opts.profile && existsSync(prof)) r.hot = hottestOf(prof, 12);
    return r;
  },
};

const rclone = {
  name: 'rclone',
  env() {
    const env = { ...process.env };
    // Debian's rclone 1.60 fails on AWS_CA_BUNDLE with an http endpoint ("LoadCustomCABundleError").
    delete env.AWS_CA_BUNDLE;
    const conf = join(WORK, 'rclone.conf');
    if (!existsSync(conf)) writeFileSync(conf, '');
    return {
      ...env,
      RCLONE_CONFIG: conf,
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Ceph',
      RCLONE_CONFIG_BENCH_ENDPOINT: S3.endpoint,
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: S3.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: S3.secretAccessKey,
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    };
  },
  async setup(tag, tree) {
    const bucket = bucketName(`rclone-${tag}`);
    buckets.push({ name: bucket, locked: false });
    return { bucket, tree };
  },
  async backup(name, setup) {
    // The final stats come as one JSON log line (--stats 1h: only the one at the end).
    const r = await measure(
      name,
      'rclone',
      [
        'copy',
        setup.tree,
        `bench:${setup.bucket}`,
        '--use-json-log',
        '--stats-log-level',
        'NOTICE',
        '--stats',
        '1h',
      ],
      { env: this.env() },
    );
    if (r.code !== 0) throw failure(r, 'rclone copy');
    const stats = lastJson(r.logFile, (j) => j.stats)?.stats;
    return {
      ...r,
      bytesSent: stats?.bytes,
      detail: stats ? `${stats.transfers} transferred, ${stats.checks} checked` : undefined,
    };
  },
  async restore(name, setup, target) {
    const r = await measure(
      name,
      'rclone',
      [
        'copy',
        `bench:${setup.bucket}`,
        target,
        '--use-json-log',
        '--stats-log-level',
        'NOTICE',
        '--stats',
        '1h',
      ],
      { env: this.env() },
    );
    if (r.code !== 0) throw failure(r, 'rclone copy (back)');
    return r;
  },
};

const restic = {
  name: 'restic',
  env() {
    return {
      ...process.env,
      AWS_ACCESS_KEY_ID: S3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3.secretAccessKey,
      RESTIC_PASSWORD: 'syncguard-bench',
      RESTIC_CACHE_DIR: join(WORK, 'restic-cache'),
    };
  },
  async setup(tag, tree) {
    const bucket = bucketName(`restic-${tag}`);
    buckets.push({ name: bucket, locked: false });
    const repo = `s3:${S3.endpoint.replace(/\/$/, '')}/${bucket}`;
    const r = await measure(`${tag}-restic-init`, 'restic', ['-r', repo, 'init'], { env: this.env() });
    if (r.code !== 0) throw failure(r, 'restic init');
    return { bucket, repo, tree };
  },
  async backup(name, setup) {
    // "." from inside the tree: the snapshot holds the files at its root, as the others do.
    const r = await measure(name, 'restic', ['-r', setup.repo, 'backup', '--json', '.'], {
      cwd: setup.tree,
      env: this.env(),
    });
    if (r.code !== 0 && r.code !== 3) throw failure(r, 'restic backup');
    const s = lastJson(r.outFile, (j) => j.message_type === 'summary');
    return {
      ...r,
      bytesSent: s?.data_added,
      detail: s
        ? `${s.files_new} new, ${s.files_changed} changed, ${s.files_unmodified} unmodified`
        : undefined,
    };
  },
  async restore(name, setup, target) {
    const r = await measure(name, 'restic', ['-r', setup.repo, 'restore', 'latest', '--target', target], {
      env: this.env(),
    });
    if (r.code !== 0) throw failure(r, 'restic restore');
    return r;
  },
};

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** The last line of a file that parses as JSON and satisfies `want`. */
function lastJson(file, want) {
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const j = JSON.parse(lines[i]);
      if (want(j)) return j;
    } catch {
      /* not JSON */
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Results

const results = []; // one per tool run: { scenario, tool, wall, rssBytes, bytesSent, detail, error }
const rows = []; // the table
const notes = [];

async function runTool(scenario, tool, fn, { push = true } = {}) {
  process.stderr.write(`  ${scenario}: ${tool.name}… `);
  try {
    const r = await fn();
    const rec = {
      scenario,
      tool: tool.name,
      wall: round(r.wall, 2),
      cpu: r.cpu,
      rssBytes: r.rssBytes,
      bytesSent: r.bytesSent,
      detail: r.detail,
      log: r.logFile,
    };
    if (r.phases) Object.assign(rec, { phases: r.phases, store: r.store, memoryMB: r.memoryMB });
    if (r.hot) rec.hot = r.hot;
    if (push) results.push(rec);
    process.stderr.write(
      `${r.wall.toFixed(1)} s${r.cpu !== undefined ? ` (CPU ${r.cpu.toFixed(1)} s)` : ''}, ${mb(r.rssBytes)} RSS${r.bytesSent !== undefined ? `, ${mib(r.bytesSent)} sent` : ''}\n`,
    );
    return rec;
  } catch (e) {
    const rec = { scenario, tool: tool.name, error: e.message };
    if (push) results.push(rec);
    process.stderr.write(`FAILED\n    ${e.message}\n`);
    return rec;
  }
}

/** Runs each tool `--repeat` times, the tools taking turns (so a change in the machine's load falls on
 *  all of them), and records one result per tool: the median wall and CPU time, the highest RSS, and
 *  every wall time. `fn(tool, i)` does run i. */
async function repeated(scenario, tools, fn) {
  const runs = new Map(tools.map((t) => [t.name, []]));
  for (let i = 0; i < REPEAT; i++) {
    for (const tool of tools) {
      if (runs.get(tool.name).some((r) => r.error)) continue;
      runs.get(tool.name).push(
        await runTool(REPEAT > 1 ? `${scenario} #${i + 1}` : scenario, tool, () => fn(tool, i), {
          push: false,
        }),
      );
    }
  }
  const merged = new Map();
  for (const [name, rs] of runs) {
    const failed = rs.find((r) => r.error);
    const rec = failed
      ? { ...failed, scenario }
      : {
          ...rs[0],
          scenario,
          wall: median(rs.map((r) => r.wall)),
          cpu: rs.every((r) => r.cpu !== undefined) ? round(median(rs.map((r) => r.cpu)), 2) : undefined,
          rssBytes: Math.max(...rs.map((r) => r.rssBytes)),
          ...(rs.length > 1 ? { walls: rs.map((r) => r.wall), logs: rs.map((r) => r.log) } : {}),
        };
    results.push(rec);
    merged.set(name, rec);
  }
  return merged;
}

function median(xs) {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** A row comparing the three tools on one number. `target`: { text, met(sg, rc, rs) }. */
function row(scenario, unit, values, target) {
  const [sg, rc, rs] = values;
  const ok = (v) => typeof v === 'number' && Number.isFinite(v);
  let met = '';
  if (target?.met)
    met = target.need.every((i) => ok(values[i])) ? (target.met(sg, rc, rs) ? 'yes' : 'NO') : '?';
  rows.push({
    scenario,
    unit,
    syncguard: sg,
    rclone: rc,
    restic: rs,
    vsRclone: ok(sg) && ok(rc) && rc > 0 ? sg / rc : undefined,
    vsRestic: ok(sg) && ok(rs) && rs > 0 ? sg / rs : undefined,
    target: target?.text ?? '',
    met,
  });
}

const round = (v, d) => Math.round(v * 10 ** d) / 10 ** d;
const mb = (b) => (typeof b === 'number' ? `${(b / MB).toFixed(0)} MB` : '-');
const mib = (b) => (typeof b === 'number' ? `${(b / MiB).toFixed(1)} MiB` : '-');
const get = (scenario, tool, key) => results.find((r) => r.scenario === scenario && r.tool === tool)?.[key];
const triple = (scenario, key) => ['syncguard', 'rclone', 'restic'].map((t) => get(scenario, t, key));

function fmt(unit, v) {
  if (typeof v !== 'number') return '-';
  if (unit === 's') return `${v.toFixed(1)} s`;
  if (unit === 'MB') return mb(v);
  if (unit === 'MiB') return mib(v);
  return String(v);
}

function printTable() {
  const head = [
    'scenario',
    'syncguard',
    'rclone',
    'restic',
    'ratio vs rclone',
    'ratio vs restic',
    'target',
    'met?',
  ];
  const body = rows.map((r) => [
    r.scenario,
    fmt(r.unit, r.syncguard),
    fmt(r.unit, r.rclone),
    fmt(r.unit, r.restic),
    r.vsRclone === undefined ? '-' : `${r.vsRclone.toFixed(2)}×`,
    r.vsRestic === undefined ? '-' : `${r.vsRestic.toFixed(2)}×`,
    r.target,
    r.met,
  ]);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((r) => [...r[i]].length)));
  const line = (r) =>
    `| ${r.map((c, i) => (i >= 1 && i <= 5 ? c.padStart(w[i]) : c.padEnd(w[i]))).join(' | ')} |`;
  console.log(line(head));
  console.log(
    `|${w.map((n, i) => (i >= 1 && i <= 5 ? '-'.repeat(n + 1) + ':' : '-'.repeat(n + 2))).join('|')}|`,
  );
  for (const r of body) console.log(line(r));
}

function printLines() {
  console.log('\nPeak RSS of every run:');
  for (const s of [...new Set(results.map((r) => r.scenario))]) {
    const parts = results
      .filter((r) => r.scenario === s)
      .map((r) => `${r.tool} ${r.error ? 'failed' : mb(r.rssBytes)}`);
    console.log(`  ${s.padEnd(18)} ${parts.join(', ')}`);
  }
  if (results.some((r) => r.cpu !== undefined)) {
    console.log('\nCPU seconds (user+sys) of every run (less sensitive to other load than wall time):');
    for (const s of [...new Set(results.map((r) => r.scenario))]) {
      const parts = results
        .filter((r) => r.scenario === s)
        .map((r) => `${r.tool} ${r.error || r.cpu === undefined ? '-' : `${r.cpu.toFixed(1)} s`}`);
      console.log(`  ${s.padEnd(18)} ${parts.join(', ')}`);
    }
  }
  console.log(
    '\nBytes sent (syncguard: bytesAdded of `snapshot --json`; rclone: its stats "bytes"; restic: "data_added"):',
  );
  for (const s of [...new Set(results.filter((r) => r.bytesSent !== undefined).map((r) => r.scenario))]) {
    const parts = results
      .filter((r) => r.scenario === s && !r.error)
      .map((r) => `${r.tool} ${mib(r.bytesSent)}${r.detail ? ` (${r.detail})` : ''}`);
    console.log(`  ${s.padEnd(18)} ${parts.join('; ')}`);
  }
  const profiled = results.filter((r) => r.phases || r.hot);
  if (profiled.length > 0) {
    console.log(
      '\nsyncguard under --profile (snapshots through bench/phases.mjs, restores through the CLI, with --cpu-prof; times include the profiler):',
    );
    for (const r of profiled) {
      if (!r.phases) console.log(`  ${r.scenario}:`);
      else {
        console.log(
          `  ${r.scenario}: ${Object.entries(r.phases)
            .map(([k, v]) => `${k} ${v.toFixed(2)} s`)
            .join(', ')}`,
        );
        console.log(
          `    store calls (seconds summed over concurrent calls): ${Object.entries(r.store)
            .map(([k, v]) => `${k} ${v.calls}× ${v.seconds.toFixed(2)} s`)
            .join(', ')}`,
        );
        console.log(
          `    memory per phase, MB (rss/heap/external): ${Object.entries(r.memoryMB ?? {})
            .map(([k, v]) => `${k} ${v.rss}/${v.heapUsed}/${v.external}`)
            .join(', ')}`,
        );
      }
      if (r.hot) {
        console.log(
          `    CPU ${r.hot.seconds} s by area: ${r.hot.areas
            .slice(0, 8)
            .map((a) => `${a.what} ${(a.share * 100).toFixed(0)}%`)
            .join(', ')}`,
        );
        console.log(
          `    hottest: ${r.hot.functions
            .slice(0, 6)
            .map((f) => `${f.what} ${(f.share * 100).toFixed(0)}%`)
            .join('; ')}`,
        );
      }
    }
  }
  if (notes.length > 0) {
    console.log('\nNotes:');
    for (const n of notes) console.log(`  - ${n}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios. Each records its tool runs in `results` and its rows in `rows`.

const state = {}; // shared between the main-tree scenarios: the tree, expected contents, setups

function toolsFor(scenario) {
  const all = [syncguard, rclone, restic];
  if (opts.tools) return all.filter((t) => chosenTools.includes(t.name));
  if ((scenario === 'big' || scenario === 'many') && !opts['all-tools']) return [syncguard];
  return all;
}

async function mainTree() {
  if (state.tree) return state;
  state.tree = join(WORK, 'tree');
  process.stderr.write(`generating the tree in ${state.tree}… `);
  const t0 = performance.now();
  state.expected = generateTree(state.tree);
  const bytes = [...state.expected.values()].reduce((n, f) => n + f.size, 0);
  state.bytes = bytes;
  process.stderr.write(
    `${state.expected.size} files, ${mib(bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  state.setups = {};
  for (const tool of toolsFor('first')) state.setups[tool.name] = await tool.setup('main', state.tree);
  return state;
}

async function scenarioFirst() {
  const s = await mainTree();
  for (const tool of toolsFor('first'))
    await runTool('first', tool, () => tool.backup(`first-${tool.name}`, s.setups[tool.name]));
  row('first snapshot', 's', triple('first', 'wall'), {
    text: '≤0.5× rclone, ≤1.0× restic',
    need: [0, 1, 2],
    met: (sg, rc, rs) => sg <= 0.5 * rc && sg <= rs,
  });
  row('first snapshot RSS', 'MB', triple('first', 'rssBytes'), {
    text: '< 250 MB',
    need: [0],
    met: (sg) => sg < 250 * MB,
  });
}

async function scenarioSecond() {
  const s = await mainTree();
  await repeated('second', toolsFor('second'), (tool, i) =>
    tool.backup(`second-${tool.name}${REPEAT > 1 ? `-${i + 1}` : ''}`, s.setups[tool.name]),
  );
  row('second, nothing changed', 's', triple('second', 'wall'), {
    text: '≤1.0× restic',
    need: [0, 2],
    met: (sg, _rc, rs) => sg <= rs,
  });
  row('second: bytes sent', 'MiB', triple('second', 'bytesSent'));
}

async function scenarioChanged() {
  const s = await mainTree();
  const changed = changeTree(s.tree, s.expected);
  s.changedBytes = changed.bytes;
  notes.push(
    `1% change: ${changed.files} files rewritten (${SIZES.changeSmall} small + ${SIZES.changeMedium} medium), ${changed.bytes} bytes (${mib(changed.bytes)})`,
  );
  for (const tool of toolsFor('changed'))
    await runTool('changed', tool, () => tool.backup(`changed-${tool.name}`, s.setups[tool.name]));
  row('1% changed', 's', triple('changed', 'wall'));
  row('1% changed: bytes sent', 'MiB', triple('changed', 'bytesSent'), {
    text: `≈ changed (${mib(changed.bytes)}), ≤ +5%`,
    need: [0],
    met: (sg) => sg >= changed.bytes * 0.999 && sg <= changed.bytes * 1.05,
  });
}

async function scenarioRestore() {
  const s = await mainTree();
  // Each run restores into an empty folder; the first run of each tool is then checked file by file.
  const checks = new Map();
  const merged = await repeated('restore', toolsFor('restore'), async (tool, i) => {
    const target = join(WORK, 'restore', tool.name);
    rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(target), { recursive: true });
    const r = await tool.restore(
      `restore-${tool.name}${REPEAT > 1 ? `-${i + 1}` : ''}`,
      s.setups[tool.name],
      target,
    );
    if (i === 0) checks.set(tool.name, await verifyTree(target, s.expected));
    if (!opts.keep || i < REPEAT - 1) rmSync(target, { recursive: true, force: true });
    return r;
  });
  for (const [name, v] of checks) {
    const rec = merged.get(name);
    rec.verified = v.ok;
    if (!v.ok) {
      rec.error = `restored tree differs: ${v.missing.length} missing, ${v.extra.length} extra, ${v.wrong.length} with other content (e.g. ${[...v.missing, ...v.extra, ...v.wrong].slice(0, 3).join(', ')})`;
      process.stderr.write(`    ${name}: ${rec.error}\n`);
    }
    notes.push(`restore (${name}): ${v.ok ? `verified, ${v.files} files match by SHA-256` : rec.error}`);
  }
  const walls = ['syncguard', 'rclone', 'restic'].map((t) => {
    const r = results.find((x) => x.scenario === 'restore' && x.tool === t);
    return r && !r.error ? r.wall : undefined;
  });
  row('restore, whole snapshot', 's', walls, {
    text: '≤1.0× restic',
    need: [0, 2],
    met: (sg, _rc, rs) => sg <= rs,
  });
  row('restore RSS', 'MB', triple('restore', 'rssBytes'));
}

async function scenarioBig() {
  const dir = join(WORK, 'tree-big');
  process.stderr.write(`the ${mib(SIZES.bigFile)} file in ${dir}… `);
  const t0 = performance.now();
  const expected = cachedTree(dir, { bigFile: SIZES.bigFile, seed: SEED }, () => {
    const m = new Map();
    m.set('big.bin', {
      size: SIZES.bigFile,
      sha256: writeContent(join(dir, 'big.bin'), SIZES.bigFile, 'big.bin:0'),
    });
    return m;
  });
  process.stderr.write(`ready in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const label = `${SIZES.bigFile / GiB >= 1 ? `${SIZES.bigFile / GiB} GiB` : mib(SIZES.bigFile)} file`;
  for (const tool of toolsFor('big')) {
    const setup = await tool.setup('big', dir);
    await runTool('big: snapshot', tool, () => tool.backup(`big-${tool.name}`, setup));
    const target = join(WORK, 'restore', `big-${tool.name}`);
    rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(target), { recursive: true });
    const rec = await runTool('big: restore', tool, () =>
      tool.restore(`big-restore-${tool.name}`, setup, target),
    );
    if (!rec.error) {
      const v = await verifyTree(target, expected);
      if (!v.ok) rec.error = 'the restored file differs';
      notes.push(`${label} restore (${tool.name}): ${v.ok ? 'verified by SHA-256' : 'DIFFERS'}`);
    }
    rmSync(target, { recursive: true, force: true });
    if (!opts.keep) await dropBucket(setup.bucket);
  }
  row(`${label}: snapshot`, 's', triple('big: snapshot', 'wall'));
  row(`${label}: snapshot RSS`, 'MB', triple('big: snapshot', 'rssBytes'), {
    text: '< 200 MB',
    need: [0],
    met: (sg) => sg < 200 * MB,
  });
  row(`${label}: restore`, 's', triple('big: restore', 'wall'));
  row(`${label}: restore RSS`, 'MB', triple('big: restore', 'rssBytes'), {
    text: '< 200 MB',
    need: [0],
    met: (sg) => sg < 200 * MB,
  });
}

async function scenarioMany() {
  const dir = join(WORK, 'tree-many');
  process.stderr.write(`${SIZES.many.toLocaleString('en-US')} tiny files in ${dir}… `);
  const t0 = performance.now();
  cachedTree(dir, { many: SIZES.many, min: SIZES.manyMin, max: SIZES.manyMax, seed: SEED }, () => {
    const rng = prng(`${SEED}:many`);
    const m = new Map();
    // 100 files a folder, in folders of 100 folders: a deep, wide tree like a photo library's.
    for (let i = 0; i < SIZES.many; i++) {
      const path = `a${String(Math.floor(i / 10_000)).padStart(2, '0')}/b${String(Math.floor(i / 100) % 100).padStart(2, '0')}/f${String(i).padStart(6, '0')}.txt`;
      const size = rng.int(SIZES.manyMin, SIZES.manyMax);
      m.set(path, { size, sha256: writeContent(join(dir, path), size, `${path}:0`) });
    }
    return m;
  });
  process.stderr.write(`ready in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const label = `${SIZES.many.toLocaleString('en-US')} files`;
  for (const tool of toolsFor('many')) {
    const setup = await tool.setup('many', dir);
    await runTool('many: snapshot', tool, () => tool.backup(`many-${tool.name}`, setup));
    if (!opts.keep) await dropBucket(setup.bucket);
  }
  row(`${label}: snapshot`, 's', triple('many: snapshot', 'wall'));
  row(`${label}: snapshot RSS`, 'MB', triple('many: snapshot', 'rssBytes'), {
    text: '< 300 MB',
    need: [0],
    met: (sg) => sg < 300 * MB,
  });
}

// ---------------------------------------------------------------------------------------------
// --profile: syncguard's snapshots run through bench/phases.mjs (the library call the CLI makes,
// with phase times and store call counts) under --cpu-prof; the hottest functions are summarised.

async function profiledBackup(name, setup) {
  const dir = join(WORK, 'profiles');
  mkdirSync(dir, { recursive: true });
  const r = await measure(
    name,
    process.execPath,
    [
      '--cpu-prof',
      `--cpu-prof-dir=${dir}`,
      `--cpu-prof-name=${name}.cpuprofile`,
      join(ROOT, 'bench', 'phases.mjs'),
      DIST,
      setup.config,
    ],
    { env: syncguard.env() },
  );
  if (r.code !== 0) throw failure(r, 'syncguard snapshot (bench/phases.mjs)');
  const doc = JSON.parse(readFileSync(r.outFile, 'utf8'));
  const prof = join(dir, `${name}.cpuprofile`);
  return {
    ...r,
    run: doc.run,
    phases: doc.phases,
    store: doc.store,
    memoryMB: doc.memoryMB,
    hot: existsSync(prof) ? hottestOf(prof, 12) : undefined,
  };
}

/**
 * Long history (issue 10): a nothing-changed night in a store that holds 2,000 small packs of earlier
 * nights (planted: a pack and its pack index each, as the packer writes them), against the same night
 * in a store that holds only the one night before. syncguard alone: the other tools have no such store.
 * A third run of the long store starts without the state folder's index cache (a new machine).
 */
async function scenarioHistory() {
  const dir = join(WORK, 'tree-history');
  cachedTree(dir, { history: 200, seed: SEED }, () => {
    const m = new Map();
    for (let i = 0; i < 200; i++) {
      const path = `h/f${String(i).padStart(3, '0')}.txt`;
      m.set(path, { size: 1000, sha256: writeContent(join(dir, path), 1000, `${path}:0`) });
    }
    return m;
  });
  const one = await syncguard.setup('history-one', dir);
  const long = await syncguard.setup('history-long', dir);
  process.stderr.write('planting 2,000 packs of earlier nights… ');
  const t0 = performance.now();
  await plantPacks(long.bucket, 2000);
  process.stderr.write(`${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  /** @type {Array<[string, { config: string; bucket: string }]>} */
  const stores = [
    ['one night', one],
    ['2,000 packs', long],
  ];
  for (const [label, setup] of stores) {
    await runTool(`history ${label}: first`, syncguard, () =>
      syncguard.backup(`history-first-${setup.bucket}`, setup),
    );
    await runTool(`history ${label}: nothing changed`, syncguard, () =>
      syncguard.backup(`history-second-${setup.bucket}`, setup),
    );
  }
  rmSync(join(WORK, 'state', 'index'), { recursive: true, force: true });
  await runTool('history 2,000 packs: new machine', syncguard, () =>
    syncguard.backup(`history-cold-${long.bucket}`, long),
  );
  const wall = (scenario) => get(scenario, 'syncguard', 'wall');
  const base = wall('history one night: nothing changed');
  row('history: nothing changed after one night', 's', [base]);
  row('history: nothing changed after 2,000 packs', 's', [wall('history 2,000 packs: nothing changed')], {
    text: `≤ 1.2× after one night${typeof base === 'number' ? ` (${base.toFixed(1)} s)` : ''}`,
    need: [0],
    met: (sg) => typeof base === 'number' && sg <= base * 1.2,
  });
  row('history: the same on a new machine (no index cache)', 's', [wall('history 2,000 packs: new machine')]);
  for (const setup of [one, long]) if (!opts.keep) await dropBucket(setup.bucket);
}

/** `n` packs of one small content each, with their pack indexes, dated over the past year. */
async function plantPacks(bucket, n) {
  const { PutObjectCommand } = await import('@aws-sdk/client-s3');
  const c = await client();
  const queue = Array.from({ length: n }, (_, i) => i);
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const day = new Date(Date.now() - (1 + (i % 365)) * 86_400_000).toISOString();
        const base = `packs/${day.slice(0, 4)}/${day.slice(5, 7)}/${day.slice(8, 10)}/${randomBytes(16).toString('hex')}`;
        const body = randomBytes(200);
        const sha256 = createHash('sha256').update(body).digest('hex');
        const idx = {
          format: 'syncguard-pack-index',
          version: 1,
          pack: `${base}.pack`,
          created: day,
          sha256,
          size: body.length,
          entries: [[sha256, 0, body.length]],
        };
        await c.send(new PutObjectCommand({ Bucket: bucket, Key: `${base}.pack`, Body: body }));
        await c.send(new PutObjectCommand({ Bucket: bucket, Key: `${base}.idx`, Body: JSON.stringify(idx) }));
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The S3 server, and buckets

const SERVER_SCRIPT = join(ROOT, 'scripts', 's3-server.sh');
const OWN = {
  CEPH_DIR: process.env.BENCH_CEPH_DIR ?? '/tmp/syncguard-bench-s3',
  S3_PORT: '7482',
  CEPH_MON_PORT: '3312',
  CEPH_OBJECTSTORE: process.env.BENCH_CEPH_OBJECTSTORE ?? 'bluestore',
};

function startServer() {
  if (process.env.S3_ENDPOINT && !opts['own-s3']) {
    return {
      endpoint: process.env.S3_ENDPOINT,
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'testsecret',
      own: false,
      describe: `${process.env.S3_ENDPOINT} (S3_ENDPOINT)`,
    };
  }
  process.stderr.write(
    `starting an S3 server of the benchmark's own (Ceph RGW, ${OWN.CEPH_OBJECTSTORE}, port ${OWN.S3_PORT}, ${OWN.CEPH_DIR})\n`,
  );
  const env = { ...process.env, ...OWN };
  execFileSync('bash', [SERVER_SCRIPT, 'start'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const file = readFileSync(join(OWN.CEPH_DIR, 's3.env'), 'utf8');
  const val = (k) => new RegExp(`^export ${k}=(.*)$`, 'm').exec(file)?.[1];
  return {
    endpoint: val('S3_ENDPOINT'),
    accessKeyId: val('AWS_ACCESS_KEY_ID'),
    secretAccessKey: val('AWS_SECRET_ACCESS_KEY'),
    own: true,
    describe: `${val('S3_ENDPOINT')} (started by the benchmark, Ceph RGW ${OWN.CEPH_OBJECTSTORE})`,
    stop: () =>
      execFileSync('bash', [SERVER_SCRIPT, 'purge'], { env, stdio: ['ignore', 'inherit', 'inherit'] }),
  };
}

let s3client;
async function client() {
  if (!s3client) {
    // The benchmark's own cleanup client: the SDK's notice about Node 22 says nothing about the results.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    const { S3Client } = await import('@aws-sdk/client-s3');
    s3client = new S3Client({
      endpoint: S3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: S3.accessKeyId, secretAccessKey: S3.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }
  return s3client;
}

/** Every version of every object, leftover multipart uploads, then the bucket. A GOVERNANCE lock is
 *  bypassed (the benchmark's buckets are its own; a COMPLIANCE one would stay until it runs out). */
async function dropBucket(name) {
  const s3 = await import('@aws-sdk/client-s3');
  const c = await client();
  try {
    let KeyMarker, VersionIdMarker;
    for (;;) {
      const page = await c.send(
        new s3.ListObjectVersionsCommand({ Bucket: name, KeyMarker, VersionIdMarker }),
      );
      const objects = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])].map((v) => ({
        Key: v.Key,
        VersionId: v.VersionId,
      }));
      for (let i = 0; i < objects.length; i += 1000) {
        await c.send(
          new s3.DeleteObjectsCommand({
            Bucket: name,
            BypassGovernanceRetention: true,
            Delete: { Objects: objects.slice(i, i + 1000), Quiet: true },
          }),
        );
      }
      if (!page.IsTruncated) break;
      ({ NextKeyMarker: KeyMarker, NextVersionIdMarker: VersionIdMarker } = page);
    }
    const ups = await c.send(new s3.ListMultipartUploadsCommand({ Bucket: name }));
    for (const u of ups.Uploads ?? [])
      await c.send(new s3.AbortMultipartUploadCommand({ Bucket: name, Key: u.Key, UploadId: u.UploadId }));
    await c.send(new s3.DeleteBucketCommand({ Bucket: name }));
  } catch (e) {
    if (e?.name === 'NoSuchBucket') return;
    process.stderr.write(`bench: could not remove the bucket ${name}: ${e.name ?? ''} ${e.message}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// Main

function preflight() {
  const missing = [];
  if (chosenTools.includes('rclone') && !has('rclone')) missing.push('rclone');
  if (chosenTools.includes('restic') && !has('restic')) missing.push('restic');
  if (missing.length > 0) {
    console.error(
      `bench: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not installed; the benchmark compares syncguard with both, from Debian's packages:\n  apt-get install -y rclone restic`,
    );
    process.exit(2);
  }
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) {
    console.error('bench: dist/cli/main.js is missing: run `npm run build` first (`npm run bench` does)');
    process.exit(2);
  }
  if (!TIME)
    notes.push(
      '/usr/bin/time is missing (Debian package "time"): peak RSS was sampled from /proc/<pid>/status VmHWM every 20 ms, which can miss a last short peak',
    );
}

function version(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || '').split('\n')[0].trim();
}

/** A copy of dist/ taken at the start: others may rebuild dist/ while the benchmark runs. */
function freezeBuild() {
  rmSync(DIST, { recursive: true, force: true });
  cpSync(join(ROOT, 'dist'), DIST, { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(dirname(DIST), 'package.json'));
}

async function main() {
  preflight();
  const scenarios = chosenScenarios();
  mkdirSync(WORK, { recursive: true });
  rmSync(join(WORK, 'logs'), { recursive: true, force: true });
  rmSync(join(WORK, 'state'), { recursive: true, force: true });
  rmSync(join(WORK, 'restic-cache'), { recursive: true, force: true });
  rmSync(join(WORK, 'profiles'), { recursive: true, force: true });
  freezeBuild();
  const started = new Date();
  const env = {
    node: process.version,
    rclone: version('rclone', ['version']),
    restic: version('restic', ['version']),
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    memory: `${(totalmem() / GiB).toFixed(0)} GiB`,
    loadavgAtStart: loadavg().map((x) => round(x, 2)),
  };
  S3 = startServer();
  const stop = () => {
    if (S3?.own && S3.stop) {
      try {
        S3.stop();
      } catch {
        /* reported by the script */
      }
      S3.stop = undefined;
    }
  };
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.once(sig, () => {
      stop();
      process.exit(130);
    });
  const t0 = performance.now();
  try {
    process.stderr.write(
      `bench ${opts.quick ? '--quick ' : ''}scenarios: ${scenarios.join(', ')}; S3 ${S3.describe}; work dir ${WORK}\n`,
    );
    for (const name of scenarios) {
      process.stderr.write(`[${name}] (load average ${loadavg()[0].toFixed(2)})\n`);
      try {
        await SCENARIOS[name].run();
      } catch (e) {
        // A setup that failed (init, the server, the disk): the other scenarios still run.
        process.stderr.write(`  ${name}: FAILED\n    ${e.message}\n`);
        results.push({ scenario: name, tool: '-', error: e.message });
      }
    }
    if (!opts.only)
      notes.push(
        `cloud scenarios (bench/cloud.mjs, also runnable on its own):\n${await (await import('./cloud.mjs')).benchCloud({ quick: opts.quick, keep: opts.keep, profile: opts.profile, s3: S3 })}`,
      );
  } finally {
    if (!opts.keep) {
      for (const b of buckets) await dropBucket(b.name);
      rmSync(join(WORK, 'tree'), { recursive: true, force: true });
    }
    s3client?.destroy();
    stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  const dataset = {
    main: state.expected
      ? {
          files: state.expected.size,
          bytes: state.bytes,
          small: SIZES.small,
          medium: SIZES.medium,
          huge: SIZES.huge,
        }
      : undefined,
    changedBytes: state.changedBytes,
    bigFile: scenarios.includes('big') ? SIZES.bigFile : undefined,
    manyFiles: scenarios.includes('many') ? SIZES.many : undefined,
  };
  notes.unshift(
    `S3: ${S3.describe}; ${env.cpus}, ${env.memory}; load average at start ${env.loadavgAtStart.join(' ')}, at end ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  if (state.expected)
    notes.unshift(
      `main tree: ${state.expected.size.toLocaleString('en-US')} files, ${mib(state.bytes)} (${SIZES.small} of ${SIZES.smallMin / KiB}–${SIZES.smallMax / KiB} KiB, ${SIZES.medium} of ${SIZES.mediumMin / MiB}–${SIZES.mediumMax / MiB} MiB, one of ${mib(SIZES.huge)})`,
    );
  notes.push(`tools: ${env.rclone}; ${env.restic}; node ${env.node}; total ${seconds.toFixed(0)} s`);

  console.log(`\nsyncguard benchmark${opts.quick ? ' (--quick)' : ''}, ${started.toISOString()}\n`);
  printTable();
  printLines();

  const out = join(WORK, 'results.json');
  writeFileSync(
    out,
    JSON.stringify(
      {
        started: started.toISOString(),
        seconds: round(seconds, 1),
        options: opts,
        scenarios,
        env,
        s3: S3.describe,
        dataset,
        rows,
        runs: results,
        notes,
      },
      null,
      2,
    ),
  );
  console.log(`\nresults: ${out}`);
  const failed = results.filter((r) => r.error);
  if (failed.length > 0) {
    console.log(
      `\n${failed.length} run(s) failed: ${failed.map((r) => `${r.scenario}/${r.tool}`).join(', ')}`,
    );
    process.exitCode = 1;
  }
}

await main();
