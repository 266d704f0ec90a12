import { Worker } from "node:worker_threads";
import { isSlab } from "../read/block-pool.js";

// The disk cache's writer thread: checksums a block and writes it to its file, off the
// mount's main thread (in the profile of a 1 GiB sequential read, CRC-32 and the file calls
// of the cache took 16% of the main thread, which also serves every FUSE request). Blocks
// come in SharedArrayBuffers and are read in place; the caller keeps the buffer unchanged
// until the write settles. A read pool's slab (see isSlab) is sent to the thread once and
// named by id afterwards. Writes go to the thread in batches, one message per macrotask:
// a message per block cost 0.15-0.2 ms of the main thread each on these 2 cores, most of
// it the thread switch that waking the writer caused.
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { closeSync, mkdirSync, openSync, writeSync, writevSync } = require("node:fs");
const { crc32 } = require("node:zlib");
const HEADER = 8;
const slabs = new Map();
function write(m) {
  let fd;
  try {
    const buffer = m.slab !== undefined ? slabs.get(m.slab) : m.buffer;
    const data = Buffer.from(buffer, m.offset, m.length);
    const header = Buffer.alloc(HEADER);
    header.writeUInt32LE(crc32(data), 0);
    header.writeUInt32LE(data.length, 4);
    if (m.dir) mkdirSync(m.dir, { recursive: true });
    fd = openSync(m.path, "w");
    let written = writevSync(fd, [header, data]);
    // A short write (full disk aside, rare): finish it from where it stopped.
    while (written < HEADER + data.length) {
      const all = Buffer.concat([header, data]);
      written += writeSync(fd, all, written, all.length - written, written);
    }
    return { id: m.id };
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
  resolve: () => void;
  reject: (err: Error) => void;
}

export class CacheWriter {
  private worker: Worker | undefined;
  private readonly jobs = new Map<number, Job>();
  private nextId = 0;
  // Slabs the current thread has, by id (a new thread starts with none).
  private slabIds = new WeakMap<SharedArrayBuffer, number>();
  private nextSlab = 0;
  // Messages for the thread, sent together at the end of the current macrotask.
  private outbox: object[] = [];

  // Writes `data` (which must sit in a SharedArrayBuffer) with its 8-byte header to `path`,
  // creating `dir` first when given.
  write(path: string, data: Buffer, dir?: string): Promise<void> {
    if (!(data.buffer instanceof SharedArrayBuffer))
      return Promise.reject(new TypeError("cache blocks must be in a SharedArrayBuffer"));
    const worker = this.worker ?? this.spawn();
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
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
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    this.worker = worker;
    this.slabIds = new WeakMap();
    this.outbox = [];
    worker.on("message", (results: { id: number; error?: string }[]) => {
      for (const m of results) {
        const job = this.jobs.get(m.id);
        this.jobs.delete(m.id);
        if (!job) continue;
        if (m.error === undefined) job.resolve();
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
