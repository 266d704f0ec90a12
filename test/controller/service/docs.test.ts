import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { buildProgram } from "../../../cli/main.js";
import { SERVICE_ERROR_CODES } from "../../../controller/service/index.js";

const doc = await readFile(join(import.meta.dirname, "../../../docs/cli.md"), "utf8");
const OWN = ["run", "interrupt", "restore", "ls", "status", "inspect", "gc", "controller", "demo"];

it("documents every controller service error code in docs/cli.md", () => {
  for (const code of SERVICE_ERROR_CODES) expect(doc, code).toMatch(new RegExp(`^\\| \`${code}\` \\|`, "m"));
});

it("documents every option of the task commands", () => {
  const program = buildProgram();
  const commands = program.commands.filter((c) => OWN.includes(c.name()));
  expect(commands.length).toBeGreaterThanOrEqual(8);
  for (const command of commands) {
    expect(doc, command.name()).toContain(`### \`snapctl ${command.name()}`);
    const section = doc.slice(doc.indexOf(`### \`snapctl ${command.name()}`)).split("\n### ")[0] as string;
    for (const option of command.options)
      expect(section, `${command.name()} ${option.long}`).toContain(option.long as string);
  }
});
