import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { SnapshotError, SnapshotErrorCode } from "../errors.js";
import { decodeManifest } from "../manifest/manifest-encoding.js";
import { isNotFound, listFolders, listObjects, s3Error } from "../s3/s3-util.js";
import type { SnapshotRepository } from "./snapshot-repository.js";

export interface GcOptions {
  // Newest committed generations of this task to keep (>= 1).
  keep: number;
  // Report what would be deleted without deleting. Default false.
  dryRun?: boolean;
  // Overrides the repository's gcGraceMs for this run.
  graceMs?: number;
  signal?: AbortSignal;
}

export interface GcReport {
  dryRun: boolean;
  // This task's generations removed (or that would be), oldest first.
  deletedGenerations: number[];
  keptGenerations: number[];
  // Manifests (all tasks under the root) whose chunks were kept.
  manifestsScanned: number;
  chunksReferenced: number;
  chunksDeleted: number;
  bytesFreed: number;
  // Unreferenced chunks kept because they are younger than the grace period.
  chunksKeptYoung: number;
}

// A chunk reference in any manifest text, whatever its schema version: a 64-digit hex run.
// Reading references this way keeps the chunks of manifests this build cannot parse
// (newer schema, damaged) instead of deleting them.
const HASH_IN_TEXT = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/g;
const MANIFEST_NAME = /\/gen-\d{6,}\.json$/;

// GC in two steps, each safe to interrupt: (1) delete this task's manifests beyond the
// newest `keep` (oldest first, so a crash leaves a contiguous newest range); (2) delete
// chunks that no remaining manifest of any task under the root references and that are
// older than the grace period. Manifests are re-read right before the sweep's deletes so
// that a generation committed meanwhile protects its chunks.
export async function collectGarbage(repo: SnapshotRepository, options: GcOptions): Promise<GcReport> {
  const { signal } = options;
  const dryRun = options.dryRun ?? false;
  const graceMs = options.graceMs ?? repo.gcGraceMs;
  if (!Number.isInteger(options.keep) || options.keep < 1) {
    throw new SnapshotError(
      SnapshotErrorCode.InvalidArgument,
      `gc keep must be an integer >= 1, got ${options.keep}`,
    );
  }
  const generations = await repo.list({ signal });
  const cut = Math.max(0, generations.length - options.keep);
  const deletedGenerations = generations.slice(0, cut);
  const keptGenerations = generations.slice(cut);
  if (!dryRun) {
    for (const generation of deletedGenerations) await repo.deleteGeneration(generation, { signal });
  }
  const excluded = new Set(dryRun ? deletedGenerations.map((g) => repo.manifestKey(g)) : []);
  const now = repo.clock();
  const swept = await sweepUnreferenced(repo, {
    excluded,
    young: (chunk) => now - chunk.lastModified.getTime() < graceMs,
    dryRun,
    signal,
  });
  const report: GcReport = {
    dryRun,
    deletedGenerations,
    keptGenerations,
    manifestsScanned: swept.referenced.manifests,
    chunksReferenced: swept.referenced.hashes.size,
    chunksDeleted: swept.doomed.length,
    bytesFreed: swept.doomed.reduce((n, c) => n + c.size, 0),
    chunksKeptYoung: swept.keptYoung,
  };
  repo.logger.info({ task: repo.task, ...report, deletedGenerations: undefined }, "snapshot gc done");
  return report;
}

interface ListedChunk {
  hash: string;
  size: number;
  lastModified: Date;
}

// The mark and sweep that GC and retire both end with: the chunks `candidate` accepts
// (default: all) that no manifest under the root references (but those in `excluded`)
// and that are not `young`, with the manifests read a second time right before the delete,
// so that a generation committed while the chunks were listed protects what it references.
async function sweepUnreferenced(
  repo: SnapshotRepository,
  options: {
    excluded?: Set<string>;
    candidate?: (hash: string) => boolean;
    young: (chunk: ListedChunk) => boolean;
    dryRun?: boolean;
    signal?: AbortSignal;
  },
): Promise<{
  doomed: ListedChunk[];
  keptYoung: number;
  keptReferenced: number;
  referenced: { hashes: Set<string>; manifests: number };
}> {
  const { signal } = options;
  const excluded = options.excluded ?? new Set<string>();
  const first = await referencedChunks(repo, excluded, signal);
  const candidates: ListedChunk[] = [];
  let keptYoung = 0;
  let keptReferenced = 0;
  for await (const chunk of repo.store.listChunks({ signal })) {
    if (options.candidate && !options.candidate(chunk.hash)) continue;
    if (first.hashes.has(chunk.hash)) {
      keptReferenced++;
      continue;
    }
    if (options.young(chunk)) {
      keptYoung++;
      continue;
    }
    candidates.push(chunk);
  }
  const again = await referencedChunks(repo, excluded, signal);
  const doomed = candidates.filter((c) => !again.hashes.has(c.hash));
  keptReferenced += candidates.length - doomed.length;
  const hashes = doomed.map((c) => c.hash);
  // A failed batch may have been partly done (s3rver answers 500 when a concurrent request
  // removed a folder it was cleaning up): once more, for what is left.
  if (!options.dryRun && hashes.length > 0)
    await repo.store.deleteChunks(hashes, { signal }).catch(async (err: unknown) => {
      if (signal?.aborted) throw err;
      await repo.store.deleteChunks(hashes, { signal });
    });
  return { doomed, keptYoung, keptReferenced, referenced: again };
}

// Every chunk hash named by any manifest under the repository root (all tasks sharing the
// chunk store), except the manifests in `excluded`. Manifests are decoded first (large ones
// are stored zstd-compressed); one that does not decode stops the sweep: its references
// are unknown, and deleting without them could destroy a snapshot.
async function referencedChunks(
  repo: SnapshotRepository,
  excluded: Set<string>,
  signal?: AbortSignal,
): Promise<{ hashes: Set<string>; manifests: number }> {
  const { client, bucket, prefix: chunkPrefix } = repo.store;
  const hashes = new Set<string>();
  let manifests = 0;
  for (const folder of await listFolders(client, bucket, repo.root, { signal })) {
    // The chunk prefix may sit under the root; it holds no manifests.
    if (chunkPrefix.startsWith(folder)) continue;
    for await (const object of listObjects(client, bucket, folder, { signal })) {
      if (!MANIFEST_NAME.test(object.key) || excluded.has(object.key)) continue;
      let text: string;
      try {
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: object.key }), {
          abortSignal: signal,
        });
        text = decodeManifest((await r.Body?.transformToByteArray()) ?? new Uint8Array(), {
          source: `s3://${bucket}/${object.key}`,
        });
      } catch (err) {
        if (err instanceof SnapshotError) throw err;
        // Deleted since the listing (another GC): it protects nothing any more.
        if (isNotFound(err)) continue;
        throw s3Error(err, `Reading manifest s3://${bucket}/${object.key} for GC`, signal);
      }
      manifests++;
      for (const match of text.matchAll(HASH_IN_TEXT)) hashes.add(match[0]);
    }
  }
  return { hashes, manifests };
}

export interface RetireOptions {
  // When the task finished, in ms since the epoch (the marker records it). Default: now.
  finishedAt?: number;
  // Free-form facts about the end (exit code...), recorded in the marker.
  detail?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface RetireReport {
  // Generations whose manifests were moved to retired/, oldest first.
  retiredGenerations: number[];
  chunksDeleted: number;
  bytesFreed: number;
  // This task's chunks kept: another task's manifest references them, or another
  // writer uploaded them after this task's last commit (young, see the docs).
  chunksKeptShared: number;
  chunksKeptYoung: number;
  // Why the chunk sweep did not finish, if it did not: the manifests are retired all the
  // same, and the chunks left behind are unreferenced, so any later GC removes them.
  sweepError?: string;
}

// The marker `<root><task>/finished.json`: the task ended on its own and its memory images
// were (being) removed. Its manifests live on as `<root><task>/retired/NNNNNN.json`.
export interface FinishedMarker {
  task: string;
  finishedAt: string;
  retiredGenerations: number[];
  detail?: Record<string, unknown>;
}

// After the task ended on its own: nothing of it is restorable any more, so its memory
// images go while its small manifests stay for the record. In this order, each step safe
// to interrupt: (1) the finished marker; (2) every manifest copied to retired/ and then
// deleted (a crash before the delete leaves a manifest whose chunks are all still there:
// restorable, truthfully); (3) the chunks the retired manifests reference and no manifest
// of any task under the root references, re-read right before the delete as GC does,
// unless another writer uploaded them after this task's last commit and within the grace
// period (a dump in progress elsewhere may be about to reference them).
export async function retireTask(
  repo: SnapshotRepository,
  options: RetireOptions = {},
): Promise<RetireReport> {
  const { signal } = options;
  const generations = await repo.list({ signal });
  const report: RetireReport = {
    retiredGenerations: generations,
    chunksDeleted: 0,
    bytesFreed: 0,
    chunksKeptShared: 0,
    chunksKeptYoung: 0,
  };
  if (generations.length === 0) return report;
  const marker: FinishedMarker = {
    task: repo.task,
    finishedAt: new Date(options.finishedAt ?? repo.clock()).toISOString(),
    retiredGenerations: generations,
    ...(options.detail ? { detail: options.detail } : {}),
  };
  await putJson(repo, repo.finishedKey, JSON.stringify(marker), signal);

  const ours = new Set<string>();
  let lastCommitAt = 0;
  for (const generation of generations) {
    const text = await repo.readManifestText(generation, { signal });
    if (text === undefined) continue;
    for (const match of text.matchAll(HASH_IN_TEXT)) ours.add(match[0]);
    const createdAt = Date.parse((JSON.parse(text) as { createdAt?: string }).createdAt ?? "");
    if (Number.isFinite(createdAt)) lastCommitAt = Math.max(lastCommitAt, createdAt);
    await putJson(repo, repo.retiredKey(generation), text, signal);
    await repo.deleteGeneration(generation, { signal });
  }

  try {
    await sweepRetired(repo, ours, lastCommitAt, report, signal);
  } catch (err) {
    if (signal?.aborted) throw err;
    report.sweepError = (err as Error).message;
    repo.logger.warn(
      { task: repo.task, err },
      "finished task's chunks not all deleted; the next GC removes them",
    );
  }
  repo.logger.info({ task: repo.task, ...report }, "finished task's snapshot images removed");
  return report;
}

async function sweepRetired(
  repo: SnapshotRepository,
  ours: Set<string>,
  lastCommitAt: number,
  report: RetireReport,
  signal?: AbortSignal,
): Promise<void> {
  const graceMs = repo.gcGraceMs;
  const now = repo.clock();
  const swept = await sweepUnreferenced(repo, {
    candidate: (hash) => ours.has(hash),
    young: (chunk) =>
      chunk.lastModified.getTime() > lastCommitAt && now - chunk.lastModified.getTime() < graceMs,
    signal,
  });
  report.chunksKeptShared += swept.keptReferenced;
  report.chunksKeptYoung += swept.keptYoung;
  report.chunksDeleted = swept.doomed.length;
  report.bytesFreed = swept.doomed.reduce((n, c) => n + c.size, 0);
}

async function putJson(
  repo: SnapshotRepository,
  key: string,
  body: string,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await repo.store.client.send(
      new PutObjectCommand({
        Bucket: repo.store.bucket,
        Key: key,
        Body: body,
        ContentType: "application/json",
      }),
      { abortSignal: signal },
    );
  } catch (err) {
    throw s3Error(err, `Writing s3://${repo.store.bucket}/${key}`, signal);
  }
}
