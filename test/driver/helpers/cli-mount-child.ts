// Runs only the `snapctl mount` command (the rest of the CLI belongs to other components):
// argv after the script are the command's arguments.
import { Command } from "commander";
import { registerMount } from "../../../cli/commands/mount.js";

const program = new Command("snapctl").exitOverride();
registerMount(program);
try {
  await program.parseAsync(["node", "snapctl", "mount", ...process.argv.slice(2)]);
  process.exit(0);
} catch (err) {
  process.stderr.write(`snapctl: ${(err as Error).message}\n`);
  process.exit(1);
}
