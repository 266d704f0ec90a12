import type { Command } from "commander";
import { registerDoctor } from "./doctor.js";
import { registerLocal } from "./local.js";

// Every snapctl subcommand, one module each; add a line here for a new one.
export const commands: Array<(program: Command) => void> = [registerLocal, registerDoctor];
commands.push((await import("./mount.js")).registerMount);
commands.push((await import("./checkpoint.js")).registerCheckpoint);
