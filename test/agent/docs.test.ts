import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { AGENT_ERROR_CODES } from "../../agent/index.js";
import { ExitCode, RETRYABLE_EXIT_CODES } from "../../protocol/index.js";

const root = join(import.meta.dirname, "../..");

// The rows of a markdown table whose first cell is a `code` span, as { first cell: row }.
function tableRows(doc: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of doc.split("\n")) {
    const match = /^\|\s*`([^`]+)`\s*\|/.exec(line);
    if (match) rows.set(match[1] as string, line);
  }
  return rows;
}

it("documents every exit code in docs/exit-codes.md, under its ExitCode name", async () => {
  const rows = tableRows(await readFile(join(root, "docs/exit-codes.md"), "utf8"));
  const entries = Object.entries(ExitCode);
  expect(entries.length).toBeGreaterThanOrEqual(7);
  for (const [name, value] of entries) {
    const row = rows.get(String(value));
    expect(row, `exit code ${value} (${name}) is not in docs/exit-codes.md`).toBeDefined();
    expect(row, `the row of exit code ${value} does not name ExitCode.${name}`).toContain(`\`${name}\``);
  }
  // And no documented code that does not exist.
  const values = new Set(Object.values(ExitCode).map(String));
  expect([...rows.keys()].filter((code) => !values.has(code))).toEqual([]);
});

it("documents every agent error code in docs/agent.md, and the sources use no undeclared one", async () => {
  const rows = tableRows(await readFile(join(root, "docs/agent.md"), "utf8"));
  for (const code of AGENT_ERROR_CODES) expect(rows.has(code), `${code} is not in docs/agent.md`).toBe(true);
  const documented = [...rows.keys()].filter((k) => k.startsWith("AGENT_"));
  expect(documented.filter((code) => !(AGENT_ERROR_CODES as readonly string[]).includes(code))).toEqual([]);
  const used = new Set<string>();
  for (const file of (await readdir(join(root, "agent"), { recursive: true })).filter((f) =>
    f.endsWith(".ts"),
  )) {
    const text = await readFile(join(root, "agent", file), "utf8");
    for (const match of text.matchAll(/"(AGENT_[A-Z_]+)"/g)) used.add(match[1] as string);
  }
  expect(used.size).toBeGreaterThan(10);
  expect([...used].filter((code) => !(AGENT_ERROR_CODES as readonly string[]).includes(code))).toEqual([]);
});

it("the retry rules in docs/exit-codes.md retry exactly on the agent's retryable codes", async () => {
  const doc = await readFile(join(root, "docs/exit-codes.md"), "utf8");
  const retryable = [...RETRYABLE_EXIT_CODES].sort((a, b) => a - b);
  const json = /```json\n([\s\S]*?)```/.exec(doc)?.[1] as string;
  const strategy = JSON.parse(json) as {
    retryStrategy: {
      evaluateOnExit: Array<{ onExitCode?: string; onStatusReason?: string; action: string }>;
    };
  };
  const codes = strategy.retryStrategy.evaluateOnExit
    .filter((e) => e.action === "RETRY" && e.onExitCode)
    .map((e) => Number(e.onExitCode));
  expect(codes.sort((a, b) => a - b)).toEqual(retryable);
  expect(strategy.retryStrategy.evaluateOnExit).toContainEqual({
    onStatusReason: "Host EC2*",
    action: "RETRY",
  });
  const nextflow = /task\.exitStatus in \[([\d, ]+)\]/.exec(doc)?.[1] as string;
  expect(nextflow.split(",").map((c) => Number(c.trim()))).toEqual(retryable);
});
