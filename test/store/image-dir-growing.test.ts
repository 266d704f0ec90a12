// uploadImageDir of a directory still being written (CRIU dumping into local staging): the
// followed files go up as they grow, the others once the writer is done. Real s3rver; the
// writer is a child process appending in pieces, so reads race with real writes.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChunkStore, downloadImageDir, uploadImageDir } from "../../store/index.js";
import { type S3Fixture, startS3 } from "./s3-fixture.js";

const MiB = 1024 * 1024;
let s3: S3Fixture;
let counter = 0;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.close();
});

function newStore(): ChunkStore {
  return new ChunkStore({
    client: s3.client,
    bucket: s3.bucket,
    prefix: `growing${counter++}/chunks/`,
    chunkSize: 64 * 1024,
    packSize: MiB,
  });
}

// A child process that appends `data` to `path` in pieces of 1 byte to 700 KiB, pausing
// between them; resolves when it exits with 0.
async function appendSlowly(path: string, data: Buffer, scratch: string): Promise<void> {
  const source = join(scratch, "source");
  await writeFile(source, data);
  const script = `
    const fs = require("node:fs");
    const data = fs.readFileSync(process.argv[2]);
    const fd = fs.openSync(process.argv[1], "a");
    let at = 0, n = 0;
    const step = () => {
      if (at >= data.length) { fs.closeSync(fd); return; }
      const size = [1, 4096, 700 * 1024, 12345][n++ % 4];
      at += fs.writeSync(fd, data, at, Math.min(size, data.length - at));
      setTimeout(step, 3);
    };
    step();`;
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ["-e", script, path, source], { stdio: "inherit" });
      child.on("error", reject);
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`writer exited ${code}`))));
    });
  } finally {
    await rm(source, { force: true });
  }
}

describe("uploadImageDir of a growing directory", () => {
  it("uploads followed files as they grow and the others once the writer is done", async () => {
    const store = newStore();
    const dir = await mkdtemp(join(tmpdir(), "growing-"));
    const sources = await mkdtemp(join(tmpdir(), "growing-src-"));
    try {
      const pages1 = randomBytes(3 * MiB + 777);
      const pages2 = Buffer.concat([Buffer.alloc(MiB), randomBytes(100_000)]);
      const core = randomBytes(5000);
      // A file that is not followed: rewritten before the end, so only its final bytes count.
      await writeFile(join(dir, "core-1.img"), "not yet");
      let writing = true;
      let readWhileWriting = 0;
      const writer = (async () => {
        await appendSlowly(join(dir, "pages-1.img"), pages1, sources);
        // A second followed file appears while the first is being uploaded.
        await appendSlowly(join(dir, "pages-2.img"), pages2, sources);
        readWhileWriting = store.stats.bytesWritten;
        await writeFile(join(dir, "core-1.img"), core);
        writing = false;
      })();
      const result = await uploadImageDir(store, dir, {
        quick: {},
        growing: { done: writer, follow: (name) => /^pages-\d+\.img$/.test(name), pollMs: 5 },
      });
      expect(writing).toBe(false);
      // pages-1.img had been read (into the writer's chunks) before the writer was done.
      expect(readWhileWriting).toBeGreaterThanOrEqual(pages1.length);
      expect(Object.keys(result.images).sort()).toEqual(["core-1.img", "pages-1.img", "pages-2.img"]);
      expect(result.images["pages-1.img"]?.size).toBe(pages1.length);
      expect(result.images["core-1.img"]?.size).toBe(core.length);
      expect(result.quickHashed?.["pages-1.img"]?.quick.length).toBe(16 * Math.ceil(pages1.length / 4096));
      const out = join(dir, "restored");
      await downloadImageDir(store, result.images, out);
      expect((await readFile(join(out, "pages-1.img"))).equals(pages1)).toBe(true);
      expect((await readFile(join(out, "pages-2.img"))).equals(pages2)).toBe(true);
      expect((await readFile(join(out, "core-1.img"))).equals(core)).toBe(true);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
      await rm(sources, { recursive: true, force: true });
    }
  });

  it("fails with the writer's error when the writer fails, without waiting for more data", async () => {
    const store = newStore();
    const dir = await mkdtemp(join(tmpdir(), "growing-"));
    try {
      await writeFile(join(dir, "pages-1.img"), randomBytes(MiB));
      let fail = (_: Error) => {};
      const done = new Promise<void>((_, reject) => {
        fail = reject;
      });
      const upload = uploadImageDir(store, dir, {
        growing: { done, follow: (name) => name.startsWith("pages-"), pollMs: 5 },
      });
      // The follower has read what there is and waits for more; the dump then fails.
      await new Promise((r) => setTimeout(r, 200));
      fail(new Error("criu dump failed"));
      await expect(upload).rejects.toThrow("criu dump failed");
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
