import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { arch, release, tmpdir } from "node:os";
import { join } from "node:path";
import type { Manifest } from "../../store/index.js";
import { criuLogTail, runCriu } from "../runner/run-criu.js";

// The architecture as `uname -m` spells it (what the manifest records).
export function machineArch(): string {
  const a = arch();
  return a === "x64" ? "x86_64" : a === "arm64" ? "aarch64" : a;
}

export function kernelRelease(): string {
  return release();
}

// `criu cpuinfo dump` as base64 (a few hundred bytes), or null when CRIU cannot take it.
export async function dumpCpuinfo(signal?: AbortSignal): Promise<string | null> {
  const dir = await mkdtemp(join(tmpdir(), "snap-cpuinfo-"));
  try {
    await runCriu(["cpuinfo", "dump", "-D", dir, "--log-file", join(dir, "cpuinfo.log")], {
      signal,
      logFile: join(dir, "cpuinfo.log"),
    });
    return (await readFile(join(dir, "cpuinfo.img"))).toString("base64");
  } catch {
    return null;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// Runs `criu cpuinfo check` against a manifest's inline cpuinfo image. Returns undefined
// when compatible, else what CRIU said.
export async function checkCpuinfo(
  cpuinfo: Manifest["host"]["cpuinfo"],
  signal?: AbortSignal,
): Promise<string | undefined> {
  if (!cpuinfo || !("inline" in cpuinfo)) return undefined;
  const dir = await mkdtemp(join(tmpdir(), "snap-cpuinfo-"));
  try {
    await writeFile(join(dir, "cpuinfo.img"), Buffer.from(cpuinfo.inline, "base64"));
    const r = await runCriu(["cpuinfo", "check", "-D", dir, "--log-file", join(dir, "check.log")], {
      signal,
      reject: false,
    });
    if (r.exitCode === 0) return undefined;
    const log = await readFile(join(dir, "check.log"), "utf8").catch(() => "");
    const lines = criuLogTail(log, { errors: /Error|mismatch|missing/i, count: 4 });
    return lines.replaceAll("\n", "; ") || `criu cpuinfo check exited with ${r.exitCode}`;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
