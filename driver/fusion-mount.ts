import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { S3Client } from "@aws-sdk/client-s3";
import Fuse from "fuse-native";
import { type Logger, silentLogger } from "../common/log.js";
import type { ChunkedFile } from "../store/index.js";
import { BlockCache } from "./cache/block-cache.js";
import { DriverError, Errno } from "./errors.js";
import { FileTable } from "./files/file-table.js";
import type { FileState } from "./files/open-file.js";
import { fuseOps } from "./fuse/fuse-ops.js";
import { Namespace } from "./namespace/namespace.js";
import { parsePath } from "./namespace/paths.js";
import { type FusionOptions, type ResolvedFusionOptions, resolveOptions } from "./options.js";
import { BlockSource } from "./read/block-source.js";
import { createS3Client } from "./s3/client.js";
import { S3Ops } from "./s3/s3-ops.js";
import { Semaphore } from "./util/semaphore.js";

const execFileAsync = promisify(execFile);

// The committed state of one file: its object (key, size, ETag) or, in a chunked area, its
// chunk list (etag is then "").
export interface CommittedFile {
  bucket: string;
  key: string;
  size: number;
  etag: string;
  chunks?: ChunkedFile;
}

export interface CommitOptions {
  // Files to commit: paths under the mountpoint (absolute, or relative like "s3/b/k").
  // Default: every file written through the mount since the previous commit.
  paths?: string[];
  signal?: AbortSignal;
}

// A mounted Fusion filesystem. ready() and close() are memoized and idempotent.
export class FusionMount {
  readonly options: ResolvedFusionOptions;
  private readonly logger: Logger;
  private opening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private fuse: Fuse | undefined;
  private client: S3Client | undefined;
  private ownClient = false;
  private cache: BlockCache | undefined;
  private source: BlockSource | undefined;
  private files: FileTable | undefined;
  private ns: Namespace | undefined;
  private s3: S3Ops | undefined;

  constructor(options: FusionOptions) {
    this.logger = options.logger ?? silentLogger;
    this.options = resolveOptions(options, this.logger);
  }

  get mountpoint(): string {
    return resolve(this.options.mountpoint);
  }

  ready(): Promise<void> {
    this.opening ??= this.open();
    return this.opening;
  }

  private async open(): Promise<void> {
    const o = this.options;
    this.client = o.client;
    if (!this.client) {
      this.client = createS3Client({
        endpoint: o.endpoint,
        region: o.region,
        forcePathStyle: o.forcePathStyle,
        maxSockets: o.maxConcurrentGets + o.uploadConcurrency + o.namespaceConcurrency,
      });
      this.ownClient = true;
    }
    const policy = {
      maxAttempts: o.maxAttempts,
      baseMs: o.retryBaseMs,
      timeoutMs: o.requestTimeoutMs,
      logger: this.logger,
    };
    this.s3 = new S3Ops(this.client, policy, {
      threshold: o.copyThreshold,
      partSize: o.copyPartSize,
      concurrency: o.copyConcurrency,
    });
    this.cache = new BlockCache({
      dir: join(o.cacheDir, "blocks"),
      maxBytes: o.cacheSize,
      logger: this.logger,
    });
    await this.cache.init();
    const stagingDir = join(o.cacheDir, "staging");
    await rm(stagingDir, { recursive: true, force: true });
    await mkdir(stagingDir, { recursive: true });
    this.source = new BlockSource({
      s3: this.s3,
      cache: this.cache,
      blockSize: o.blockSize,
      partSize: o.partSize,
      readMemory: o.readMemory,
      maxConcurrentGets: o.maxConcurrentGets,
      requestTimeoutMs: o.requestTimeoutMs,
      maxAttempts: o.maxAttempts,
      retryBaseMs: o.retryBaseMs,
      logger: this.logger,
    });
    this.files = new FileTable(
      {
        upload: {
          s3: this.s3,
          partSize: o.uploadPartSize,
          uploadConcurrency: o.uploadConcurrency,
          uploadSlots: new Semaphore(o.uploadConcurrency),
          uploadMemory: new Semaphore(o.uploadMemory),
          logger: this.logger,
          spillDir: stagingDir,
        },
        source: this.source,
        reader: { partSize: o.partSize, prefetchInitial: o.prefetchInitial, prefetchMax: o.prefetchMax },
        stagingDir,
        logger: this.logger,
      },
      o.chunkedAreas,
      { uid: o.uid, gid: o.gid },
      this.logger,
    );
    this.ns = new Namespace({
      s3: this.s3,
      files: this.files,
      buckets: o.buckets,
      statTtlMs: o.statTtlMs,
      concurrency: o.namespaceConcurrency,
      uid: o.uid,
      gid: o.gid,
      logger: this.logger,
    });
    const ops = fuseOps(this.ns, this.files, { uid: o.uid, gid: o.gid }, this.logger);
    // fuse-native has no options for these: they ride on the fsname string, which it joins
    // into the -o list with commas. No hard_remove: with it libfuse answers ENOENT to any I/O
    // on an unlinked open file (fuse-native does not set nullpath_ok); the rename to
    // .fuse_hidden* it does instead is handled by Namespace without copying anything.
    const fsname = ["fusion", "big_writes", `max_readahead=${o.maxReadahead}`, "subtype=fusion"].join(",");
    this.fuse = new Fuse(this.mountpoint, ops as unknown as Record<string, (...args: never[]) => void>, {
      timeout: false,
      force: true,
      mkdir: true,
      fsname,
    });
    const fuse = this.fuse;
    try {
      await new Promise<void>((ok, fail) => fuse.mount((err) => (err ? fail(err) : ok())));
    } catch (err) {
      await this.release();
      throw new DriverError(
        "DRIVER_MOUNT_FAILED",
        `Cannot mount Fusion on ${this.mountpoint}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    this.logger.info({ mountpoint: this.mountpoint, cacheDir: o.cacheDir }, "fusion mounted");
  }

  // Flushes every dirty file (or the given ones) and returns what each file now is in S3.
  async commit(options: CommitOptions = {}): Promise<CommittedFile[]> {
    this.assertOpen("commit");
    await this.ready();
    const files = this.files as FileTable;
    const ns = this.ns as Namespace;
    const s3 = this.s3 as S3Ops;
    const targets = options.paths?.map((p) => this.locateFile(p));
    const work = files.commit(
      targets,
      async (bucket, key): Promise<FileState> => {
        const info = await s3.head(bucket, key, options.signal);
        if (!info)
          throw new DriverError("DRIVER_NOT_FOUND", `s3://${bucket}/${key} does not exist`, {
            errno: Errno.ENOENT,
          });
        return { bucket, key, size: info.size, etag: info.etag };
      },
      this.options.uploadConcurrency,
    );
    void ns;
    if (!options.signal) return await work;
    const signal = options.signal;
    return await new Promise<CommittedFile[]>((ok, fail) => {
      const onAbort = () =>
        fail(new DriverError("DRIVER_ABORTED", "commit was aborted", { cause: signal.reason }));
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      work.then(ok, fail).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  // Makes read-only chunked files appear under `prefix` (e.g. a snapshot's images on restore).
  async presentChunkedFiles(input: {
    bucket: string;
    prefix: string;
    files: Array<{ name: string; file: ChunkedFile }>;
  }): Promise<void> {
    this.assertOpen("presentChunkedFiles");
    await this.ready();
    const area = this.options.chunkedAreas.find(
      (a) => a.bucket === input.bucket && `${input.prefix.replace(/\/?$/, "/")}`.startsWith(a.prefix),
    );
    if (!area)
      throw new DriverError(
        "DRIVER_INVALID_OPTION",
        `No chunked area covers s3://${input.bucket}/${input.prefix}: add it to the chunkedAreas option`,
      );
    const prefix = input.prefix === "" || input.prefix.endsWith("/") ? input.prefix : `${input.prefix}/`;
    for (const { name, file } of input.files) {
      (this.files as FileTable).present(input.bucket, `${prefix}${name}`, file, area.store);
      (this.ns as Namespace).stats.delete(`/s3/${input.bucket}/${prefix}${name}`);
    }
  }

  private assertOpen(what: string): void {
    if (this.closing)
      throw new DriverError(
        "DRIVER_NOT_MOUNTED",
        `Cannot ${what}: the mount on ${this.mountpoint} is closed`,
      );
  }

  private locateFile(path: string): { bucket: string; key: string } {
    const inside = path.startsWith(`${this.mountpoint}/`)
      ? path.slice(this.mountpoint.length)
      : path.startsWith("/")
        ? path
        : `/${path}`;
    const loc = parsePath(inside);
    if (loc?.kind !== "object")
      throw new DriverError(
        "DRIVER_INVALID_OPTION",
        `"${path}" is not a file path under ${this.mountpoint}/s3/<bucket>/`,
      );
    return loc;
  }

  // Flushes dirty files, unmounts (lazily if busy) and frees the cache; never throws for a
  // failed flush (it is logged), and never leaves the mount behind.
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    await this.opening?.catch(() => {});
    if (!this.fuse) return;
    const failures = await (this.files as FileTable).flushAll();
    if (failures > 0) this.logger.error({ failures }, "some files could not be flushed before unmount");
    const fuse = this.fuse;
    this.fuse = undefined;
    try {
      await new Promise<void>((ok, fail) => fuse.unmount((err) => (err ? fail(err) : ok())));
    } catch (err) {
      this.logger.warn({ err }, "unmount failed; detaching lazily");
      await execFileAsync("fusermount", ["-u", "-z", this.mountpoint]).catch((e: unknown) =>
        this.logger.error({ err: e }, "fusermount -u -z failed"),
      );
    }
    const reads = this.source?.stats;
    await this.release();
    this.logger.info({ mountpoint: this.mountpoint, reads }, "fusion unmounted");
  }

  private async release(): Promise<void> {
    await this.files?.disposeAll();
    await this.source?.close();
    await this.cache?.close({ remove: this.options.ownCacheDir });
    if (this.options.ownCacheDir) await rm(this.options.cacheDir, { recursive: true, force: true });
    else await rm(join(this.options.cacheDir, "staging"), { recursive: true, force: true });
    if (this.ownClient) this.client?.destroy();
  }
}

// Mounts Fusion and resolves once the kernel has it.
export async function mountFusion(options: FusionOptions): Promise<FusionMount> {
  const mount = new FusionMount(options);
  try {
    await mount.ready();
  } catch (err) {
    await mount.close().catch(() => {});
    throw err;
  }
  return mount;
}
