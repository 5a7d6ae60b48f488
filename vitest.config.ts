import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Never print a secret into a snapshot or a report: no snapshot files are used at all.
    snapshotSerializers: [],
    // `npm run coverage`: vitest's V8 coverage of src/, with that of the built CLI the end-to-end tests
    // run in child processes merged in through dist's source maps (test/helpers/coverage.ts).
    coverage: {
      provider: 'custom',
      customProviderModule: './test/helpers/coverage.ts',
      include: ['src/**/*.ts'],
      reporter: ['text', 'json-summary', 'html'],
      reportsDirectory: 'coverage',
    },
  },
});
