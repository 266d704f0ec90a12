import { homedir } from "node:os";
import { join } from "node:path";

// snapctl's own state directory (the local cloud's data and state file live here):
// $SNAPCTL_HOME, else ~/.snapctl.
export function snapctlHome(): string {
  return process.env.SNAPCTL_HOME ?? join(homedir(), ".snapctl");
}
