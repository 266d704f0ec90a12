import type { S3Client } from "@aws-sdk/client-s3";
import { createSnapshotStore, snapshotLayout } from "../../criu/index.js";
import { SnapshotRepository } from "../../store/index.js";

// One committed snapshot generation as `snapctl inspect` shows it (from its manifest).
export interface GenerationSummary {
  generation: number;
  parentGeneration: number | null;
  createdAt: string;
  mode: string;
  arch: string;
  logicalBytes: number;
  uploadedBytes: number;
  deduplicatedBytes: number;
  freezeMs: number;
  dumpMs: number;
  uploadMs: number;
  totalMs: number;
  openFiles: number;
}

export interface TaskSnapshots {
  repository: SnapshotRepository;
  close(): Promise<void>;
}

// The snapshot repository of a task in its work dir (criu/'s layout: <prefix>/.snapshots/).
export function openTaskSnapshots(client: S3Client, workDir: string, taskId: string): TaskSnapshots {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(workDir);
  if (!match) throw new TypeError(`Work dir "${workDir}" is not an s3://bucket/prefix URL`);
  const bucket = match[1] as string;
  const workPrefix = (match[2] ?? "").replace(/\/+$/, "");
  const store = createSnapshotStore({ client, bucket, workPrefix });
  const layout = snapshotLayout(bucket, workPrefix);
  const repository = new SnapshotRepository({ store, root: layout.root, task: taskId });
  return { repository, close: () => store.close() };
}

// Every committed generation of the task, oldest first (manifests read one at a time).
export async function listGenerations(
  repository: SnapshotRepository,
  options: { signal?: AbortSignal } = {},
): Promise<GenerationSummary[]> {
  const summaries: GenerationSummary[] = [];
  for (const generation of await repository.list(options)) {
    const m = await repository.load(generation, options);
    summaries.push({
      generation: m.generation,
      parentGeneration: m.parentGeneration,
      createdAt: m.createdAt,
      mode: m.mode,
      arch: m.host.arch,
      logicalBytes: m.bytes.logical,
      uploadedBytes: m.bytes.uploaded,
      deduplicatedBytes: m.bytes.deduplicated,
      freezeMs: m.timings.freezeMs,
      dumpMs: m.timings.dumpMs,
      uploadMs: m.timings.uploadMs,
      totalMs: m.timings.totalMs,
      openFiles: m.openFiles.length,
    });
  }
  return summaries;
}
