import { createHash } from "node:crypto";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

const MiB = 1024 * 1024;
// Small parts so that "exactly one part" and "one part + 1" are cheap to test.
const PART = 2 * MiB;
const UPLOAD_PART = 5 * MiB;

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("driver round trips (real FUSE mount on s3rver)", () => {
  let h: FusionHarness;
  beforeAll(async () => {
    h = await FusionHarness.start({ partSize: PART, blockSize: MiB, uploadPartSize: UPLOAD_PART });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function sdkGet(key: string): Promise<Buffer> {
    const out = await h.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(
      await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  }

  const sizes = [0, 1, PART, PART + 1, UPLOAD_PART, UPLOAD_PART + 1, 3 * UPLOAD_PART + 12345];
  for (const size of sizes) {
    it(`writes ${size} bytes with cp and the SDK reads the same bytes`, async () => {
      const data = pattern(size, size);
      const src = `${h.dir}/src-${size}`;
      await (await import("node:fs/promises")).writeFile(src, data);
      await h.sh(`cp ${src} w-${size}`);
      const back = await sdkGet(`w-${size}`);
      expect(back.length).toBe(size);
      expect(sha(back)).toBe(sha(data));
      const { stdout } = await h.sh(`stat -c %s w-${size}`);
      expect(Number(stdout.trim())).toBe(size);
    });

    it(`reads ${size} bytes written by the SDK with cat, dd and sha256sum`, async () => {
      const data = pattern(size, size + 7);
      await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `r-${size}`, Body: data }));
      const { stdout: viaCat } = await h.sh(`cat r-${size} | sha256sum`);
      expect(viaCat.split(" ")[0]).toBe(sha(data));
      const { stdout: viaDd } = await h.sh(`dd if=r-${size} bs=1M status=none | sha256sum`);
      expect(viaDd.split(" ")[0]).toBe(sha(data));
      const { stdout: direct } = await h.sh(`sha256sum r-${size}`);
      expect(direct.split(" ")[0]).toBe(sha(data));
    });
  }

  it("round-trips a tree with tar", async () => {
    await h.sh(
      `mkdir -p ${h.dir}/tree/a/b && head -c 3000000 /dev/urandom > ${h.dir}/tree/a/big && echo hi > ${h.dir}/tree/a/b/small && : > ${h.dir}/tree/empty`,
    );
    await h.sh(
      `tar -C ${h.dir}/tree -cf - . | tar -xf - -C . --no-same-owner --no-same-permissions -m && mkdir -p back`,
    );
    const { stdout: a } = await h.sh(`cd ${h.dir}/tree && find . -type f | sort | xargs sha256sum`);
    const { stdout: b } = await h.sh(
      `tar -cf - a empty | tar -tvf - >/dev/null && find a empty -type f | sort | sed 's|^|./|' | xargs sha256sum`,
    );
    expect(b).toBe(a);
  });

  it("round-trips 1 GiB both ways, byte for byte", async () => {
    const big = `${h.dir}/one-gib`;
    await h.sh(`head -c ${1024 * MiB} /dev/urandom > ${big}`);
    const { stdout: expected } = await h.sh(`sha256sum < ${big}`);
    await h.sh(`dd if=${big} of=gib bs=1M status=none`);
    // What the SDK reads back equals what was written through the mount.
    const out = await h.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: "gib" }));
    const hash = createHash("sha256");
    for await (const chunk of out.Body as AsyncIterable<Buffer>) hash.update(chunk);
    expect(hash.digest("hex")).toBe(expected.split(" ")[0]);
    // And the mount reads back the object the SDK sees (fresh mount: nothing cached).
    await h.remount();
    const { stdout: viaMount } = await h.sh(`sha256sum < gib`);
    expect(viaMount.split(" ")[0]).toBe(expected.split(" ")[0]);
    await h.sh(`rm -f ${big} gib`);
  });
});
