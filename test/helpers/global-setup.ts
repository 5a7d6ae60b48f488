// Starts what the tests need that is not part of the code under test. The S3 server is started by
// s3-server.ts on first use (see there); this file only exists so that every worker shares it. While
// coverage runs, it also tells the helpers where the CLI child processes write theirs (coverage.ts).
import type { TestProject } from 'vitest/node';
import { childCoverageDir } from './coverage.js';
import { setup as startS3 } from './s3-server.js';

export { teardown } from './s3-server.js';

export async function setup(project: TestProject): Promise<void> {
  await startS3(project);
  const coverage = project.config.coverage;
  project.provide('childCoverage', coverage.enabled ? childCoverageDir(coverage.reportsDirectory) : null);
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** NODE_V8_COVERAGE for the CLI child processes while coverage runs, else null. */
    childCoverage: string | null;
  }
}
