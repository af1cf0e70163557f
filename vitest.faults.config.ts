import { defineConfig } from "vitest/config";

/** npm run test:faults: the fault suite, one file at a time, on a PostgreSQL it controls. */
export default defineConfig({
  test: {
    include: ["faults/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
