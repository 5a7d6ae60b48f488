// @bcoe/v8-coverage (the merger @vitest/coverage-v8 uses) ships no types: what coverage.ts calls.
declare module '@bcoe/v8-coverage' {
  import type { Profiler } from 'node:inspector';
  export interface ProcessCov {
    result: Profiler.ScriptCoverage[];
  }
  export function mergeProcessCovs(processCovs: readonly ProcessCov[]): ProcessCov;
}
