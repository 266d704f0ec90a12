import type { Arch } from "../registry/task-record.js";

// The CPU architecture of an EC2 instance type, from its name: Graviton families carry a
// "g" among the letters after the generation digit (m6g, c7gn, r8gd, t4g, x2gd, im4gn,
// g5g, hpc7g), and a1 is the first Graviton. Anything else is x86_64. The Ec2Provider
// takes an override for types this rule gets wrong (mac2 and later, for instance).
export function instanceArch(instanceType: string): Arch {
  const family = instanceType.split(".")[0] ?? "";
  if (family === "a1") return "arm64";
  const match = /^[a-z]+\d+([a-z-]*)$/.exec(family);
  return match?.[1]?.includes("g") ? "arm64" : "x86_64";
}
