import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { repoRoot } from "./entry.js";
import { SnapError } from "./errors.js";

// This project's native hash (native/page-hash, built by scripts/setup.sh's npm install):
// hashPages(data, pageBytes, seed, out) writes the seeded XXH3-128 of each `pageBytes` page
// of `data` (its last page maybe shorter) to `out`, 16 bytes per page in xxHash's canonical
// big-endian form. The codec workers' quick hash (a whole 64 KiB piece per call, where
// hash-wasm was called per 4 KiB page before: bench/probes/hash-speed.ts measures both) and
// the driver's disk cache checksum (a block per call).
export type HashPages = (
  data: NodeJS.TypedArray,
  pageBytes: number,
  seed: bigint,
  out: NodeJS.TypedArray,
) => void;

// Where the built module is (the codec workers load it by path).
export function pageHashModulePath(): string {
  return join(repoRoot, "native", "page-hash", "build", "Release", "page_hash.node");
}

// The module's path, or NATIVE_MODULE_MISSING saying how to build it.
export function requirePageHashModule(path = pageHashModulePath()): string {
  if (!existsSync(path)) {
    throw new SnapError(
      "NATIVE_MODULE_MISSING",
      `the page-hash native module is not built (no "${path}"): run scripts/setup.sh, or npm install in ${repoRoot}`,
    );
  }
  return path;
}

export function loadHashPages(): HashPages {
  const path = requirePageHashModule();
  return (createRequire(import.meta.url)(path) as { hashPages: HashPages }).hashPages;
}
