import { statfs } from "node:fs/promises";
import type { Manifest } from "../../store/index.js";
import { CriuError } from "../errors.js";
import { detectCriuFeatures } from "../runner/features.js";
import { checkCpuinfo, machineArch } from "./host-info.js";

export interface PreflightReport {
  criuVersion: string;
  arch: string;
  // Bytes the images need on local disk, and what the disk has free.
  needBytes: number;
  freeBytes: number;
}

// Checks that this machine can restore `manifest` before anything large is downloaded:
// CRIU works, same architecture, CPU features (criu cpuinfo check), the same CRIU major
// version, enough free disk under `workDir` for the images. Every failure is named in one
// CRIU_PREFLIGHT_FAILED error.
export async function preflight(
  manifest: Manifest,
  options: { workDir: string; signal?: AbortSignal },
): Promise<PreflightReport> {
  const problems: string[] = [];
  const features = await detectCriuFeatures({ signal: options.signal });
  if (!features.checkOk) problems.push(`criu check fails on this machine: ${features.checkMessage}`);
  const arch = machineArch();
  if (arch !== manifest.host.arch)
    problems.push(`architecture ${arch} cannot restore a snapshot taken on ${manifest.host.arch}`);
  const major = (v: string) => v.split(".")[0];
  if (major(features.version) !== major(manifest.host.criuVersion))
    problems.push(
      `CRIU ${features.version} here, the snapshot was taken with CRIU ${manifest.host.criuVersion}`,
    );
  if (arch === manifest.host.arch) {
    const cpu = await checkCpuinfo(manifest.host.cpuinfo, options.signal);
    if (cpu) problems.push(`CPU features differ from the dumping host (criu cpuinfo check): ${cpu}`);
  }
  const needBytes = Object.values(manifest.images).reduce((n, f) => n + f.size, 0);
  const fs = await statfs(options.workDir);
  const freeBytes = fs.bavail * fs.bsize;
  // Images plus a margin for CRIU's logs and the filesystem's own overhead.
  if (freeBytes < needBytes * 1.05 + 64 * 1024 * 1024)
    problems.push(`${options.workDir} has ${freeBytes} bytes free, the images need ${needBytes}`);
  if (problems.length > 0) {
    throw new CriuError(
      "CRIU_PREFLIGHT_FAILED",
      `Cannot restore task "${manifest.task.id}" generation ${manifest.generation} on this machine: ${problems.join("; ")}`,
    );
  }
  return { criuVersion: features.version, arch, needBytes, freeBytes };
}
