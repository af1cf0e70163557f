import { defineConfig } from "vitest/config";

/**
 * npm run test:model: the model-based test of issue 15 (test/model/), serial
 * then concurrent, one file at a time. MODEL_RUNS, MODEL_SEED, MODEL_PATH and
 * MODEL_CHECK_EVERY tune it (see test/model/README.md).
 */
export default defineConfig({
  test: {
    include: ["test/model/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 3 * 3600_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
