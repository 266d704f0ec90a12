import { Command, CommanderError } from "commander";
import { SnapError } from "../common/errors.js";
import { ExitCode } from "../protocol/index.js";
import { commands } from "./commands/index.js";

// Builds the snapctl program; every subcommand registers itself from cli/commands/.
export function buildProgram(): Command {
  const program = new Command("snapctl")
    .description("Checkpoint/restore for batch tasks on spot instances")
    .exitOverride()
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of commands) register(program);
  return program;
}

// Runs snapctl with the given argv and returns the exit code (never calls process.exit,
// so that tests can call it in-process).
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return (process.exitCode as number | undefined) ?? ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return ExitCode.ok;
      return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    if (err instanceof SnapError) {
      process.stderr.write(`snapctl: ${err.message} [${err.code}]\n`);
      return ExitCode.failure;
    }
    process.stderr.write(`snapctl: ${(err as Error).stack ?? String(err)}\n`);
    return ExitCode.failure;
  }
}
