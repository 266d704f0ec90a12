import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../../common/entry.js";
import { SnapshotErrorCode } from "../../store/index.js";

describe("docs/snapshot-format.md", () => {
  it("lists every SNAPSHOT_* error code, and no code that does not exist", async () => {
    const doc = await readFile(join(repoRoot, "docs", "snapshot-format.md"), "utf8");
    const codes = Object.values(SnapshotErrorCode);
    expect(codes.length).toBeGreaterThan(5);
    for (const code of codes) expect(doc, `${code} is not documented`).toContain(`\`${code}\``);
    const mentioned = new Set(doc.match(/SNAPSHOT_[A-Z0-9_]+/g) ?? []);
    for (const code of mentioned)
      expect(codes as string[], `${code} is documented but unknown`).toContain(code);
  });
});
