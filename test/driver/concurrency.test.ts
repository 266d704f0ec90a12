import { createHash } from "node:crypto";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

const MiB = 1024 * 1024;

describe("driver under concurrent use (real FUSE mount on s3rver)", () => {
  let h: FusionHarness;
  beforeAll(async () => {
    h = await FusionHarness.start({ partSize: 2 * MiB, blockSize: MiB, uploadPartSize: 5 * MiB });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("serves concurrent readers of one file the same bytes", async () => {
    const data = Buffer.alloc(40 * MiB);
    for (let i = 0; i < data.length; i += 8) data.writeDoubleLE(Math.sin(i), i);
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "shared", Body: data }));
    const expected = createHash("sha256").update(data).digest("hex");
    const { stdout } = await h.sh(
      "for i in 1 2 3 4; do (sha256sum < shared > /tmp/fusion-sum-$$-$i) & done; wait; cat /tmp/fusion-sum-$$-*; rm -f /tmp/fusion-sum-$$-*",
    );
    const sums = stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" ")[0]);
    expect(sums).toEqual([expected, expected, expected, expected]);
  });

  it("uploads concurrent writers of different files correctly", async () => {
    await h.sh(
      `for i in 1 2 3 4; do (head -c $((12*1024*1024 + i)) /dev/urandom > ${h.dir}/cw-$i && cp ${h.dir}/cw-$i cw-$i) & done; wait`,
    );
    for (const i of [1, 2, 3, 4]) {
      const { stdout } = await h.sh(`sha256sum < ${h.dir}/cw-${i}`);
      const out = await h.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `cw-${i}` }));
      const got = Buffer.from(
        await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
      expect(got.length).toBe(12 * MiB + i);
      expect(createHash("sha256").update(got).digest("hex")).toBe(stdout.split(" ")[0]);
    }
  });

  it("keeps writing when upload memory is full by spilling parts to disk", async () => {
    const spill = await FusionHarness.start({
      uploadPartSize: 5 * MiB,
      uploadMemory: 5 * MiB,
      uploadConcurrency: 1,
      logLevel: "info",
    });
    try {
      await spill.sh(
        `head -c ${33 * MiB + 17} /dev/urandom > ${spill.dir}/src && cp ${spill.dir}/src spilled`,
      );
      const { stdout } = await spill.sh(`sha256sum < ${spill.dir}/src`);
      const out = await spill.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: "spilled" }));
      const got = Buffer.from(
        await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
      expect(createHash("sha256").update(got).digest("hex")).toBe(stdout.split(" ")[0]);
      expect(spill.child.stderr).toMatch(/spilling parts to disk/);
    } finally {
      await spill.close();
    }
  });
});
