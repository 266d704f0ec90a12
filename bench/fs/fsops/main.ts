// Child process that performs one filesystem workload on a mounted path and reports
// {"start":epochMs,"end":epochMs,"bytes":N} on stdout. It runs apart from the harness
// (and from any FUSE server) so the mount is used the way a task would use it.
// Usage: main.ts write <file> <bytes> | read <file> | randread <file> <fileBytes> <count> <seed>
//        | smallwrite <dir> <count> | smallread <dir> <count>
import { closeSync, mkdirSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { BLOCK, fillBlock, randomReadOps, smallFileName, smallFileSize } from "../data.js";

const [op, path, ...rest] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
if (!op || !path) {
  process.stderr.write("usage: main.ts <op> <path> [...]\n");
  process.exit(2);
}

const buffer = Buffer.alloc(BLOCK);
let bytes = 0;
const start = now();
switch (op) {
  case "write": {
    const total = Number(rest[0]);
    const fd = openSync(path, "w");
    for (let index = 0; bytes < total; index++) {
      const block = fillBlock(buffer.subarray(0, Math.min(BLOCK, total - bytes)), index);
      bytes += writeSync(fd, block);
    }
    closeSync(fd);
    break;
  }
  case "read": {
    const fd = openSync(path, "r");
    for (;;) {
      const n = readSync(fd, buffer, 0, BLOCK, null);
      if (n === 0) break;
      bytes += n;
    }
    closeSync(fd);
    break;
  }
  case "randread": {
    const ops = randomReadOps(Number(rest[0]), Number(rest[1]), Number(rest[2]));
    const fd = openSync(path, "r");
    for (const { offset, length } of ops) bytes += readSync(fd, buffer, 0, length, offset);
    closeSync(fd);
    break;
  }
  case "smallwrite": {
    mkdirSync(path, { recursive: true });
    for (let i = 0; i < Number(rest[0]); i++) {
      const fd = openSync(join(path, smallFileName(i)), "w");
      bytes += writeSync(fd, fillBlock(buffer.subarray(0, smallFileSize(i)), i));
      closeSync(fd);
    }
    break;
  }
  case "smallread": {
    for (let i = 0; i < Number(rest[0]); i++) {
      const fd = openSync(join(path, smallFileName(i)), "r");
      for (;;) {
        const n = readSync(fd, buffer, 0, BLOCK, null);
        if (n === 0) break;
        bytes += n;
      }
      closeSync(fd);
    }
    break;
  }
  default:
    process.stderr.write(`unknown op "${op}"\n`);
    process.exit(2);
}
process.stdout.write(`${JSON.stringify({ start, end: now(), bytes })}\n`);
