import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { requirePageHashModule } from "../../common/page-hash.js";
import { abortError, SnapshotError, SnapshotErrorCode } from "../errors.js";
import { CHUNK_HEADER_BYTES, ChunkCodec, type ChunkCodecValue } from "./chunk-format.js";
import { SharedBufferPool } from "./shared-buffers.js";

// The worker's code, plain CommonJS evaluated from a string: that runs the same under
// tsx (tests), vitest and compiled dist/ without a loader for a .ts worker file.
// It hashes and compresses (or decompresses and hashes) one chunk per message, so that
// neither SHA-256 nor zstd ever runs on the thread that serves FUSE.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const zlib = require("node:zlib");
const zstd = require(workerData.zstdPath);
const compressor = new zstd.Compressor();
compressor.setParameters({ compressionLevel: workerData.level });
const decompressor = new zstd.Decompressor();
const HEADER = workerData.headerBytes;
// The quick hash: the XXH3-128 of each page with the pool's random seed, computed for a
// whole piece in one call of the native module (see common/page-hash.ts); it finds the pages
// unchanged since the previous generation at the same place (see hashMany).
const { hashPages } = require(workerData.pageHashPath);
const SEED = workerData.seed;
parentPort.on("message", handle);
const PAGE = workerData.pageBytes;
const MAX_RUNS = workerData.maxRuns;
function sha256(data) {
  return createHash("sha256").update(data).digest("hex");
}
// The runs of pages [first, first + pages) whose quick hashes differ between previous and
// current, as [page in the piece, pages]; runs one unchanged page apart are joined (one page
// uploaded again costs less than the two more slices a gap makes).
function splitRuns(previous, current, first, pages) {
  const runs = [];
  for (let p = 0; p < pages; p++) {
    const at = (first + p) * 16;
    if (previous.compare(current, at, at + 16, at, at + 16) === 0) continue;
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] >= p - 1) last[1] = p - last[0] + 1;
    else runs.push([p, 1]);
  }
  return runs;
}
function handle(m) {
  try {
    if (m.op === "decodeMany") {
      // Stored chunks lying in m.buffer (a ranged GET of a pack, in a SharedArrayBuffer),
      // each decompressed and hashed. A compressed chunk's bytes go into m.out at
      // m.offsets[i] (room for its expected size); an uncompressed one is read in place
      // (inPlace[i]). A failure, or a size other than expected, is reported per chunk.
      const out = Buffer.from(m.out);
      const hashes = [];
      const sizes = [];
      const errors = [];
      const inPlace = [];
      for (const [i, e] of m.entries.entries()) {
        try {
          const payload = Buffer.from(m.buffer, e.start, e.length);
          const data = e.codec === 1 ? decompressor.decompress(payload) : payload;
          hashes.push(createHash("sha256").update(data).digest("hex"));
          sizes.push(data.length);
          errors.push(null);
          inPlace.push(e.codec !== 1);
          if (e.codec === 1 && data.length === e.size) data.copy(out, m.offsets[i]);
        } catch (err) {
          hashes.push("");
          sizes.push(0);
          errors.push(String((err && err.message) || err));
          inPlace.push(false);
        }
      }
      parentPort.postMessage({ id: m.id, hashes, sizes, errors, inPlace });
    } else if (m.op === "hashMany") {
      // With m.quick: the quick hash of every page (PAGE bytes, the data's last one maybe
      // shorter) too. A piece whose pages all have m.previous's quick hashes (where m.usable
      // says it may be compared) gets no SHA-256: its hash is "" (the caller reuses what it
      // had there before). A piece that changed in a few runs of pages (where m.split says
      // so) gets the SHA-256 of each run instead of its own: splits[i] = [[page, pages,
      // hash], ...] (see splitRuns).
      const hashes = [];
      const splits = [];
      const pagesPerChunk = m.chunkSize / PAGE;
      const quick = m.quick ? Buffer.allocUnsafeSlow(16 * Math.ceil(m.length / PAGE)) : undefined;
      const previous = m.previous ? Buffer.from(m.previous) : undefined;
      for (let o = 0, i = 0; o < m.length; o += m.chunkSize, i++) {
        const data = Buffer.from(m.buffer, o, Math.min(m.length, o + m.chunkSize) - o);
        splits.push(null);
        if (quick) {
          const first = i * pagesPerChunk;
          const pages = Math.ceil(data.length / PAGE);
          hashPages(data, PAGE, SEED, quick.subarray(first * 16, (first + pages) * 16));
          if (previous && m.usable[i]) {
            const runs = splitRuns(previous, quick, first, pages);
            if (runs.length === 0) {
              hashes.push("");
              continue;
            }
            const changed = runs.reduce((n, r) => n + r[1], 0);
            if (m.split[i] && runs.length <= MAX_RUNS && changed * 4 <= pages * 3) {
              splits[i] = runs.map(([p, n]) => [p, n, sha256(data.subarray(p * PAGE, (p + n) * PAGE))]);
              hashes.push("");
              continue;
            }
          }
        }
        hashes.push(sha256(data));
      }
      parentPort.postMessage(
        { id: m.id, hashes, splits, quick: quick && quick.buffer },
        quick ? [quick.buffer] : [],
      );
    } else if (m.op === "crc32") {
      const crc32 = zlib.crc32(Buffer.from(m.buffer, 0, m.length));
      parentPort.postMessage({ id: m.id, crc32 });
    } else if (m.op === "compressMany") {
      // Into m.out, a SharedArrayBuffer the caller lent: object k (header room + payload)
      // at m.offsets[k], where HEADER + its uncompressed length is reserved (a payload that
      // does not shrink is stored as it is). Nothing is transferred back.
      const out = Buffer.from(m.out);
      const lengths = [];
      const codecs = [];
      for (let k = 0; k < m.ranges.length; k += 2) {
        const data = Buffer.from(m.buffer, m.ranges[k], m.ranges[k + 1]);
        const packed = compressor.compress(data);
        const codec = packed.length < data.length ? 1 : 0;
        const payload = codec === 1 ? packed : data;
        payload.copy(out, m.offsets[k / 2] + HEADER);
        lengths.push(HEADER + payload.length);
        codecs.push(codec);
      }
      parentPort.postMessage({ id: m.id, lengths, codecs });
    } else if (m.op === "encode") {
      const data = Buffer.from(m.buffer, 0, m.length);
      const hash = createHash("sha256").update(data).digest("hex");
      const packed = compressor.compress(data);
      const codec = packed.length < data.length ? 1 : 0;
      const payload = codec === 1 ? packed : data;
      const object = Buffer.allocUnsafeSlow(HEADER + payload.length);
      payload.copy(object, HEADER);
      parentPort.postMessage({ id: m.id, hash, codec, object: object.buffer }, [object.buffer]);
    } else {
      const payload = Buffer.from(m.buffer, 0, m.length);
      let data;
      if (m.codec === 1) {
        data = decompressor.decompress(payload);
      } else {
        data = payload;
      }
      const hash = createHash("sha256").update(data).digest("hex");
      // Only a buffer that owns its whole ArrayBuffer may be transferred: Buffer.from() of
      // less than 4 KiB is a slice of Node's shared pool (byteOffset > 0), which the main
      // thread would read from offset 0, and transferring it would detach the pool.
      let out = data;
      if (data.byteOffset !== 0 || data.length !== data.buffer.byteLength) {
        out = Buffer.allocUnsafeSlow(data.length);
        data.copy(out);
      }
      parentPort.postMessage({ id: m.id, hash, data: out.buffer, length: out.length }, [out.buffer]);
    }
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err && err.message || err) });
  }
}
`;

// The unit of the quick hashes: a page, what CRIU's memory images are made of.
export const PAGE_BYTES = 4096;
// A changed piece is split into slices of its previous chunks and new chunks for its changed
// runs only when it changed in at most this many runs (each run costs two more references
// in the manifest, and a reader one more chunk).
export const MAX_SPLIT_RUNS = 3;

// One changed run of pages of a piece: [first page in the piece, pages, SHA-256 of them].
export type SplitRun = [number, number, string];

export interface CodecPoolOptions {
  // Worker threads. Default: as many as the cores, at most 4 (measured: with one worker on
  // 2 cores, hashing and compressing a 1 GiB dump was what an incremental checkpoint
  // waited for; the event loop needs little CPU while images upload).
  threads?: number;
  // zstd level for encode. Default 3.
  compressionLevel?: number;
}

export interface EncodedChunk {
  hash: string;
  codec: ChunkCodecValue;
  // The whole object to store, with CHUNK_HEADER_BYTES left for the header.
  object: Buffer;
}

export interface DecodedChunk {
  hash: string;
  data: Buffer;
}

// The worker could not process a chunk (zstd refused the data, out of memory). Callers
// turn it into the right SnapshotError: a chunk that will not decompress is corrupt.
export class CodecJobError extends Error {
  override readonly name = "CodecJobError";
}

interface Job {
  id: number;
  message: Record<string, unknown>;
  transfer: ArrayBuffer[];
  resolve(value: Record<string, unknown>): void;
  reject(err: unknown): void;
  urgent: boolean;
}

interface Slot {
  worker: Worker;
  job?: Job;
}

// A fixed set of worker threads pulling chunk jobs from one queue. The queue itself is
// bounded by the callers (writers limit their buffered bytes, readers their downloads).
export class CodecPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  private readonly threads: number;
  private readonly level: number;
  private readonly zstdPath: string;
  private readonly pageHashPath: string;
  // The quick hash's seed, random per pool: quick hashes compare only within one pool.
  private readonly seed = randomBytes(8).readBigUInt64LE(0);
  // compressMany's outputs, released by their callers.
  private readonly outputs: SharedBufferPool;

  constructor(options: CodecPoolOptions = {}) {
    this.threads = options.threads ?? Math.max(1, Math.min(4, availableParallelism()));
    this.outputs = new SharedBufferPool(this.threads * 2 + 2);
    this.level = options.compressionLevel ?? 3;
    if (!Number.isInteger(this.threads) || this.threads < 1) {
      throw new SnapshotError(SnapshotErrorCode.InvalidArgument, `threads must be >= 1, got ${this.threads}`);
    }
    const require = createRequire(import.meta.url);
    this.zstdPath = require.resolve("zstd-napi");
    this.pageHashPath = requirePageHashModule();
  }

  // Hashes each `chunkSize` piece of the first `length` bytes of `buffer` in one message
  // (the worker reads it in place: leave it unchanged until this settles). With `quick`, also
  // returns the 16-byte quick hash (XXH3-128, seeded per pool) of each page (PAGE_BYTES)
  // of the batch, and compares them with `quick.previous` (the same pages' quick hashes
  // last time) for the pieces where `quick.usable` is true:
  // - a piece with all its pages equal gets no SHA-256: its hash is "" (the caller reuses
  //   what it had there before);
  // - a piece that changed in at most MAX_SPLIT_RUNS runs of pages covering at most 3/4 of
  //   it, where `quick.split` is true, gets hash "" and `splits[i]`: each changed run as
  //   [first page in the piece, pages, SHA-256 of those bytes] (the caller stores the runs
  //   as chunks and the rest as slices of the previous chunks);
  // - any other piece gets its SHA-256.
  async hashMany(
    buffer: SharedArrayBuffer,
    length: number,
    chunkSize: number,
    signal?: AbortSignal,
    quick?: { previous?: Buffer; usable?: boolean[]; split?: boolean[] },
  ): Promise<{ hashes: string[]; splits: (SplitRun[] | null)[]; quick?: Buffer }> {
    const message: Record<string, unknown> = { op: "hashMany", buffer, length, chunkSize };
    if (quick) {
      message.quick = true;
      if (quick.previous && quick.usable) {
        message.previous = quick.previous;
        message.usable = quick.usable;
        message.split = quick.split ?? quick.usable.map(() => false);
      }
    }
    const r = await this.run(message, signal);
    return {
      hashes: r.hashes as string[],
      splits: r.splits as (SplitRun[] | null)[],
      ...(r.quick ? { quick: Buffer.from(r.quick as ArrayBuffer) } : {}),
    };
  }

  // The CRC-32 (IEEE, as S3's x-amz-checksum-crc32) of the first `length` bytes of
  // `buffer`, read in place. Urgent: it is the last step before an upload.
  async crc32(buffer: SharedArrayBuffer, length: number, signal?: AbortSignal): Promise<number> {
    const r = await this.run({ op: "crc32", buffer, length }, signal, true);
    return r.crc32 as number;
  }

  // Compresses the byte ranges `ranges` ([start, length] each) of `buffer` (read in place)
  // in one message: one stored object each, in the order of `ranges`, all views of
  // one buffer. That buffer is a SharedArrayBuffer from the pool's spares: once done with
  // every object, the caller calls `release()` to lend it to a later batch (the objects
  // must not be used after that). An output never released is left to the garbage
  // collector.
  async compressMany(
    buffer: SharedArrayBuffer,
    ranges: [number, number][],
    signal?: AbortSignal,
  ): Promise<{
    encoded: { codec: ChunkCodecValue; object: Buffer }[];
    release: () => void;
  }> {
    const offsets: number[] = [];
    let needed = 0;
    for (const [, length] of ranges) {
      offsets.push(needed);
      needed += CHUNK_HEADER_BYTES + length;
    }
    const out = this.outputs.take(needed);
    let r: Record<string, unknown>;
    try {
      r = await this.run({ op: "compressMany", buffer, ranges: ranges.flat(), out, offsets }, signal, true);
    } catch (err) {
      if (!(err instanceof CodecJobError)) throw err;
      throw new SnapshotError(SnapshotErrorCode.WorkerFailed, `Compressing chunks failed: ${err.message}`, {
        cause: err,
      });
    }
    const lengths = r.lengths as number[];
    const codecs = r.codecs as ChunkCodecValue[];
    const encoded = lengths.map((length, i) => ({
      codec: codecs[i] as ChunkCodecValue,
      object: Buffer.from(out, offsets[i] as number, length),
    }));
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.outputs.give(out);
    };
    return { encoded, release };
  }

  // Hashes and compresses `length` bytes of `buffer` (read in place).
  async encode(buffer: SharedArrayBuffer, length: number, signal?: AbortSignal): Promise<EncodedChunk> {
    let r: Record<string, unknown>;
    try {
      r = await this.run({ op: "encode", buffer, length }, signal);
    } catch (err) {
      if (!(err instanceof CodecJobError)) throw err;
      throw new SnapshotError(SnapshotErrorCode.WorkerFailed, `Compressing a chunk failed: ${err.message}`, {
        cause: err,
      });
    }
    return {
      hash: r.hash as string,
      codec: r.codec as ChunkCodecValue,
      object: Buffer.from(r.object as ArrayBuffer),
    };
  }

  // Decodes the stored chunks at `entries` of `buffer` in one message: per chunk its hash,
  // its size and its bytes (a view of `buffer` for an uncompressed chunk, else of `out`, at
  // `outOffsets[i]`, where its expected `size` must fit), or the reason it could not be
  // decompressed. A chunk whose size is not the expected one has a hash and a size but no
  // bytes. The caller keeps both buffers unchanged until it is done with the views.
  async decodeMany(
    buffer: SharedArrayBuffer,
    entries: { start: number; length: number; codec: ChunkCodecValue; size: number }[],
    out: SharedArrayBuffer,
    outOffsets: number[],
    signal?: AbortSignal,
  ): Promise<{ hash: string; size: number; data: Buffer; error: string | null }[]> {
    const r = await this.run({ op: "decodeMany", buffer, entries, out, offsets: outOffsets }, signal);
    const hashes = r.hashes as string[];
    const sizes = r.sizes as number[];
    const errors = r.errors as (string | null)[];
    const inPlace = r.inPlace as boolean[];
    return entries.map((e, i) => {
      const size = sizes[i] as number;
      const data =
        errors[i] !== null || size !== e.size
          ? Buffer.alloc(0)
          : inPlace[i]
            ? Buffer.from(buffer, e.start, size)
            : Buffer.from(out, outOffsets[i] as number, size);
      return { hash: hashes[i] as string, size, data, error: errors[i] ?? null };
    });
  }

  // Decompresses a payload (copied first, the caller keeps `payload`) and hashes the result.
  async decode(payload: Uint8Array, codec: ChunkCodecValue, signal?: AbortSignal): Promise<DecodedChunk> {
    const copy = new ArrayBuffer(payload.length);
    new Uint8Array(copy).set(payload);
    const r = await this.run({ op: "decode", buffer: copy, length: payload.length, codec }, signal, false, [
      copy,
    ]);
    return { hash: r.hash as string, data: Buffer.from(r.data as ArrayBuffer, 0, r.length as number) };
  }

  // Terminates the workers; queued jobs fail with SNAPSHOT_CLOSED. Idempotent.
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.outputs.clear();
    const closedError = new SnapshotError(SnapshotErrorCode.Closed, "The chunk codec pool was closed");
    for (const job of this.queue.splice(0)) job.reject(closedError);
    const slots = this.slots.splice(0);
    for (const slot of slots) slot.job?.reject(closedError);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  // `urgent` jobs go ahead of the others (in their own order): the second step of work
  // already started (compressing a hashed batch, the CRC-32 of a sealed pack for its upload)
  // should not wait behind every batch queued since.
  // `transfer`: ArrayBuffers moved to the worker with the message (SharedArrayBuffers in it
  // are shared, not moved: the caller leaves them unchanged until the job settles).
  private run(
    message: Record<string, unknown>,
    signal?: AbortSignal,
    urgent = false,
    transfer: ArrayBuffer[] = [],
  ): Promise<Record<string, unknown>> {
    if (this.closed) {
      return Promise.reject(new SnapshotError(SnapshotErrorCode.Closed, "The chunk codec pool was closed"));
    }
    if (signal?.aborted) return Promise.reject(abortError(signal, "Chunk encoding"));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const job: Job = { id, message: { ...message, id }, transfer, resolve, reject, urgent };
      // An aborted caller stops waiting; the worker finishes the job and its result is dropped.
      const onAbort = () => {
        const i = this.queue.indexOf(job);
        if (i >= 0) this.queue.splice(i, 1);
        job.resolve = () => {};
        job.reject = () => {};
        reject(abortError(signal, "Chunk encoding"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const settle =
        <T>(fn: (v: T) => void) =>
        (v: T) => {
          signal?.removeEventListener("abort", onAbort);
          fn(v);
        };
      job.resolve = settle(resolve);
      job.reject = settle(reject);
      if (urgent) {
        const at = this.queue.findIndex((j) => !j.urgent);
        this.queue.splice(at < 0 ? this.queue.length : at, 0, job);
      } else this.queue.push(job);
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.job === undefined);
      if (!slot && this.slots.length < this.threads) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift() as Job;
      slot.job = job;
      slot.worker.ref();
      slot.worker.postMessage(job.message, job.transfer);
    }
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        zstdPath: this.zstdPath,
        pageHashPath: this.pageHashPath,
        seed: this.seed,
        level: this.level,
        headerBytes: CHUNK_HEADER_BYTES,
        pageBytes: PAGE_BYTES,
        maxRuns: MAX_SPLIT_RUNS,
      },
    });
    const slot: Slot = { worker };
    worker.on("message", (m: Record<string, unknown>) => {
      const job = slot.job;
      slot.job = undefined;
      worker.unref();
      if (job && m.id === job.id) {
        if (typeof m.error === "string") {
          job.reject(new CodecJobError(m.error));
        } else {
          job.resolve(m);
        }
      }
      this.pump();
    });
    // A dead worker fails its job and is replaced on the next pump.
    const onDeath = (err: unknown) => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      this.slots.splice(i, 1);
      slot.job?.reject(
        new SnapshotError(SnapshotErrorCode.WorkerFailed, `A chunk codec worker died: ${String(err)}`, {
          cause: err,
          retryable: true,
        }),
      );
      slot.job = undefined;
      if (!this.closed) this.pump();
    };
    worker.on("error", onDeath);
    worker.on("exit", (code) => onDeath(new Error(`exit code ${code}`)));
    worker.unref();
    this.slots.push(slot);
    return slot;
  }
}

export { ChunkCodec };
