import { createHash } from "node:crypto";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

const MiB = 1024 * 1024;

describe("driver changes to existing objects (read-modify-write)", () => {
  let h: FusionHarness;
  const original = Buffer.alloc(3 * MiB + 100);
  for (let i = 0; i < original.length; i++) original[i] = (i * 7 + (i >> 10)) & 0xff;

  beforeAll(async () => {
    h = await FusionHarness.start({ partSize: MiB, blockSize: MiB, uploadPartSize: 5 * MiB });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function put(key: string, body: Buffer): Promise<void> {
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  }
  async function get(key: string): Promise<Buffer> {
    const out = await h.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(
      await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  }
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

  it("overwrites an existing object", async () => {
    await put("over", original);
    await h.sh("printf 'short' > over");
    expect((await get("over")).toString()).toBe("short");
    expect((await h.sh("cat over")).stdout).toBe("short");
  });

  it("appends to an existing object", async () => {
    await put("app", original);
    await h.sh("printf 'TAIL' >> app");
    const expected = Buffer.concat([original, Buffer.from("TAIL")]);
    expect(sha(await get("app"))).toBe(sha(expected));
    expect((await h.sh("sha256sum < app")).stdout.split(" ")[0]).toBe(sha(expected));
  });

  it("truncates an existing object shorter, longer and to zero", async () => {
    await put("trunc", original);
    await h.sh("truncate -s 1000 trunc");
    expect(sha(await get("trunc"))).toBe(sha(original.subarray(0, 1000)));
    await h.sh("truncate -s 5000 trunc");
    expect(sha(await get("trunc"))).toBe(
      sha(Buffer.concat([original.subarray(0, 1000), Buffer.alloc(4000)])),
    );
    await h.sh("truncate -s 0 trunc");
    expect((await get("trunc")).length).toBe(0);
    expect((await h.sh("stat -c %s trunc")).stdout.trim()).toBe("0");
  });

  it("writes in the middle of an existing object without changing the rest", async () => {
    await put("mid", original);
    const offset = 2 * MiB - 3;
    await h.sh(`printf 'XYZXYZ' | dd of=mid bs=1 seek=${offset} conv=notrunc status=none`);
    const expected = Buffer.from(original);
    expected.write("XYZXYZ", offset);
    expect(sha(await get("mid"))).toBe(sha(expected));
    expect((await h.sh("sha256sum < mid")).stdout.split(" ")[0]).toBe(sha(expected));
  });

  it("handles a non-sequential write to a new file and reading it back before close", async () => {
    const script = `
      const fs = require("node:fs");
      const fd = fs.openSync("sparse", "w+");
      fs.writeSync(fd, Buffer.from("end"), 0, 3, 6 * 1024 * 1024);
      fs.writeSync(fd, Buffer.from("start"), 0, 5, 0);
      const b = Buffer.alloc(5);
      fs.readSync(fd, b, 0, 5, 0);
      if (b.toString() !== "start") throw new Error("read back " + b);
      fs.closeSync(fd);`;
    await h.sh(`node -e '${script}'`);
    const back = await get("sparse");
    expect(back.length).toBe(6 * MiB + 3);
    expect(back.subarray(0, 5).toString()).toBe("start");
    expect(back.subarray(6 * MiB).toString()).toBe("end");
    expect(back.subarray(5, 6 * MiB).every((b) => b === 0)).toBe(true);
  });

  it("keeps an unlinked open file apart from a new file of the same name", async () => {
    const script = `
      const fs = require("node:fs");
      const old = fs.openSync("reused", "w");
      fs.writeSync(old, "old content");
      fs.unlinkSync("reused");
      const fresh = fs.openSync("reused", "w");
      fs.writeSync(fresh, "new");
      fs.closeSync(fresh);
      fs.writeSync(old, " more");
      fs.closeSync(old);`;
    await h.sh(`node -e '${script}'`);
    expect((await get("reused")).toString()).toBe("new");
    expect((await h.sh("cat reused")).stdout).toBe("new");
  });
});
