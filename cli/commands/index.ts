import type { Command } from "commander";
import { registerDoctor } from "./doctor.js";
import { registerLocal } from "./local.js";

// Every snapctl subcommand, one module each; add a line here for a new one.
export const commands: Array<(program: Command) => void> = [registerLocal, registerDoctor];
commands.push((await import("./mount.js")).registerMount);
commands.push((await import("./checkpoint.js")).registerCheckpoint);
commands.push((await import("./agent.js")).registerAgent);
commands.push((await import("./run.js")).registerRun);
commands.push((await import("./interrupt.js")).registerInterrupt);
commands.push((await import("./restore.js")).registerRestore);
commands.push((await import("./ls.js")).registerLs);
commands.push((await import("./status.js")).registerStatus);
commands.push((await import("./logs.js")).registerLogs);
commands.push((await import("./inspect.js")).registerInspect);
commands.push((await import("./gc.js")).registerGc);
commands.push((await import("./controller.js")).registerController);
commands.push((await import("./demo.js")).registerDemo);
