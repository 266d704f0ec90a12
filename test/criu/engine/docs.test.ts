import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../../../common/entry.js";

// Every CRIU_* code thrown anywhere under criu/ is in docs/snapshot-engine.md, and the doc
// names no code that does not exist.
async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(path)));
    else if (e.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

describe("docs/snapshot-engine.md", () => {
  it("lists every CRIU_* error code, and no code that does not exist", async () => {
    const doc = await readFile(join(repoRoot, "docs", "snapshot-engine.md"), "utf8");
    const codes = new Set<string>();
    for (const file of await sources(join(repoRoot, "criu"))) {
      for (const m of (await readFile(file, "utf8")).matchAll(/"(CRIU_[A-Z0-9_]+)"/g))
        codes.add(m[1] as string);
    }
    expect(codes.size).toBeGreaterThan(10);
    for (const code of codes) expect(doc, `${code} is not documented`).toContain(`\`${code}\``);
    for (const code of new Set(doc.match(/CRIU_[A-Z0-9_]+/g) ?? []))
      expect([...codes], `${code} is documented but unknown`).toContain(code);
  });
});
