import { createRequire } from "node:module";
import { compress, decompress } from "zstd-napi";
import { SnapshotError, SnapshotErrorCode } from "../errors.js";

// zstd-napi's own wrapper of ZSTD_getFrameContentSize, from its binding (a CommonJS module
// whose exports an ESM import cannot see): its decompress() allocates whatever size a frame
// header declares ("TODO: Default allocation limit" in its source), so that is checked first.
const zstdBinding = createRequire(import.meta.url)(
  "zstd-napi/binding.js",
) as typeof import("zstd-napi/binding.js");

// A manifest object's body is its JSON, zstd-compressed from this many bytes on. A 4 GiB
// task's manifest after an incremental holds about 100,000 chunk references, 20 MB of
// JSON (mostly hex hashes) that compress to 4.2 MB (bench/probes/hash-speed.ts), and a
// restore GETs it through one connection before anything else (BENCHMARKS.md: the lazy
// restore's manifest step, 0.47-0.52 s before, 0.33 s after, through the 80 MB/s proxy).
// Smaller manifests stay plain JSON, readable with any S3 client.
export const MANIFEST_COMPRESS_FROM = 1 << 20;

// zstd level 1: on the 20 MB manifest of bench/probes/hash-speed.ts, about 50 ms to compress
// and 30-40 ms to decompress, to 4.2 MB where level 3 takes 85 ms for 4.5 MB (hex digits
// and JSON keys are what it finds; the hashes themselves are random).
const LEVEL = 1;

// Every zstd frame starts with these bytes; JSON text never does (it starts with "{" or
// whitespace), so a reader tells the two apart by content, whatever the object's headers.
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd] as const;

// A manifest larger than this once decompressed is refused (a damaged frame header could
// otherwise ask for any size). 100,000 references are 20 MB; this allows 50 times that.
const MAX_MANIFEST_BYTES = 1 << 30;

export interface EncodedManifest {
  body: Uint8Array;
  // "zstd" when compressed (stored as the object's Content-Encoding, for humans and tools:
  // readers go by the content).
  contentEncoding?: "zstd";
}

// The object body for manifest JSON `text`.
export function encodeManifest(text: string): EncodedManifest {
  const json = Buffer.from(text, "utf8");
  if (json.length < MANIFEST_COMPRESS_FROM) return { body: json };
  return { body: compress(json, { compressionLevel: LEVEL }), contentEncoding: "zstd" };
}

function isCompressedManifest(body: Uint8Array): boolean {
  return ZSTD_MAGIC.every((b, i) => body[i] === b);
}

// The manifest JSON in an object body, plain or zstd-compressed. A compressed body that
// does not decompress (truncated, damaged) is SNAPSHOT_MANIFEST_CORRUPT, naming `source`.
export function decodeManifest(body: Uint8Array, context: { source: string; generation?: number }): string {
  if (!isCompressedManifest(body))
    return Buffer.from(body.buffer, body.byteOffset, body.length).toString("utf8");
  let declared: number | null;
  try {
    declared = zstdBinding.getFrameContentSize(body);
  } catch {
    declared = null; // a header too damaged to read: decompress() below says why
  }
  if (declared !== null && declared > MAX_MANIFEST_BYTES) {
    throw new SnapshotError(
      SnapshotErrorCode.ManifestCorrupt,
      `manifest ${context.source} is a zstd frame that declares ${declared} bytes, more than a manifest can hold (${MAX_MANIFEST_BYTES}); its header is damaged`,
      { generation: context.generation },
    );
  }
  try {
    return decompress(body).toString("utf8");
  } catch (err) {
    throw new SnapshotError(
      SnapshotErrorCode.ManifestCorrupt,
      `manifest ${context.source} is zstd-compressed but does not decompress (${body.length} bytes; truncated?): ${(err as Error).message}`,
      { cause: err, generation: context.generation },
    );
  }
}
