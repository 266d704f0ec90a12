import { readFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { criuBinary } from "../checkpoint/criu.js";
import { run, toolVersion } from "./tools.js";

export interface MachineInfo {
  os: string;
  kernel: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  virtualization?: string;
  node: string;
  tools: Record<string, string>;
}

// What the figures were measured on, for BENCHMARKS.md.
export async function describeMachine(): Promise<MachineInfo> {
  const osRelease = await readFile("/etc/os-release", "utf8").catch(() => "");
  const os = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? process.platform;
  const lscpu = await run("lscpu", []).catch(() => "");
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(lscpu)?.[1]?.trim();
  const tools: Record<string, string> = {};
  const versions: Array<[string, string, string[]]> = [
    ["criu", criuBinary(), ["--version"]],
    ["s3fs", "s3fs", ["--version"]],
    ["rclone", "rclone", ["version"]],
    ["aws", "aws", ["--version"]],
    ["cc", "cc", ["--version"]],
  ];
  for (const [name, command, args] of versions) {
    const version = await toolVersion(command, args);
    if (version) tools[name] = version;
  }
  return {
    os,
    kernel: (await run("uname", ["-r"]).catch(() => "")).trim(),
    cpu: field("Model name") ?? cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    virtualization: field("Hypervisor vendor") ?? field("Virtualization type"),
    node: process.version,
    tools,
  };
}
