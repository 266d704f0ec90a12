// Probe behind the per-byte costs quoted in docs/snapshot-format.md and docs/driver.md: on
// one thread, over 64 MiB of random bytes, the quick hash (seeded XXH3-128 of each 4 KiB
// page, as the codec workers run it: one call of native/page-hash per 64 KiB piece) and
// what it replaced (hash-wasm's XXH3-128 called per page), the disk cache's checksum of a
// 1 MiB block (XXH3-128) and what it replaced (zlib's CRC-32), SHA-256 per 64 KiB, CRC-32
// of 8 MiB packs, and zstd level 3 per 64 KiB (random data: its worst case); then, for a
// manifest of 100,000 chunk references in 400 packs, a third of them slices (about what
// the 4 GiB benchmark task's manifest holds after its incremental): serializeManifest,
// parseManifest and the JSON.parse inside it, and the object body the repository stores
// (encodeManifest, zstd level 1, and decodeManifest) against zstd level 3.
// Usage: node --import tsx bench/probes/hash-speed.ts   (3 rounds each; prints each round)
import { createHash, randomBytes, randomFillSync } from "node:crypto";
import { createRequire } from "node:module";
import { crc32 } from "node:zlib";
import { createXXHash128 } from "hash-wasm";
import { loadHashPages } from "../../common/page-hash.js";
import { type ChunkRef, type Manifest, parseManifest, serializeManifest } from "../../store/index.js";
import { decodeManifest, encodeManifest } from "../../store/manifest/manifest-encoding.js";

const MiB = 1 << 20;
const data = randomFillSync(Buffer.allocUnsafe(64 * MiB));
const hashPages = loadHashPages();
const quick = Buffer.alloc(16 * 16);
const xx = await createXXHash128(0x7f4a7c15, 0x9e3779b9);
const zstd = createRequire(import.meta.url)("zstd-napi") as {
  Compressor: new () => { setParameters(p: object): void; compress(b: Buffer): Buffer };
};
const compressor = new zstd.Compressor();
compressor.setParameters({ compressionLevel: 3 });

function rate(name: string, step: number, fn: (piece: Buffer) => unknown): void {
  const rounds: string[] = [];
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let o = 0; o < data.length; o += step) fn(data.subarray(o, o + step));
    rounds.push(((data.length / 1e6 / (performance.now() - t)) * 1000).toFixed(0));
  }
  console.log(`${name}: ${rounds.join(", ")} MB/s`);
}

rate("XXH3-128 of each 4 KiB page, a call per 64 KiB", 65536, (p) =>
  hashPages(p, 4096, 0x9e3779b97f4a7c15n, quick),
);
rate("XXH3-128 of each 4 KiB page through hash-wasm, a call per page", 4096, (p) => {
  xx.init();
  xx.update(p);
  return xx.digest("binary");
});
rate("XXH3-128 of a 1 MiB block (disk cache checksum)", MiB, (p) => hashPages(p, MiB, 0n, quick));
rate("CRC-32 of a 1 MiB block (disk cache checksum before)", MiB, (p) => crc32(p));
rate("SHA-256 per 64 KiB", 65536, (p) => createHash("sha256").update(p).digest("hex"));
rate("CRC-32 of 8 MiB packs", 8 * MiB, (p) => crc32(p));
rate("zstd level 3 per 64 KiB (random)", 65536, (p) => compressor.compress(p));

// A manifest of 100,000 references in 400 packs, one in three a slice: chunks in the order
// they were packed, half of them random (stored whole) and half compressible (a few hundred
// bytes to a few KB), at their offsets in their pack, as the chunk store writes them.
const hex = () => randomBytes(32).toString("hex");
const chunks: ChunkRef[] = [];
let size = 0;
let pack = "";
let offset = 0;
for (let i = 0; i < 100_000; i++) {
  if (i % 250 === 0) {
    pack = hex();
    offset = 0;
  }
  const stored = i % 2 ? 65552 : 300 + ((i * 7919) % 3000);
  const ref: ChunkRef = { hash: hex(), size: 65536, stored, pack, offset };
  offset += stored;
  if (i % 3 === 1) ref.slice = [4096, 20480];
  chunks.push(ref);
  size += ref.slice ? ref.slice[1] : ref.size;
}
const manifest: Manifest = {
  schemaVersion: 3,
  generation: 2,
  parentGeneration: 1,
  createdAt: new Date().toISOString(),
  mode: "incremental-chunks",
  chunkStore: { bucket: "b", prefix: "w/.snapshots/chunks/", chunkSize: 65536 },
  task: { id: "t", command: ["hog"], cwd: "/", identity: { uid: 0, gid: 0 } },
  host: { criuVersion: "4.2.1", kernel: "6.18", arch: "x86_64", cpuinfo: null },
  images: { "pages-1.img": { size, chunks } },
  openFiles: [],
  timings: { freezeMs: 0, dumpMs: 0, uploadMs: 0, totalMs: 0 },
  bytes: { logical: size, uploaded: 0, deduplicated: 0 },
};
const ms = (since: number) => `${(performance.now() - since).toFixed(0)} ms`;
for (let r = 0; r < 3; r++) {
  let t = performance.now();
  const text = serializeManifest(manifest);
  const write = ms(t);
  t = performance.now();
  JSON.parse(text);
  const json = ms(t);
  t = performance.now();
  parseManifest(text, { task: "t", generation: 2 });
  const read = ms(t);
  t = performance.now();
  const { body } = encodeManifest(text);
  const encode = ms(t);
  t = performance.now();
  decodeManifest(body, { source: "probe" });
  const decode = ms(t);
  t = performance.now();
  const level3 = compressor.compress(Buffer.from(text));
  const encode3 = ms(t);
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  console.log(
    `manifest of 100,000 references (${mb(text.length)}): serialize ${write}, parse ${read} (JSON.parse alone ${json}); stored body ${mb(body.length)} (zstd level 1: encode ${encode}, decode ${decode}; level 3 would be ${mb(level3.length)} in ${encode3})`,
  );
}
