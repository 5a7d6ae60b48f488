#!/usr/bin/env node
/**
 * `run.mjs --profile` runs syncguard's snapshots through this instead of the CLI: the same library
 * call the CLI makes (`snapshot(ctx, ['bench'])`), with the store wrapped to count and time its calls,
 * and the seconds spent in each phase the engine reports through onProgress.
 *
 *   node bench/phases.mjs <dist dir> <config file>
 *
 * Prints one JSON document: { run (as `snapshot --json` prints it), phases (seconds), store (calls),
 * memoryMB (per phase, the highest rss / heapUsed / external / arrayBuffers sampled) }.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { writeHeapSnapshot } from 'node:v8';

const [dist, config] = process.argv.slice(2);
if (!dist || !config) {
  console.error('usage: node bench/phases.mjs <dist dir> <config file>');
  process.exit(2);
}
const lib = await import(pathToFileURL(join(dist, 'index.js')).href);
const { createStore } = await import(pathToFileURL(join(dist, 'store', 'index.js')).href);

const loaded = lib.loadConfig(config);
const store = timed(createStore(loaded.config.store, { configDir: loaded.dir }));

const t0 = performance.now();
const phases = {};
let phase = 'start';
let since = t0;
// Memory: the highest of each figure per phase, sampled every 100 ms (MB = 10^6 bytes).
const memory = {};
const sample = () => {
  const m = process.memoryUsage();
  const p = (memory[phase] ??= { rss: 0, heapUsed: 0, external: 0, arrayBuffers: 0 });
  for (const k of Object.keys(p)) p[k] = Math.max(p[k], Math.round(m[k] / 1e6));
};
const sampler = setInterval(sample, 100);
// BENCH_HEAP_SNAPSHOT=<dir>: a heap snapshot as the engine enters that phase (BENCH_HEAP_PHASE, default
// "finishing": everything listed and read is still in memory), for bench/heap-summary.mjs.
const heapDir = process.env.BENCH_HEAP_SNAPSHOT;
const heapPhase = process.env.BENCH_HEAP_PHASE ?? 'finishing';
const mark = (next) => {
  if (next === phase) return;
  if (heapDir && next === heapPhase)
    process.stderr.write(
      `heap snapshot: ${writeHeapSnapshot(join(heapDir, `phases-${process.pid}-${next}.heapsnapshot`))}\n`,
    );
  sample();
  const now = performance.now();
  phases[phase] = (phases[phase] ?? 0) + (now - since) / 1000;
  phase = next;
  since = now;
};
const runs = await lib.snapshot({ ...loaded, store: store.wrapped }, ['bench'], {
  onProgress: (_account, p) => mark(p.phase),
});
mark('done');
clearInterval(sampler);
const r = runs[0];
if (!r.ok) {
  console.error(`syncguard: ${r.error.message}`);
  process.exit(1);
}
const h = r.result.header;
process.stdout.write(
  JSON.stringify({
    run: {
      account: r.account,
      ok: true,
      id: r.result.id,
      files: h.counts.files,
      bytes: h.bytes,
      bytesAdded: r.result.bytesAdded,
      filesRead: r.result.filesRead,
    },
    // "start": the previous manifest and the content index, plus listing up to the first progress report.
    phases: {
      'index+first listing': round(phases.start ?? 0),
      listing: round(phases.listing ?? 0),
      'reading+upload': round(phases.reading ?? 0),
      'locks+manifest': round(phases.finishing ?? 0),
      total: round((performance.now() - t0) / 1000),
    },
    store: store.stats,
    memoryMB: Object.fromEntries(
      Object.entries(memory)
        .filter(([k]) => k !== 'done')
        .map(([k, v]) => [k === 'start' ? 'index+first listing' : k, v]),
    ),
  }),
);
store.wrapped.close?.();

function round(s) {
  return Math.round(s * 1000) / 1000;
}

/** The store with every call counted and timed (seconds summed over calls, so overlapping calls add up). */
function timed(inner) {
  const stats = {};
  const stat = (op) => (stats[op] ??= { calls: 0, seconds: 0, bytes: 0 });
  const time = async (op, fn, bytes = 0) => {
    const s = stat(op);
    s.calls++;
    s.bytes += bytes;
    const t = performance.now();
    try {
      return await fn();
    } finally {
      s.seconds = round(s.seconds + (performance.now() - t) / 1000);
    }
  };
  const wrapped = Object.create(inner);
  wrapped.put = (key, body, o) =>
    time(
      key.startsWith('packs/')
        ? key.endsWith('.idx')
          ? 'put idx'
          : 'put pack'
        : key.startsWith('blobs/')
          ? 'put blob'
          : 'put manifest',
      () => inner.put(key, body, o),
      o?.size ?? body.length ?? 0,
    );
  wrapped.get = (key, o) => time('get', () => inner.get(key, o));
  wrapped.head = (key) => time('head', () => inner.head(key));
  wrapped.extendRetention = (key, until) => time('extendRetention', () => inner.extendRetention(key, until));
  wrapped.list = (prefix, signal) => {
    const s = stat('list');
    s.calls++;
    return (async function* () {
      const t = performance.now();
      let n = 0;
      try {
        for await (const o of inner.list(prefix, signal)) {
          n++;
          yield o;
        }
      } finally {
        s.seconds = round(s.seconds + (performance.now() - t) / 1000);
        s.items = (s.items ?? 0) + n;
      }
    })();
  };
  return { wrapped, stats };
}
