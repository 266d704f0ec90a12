import { Worker } from "node:worker_threads";
import { type HashPages, loadHashPages, requirePageHashModule } from "../../common/page-hash.js";
import { isSlab } from "../read/block-pool.js";

let hashPages: HashPages | undefined;

// The disk cache's writer thread: checksums a block and writes it to its file, off the
// mount's main thread (in the profile of a 1 GiB sequential read, CRC-32 and the file calls
// of the cache took 16% of the main thread, which also serves every FUSE request). Blocks
// come in SharedArrayBuffers and are read in place; the caller keeps the buffer unchanged
// until the write settles. A read pool's slab (see isSlab) is sent to the thread once and
// named by id afterwards. Writes go to the thread in batches, one message per macrotask:
// a message per block cost 0.15-0.2 ms of the main thread each on these 2 cores, most of
// it the thread switch that waking the writer caused. The file holds the block's bytes
// only; its checksum (the XXH3-128 of native/page-hash, about three times as fast as
// zlib's CRC-32 here: bench/probes/hash-speed.ts) goes back to the caller, which keeps it
// in memory.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { closeSync, mkdirSync, openSync, writeSync } = require("node:fs");
const { hashPages } = require(workerData.pageHashPath);
const slabs = new Map();
function write(m) {
  let fd;
  try {
    const buffer = m.slab !== undefined ? slabs.get(m.slab) : m.buffer;
    const data = Buffer.from(buffer, m.offset, m.length);
    const sum = Buffer.alloc(16);
    hashPages(data, Math.max(1, data.length), 0n, sum);
    if (m.dir) mkdirSync(m.dir, { recursive: true });
    fd = openSync(m.path, "w");
    // A short write (full disk aside, rare): go on from where it stopped.
    for (let written = 0; written < data.length; )
      written += writeSync(fd, data, written, data.length - written, written);
    return { id: m.id, sum: sum.toString("hex") };
  } catch (err) {
    return { id: m.id, error: String(err && err.message ? err.message : err) };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
parentPort.on("message", (batch) => {
  const results = [];
  for (const m of batch) {
    if (m.path === undefined) slabs.set(m.slab, m.buffer);
    else results.push(write(m));
  }
  if (results.length > 0) parentPort.postMessage(results);
});
`;

interface Job {
  resolve: (sum: string) => void;
  reject: (err: Error) => void;
}

// The checksum the writer thread computes for a block, in the same form.
export function checksumOf(data: Uint8Array): string {
  hashPages ??= loadHashPages();
  const sum = Buffer.alloc(16);
  hashPages(data, Math.max(1, data.length), 0n, sum);
  return sum.toString("hex");
}

export class CacheWriter {
  // Resolved once, so that a missing build fails the mount's start, not a later write.
  private readonly pageHashPath = requirePageHashModule();
  private worker: Worker | undefined;
  private readonly jobs = new Map<number, Job>();
  private nextId = 0;
  // Slabs the current thread has, by id (a new thread starts with none).
  private slabIds = new WeakMap<SharedArrayBuffer, number>();
  private nextSlab = 0;
  // Messages for the thread, sent together at the end of the current macrotask.
  private outbox: object[] = [];

  // Writes `data` (which must sit in a SharedArrayBuffer) to `path`, creating `dir` first when
  // given. Resolves with the checksum of `data` (see checksumOf).
  write(path: string, data: Buffer, dir?: string): Promise<string> {
    if (!(data.buffer instanceof SharedArrayBuffer))
      return Promise.reject(new TypeError("cache blocks must be in a SharedArrayBuffer"));
    const worker = this.worker ?? this.spawn();
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      const { buffer } = data;
      const where = { offset: data.byteOffset, length: data.length, path, dir };
      if (!isSlab(buffer)) {
        this.send(worker, { id, buffer, ...where });
        return;
      }
      let slab = this.slabIds.get(buffer);
      if (slab === undefined) {
        slab = this.nextSlab++;
        this.slabIds.set(buffer, slab);
        this.send(worker, { slab, buffer });
      }
      this.send(worker, { id, slab, ...where });
    });
  }

  private send(worker: Worker, message: object): void {
    this.outbox.push(message);
    if (this.outbox.length > 1) return;
    worker.ref();
    setImmediate(() => {
      // A thread that died in the meantime has failed these writes already.
      if (this.worker !== worker) return;
      const batch = this.outbox;
      this.outbox = [];
      worker.postMessage(batch);
    });
  }

  private spawn(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { pageHashPath: this.pageHashPath } });
    this.worker = worker;
    this.slabIds = new WeakMap();
    this.outbox = [];
    worker.on("message", (results: { id: number; sum?: string; error?: string }[]) => {
      for (const m of results) {
        const job = this.jobs.get(m.id);
        this.jobs.delete(m.id);
        if (!job) continue;
        if (m.error === undefined) job.resolve(m.sum as string);
        else job.reject(new Error(m.error));
      }
      if (this.jobs.size === 0) worker.unref();
    });
    // A dead writer fails what it had; the next write starts another.
    const die = (err: unknown) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      const jobs = [...this.jobs.values()];
      this.jobs.clear();
      for (const job of jobs) job.reject(new Error(`the cache writer thread stopped: ${String(err)}`));
    };
    worker.on("error", die);
    worker.on("exit", (code) => die(`exit code ${code}`));
    worker.unref();
    return worker;
  }

  // Stops the thread (callers wait for their writes first).
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}
