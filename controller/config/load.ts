import { readFile } from "node:fs/promises";
import { parse as parseYaml, YAMLParseError } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.js";
import { type ComputeEnvironment, computeEnvironmentSchema } from "./schema.js";

export interface LoadOptions {
  signal?: AbortSignal;
}

export interface ParseOptions {
  // Named in error messages; default "compute environment".
  source?: string;
}

// Reads and validates a compute environment file (YAML, or JSON since JSON is YAML).
export async function loadComputeEnvironment(
  path: string,
  options: LoadOptions = {},
): Promise<ComputeEnvironment> {
  let text: string;
  try {
    text = await readFile(path, { encoding: "utf8", signal: options.signal });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new ConfigError("CONFIG_NOT_FOUND", `Compute environment file "${path}" does not exist`, {
        cause: err,
      });
    }
    throw new ConfigError(
      "CONFIG_UNREADABLE",
      `Cannot read compute environment file "${path}": ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return parseComputeEnvironment(text, { source: path });
}

// Validates a compute environment given as YAML/JSON text or as an already parsed object,
// filling in defaults. Throws one ConfigError listing every problem found.
export function parseComputeEnvironment(
  input: string | object,
  options: ParseOptions = {},
): ComputeEnvironment {
  const source = options.source ?? "compute environment";
  const data = typeof input === "string" ? parseText(input, source) : input;
  const result = computeEnvironmentSchema.safeParse(data, { reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) => describeIssue(issue, data));
  throw new ConfigError(
    "CONFIG_INVALID",
    `Invalid ${source} (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n  ${problems.join("\n  ")}`,
    { problems },
  );
}

function parseText(text: string, source: string): unknown {
  try {
    return parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    const reason = err instanceof YAMLParseError ? err.message.split("\n")[0] : (err as Error).message;
    throw new ConfigError("CONFIG_SYNTAX", `Cannot parse ${source} as YAML or JSON: ${reason}`, {
      cause: err,
    });
  }
}

// `<field.path>: <what is wrong> (got <value>)`, one line per field. The value is looked
// up in the input by path: zod's own `input` is the whole object for some issue kinds.
function describeIssue(issue: z.core.$ZodIssue, data: unknown): string[] {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const path = [...issue.path, key];
      return `${formatPath(path)}: unknown field (got ${formatValue(valueAt(data, path).value)})`;
    });
  }
  if (issue.code === "invalid_key") {
    const path = [...issue.path];
    const reasons = issue.issues.map((inner) => inner.message).join("; ");
    return [`${formatPath(path)}: invalid key, ${reasons} (got ${formatValue(path.at(-1))})`];
  }
  // Our own cross-field checks say which value they blame; for the rest the path decides.
  const value = issue.code === "custom" ? issue.input : valueAt(data, issue.path).value;
  const missing = value === undefined && issue.code !== "custom" && !issue.message.startsWith("required");
  const message = missing ? `required; ${issue.message}` : issue.message;
  return [`${formatPath(issue.path)}: ${message} (got ${formatValue(value)})`];
}

function valueAt(data: unknown, path: readonly PropertyKey[]): { exists: boolean; value: unknown } {
  let current: unknown = data;
  for (const part of path) {
    if (current === null || typeof current !== "object" || !Object.hasOwn(current, part)) {
      return { exists: false, value: undefined };
    }
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return { exists: true, value: current };
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

// ["ec2", "subnets", 1] -> ec2.subnets[1]; keys that are not identifiers are quoted: tags["aws:x"].
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (!IDENTIFIER.test(String(part))) out += `[${JSON.stringify(String(part))}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out === "" ? "(root)" : out;
}

function formatValue(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
