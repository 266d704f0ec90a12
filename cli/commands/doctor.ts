import type { Command } from "commander";
import { LocalCloud } from "../../cloud/index.js";
import { ExitCode } from "../../protocol/index.js";
import { runChecks } from "../doctor/checks.js";
import { applyLocalCloudEnv } from "../environment.js";

// `snapctl doctor`: checks every piece the system needs, one line each with a fix for
// each failure; exits 0 only when every required piece works.
export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("Check CRIU, FUSE, S3, Redis and IMDS; exit 0 only when all work")
    .option("--local", "start a temporary embedded local cloud for the S3, Redis and IMDS checks")
    .option("--json", "print the results as JSON")
    .action(async (options: { local?: boolean; json?: boolean }) => {
      let cloud: LocalCloud | undefined;
      if (options.local) {
        cloud = await LocalCloud.start();
        Object.assign(process.env, cloud.env());
      } else {
        await applyLocalCloudEnv();
      }
      try {
        const results = await runChecks();
        const ok = results.every((r) => r.ok || !r.required);
        if (options.json) {
          process.stdout.write(`${JSON.stringify({ ok, checks: results }, null, 2)}\n`);
        } else {
          for (const r of results) {
            const mark = r.ok ? "ok  " : r.required ? "FAIL" : "warn";
            process.stdout.write(`${mark} ${r.name.padEnd(14)} ${r.detail}\n`);
            if (!r.ok && r.fix) process.stdout.write(`     ${"".padEnd(14)} fix: ${r.fix}\n`);
          }
          process.stdout.write(ok ? "all checks passed\n" : "some checks failed\n");
        }
        process.exitCode = ok ? ExitCode.ok : ExitCode.failure;
      } finally {
        await cloud?.close();
      }
    });
}
