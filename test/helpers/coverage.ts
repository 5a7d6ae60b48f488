/**
 * `npm run coverage`: vitest's V8 coverage of the test processes, plus that of the built CLI, which the
 * end-to-end tests run as child processes (`dist/cli/main.js`). While coverage is on, the test helpers
 * start every child with NODE_V8_COVERAGE set to `childCoverageDir(reportsDirectory)`, where Node writes
 * the child's coverage when it exits (a child killed with SIGKILL writes none). Before vitest reports,
 * this provider merges the children's coverage of `dist/`, maps it through dist's source maps onto
 * `src/` (with ast-v8-to-istanbul, as vitest's own provider does) and adds it to vitest's.
 *
 * vitest.config.ts names this file as the coverage provider; everything else is @vitest/coverage-v8's.
 */
import { promises as fsp } from 'node:fs';
import type { Profiler } from 'node:inspector';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from '@vitest/coverage-v8';
import type { CoverageProviderModule } from 'vitest/node';

/** Where the children's raw V8 coverage goes: inside the reports folder, which vitest empties first. */
export const childCoverageDir = (reportsDirectory: string): string => join(reportsDirectory, '.children');

const DIST = new URL('../../dist/', import.meta.url).href;
const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

interface ProcessCov {
  result: Profiler.ScriptCoverage[];
}
type CoverageMapData = Record<string, unknown>;
interface CoverageMap {
  merge(data: CoverageMapData): void;
}

/** The children's coverage of the built code, as istanbul data keyed by the `src/` file it came from. */
async function childCoverage(dir: string): Promise<CoverageMapData> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  if (names.length === 0) return {};
  const { mergeProcessCovs } = await import('@bcoe/v8-coverage');
  const { default: convert } = await import('ast-v8-to-istanbul');
  const { parseAstAsync } = await import('vitest/node');
  const processes: ProcessCov[] = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const { result } = JSON.parse(await fsp.readFile(join(dir, name), 'utf8')) as ProcessCov;
    processes.push({ result: result.filter((s) => s.url.startsWith(DIST) && s.url.endsWith('.js')) });
  }
  const out: CoverageMapData = {};
  for (const script of mergeProcessCovs(processes).result) {
    const file = fileURLToPath(script.url);
    const code = await fsp.readFile(file, 'utf8');
    const map = JSON.parse(await fsp.readFile(`${file}.map`, 'utf8')) as {
      version: number;
      sources: string[];
    };
    map.sources = map.sources.map((s) => new URL(s, script.url).href);
    const data = await convert({
      code,
      sourceMap: map as Parameters<typeof convert>[0]['sourceMap'],
      ast: parseAstAsync(code),
      coverage: { url: script.url, functions: script.functions },
    });
    for (const [path, fileCoverage] of Object.entries(data))
      if (path.startsWith(SRC) && path.endsWith('.ts')) out[path] = fileCoverage;
  }
  return out;
}

const provider: CoverageProviderModule = {
  ...v8,
  async getProvider() {
    const v8Provider = await v8.getProvider();
    const generate = v8Provider.generateCoverage.bind(v8Provider);
    v8Provider.generateCoverage = async (context) => {
      const map = (await generate(context)) as CoverageMap;
      const dir = childCoverageDir(v8Provider.resolveOptions().reportsDirectory);
      map.merge(await childCoverage(dir));
      await fsp.rm(dir, { recursive: true, force: true });
      return map;
    };
    return v8Provider;
  },
};
export default provider;
