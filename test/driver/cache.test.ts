import { createHash } from "node:crypto";
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

const MiB = 1024 * 1024;

async function blockFiles(dir: string): Promise<string[]> {
  const root = join(dir, "cache", "blocks");
  const out: string[] = [];
  for (const sub of await readdir(root).catch(() => [])) {
    for (const name of await readdir(join(root, sub)).catch(() => [])) out.push(join(root, sub, name));
  }
  return out;
}

function body(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) b.writeUInt32LE((i * 31 + seed) >>> 0, i);
  return b;
}
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("driver disk block cache (real FUSE mount on s3rver)", () => {
  let h: FusionHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("evicts under a small size limit and still serves correct data", async () => {
    h = await FusionHarness.start({
      cacheSize: 3 * MiB + 100,
      readMemory: 2 * MiB,
      blockSize: MiB,
      partSize: MiB,
    });
    const objects = [0, 1, 2].map((i) => body(5 * MiB + 333, i));
    for (const [i, b] of objects.entries())
      await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `obj-${i}`, Body: b }));
    for (let round = 0; round < 2; round++) {
      for (const [i, b] of objects.entries()) {
        const { stdout } = await h.sh(`sha256sum < obj-${i}`);
        expect(stdout.split(" ")[0]).toBe(sha(b));
      }
    }
    // 3 MiB + 100 bytes hold at most three 1 MiB blocks.
    expect((await blockFiles(h.dir)).length).toBeLessThanOrEqual(3);
  });

  it("refetches a damaged block instead of serving it", async () => {
    h = await FusionHarness.start({ readMemory: 2 * MiB, blockSize: MiB, partSize: MiB });
    const a = body(4 * MiB, 11);
    const b = body(4 * MiB, 12);
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "a", Body: a }));
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "b", Body: b }));
    await h.sh("cat a b > /dev/null");
    // The cache writes in the background: wait (bounded) for all eight blocks.
    for (let i = 0; i < 100 && (await blockFiles(h.dir)).length < 8; i++)
      await new Promise((r) => setTimeout(r, 100));
    const files = await blockFiles(h.dir);
    expect(files.length).toBe(8);
    // Every cached block: two bytes changed in place.
    for (const file of files) {
      const handle = await open(file, "r+");
      const { size } = await handle.stat();
      if (size !== MiB) throw new Error(`${file}: ${size} bytes, not a bare 1 MiB block`);
      await handle.write(Buffer.from([0xde, 0xad]), 0, 2, 100);
      await handle.close();
    }
    const before = (h.child.stderr.match(/damaged cache block dropped/g) ?? []).length;
    expect(before).toBe(0);
    const { stdout } = await h.sh("sha256sum < a");
    expect(stdout.split(" ")[0]).toBe(sha(a));
    const dropped = (h.child.stderr.match(/damaged cache block dropped/g) ?? []).length;
    expect(dropped).toBeGreaterThan(0);
    // a's blocks were fetched and cached again; now every cached block loses its last byte.
    for (let i = 0; i < 100 && (await blockFiles(h.dir)).length < 8; i++)
      await new Promise((r) => setTimeout(r, 100));
    for (const file of await blockFiles(h.dir)) {
      const handle = await open(file, "r+");
      await handle.truncate(MiB - 1);
      await handle.close();
    }
    const again = await h.sh("sha256sum < b; sha256sum < a");
    expect(
      again.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(" ")[0]),
    ).toEqual([sha(b), sha(a)]);
    expect((h.child.stderr.match(/damaged cache block dropped/g) ?? []).length).toBeGreaterThan(dropped);
  });
});
