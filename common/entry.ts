import { existsSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// The repository root: this file lives in <root>/common or <root>/dist/common.
const here = dirname(fileURLToPath(import.meta.url));
const fromDist = here.endsWith(join("dist", "common"));
export const repoRoot = fromDist ? join(here, "..", "..") : join(here, "..");

// How to start one of our own entry scripts (given as a path from the repo root without
// extension, e.g. "cloud/s3/main") as a child process: the compiled JavaScript when this
// code runs from dist/, the TypeScript source through tsx when it runs from source (tests).
export function nodeEntry(entry: string, nodeFlags: string[] = []): { command: string; args: string[] } {
  if (fromDist) {
    return { command: process.execPath, args: [...nodeFlags, join(repoRoot, "dist", `${entry}.js`)] };
  }
  const source = join(repoRoot, `${entry}.ts`);
  if (!existsSync(source)) {
    throw new Error(`Entry script "${relative(repoRoot, source)}" does not exist`);
  }
  // An absolute URL: a bare "tsx" would be resolved from the child's working directory.
  const tsx = pathToFileURL(join(repoRoot, "node_modules", "tsx", "dist", "loader.mjs")).href;
  return { command: process.execPath, args: [...nodeFlags, "--import", tsx, source] };
}
