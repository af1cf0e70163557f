import { defineConfig } from "vitest/config";

/**
 * Two projects: the suite, whose files run in parallel, then test/timing/
 * (assertions on elapsed time, load against real processes), one file at a
 * time once the suite is done, so a busy machine does not skew their clocks.
 */
export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: { name: "suite", include: ["test/**/*.test.ts"], exclude: ["test/timing/**", "test/model/**"], sequence: { groupOrder: 1 } },
      },
      {
        extends: true,
        test: { name: "timing", include: ["test/timing/**/*.test.ts"], fileParallelism: false, sequence: { groupOrder: 2 } },
      },
    ],
  },
});
