/**
 * Loaded into the measured CLI with `node --expose-gc --import` under `bench/cloud.mjs --profile`:
 * writes the process's memory (process.memoryUsage(), MB) to stderr every second, and every fifth
 * second right after a full garbage collection, as lines starting with "memwatch". The peak after a
 * collection is the live set; the difference to the peak RSS is garbage not yet collected, Buffers
 * (external / arrayBuffers) and code.
 */
const t0 = Date.now();
const mb = (n) => Math.round(n / 1e5) / 10;
const line = (label, m) =>
  process.stderr.write(
    `memwatch ${label} t=${((Date.now() - t0) / 1000).toFixed(1)}s rss=${mb(m.rss)} heapTotal=${mb(m.heapTotal)} heapUsed=${mb(m.heapUsed)} external=${mb(m.external)} arrayBuffers=${mb(m.arrayBuffers)}\n`,
  );
let ticks = 0;
setInterval(() => {
  line('tick', process.memoryUsage());
  if (++ticks % 5 === 0 && typeof globalThis.gc === 'function') {
    globalThis.gc();
    const m = process.memoryUsage();
    process.stderr.write(
      `memwatch gc t=${((Date.now() - t0) / 1000).toFixed(1)}s liveHeap=${mb(m.heapUsed)} liveExternal=${mb(m.external)}\n`,
    );
  }
}, 1000).unref();
process.on('exit', () => line('exit', process.memoryUsage()));
