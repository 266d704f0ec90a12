import { defineConfig } from "vitest/config";

// Tests start real servers, FUSE mounts and CRIU processes: they run one file at a
// time (forks pool, no file parallelism) so two suites never fight over /dev/fuse,
// PID namespaces or the machine's two cores.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    exclude: ["node_modules/**", "dist/**", ".local/**"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    reporters: ["default"],
  },
});
