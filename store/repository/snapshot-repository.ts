import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { forEachBounded } from "../../common/for-each-bounded.js";
import type { Logger } from "../../common/log.js";
import { silentLogger } from "../../common/log.js";
import type { ChunkStore } from "../chunk/chunk-store.js";
import { boundedOptions, SnapshotError, SnapshotErrorCode } from "../errors.js";
import { decodeManifest, encodeManifest } from "../manifest/manifest-encoding.js";
import { type Manifest, manifestChunkHashes } from "../manifest/manifest-schema.js";
import { parseManifest, serializeManifest } from "../manifest/parse-manifest.js";
import { isNotFound, listObjects, s3Error } from "../s3/s3-util.js";
import {
  collectGarbage,
  type FinishedMarker,
  type GcOptions,
  type GcReport,
  type RetireOptions,
  type RetireReport,
  retireTask,
} from "./collect-garbage.js";
import { type VerifyMode, verifyManifest } from "./verify-manifest.js";

export interface SnapshotRepositoryOptions {
  // The chunk store the manifests' chunks live in (its client and bucket are used too).
  store: ChunkStore;
  // Key prefix of all tasks' manifests, e.g. "<workdir>/.snapshots/" (ends with "/").
  root: string;
  // The task whose generations this repository manages; a single path segment.
  task: string;
  // HEAD/GET requests in flight when verifying a snapshot. Default 16.
  verifyConcurrency?: number;
  // GC never deletes a chunk younger than this (a dump may be about to reference it).
  // Default 60 minutes.
  gcGraceMs?: number;
  // Milliseconds since the epoch. Default Date.now.
  clock?: () => number;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface OpOptions {
  signal?: AbortSignal;
}

// Why a generation was passed over by loadLatestUsable.
export interface SkippedGeneration {
  generation: number;
  code: string;
  message: string;
  // The damaged or missing chunk, when that was the reason.
  hash?: string;
}

export type UsableSnapshot =
  | { found: true; generation: number; manifest: Manifest; skipped: SkippedGeneration[] }
  | { found: false; reason: "no-snapshot" | "no-usable-snapshot"; skipped: SkippedGeneration[] }
  // The task ended on its own and its memory images were removed (retire()).
  | { found: false; reason: "finished"; finished: FinishedMarker; skipped: SkippedGeneration[] };

const GENERATION_NAME = /^gen-(\d{6,})\.json$/;
const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

// One task's snapshot generations: manifests under `<root><task>/gen-NNNNNN.json`. A
// manifest is written last and is the only commit marker; everything else (chunks, any
// temporary object) is invisible until a manifest names it.
export class SnapshotRepository {
  readonly store: ChunkStore;
  readonly root: string;
  readonly task: string;
  readonly verifyConcurrency: number;
  readonly gcGraceMs: number;
  readonly clock: () => number;
  readonly logger: Logger;
  private readonly signal?: AbortSignal;

  constructor(options: SnapshotRepositoryOptions) {
    if (!TASK_ID.test(options.task)) {
      throw new SnapshotError(
        SnapshotErrorCode.InvalidArgument,
        `Task id "${options.task}" must be one path segment of letters, digits, ".", "_" or "-"`,
      );
    }
    if (options.root !== "" && !options.root.endsWith("/")) {
      throw new SnapshotError(SnapshotErrorCode.InvalidArgument, `root "${options.root}" must end with "/"`);
    }
    if (options.store.prefix.startsWith(`${options.root}${options.task}/`)) {
      throw new SnapshotError(
        SnapshotErrorCode.InvalidArgument,
        `Task "${options.task}" collides with the chunk prefix "${options.store.prefix}"`,
      );
    }
    this.store = options.store;
    this.root = options.root;
    this.task = options.task;
    this.verifyConcurrency = options.verifyConcurrency ?? 16;
    this.gcGraceMs = options.gcGraceMs ?? 60 * 60 * 1000;
    this.clock = options.clock ?? Date.now;
    this.logger = options.logger ?? silentLogger;
    if (options.signal) this.signal = options.signal;
  }

  get taskPrefix(): string {
    return `${this.root}${this.task}/`;
  }

  manifestKey(generation: number): string {
    return `${this.taskPrefix}gen-${String(generation).padStart(6, "0")}.json`;
  }

  // Where retire() keeps a generation's manifest for the record (not a commit marker: its
  // name is not gen-NNNNNN.json, so list(), restore and GC do not see it).
  retiredKey(generation: number): string {
    return `${this.taskPrefix}retired/${String(generation).padStart(6, "0")}.json`;
  }

  // The marker retire() writes first.
  get finishedKey(): string {
    return `${this.taskPrefix}finished.json`;
  }

  // Committed generations, oldest first. Other objects under the task prefix are ignored.
  async list(options: OpOptions = {}): Promise<number[]> {
    const generations: number[] = [];
    for await (const o of listObjects(this.store.client, this.store.bucket, this.taskPrefix, {
      signal: this.combine(options.signal),
    })) {
      const match = GENERATION_NAME.exec(o.key.slice(this.taskPrefix.length));
      if (match) generations.push(Number(match[1]));
    }
    return generations.sort((a, b) => a - b);
  }

  // The newest committed generation, or undefined when there is none.
  async latest(options: OpOptions = {}): Promise<number | undefined> {
    return (await this.list(options)).at(-1);
  }

  // The generation number the next commit should use.
  async nextGeneration(options: OpOptions = {}): Promise<number> {
    return ((await this.latest(options)) ?? 0) + 1;
  }

  // Reads and parses generation `generation`'s manifest.
  async load(generation: number, options: OpOptions = {}): Promise<Manifest> {
    const text = await this.readManifestText(generation, options);
    if (text === undefined) {
      const finished = await this.finished(options);
      const why = finished?.retiredGenerations?.includes(generation)
        ? `: the task finished at ${finished.finishedAt} and its memory images were removed (its manifests are kept under s3://${this.store.bucket}/${this.taskPrefix}retired/)`
        : "";
      throw new SnapshotError(
        SnapshotErrorCode.NotFound,
        `Task "${this.task}" has no snapshot generation ${generation} (s3://${this.store.bucket}/${this.manifestKey(generation)})${why}`,
        { generation },
      );
    }
    return parseManifest(text, {
      task: this.task,
      generation,
      source: `s3://${this.store.bucket}/${this.manifestKey(generation)}`,
    });
  }

  // The manifest's JSON text (decompressed when it was stored compressed), or undefined
  // when the generation does not exist.
  async readManifestText(generation: number, options: OpOptions = {}): Promise<string | undefined> {
    const signal = this.combine(options.signal);
    const key = this.manifestKey(generation);
    let body: Uint8Array;
    try {
      const r = await this.store.client.send(new GetObjectCommand({ Bucket: this.store.bucket, Key: key }), {
        abortSignal: signal,
      });
      body = (await r.Body?.transformToByteArray()) ?? new Uint8Array();
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw s3Error(err, `Reading manifest s3://${this.store.bucket}/${key}`, signal);
    }
    return decodeManifest(body, { source: `s3://${this.store.bucket}/${key}`, generation });
  }

  // Commits a snapshot: checks the manifest, checks that every chunk it references is in
  // the store, then writes the manifest. Writing it is the commit; nothing is written after.
  // `confirmChunks` HEADs chunks known only from the store's initial listing.
  async commit(manifest: Manifest, options: OpOptions & { confirmChunks?: boolean } = {}): Promise<string> {
    const signal = this.combine(options.signal);
    if (manifest.task.id !== this.task) {
      throw new SnapshotError(
        SnapshotErrorCode.InvalidArgument,
        `Manifest of task "${manifest.task.id}" cannot be committed to task "${this.task}"`,
      );
    }
    const { body, contentEncoding } = encodeManifest(serializeManifest(manifest));
    const missing: string[] = [];
    // The objects holding the chunks: each chunk's own, or its pack (checked once).
    const objects = new Set<string>();
    for (const [hash, ref] of manifestChunkHashes(manifest)) objects.add(ref.pack ?? hash);
    await forEachBounded(
      objects,
      this.verifyConcurrency,
      async (hash) => {
        if (!(await this.store.has(hash, { signal, confirm: options.confirmChunks }))) missing.push(hash);
      },
      boundedOptions(signal),
    );
    if (missing.length > 0) {
      throw new SnapshotError(
        SnapshotErrorCode.CommitIncomplete,
        `Cannot commit task "${this.task}" generation ${manifest.generation}: ${missing.length} chunks are not in the store, first ${missing[0]}`,
        { generation: manifest.generation, hash: missing[0] },
      );
    }
    const key = this.manifestKey(manifest.generation);
    if (await this.exists(key, signal)) {
      throw new SnapshotError(
        SnapshotErrorCode.GenerationExists,
        `Task "${this.task}" already has generation ${manifest.generation} (s3://${this.store.bucket}/${key})`,
        { generation: manifest.generation },
      );
    }
    try {
      // If-None-Match makes create-only atomic where S3 supports it (AWS since 2024), so two
      // committers of one generation cannot both win; the HEAD above covers the others.
      await this.store.client.send(
        new PutObjectCommand({
          Bucket: this.store.bucket,
          Key: key,
          Body: body,
          ContentType: "application/json",
          ...(contentEncoding ? { ContentEncoding: contentEncoding } : {}),
          IfNoneMatch: "*",
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) {
        throw new SnapshotError(
          SnapshotErrorCode.GenerationExists,
          `Task "${this.task}" already has generation ${manifest.generation} (s3://${this.store.bucket}/${key})`,
          { generation: manifest.generation, cause: err },
        );
      }
      throw s3Error(err, `Writing manifest s3://${this.store.bucket}/${key}`, signal);
    }
    this.logger.info({ task: this.task, generation: manifest.generation, key }, "snapshot committed");
    return key;
  }

  // Checks that a manifest's chunks are all there ("quick": HEAD, sizes match) or all
  // intact ("full": downloaded, decompressed and hashed). Throws the first damage found.
  verify(manifest: Manifest, mode: VerifyMode, options: OpOptions = {}): Promise<void> {
    return verifyManifest(this.store, manifest, {
      mode,
      concurrency: this.verifyConcurrency,
      signal: this.combine(options.signal),
    });
  }

  // The newest generation that loads and verifies, falling back over damaged ones; says
  // which were passed over and why. A manifest from a newer schema is not passed over:
  // it is refused (SNAPSHOT_SCHEMA_TOO_NEW), since falling back would silently lose work.
  async loadLatestUsable(options: OpOptions & { verify?: VerifyMode } = {}): Promise<UsableSnapshot> {
    const mode = options.verify ?? "quick";
    const generations = await this.list(options);
    const skipped: SkippedGeneration[] = [];
    for (const generation of generations.reverse()) {
      try {
        const manifest = await this.load(generation, options);
        await this.verify(manifest, mode, options);
        return { found: true, generation, manifest, skipped };
      } catch (err) {
        if (!(err instanceof SnapshotError) || !FALLBACK_CODES.has(err.code)) throw err;
        this.logger.warn(
          { task: this.task, generation, code: err.code, err },
          "snapshot generation unusable",
        );
        skipped.push({
          generation,
          code: err.code,
          message: err.message,
          ...(err.hash === undefined ? {} : { hash: err.hash }),
        });
      }
    }
    if (generations.length === 0) {
      const finished = await this.finished(options);
      if (finished) return { found: false, reason: "finished", finished, skipped };
    }
    return { found: false, reason: generations.length === 0 ? "no-snapshot" : "no-usable-snapshot", skipped };
  }

  // The finished marker, when retire() ran and no generation was committed since (a new
  // run of the task under the same id makes it stale).
  async finished(options: OpOptions = {}): Promise<FinishedMarker | undefined> {
    const signal = this.combine(options.signal);
    let text: string;
    try {
      const r = await this.store.client.send(
        new GetObjectCommand({ Bucket: this.store.bucket, Key: this.finishedKey }),
        { abortSignal: signal },
      );
      text = (await r.Body?.transformToString("utf8")) ?? "";
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw s3Error(err, `Reading s3://${this.store.bucket}/${this.finishedKey}`, signal);
    }
    try {
      return JSON.parse(text) as FinishedMarker;
    } catch {
      return { task: this.task, finishedAt: "an unknown time", retiredGenerations: [] };
    }
  }

  // After the task ended on its own: moves its manifests to retired/ (behind a finished
  // marker) and deletes the chunks only they referenced. Nothing of the task is
  // restorable afterwards, and nothing looks restorable. See docs/snapshot-format.md.
  retire(options: RetireOptions = {}): Promise<RetireReport> {
    return retireTask(this, { ...options, signal: this.combine(options.signal) });
  }

  // Removes old generations (keeping the newest `keep`) and then unreferenced chunks.
  gc(options: GcOptions): Promise<GcReport> {
    return collectGarbage(this, { ...options, signal: this.combine(options.signal) });
  }

  // Where setAside() keeps a generation's manifest (not a commit marker: list(), restore
  // and GC do not see it, so its chunks are collected like any unreferenced ones).
  unusableKey(generation: number): string {
    return `${this.taskPrefix}unusable/${String(generation).padStart(6, "0")}.json`;
  }

  // Takes generations that could not be restored out of the restorable set, so that the
  // next attempt does not fail on them again: each manifest is copied server-side (as
  // stored, encoding included) to unusable/ and then deleted. A crash between the two
  // leaves the generation restorable, which is only a repeat of the failure.
  async setAside(generations: number[], options: OpOptions = {}): Promise<void> {
    const signal = this.combine(options.signal);
    for (const generation of generations) {
      const from = this.manifestKey(generation);
      const to = this.unusableKey(generation);
      try {
        await this.store.client.send(
          new CopyObjectCommand({
            Bucket: this.store.bucket,
            Key: to,
            CopySource: `${this.store.bucket}/${encodeURIComponent(from).replaceAll("%2F", "/")}`,
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        if (isNotFound(err)) continue;
        throw s3Error(err, `Copying manifest s3://${this.store.bucket}/${from} to ${to}`, signal);
      }
      await this.deleteGeneration(generation, { signal });
    }
  }

  // Deletes one generation's manifest (used by GC; chunks are left for the sweep).
  async deleteGeneration(generation: number, options: OpOptions = {}): Promise<void> {
    const signal = this.combine(options.signal);
    const key = this.manifestKey(generation);
    try {
      await this.store.client.send(new DeleteObjectCommand({ Bucket: this.store.bucket, Key: key }), {
        abortSignal: signal,
      });
    } catch (err) {
      throw s3Error(err, `Deleting manifest s3://${this.store.bucket}/${key}`, signal);
    }
  }

  combine(signal?: AbortSignal): AbortSignal | undefined {
    const s = this.store.combine(signal);
    if (!this.signal) return s;
    return s ? AbortSignal.any([this.signal, s]) : this.signal;
  }

  private async exists(key: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.store.client.send(new HeadObjectCommand({ Bucket: this.store.bucket, Key: key }), {
        abortSignal: signal,
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw s3Error(err, `HEAD of s3://${this.store.bucket}/${key}`, signal);
    }
  }
}

// Damage that makes a generation unusable but leaves older ones worth trying.
const FALLBACK_CODES = new Set<string>([
  SnapshotErrorCode.CorruptChunk,
  SnapshotErrorCode.MissingChunk,
  SnapshotErrorCode.ManifestCorrupt,
  SnapshotErrorCode.NotFound,
]);
