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
    // `npm run coverage`: lines of src/ run in the test processes. The end-to-end tests run the built
    // CLI in child processes, which V8 coverage here does not see: src/cli is undercounted.
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      reporter: ['text-summary', 'json-summary', 'html'],
      reportsDirectory: 'coverage',
    },
  },
});
