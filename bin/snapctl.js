#!/usr/bin/env node
// snapctl: the one command-line entry point. Runs the compiled CLI from dist/ (the
// README's set-up builds it).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const main = join(root, "dist", "cli", "main.js");
if (!existsSync(main)) {
  process.stderr.write(`snapctl: ${main} is missing; build first with: npm run build (or scripts/setup.sh)\n`);
  process.exit(70);
}
const { runCli } = await import(pathToFileURL(main).href);
process.exitCode = await runCli(process.argv);
