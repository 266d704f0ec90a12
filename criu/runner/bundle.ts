import { existsSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../../common/entry.js";
import { CriuError } from "../errors.js";

// Where the self-contained CRIU lives: $SNAPCTL_CRIU (a launcher or binary) if set,
// else the bundle that criu/bundle/install.sh puts in <repo>/.local/criu.
export function criuLauncher(): string {
  const override = process.env.SNAPCTL_CRIU;
  if (override) return override;
  return join(process.env.SNAP_CRIU_PREFIX ?? join(repoRoot, ".local", "criu"), "criu");
}

// The launcher path, or a CRIU_NOT_INSTALLED error that says how to install it.
export function requireCriu(): string {
  const launcher = criuLauncher();
  if (!existsSync(launcher)) {
    throw new CriuError(
      "CRIU_NOT_INSTALLED",
      `CRIU bundle not found at "${launcher}": install it with criu/bundle/install.sh (or scripts/setup.sh), or set SNAPCTL_CRIU`,
    );
  }
  return launcher;
}
