import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../../common/entry.js";

const COMPONENTS = ["agent", "bench", "cli", "cloud", "common", "controller", "criu", "driver", "store"];
const CODE =
  /["'`]((?:CLOUD|CRIU|DRIVER|SNAPSHOT|CONFIG|REGISTRY|PROVIDER|AGENT|BENCH|CONTROLLER)_[A-Z0-9_]+)["'`]/g;

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(path)));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

describe("error codes", () => {
  it("every code used in the sources is documented under docs/ (or BENCHMARKS.md)", async () => {
    const used = new Map<string, string>();
    for (const component of COMPONENTS) {
      for (const file of await sources(join(repoRoot, component))) {
        for (const m of (await readFile(file, "utf8")).matchAll(CODE)) used.set(m[1]!, file);
      }
    }
    expect(used.size).toBeGreaterThan(20);
    const docs = await Promise.all(
      [
        ...(await readdir(join(repoRoot, "docs"))).map((f) => join(repoRoot, "docs", f)),
        join(repoRoot, "BENCHMARKS.md"),
      ].map((f) => readFile(f, "utf8").catch(() => "")),
    );
    const text = docs.join("\n");
    const missing = [...used]
      .filter(([code]) => !text.includes(code))
      .map(([code, file]) => `${code} (${file})`);
    expect(missing).toEqual([]);
  });
});
