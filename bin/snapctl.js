#!/usr/bin/env node
// snapctl: the one command-line entry point. Runs the compiled CLI from dist/ (the
// README's set-up builds it).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const entry = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "cli", "snapctl.js");
if (!existsSync(entry)) {
  process.stderr.write(
    `snapctl: ${entry} is missing; build first with: npm run build (or scripts/setup.sh)\n`,
  );
  process.exit(70);
}
await import(pathToFileURL(entry).href);
