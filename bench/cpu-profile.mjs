// The hottest code of a run, from a V8 .cpuprofile (node --cpu-prof): used by run.mjs and cloud.mjs.
import { readFileSync } from 'node:fs';

const round = (v, digits) => Math.round(v * 10 ** digits) / 10 ** digits;

/** Self time by function and by area (syncguard's own files, a package, node internals, GC). */
export function hottest(file, top = 10) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < p.samples.length; i++)
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const fns = new Map(),
    areas = new Map();
  let total = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const where = url.replace(/^file:\/\//, '');
    const area = !url
      ? functionName.startsWith('(')
        ? functionName
        : 'native'
      : where.includes('/node_modules/')
        ? where.replace(/^.*\/node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1')
        : where.startsWith('node:')
          ? 'node internals'
          : where.includes('/dist/')
            ? `syncguard ${where.replace(/^.*\/dist\//, '')}`
            : where;
    const fn =
      `${functionName || '(anonymous)'} ${where ? `${where.replace(/^.*\/(dist|node_modules)\//, '')}:${lineNumber + 1}` : ''}`.trim();
    fns.set(fn, (fns.get(fn) ?? 0) + us);
    areas.set(area, (areas.get(area) ?? 0) + us);
    total += us;
  }
  const list = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([what, us]) => ({ what, seconds: round(us / 1e6, 2), share: round(us / total, 3) }));
  return { seconds: round(total / 1e6, 2), areas: list(areas), functions: list(fns) };
}
