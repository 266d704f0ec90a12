import { randomBytes } from "node:crypto";

// Benchmark file contents: 1 MiB blocks taken from a 16 MiB random base, each stamped with
// its index so no two blocks of a file are equal (nothing can deduplicate or compress them).
export const BLOCK = 1024 * 1024;
const BASE_BLOCKS = 16;
let base: Buffer | undefined;

// Fills `target` (at most BLOCK bytes) with block `index` of a benchmark file.
export function fillBlock(target: Buffer, index: number): Buffer {
  base ??= randomBytes(BASE_BLOCKS * BLOCK);
  const start = (index % BASE_BLOCKS) * BLOCK;
  base.copy(target, 0, start, start + target.length);
  if (target.length >= 8) target.writeBigUInt64LE(BigInt(index), 0);
  return target;
}

export interface ReadOp {
  offset: number;
  length: number;
}

// A deterministic list of random reads: sizes log-uniform between 4 KiB and 1 MiB, offsets
// 4 KiB-aligned anywhere in the file. Every target replays the same list.
export function randomReadOps(fileBytes: number, count: number, seed = 7): ReadOp[] {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const ops: ReadOp[] = [];
  for (let i = 0; i < count; i++) {
    const length = Math.round(2 ** (12 + random() * 8));
    const pages = Math.max(1, Math.floor((fileBytes - length) / 4096));
    ops.push({ offset: Math.floor(random() * pages) * 4096, length });
  }
  return ops;
}

// The small-files set: 1 to 16 KiB each, named so they sort.
export function smallFileName(index: number): string {
  return String(index).padStart(5, "0");
}

export function smallFileSize(index: number): number {
  return 1024 * (1 + ((index * 7919) % 16));
}
