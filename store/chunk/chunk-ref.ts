import type { ChunkRef } from "../types.js";

// Bytes a reference contributes to its file: the slice's length, else the whole chunk.
export function refLength(ref: ChunkRef): number {
  return ref.slice ? ref.slice[1] : ref.size;
}

// Where the file's bytes start in the chunk's uncompressed bytes.
export function refStart(ref: ChunkRef): number {
  return ref.slice ? ref.slice[0] : 0;
}

// The reference to bytes [start, start + length) of `ref`'s chunk (a reference without a
// slice when that is the whole chunk). `start` counts from the chunk's first byte.
export function sliceRef(ref: ChunkRef, start: number, length: number): ChunkRef {
  const { slice: _, ...chunk } = ref;
  return start === 0 && length === chunk.size ? chunk : { ...chunk, slice: [start, length] };
}

// The references covering bytes [from, to) of the span that `refs` cover back to back.
export function sliceRefs(refs: readonly ChunkRef[], from: number, to: number): ChunkRef[] {
  const out: ChunkRef[] = [];
  let at = 0;
  for (const ref of refs) {
    const length = refLength(ref);
    const lo = Math.max(at, from);
    const hi = Math.min(at + length, to);
    if (lo < hi) out.push(sliceRef(ref, refStart(ref) + (lo - at), hi - lo));
    at += length;
    if (at >= to) break;
  }
  return out;
}
