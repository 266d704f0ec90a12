import { SnapshotError, SnapshotErrorCode } from "../errors.js";
import { MANIFEST_SCHEMA_VERSION, type Manifest, ManifestSchema } from "./manifest-schema.js";

export interface ManifestContext {
  // Task and generation expected (from the manifest's key), named in errors.
  task?: string;
  generation?: number;
  // Where it was read from, named in errors.
  source?: string;
}

// Parses manifest text. Refuses a newer schema with SNAPSHOT_SCHEMA_TOO_NEW (before
// looking at anything else, since a newer layout may not match ours), and anything
// unparsable, incomplete or inconsistent with its key with SNAPSHOT_MANIFEST_CORRUPT.
export function parseManifest(text: string, context: ManifestContext = {}): Manifest {
  const where = context.source ? ` (${context.source})` : "";
  const label = describe(context);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SnapshotError(
      SnapshotErrorCode.ManifestCorrupt,
      `${label} is not valid JSON${where}: ${(err as Error).message} (${text.length} bytes; truncated?)`,
      { cause: err, generation: context.generation },
    );
  }
  const version = (raw as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof version === "number" && Number.isInteger(version) && version > MANIFEST_SCHEMA_VERSION) {
    const r = raw as { task?: { id?: unknown }; generation?: unknown };
    const task = typeof r.task?.id === "string" ? r.task.id : context.task;
    const generation = typeof r.generation === "number" ? r.generation : context.generation;
    throw new SnapshotError(
      SnapshotErrorCode.SchemaTooNew,
      `${describe({ task, generation })} has schemaVersion ${version}; this snapctl reads up to ${MANIFEST_SCHEMA_VERSION}: upgrade snapctl`,
      { generation },
    );
  }
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    throw new SnapshotError(
      SnapshotErrorCode.ManifestCorrupt,
      `${label} does not match manifest schema ${MANIFEST_SCHEMA_VERSION}${where}: ${issues}`,
      { cause: parsed.error, generation: context.generation },
    );
  }
  const manifest = parsed.data;
  if (
    (context.generation !== undefined && manifest.generation !== context.generation) ||
    (context.task !== undefined && manifest.task.id !== context.task)
  ) {
    throw new SnapshotError(
      SnapshotErrorCode.ManifestCorrupt,
      `${label} describes task "${manifest.task.id}" generation ${manifest.generation}${where}`,
      { generation: context.generation },
    );
  }
  return manifest;
}

// Serializes a manifest after checking it against the schema (a bad one is never written).
export function serializeManifest(manifest: Manifest): string {
  const parsed = ManifestSchema.safeParse(manifest);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new SnapshotError(
      SnapshotErrorCode.InvalidArgument,
      `Manifest does not match the schema: ${issues}`,
      {
        cause: parsed.error,
      },
    );
  }
  return JSON.stringify(parsed.data);
}

function describe(context: { task?: string; generation?: number }): string {
  const task = context.task === undefined ? "" : ` of task ${context.task}`;
  const gen = context.generation === undefined ? "" : ` generation ${context.generation}`;
  return `manifest${task}${gen}`;
}
