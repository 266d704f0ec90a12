import { forEachBounded } from "../../common/for-each-bounded.js";
import type { Logger } from "../../common/log.js";
import type { ChunkedFile, ChunkStoreLike } from "../../store/index.js";
import { DriverError, Errno } from "../errors.js";
import type { ChunkedArea } from "../options.js";
import type { ObjectVersion } from "../read/block-source.js";
import type { FileReader } from "../read/file-reader.js";
import { type FileMeta, S_IFREG } from "../s3/metadata.js";
import { type FileContext, type FileState, OpenFile } from "./open-file.js";

interface Handle {
  file: OpenFile;
  reader?: FileReader;
}

// A chunked file known to the mount: written here, or presented by presentChunkedFiles.
export interface ChunkedEntry {
  file: ChunkedFile;
  store: ChunkStoreLike;
  readOnly: boolean;
  mtimeMs: number;
}

const id = (bucket: string, key: string) => `${bucket}\0${key}`;

// How many failed new files, and for how long, an open for writing recreates (see FileTable.lost).
const LOST_MAX = 1000;
const LOST_MS = 10 * 60_000;

// Open files and their handles, the chunked files of snapshot areas, and what was written
// since the last commit.
export class FileTable {
  private readonly files = new Map<string, OpenFile>();
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  readonly chunked = new Map<string, ChunkedEntry>();
  private readonly written = new Map<string, FileState>();
  // New files whose upload failed (never in S3), by key, with when: the kernel may still
  // hold their dentry and send a plain open for the next `> file` (FUSE strips O_CREAT,
  // and O_TRUNC without atomic_o_trunc), which must create the file again, not fail.
  private readonly lost = new Map<string, number>();
  // Called after each successful flush, so the stat cache can hold the new state.
  onFlushed: (state: FileState, file: OpenFile) => void = () => {};
  // Called when a read found the object replaced behind the mount, so the stat cache forgets it.
  onChanged: (file: OpenFile) => void = () => {};

  constructor(
    private readonly ctx: FileContext,
    private readonly areas: ChunkedArea[],
    private readonly defaults: { uid: number; gid: number },
    private readonly logger: Logger,
  ) {}

  areaFor(bucket: string, key: string): ChunkedArea | undefined {
    return this.areas.find((a) => a.bucket === bucket && key.startsWith(a.prefix));
  }

  openFile(bucket: string, key: string): OpenFile | undefined {
    return this.files.get(id(bucket, key));
  }

  // A small object's body that came with its lookup: kept for the read that usually follows.
  offerBody(obj: ObjectVersion, body: Buffer): void {
    this.ctx.source.offer(obj, body);
  }

  // Whether `key` was a new file whose upload failed within the last LOST_MS (see `lost`).
  wasLost(bucket: string, key: string): boolean {
    const at = this.lost.get(id(bucket, key));
    return at !== undefined && Date.now() - at < LOST_MS;
  }

  // An open file a new open must not share: clean, and its version replaced in S3.
  isStale(file: OpenFile | undefined): boolean {
    return (file?.changed ?? false) && file?.mode === "clean" && !file.dirty && !file.unlinked;
  }

  // Open files whose key is `prefix` or below it.
  openUnder(bucket: string, prefix: string): OpenFile[] {
    return [...this.files.values()].filter(
      (f) => f.bucket === bucket && f.key.startsWith(prefix) && !f.unlinked,
    );
  }

  chunkedEntry(bucket: string, key: string): ChunkedEntry | undefined {
    return this.chunked.get(id(bucket, key));
  }

  chunkedUnder(bucket: string, prefix: string): Array<{ key: string; entry: ChunkedEntry }> {
    const out: Array<{ key: string; entry: ChunkedEntry }> = [];
    for (const [k, entry] of this.chunked) {
      const [b, key] = k.split("\0") as [string, string];
      if (b === bucket && key.startsWith(prefix)) out.push({ key, entry });
    }
    return out;
  }

  present(bucket: string, key: string, file: ChunkedFile, store: ChunkStoreLike): void {
    this.chunked.set(id(bucket, key), { file, store, readOnly: true, mtimeMs: Date.now() });
  }

  removeChunked(bucket: string, key: string): boolean {
    return this.chunked.delete(id(bucket, key));
  }

  moveChunked(from: { bucket: string; key: string }, to: { bucket: string; key: string }): void {
    const entry = this.chunked.get(id(from.bucket, from.key));
    if (!entry) return;
    this.chunked.delete(id(from.bucket, from.key));
    this.chunked.set(id(to.bucket, to.key), entry);
  }

  // Re-keys an open file after a rename (its later flushes go to the new key).
  rekey(file: OpenFile, bucket: string, key: string): void {
    this.files.delete(id(file.bucket, file.key));
    file.bucket = bucket;
    file.key = key;
    if (file.base) file.base = { ...file.base, bucket, key };
    this.files.set(id(bucket, key), file);
  }

  private handleOf(fh: number): Handle {
    const handle = this.handles.get(fh);
    if (!handle)
      throw new DriverError("DRIVER_NOT_SUPPORTED", `No open file with handle ${fh}`, { errno: Errno.EBADF });
    return handle;
  }

  fileOf(fh: number): OpenFile {
    return this.handleOf(fh).file;
  }

  private addHandle(file: OpenFile): number {
    file.refs++;
    const fh = this.nextHandle++;
    if (this.nextHandle > 0x7fffffff) this.nextHandle = 1;
    this.handles.set(fh, { file });
    return fh;
  }

  // Opens an existing file (`base` from a fresh stat) and returns a handle.
  open(
    bucket: string,
    key: string,
    base: { etag: string; size: number; meta: FileMeta } | undefined,
  ): number {
    let file = this.files.get(id(bucket, key));
    // Its handles keep the old version; this open gets the one `base` names.
    if (base && this.isStale(file)) {
      this.files.delete(id(bucket, key));
      file = undefined;
    }
    if (!file) {
      const chunkedEntry = this.chunked.get(id(bucket, key));
      const area = this.areaFor(bucket, key);
      file = new OpenFile(
        this.ctx,
        bucket,
        key,
        base ? { bucket, key, etag: base.etag, size: base.size } : undefined,
        base?.meta ?? this.newMeta(0o644),
        chunkedEntry?.store ?? area?.store,
        chunkedEntry?.readOnly ?? false,
      );
      if (chunkedEntry) {
        file.mode = "chunked";
        file.chunked = chunkedEntry.file;
      }
      this.files.set(id(bucket, key), file);
    }
    return this.addHandle(file);
  }

  // Creates (or empties) a file and returns a handle; nothing reaches S3 before the flush.
  create(bucket: string, key: string, mode: number): number {
    let file = this.files.get(id(bucket, key));
    // An unlinked file still open elsewhere keeps its own state; the new file is another one.
    if (file?.unlinked) {
      this.files.delete(id(bucket, key));
      file = undefined;
    }
    if (file?.readOnly)
      throw new DriverError("DRIVER_NOT_SUPPORTED", `s3://${bucket}/${key} is read-only`, {
        errno: Errno.EROFS,
      });
    if (!file) {
      const area = this.areaFor(bucket, key);
      file = new OpenFile(this.ctx, bucket, key, undefined, this.newMeta(mode & 0o7777), area?.store);
      this.files.set(id(bucket, key), file);
    }
    file.unlinked = false;
    file.startNew();
    this.markWritten(file);
    return this.addHandle(file);
  }

  private newMeta(perm: number): FileMeta {
    return { mode: S_IFREG | perm, uid: this.defaults.uid, gid: this.defaults.gid, mtimeMs: Date.now() };
  }

  private markWritten(file: OpenFile): void {
    this.written.set(id(file.bucket, file.key), file.state());
  }

  async read(fh: number, target: Buffer, length: number, offset: number): Promise<number> {
    const handle = this.handleOf(fh);
    try {
      return await handle.file.read(handle, target, length, offset);
    } catch (err) {
      if (err instanceof DriverError && err.code === "DRIVER_OBJECT_CHANGED" && !handle.file.changed) {
        handle.file.changed = true;
        this.logger.warn(
          { path: handle.file.what, etag: handle.file.base?.etag },
          "the object was replaced while open: reads of this open file beyond what is cached answer ESTALE; a new open reads the new version",
        );
        this.onChanged(handle.file);
      }
      throw err;
    }
  }

  async write(fh: number, data: Buffer, offset: number): Promise<void> {
    const file = this.fileOf(fh);
    await file.write(data, offset);
    this.markWritten(file);
  }

  async truncate(file: OpenFile, size: number): Promise<void> {
    await file.truncate(size);
    this.markWritten(file);
  }

  // Flushes one file; records the result for commit() and the stat cache.
  async flushFile(file: OpenFile, options: { deferEmpty?: boolean } = {}): Promise<FileState | undefined> {
    const key = id(file.bucket, file.key);
    let state: FileState | undefined;
    try {
      state = await file.flush(options);
      this.lost.delete(key);
    } catch (err) {
      if (!file.base) {
        this.lost.set(key, Date.now());
        // Bounded: the oldest go first.
        for (const old of this.lost.keys()) {
          if (this.lost.size <= LOST_MAX) break;
          this.lost.delete(old);
        }
      }
      throw err;
    }
    if (state) {
      if (state.chunks) {
        this.chunked.set(id(file.bucket, file.key), {
          file: state.chunks,
          store: file.chunkStore as ChunkStoreLike,
          readOnly: false,
          mtimeMs: file.mtimeMs,
        });
      }
      if (this.written.has(id(file.bucket, file.key))) this.written.set(id(file.bucket, file.key), state);
      // A clean file whose object was replaced holds a version S3 no longer has.
      if (!this.isStale(file)) this.onFlushed(state, file);
    }
    return state;
  }

  async flush(fh: number, options: { deferEmpty?: boolean } = {}): Promise<void> {
    await this.flushFile(this.fileOf(fh), options);
  }

  // Drops a handle; the last one flushes anything still dirty and frees the local copy.
  async release(fh: number): Promise<void> {
    const handle = this.handles.get(fh);
    if (!handle) return;
    this.handles.delete(fh);
    const file = handle.file;
    if (--file.refs > 0) return;
    try {
      if (file.dirty) await this.flushFile(file);
    } catch (err) {
      this.logger.error({ err, path: file.what }, "flush at release failed");
    } finally {
      if (file.refs === 0) {
        if (this.files.get(id(file.bucket, file.key)) === file) this.files.delete(id(file.bucket, file.key));
        await file.dispose();
      }
    }
  }

  // Flushes the given files (or everything written since the last commit) and returns their
  // states. `resolve` stats files that are not open.
  async commit(
    targets: Array<{ bucket: string; key: string }> | undefined,
    resolve: (bucket: string, key: string) => Promise<FileState>,
    concurrency: number,
  ): Promise<FileState[]> {
    const list =
      targets ??
      [
        ...this.written.keys(),
        ...[...this.files.values()].filter((f) => f.dirty).map((f) => id(f.bucket, f.key)),
      ]
        .filter((k, i, all) => all.indexOf(k) === i)
        .map((k) => {
          const [bucket, key] = k.split("\0") as [string, string];
          return { bucket, key };
        });
    const results: FileState[] = new Array(list.length);
    await forEachBounded(
      list.map((t, i) => ({ t, i })),
      concurrency,
      async ({ t, i }) => {
        const file = this.files.get(id(t.bucket, t.key));
        let state = file && !file.unlinked ? await this.flushFile(file) : undefined;
        if (!state) {
          const chunkedEntry = this.chunked.get(id(t.bucket, t.key));
          state = chunkedEntry
            ? {
                bucket: t.bucket,
                key: t.key,
                size: chunkedEntry.file.size,
                etag: "",
                chunks: chunkedEntry.file,
              }
            : await resolve(t.bucket, t.key);
        }
        results[i] = state;
      },
    );
    if (!targets) this.written.clear();
    return results;
  }

  // Flushes every dirty file (at unmount); failures are logged and counted.
  async flushAll(): Promise<number> {
    let failures = 0;
    await forEachBounded(
      [...this.files.values()].filter((f) => f.dirty),
      4,
      async (file) => {
        try {
          await this.flushFile(file);
        } catch (err) {
          failures++;
          this.logger.error({ err, path: file.what }, "flush at unmount failed");
        }
      },
    );
    return failures;
  }

  async disposeAll(): Promise<void> {
    for (const file of this.files.values()) await file.dispose();
    this.files.clear();
    this.handles.clear();
  }
}
