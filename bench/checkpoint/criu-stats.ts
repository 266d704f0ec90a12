import { readFile } from "node:fs/promises";
import { join } from "node:path";

// What CRIU reports about a dump (stats.proto, dump_stats_entry), times in microseconds.
export interface DumpStats {
  freezingTimeUs: number;
  frozenTimeUs: number;
  memdumpTimeUs: number;
  memwriteTimeUs: number;
  pagesScanned: number;
  pagesWritten: number;
}

// Reads <imagesDir>/stats-dump without crit: two magic words, a u32 length, then a
// protobuf stats_entry whose field 1 is the dump entry. Undefined if absent or unreadable.
export async function readDumpStats(imagesDir: string): Promise<DumpStats | undefined> {
  let file: Buffer;
  try {
    file = await readFile(join(imagesDir, "stats-dump"));
  } catch {
    return undefined;
  }
  if (file.length < 12) return undefined;
  const length = file.readUInt32LE(8);
  const entry = fields(file.subarray(12, 12 + length)).get(1);
  if (!(entry instanceof Buffer)) return undefined;
  const dump = fields(entry);
  const number = (field: number) => {
    const value = dump.get(field);
    return typeof value === "number" ? value : 0;
  };
  return {
    freezingTimeUs: number(1),
    frozenTimeUs: number(2),
    memdumpTimeUs: number(3),
    memwriteTimeUs: number(4),
    pagesScanned: number(5),
    pagesWritten: number(7),
  };
}

// A minimal protobuf reader: varints and length-delimited fields, last value wins.
function fields(message: Buffer): Map<number, number | Buffer> {
  const out = new Map<number, number | Buffer>();
  let at = 0;
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = message[at++];
      if (byte === undefined) return value;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  while (at < message.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) out.set(field, varint());
    else if (wire === 2) {
      const length = varint();
      out.set(field, message.subarray(at, at + length));
      at += length;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else break;
  }
  return out;
}
