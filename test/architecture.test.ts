// The house's boundaries, as ARCHITECTURE.md states them: every import of the production
// code between components goes through the component's index.ts and follows the allowed
// direction, no index re-exports with `export *`, and the folder table matches the tree.
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { expect, it } from "vitest";

const root = join(import.meta.dirname, "..");
const architecture = await readFile(join(root, "ARCHITECTURE.md"), "utf8");

// "- `agent` → `common`, `protocol`" lines: component -> the components it may import.
function allowedDependencies(): Map<string, Set<string>> {
  const allowed = new Map<string, Set<string>>();
  for (const line of architecture.split("\n")) {
    const match = /^- `([a-z]+)` → (.*)$/.exec(line);
    if (!match) continue;
    const targets = [...(match[2] as string).matchAll(/`([a-z]+)`/g)].map((m) => m[1] as string);
    allowed.set(match[1] as string, new Set(targets));
  }
  return allowed;
}

async function sourceFiles(component: string): Promise<string[]> {
  const entries = await readdir(join(root, component), { recursive: true });
  return entries.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")).map((f) => join(component, f));
}

const allowed = allowedDependencies();
const components = [...allowed.keys()];

it("ARCHITECTURE.md lists the allowed dependencies of every component", () => {
  expect(components.sort()).toEqual(
    ["agent", "cli", "cloud", "common", "controller", "criu", "driver", "protocol", "store"].sort(),
  );
});

it("components import each other only through index.ts and only in the allowed direction", async () => {
  const violations: string[] = [];
  for (const component of components) {
    for (const file of await sourceFiles(component)) {
      const text = await readFile(join(root, file), "utf8");
      for (const match of text.matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)) {
        const target = relative(root, resolve(root, dirname(file), match[1] as string));
        const targetComponent = target.split("/")[0] as string;
        if (targetComponent === component) continue;
        if (!allowed.get(component)?.has(targetComponent))
          violations.push(`${file}: imports ${target} (${component} may not depend on ${targetComponent})`);
        else if (targetComponent !== "common" && target !== `${targetComponent}/index.js`)
          violations.push(`${file}: imports ${target}, not ${targetComponent}/index.js`);
      }
    }
  }
  expect(violations).toEqual([]);
});

it("no index.ts re-exports with `export *`", async () => {
  const found: string[] = [];
  for (const component of components) {
    for (const file of await sourceFiles(component)) {
      if (!file.endsWith("index.ts")) continue;
      if (/^export \*/m.test(await readFile(join(root, file), "utf8"))) found.push(file);
    }
  }
  expect(found).toEqual([]);
});

it("ARCHITECTURE.md's folder table names every top-level folder, and only those", async () => {
  const rows = [...architecture.matchAll(/^\| `([^`/]+)\/` \|/gm)].map((m) => m[1] as string).sort();
  const ignored = new Set(["node_modules", "dist"]);
  const tree = (await readdir(root, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && !e.name.startsWith(".") && !ignored.has(e.name))
    .map((e) => e.name)
    .sort();
  expect(rows).toEqual(tree);
});
