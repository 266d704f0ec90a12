// Synthetic CRIU-like memory images for tests and the chunk-size benchmark: page-structured
// (4 KiB), the first half compressible (counters, zero pages, repeated text), the second
// half incompressible (random), and a way to dirty a fraction of pages in scattered runs.
import { createHash } from "node:crypto";

export const PAGE = 4096;

// A small deterministic PRNG (mulberry32) so that every run builds the same images.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Random bytes from a seed, fast: SHA-256 in counter mode would be slow, so expand a
// PRNG into 32-bit words.
function fillRandom(target: Buffer, random: () => number): void {
  const words = new Uint32Array(target.buffer, target.byteOffset, target.length >>> 2);
  let x = (random() * 0xffffffff) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    // xorshift32: plenty random for compression purposes.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
}

// One page of compressible content: a zero page, a page of small counters or of text.
function fillCompressiblePage(page: Buffer, random: () => number, version: number): void {
  // A changed page (version > 0) is never a zero page, so that it really differs.
  const kind = version === 0 ? Math.floor(random() * 3) : 1 + Math.floor(random() * 2);
  if (kind === 0) {
    page.fill(0);
  } else if (kind === 1) {
    const base = Math.floor(random() * 1000) + version * 7;
    for (let i = 0; i < PAGE / 4; i++) page.writeUInt32LE(base + (i % 64), i * 4);
  } else {
    const line = `line ${Math.floor(random() * 1e6)} v${version} the quick brown fox jumps over the lazy dog\n`;
    for (let o = 0; o < PAGE; o += line.length)
      page.write(line, o, Math.min(line.length, PAGE - o), "latin1");
  }
}

// A memory image of `bytes` (a multiple of PAGE): half compressible, half random.
export function makeMemoryImage(bytes: number, seed = 1): Buffer {
  const image = Buffer.allocUnsafe(bytes);
  const random = prng(seed);
  const half = Math.floor(bytes / PAGE / 2) * PAGE;
  for (let o = 0; o < half; o += PAGE) fillCompressiblePage(image.subarray(o, o + PAGE), random, 0);
  fillRandom(image.subarray(half), random);
  return image;
}

export interface DirtyOptions {
  // Fraction of pages to change. Default 0.1.
  fraction?: number;
  // Run lengths in pages, drawn uniformly from [minRun, maxRun]. Default 16..256.
  minRun?: number;
  maxRun?: number;
  seed?: number;
}

// A copy of `image` where about `fraction` of the pages changed, in runs at random places.
// Returns the new image and the number of pages changed.
export function dirtyPages(image: Buffer, options: DirtyOptions = {}): { image: Buffer; pages: number } {
  const fraction = options.fraction ?? 0.1;
  const minRun = options.minRun ?? 16;
  const maxRun = options.maxRun ?? 256;
  const random = prng(options.seed ?? 2);
  const out = Buffer.from(image);
  const pages = image.length / PAGE;
  const half = Math.floor(pages / 2);
  const changed = new Uint8Array(pages);
  let count = 0;
  while (count < pages * fraction) {
    const run = minRun + Math.floor(random() * (maxRun - minRun + 1));
    const start = Math.floor(random() * (pages - run));
    for (let p = start; p < start + run && count < pages * fraction; p++) {
      if (changed[p]) continue;
      changed[p] = 1;
      count++;
      const page = out.subarray(p * PAGE, (p + 1) * PAGE);
      if (p < half) fillCompressiblePage(page, random, 1);
      else fillRandom(page, random);
    }
  }
  return { image: out, pages: count };
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
