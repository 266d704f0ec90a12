import { createHash } from "node:crypto";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import type { ChunkedFile } from "../../store/types.js";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

const MiB = 1024 * 1024;

interface Committed {
  bucket: string;
  key: string;
  size: number;
  etag: string;
  chunks?: ChunkedFile;
}

// Chunked areas with two stores: the in-test MapChunkStore (a stand-in for store/, checking
// only the ChunkStoreLike contract) and store/'s real ChunkStore on the same s3rver.
for (const kind of ["map", "real"] as const) {
  describe(`driver chunked areas and commit (${kind} chunk store)`, () => {
    let h: FusionHarness | undefined;
    afterEach(async () => {
      await h?.close();
      h = undefined;
    });

    it("writes files under the area as chunks, commits them, and reads them back", async () => {
      h = await FusionHarness.start({
        chunkAreas: [{ bucket: BUCKET, prefix: "snap/1/" }],
        chunkStore: kind,
      });
      await h.sh(
        `head -c ${3 * MiB + 5} /dev/urandom > ${h.dir}/img && mkdir -p snap/1 && cp ${h.dir}/img snap/1/pages.img`,
      );
      const { stdout: expected } = await h.sh(`sha256sum < ${h.dir}/img`);
      await h.sh("echo plain > plain.txt");
      const committed = await h.child.request<Committed[]>("commit");
      const img = committed.find((c) => c.key === "snap/1/pages.img");
      expect(img?.size).toBe(3 * MiB + 5);
      expect(img?.chunks?.size).toBe(3 * MiB + 5);
      expect(img?.chunks?.chunks.reduce((n, c) => n + c.size, 0)).toBe(3 * MiB + 5);
      // A chunked file is not a plain object.
      await expect(
        h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "snap/1/pages.img" })),
      ).rejects.toThrow();
      // A plain file's committed state is what S3 has.
      const plain = committed.find((c) => c.key === "plain.txt");
      const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "plain.txt" }));
      expect(plain).toMatchObject({ bucket: BUCKET, size: 6, etag: head.ETag });
      expect(plain?.chunks).toBeUndefined();
      // Read back through the store's reader.
      const { stdout: back } = await h.sh("sha256sum < snap/1/pages.img && ls snap/1");
      expect(back.split("\n")[0]?.split(" ")[0]).toBe(expected.split(" ")[0]);
      expect(back).toMatch(/pages\.img/);
      // A write that is not an append is refused with EIO.
      const bad = await h.sh("printf x | dd of=snap/1/pages.img bs=1 seek=10 conv=notrunc status=none", {
        reject: false,
      });
      expect(bad.exitCode).not.toBe(0);
      expect(h.child.stderr).toMatch(/can only be appended to/);
      // Presented read-only, on a fresh mount when the store keeps chunks in S3 (the stand-in
      // keeps them in the mount process's memory), as a restore would see it.
      if (kind === "real") await h.remount();
      await h.child.request("present", {
        input: {
          bucket: BUCKET,
          prefix: "snap/1/restore",
          files: [{ name: "pages.img", file: img?.chunks }],
        },
      });
      const { stdout: restored } = await h.sh(
        "sha256sum < snap/1/restore/pages.img && stat -c %s snap/1/restore/pages.img",
      );
      expect(restored.split("\n")[0]?.split(" ")[0]).toBe(expected.split(" ")[0]);
      expect(restored.split("\n")[1]).toBe(String(3 * MiB + 5));
      const write = await h.sh("echo no >> snap/1/restore/pages.img", { reject: false });
      expect(write.exitCode).not.toBe(0);
    });

    it("commits only the given paths when asked, after flushing them", async () => {
      h = await FusionHarness.start({ chunkAreas: [{ bucket: BUCKET, prefix: "snap/" }], chunkStore: kind });
      const s = await h.sh(`node -e '
        const fs = require("fs");
        const fd = fs.openSync("open-file", "w");
        fs.writeSync(fd, Buffer.alloc(1000, 65));
        console.log("written");
        setTimeout(() => fs.closeSync(fd), 100000);' > /dev/null 2>&1 & echo $!`);
      const pid = Number(s.stdout.trim().split("\n").pop());
      try {
        for (let i = 0; i < 50; i++) {
          const { stdout } = await h.sh("stat -c %s open-file", { reject: false });
          if (stdout.trim() === "1000") break;
          await new Promise((r) => setTimeout(r, 100));
        }
        const [state] = await h.child.request<Committed[]>("commit", { paths: [`${h.root}/open-file`] });
        const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "open-file" }));
        expect(state).toMatchObject({ key: "open-file", size: 1000, etag: head.ETag });
        expect(createHash("sha256").update(Buffer.alloc(1000, 65)).digest("hex")).toBe(
          (await h.sh("sha256sum < open-file")).stdout.split(" ")[0],
        );
      } finally {
        process.kill(pid, "SIGKILL");
      }
    });
  });
}
