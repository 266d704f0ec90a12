import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import {
  CONFIG_ERROR_CODES,
  PROVIDER_ERROR_CODES,
  REGISTRY_ERROR_CODES,
  TASK_STATES,
  TRANSITIONS,
} from "../../controller/index.js";

const docPath = join(import.meta.dirname, "../../docs/compute-environment.md");
const declared = [...CONFIG_ERROR_CODES, ...REGISTRY_ERROR_CODES, ...PROVIDER_ERROR_CODES] as string[];

// The table row whose first cell is `name` (cells may be padded by the formatter).
function tableRow(doc: string, name: string): string | undefined {
  return doc.split("\n").find((line) => line.replace(/\s+/g, " ").startsWith(`| \`${name}\` |`));
}

it("documents every controller error code", async () => {
  const doc = await readFile(docPath, "utf8");
  expect(declared.length).toBeGreaterThan(15);
  for (const code of declared)
    expect(tableRow(doc, code), `${code} is not in docs/compute-environment.md`).toBeDefined();
});

it("declares every code the controller's sources use, and documents no code that does not exist", async () => {
  const root = join(import.meta.dirname, "../../controller");
  const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith(".ts"));
  const used = new Set<string>();
  for (const file of files) {
    const text = await readFile(join(root, file), "utf8");
    for (const match of text.matchAll(/"((?:CONFIG|REGISTRY|PROVIDER)_[A-Z_]+)"/g))
      used.add(match[1] as string);
  }
  expect(used.size).toBeGreaterThan(10);
  expect([...used].filter((code) => !declared.includes(code))).toEqual([]);
  const doc = await readFile(docPath, "utf8");
  const documented = [...doc.matchAll(/^\|\s*`((?:CONFIG|REGISTRY|PROVIDER)_[A-Z_]+)`\s*\|/gm)].map(
    (m) => m[1] as string,
  );
  expect(documented.filter((code) => !declared.includes(code))).toEqual([]);
});

it("documents the transitions table as the code defines it", async () => {
  const doc = await readFile(docPath, "utf8");
  for (const from of TASK_STATES) {
    const row = tableRow(doc, from);
    expect(row, `no transitions row for ${from}`).toBeDefined();
    const cell = row?.split("|")[2] ?? "";
    const listed = [...cell.matchAll(/`([a-z]+)`/g)].map((m) => m[1]);
    expect(listed, `transitions from ${from}`).toEqual([...TRANSITIONS[from]]);
  }
});
