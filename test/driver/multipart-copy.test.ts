import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DriverError, mountFusion } from "../../driver/index.js";
import { copyPartSizeFor } from "../../driver/s3/s3-ops.js";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";
import type { ProxiedRequest } from "./helpers/s3-proxy.js";

const MiB = 1024 * 1024;
const PART = 5 * MiB;
// Not a multiple of the part size: the last part is short.
const SIZE = 21 * MiB + 12_345;
const META = { mode: String(0o100640), uid: "1234", gid: "5678", mtime: "1600000000", origin: "sdk" };

// The multipart copy the driver uses for objects too large for CopyObject (above 5 GiB on S3),
// made to happen here with a small threshold and part size. s3rver does not implement
// UploadPartCopy, so the test proxy emulates that one API on top of s3rver (a ranged GET of the
// source, then an UploadPart): every byte still goes through the real s3rver, and the driver's
// own code runs unchanged. Everything else is forwarded to s3rver as is.
describe("multipart copy on rename (real FUSE mount, UploadPartCopy emulated by the S3 proxy)", () => {
  let h: FusionHarness;
  // Fields that MountChildOptions does not list; the mount child passes every option through.
  const copyOptions = { copyThreshold: 8 * MiB, copyPartSize: PART, copyConcurrency: 2, retryBaseMs: 10 };
  beforeAll(async () => {
    h = await FusionHarness.start({ maxAttempts: 2, ...copyOptions }, { proxy: true });
    await proxy().configure({ uploadPartCopy: true });
  });
  afterAll(async () => {
    await h?.close();
  });

  const proxy = () => {
    if (!h.proxy) throw new Error("no proxy");
    return h.proxy;
  };

  async function seed(key: string, size = SIZE): Promise<{ body: Buffer; etag: string }> {
    const body = randomBytes(size);
    const out = await h.client.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: key,
        Body: body,
        Metadata: META,
        ContentType: "application/x-test",
      }),
    );
    return { body, etag: out.ETag ?? "" };
  }

  async function bytesOf(key: string): Promise<Buffer> {
    const out = await h.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(
      await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  }

  async function exists(key: string): Promise<boolean> {
    return await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })).then(
      () => true,
      (err: { $metadata?: { httpStatusCode?: number } }) => {
        if (err.$metadata?.httpStatusCode === 404) return false;
        throw err;
      },
    );
  }

  // The UploadPartCopy requests the proxy served for `key`, by part number.
  async function partCopies(key: string): Promise<ProxiedRequest[]> {
    const served = (await proxy().requestsFor(BUCKET, key, "PUT")).filter(
      (r) => r.served === "UploadPartCopy",
    );
    return served.sort((a, b) => partOf(a) - partOf(b));
  }

  // The ranges a copy of `size` bytes in PART-byte parts must ask for.
  function expectedRanges(size: number): string[] {
    const ranges: string[] = [];
    for (let start = 0; start < size; start += PART)
      ranges.push(`bytes=${start}-${Math.min(size, start + PART) - 1}`);
    return ranges;
  }

  it("renames a file above the threshold by UploadPartCopy: same bytes, metadata and content type, source gone", async () => {
    const { body, etag } = await seed("big");
    await h.sh("mv big big-moved");

    expect((await bytesOf("big-moved")).equals(body)).toBe(true);
    expect(await exists("big")).toBe(false);
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "big-moved" }));
    expect(head.Metadata).toEqual(META);
    expect(head.ContentType).toBe("application/x-test");
    expect((await h.sh("stat -c '%a %u %g %Y %s' big-moved")).stdout.trim()).toBe(
      `640 1234 5678 1600000000 ${SIZE}`,
    );

    const copies = await partCopies("big-moved");
    expect(copies.map((r) => r.headers["x-amz-copy-source-range"])).toEqual(expectedRanges(SIZE));
    expect(copies.map(partOf)).toEqual([1, 2, 3, 4, 5]);
    for (const r of copies) {
      expect(r.status).toBe(200);
      expect(r.headers["x-amz-copy-source"]).toBe(`${BUCKET}/big`);
      // Pinned to the version that was HEADed: a source replaced mid-copy fails, not mixes.
      expect(r.headers["x-amz-copy-source-if-match"]).toBe(etag);
    }
    expect(new Set(copies.map(uploadOf)).size).toBe(1);
    // copyConcurrency: 2 bounds the part copies in flight.
    for (const r of copies) expect(r.inFlight).toBeLessThanOrEqual(2);
    // No CopyObject was tried (S3 would refuse it above 5 GiB).
    const plain = (await proxy().requestsFor(BUCKET, "big-moved", "PUT")).filter(
      (r) => r.headers["x-amz-copy-source"] !== undefined && !r.served,
    );
    expect(plain).toEqual([]);
  });

  it("keeps a file at or below the threshold on a single CopyObject", async () => {
    const { body } = await seed("small", 8 * MiB);
    await h.sh("mv small small-moved");
    expect((await bytesOf("small-moved")).equals(body)).toBe(true);
    const puts = await proxy().requestsFor(BUCKET, "small-moved", "PUT");
    expect(puts.map((r) => [r.path, r.headers["x-amz-copy-source"], r.served])).toEqual([
      ["/fusion-test/small-moved?x-id=CopyObject", `${BUCKET}/small`, undefined],
    ]);
  });

  it("applies chmod to a file above the threshold by a multipart copy onto itself (metadata replaced)", async () => {
    const { body } = await seed("chmodded");
    await h.sh("chmod 600 chmodded");
    expect((await bytesOf("chmodded")).equals(body)).toBe(true);
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "chmodded" }));
    expect(Number(head.Metadata?.mode) & 0o7777).toBe(0o600);
    expect(head.Metadata?.mtime).toBe(META.mtime);
    expect(head.ContentType).toBe("application/x-test");
    expect((await partCopies("chmodded")).map((r) => r.headers["x-amz-copy-source-range"])).toEqual(
      expectedRanges(SIZE),
    );
  });

  it("renames a directory holding a file above the threshold", async () => {
    const { body } = await seed("dir/inner");
    const small = await seed("dir/note", 1000);
    await h.sh("mv dir dir2");
    expect((await bytesOf("dir2/inner")).equals(body)).toBe(true);
    expect((await bytesOf("dir2/note")).equals(small.body)).toBe(true);
    expect(await exists("dir/inner")).toBe(false);
    expect(await exists("dir/note")).toBe(false);
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "dir2/inner" }));
    expect(head.Metadata).toEqual(META);
    expect((await partCopies("dir2/inner")).map((r) => r.headers["x-amz-copy-source-range"])).toEqual(
      expectedRanges(SIZE),
    );
    expect(await partCopies("dir2/note")).toEqual([]);
    expect((await h.sh("ls dir2")).stdout.trim().split("\n")).toEqual(["inner", "note"]);
  });

  it("answers EIO when a part copy keeps failing, keeps the source, and aborts the upload", async () => {
    const { body } = await seed("fragile");
    await proxy().configure({ uploadPartCopy: true, failPartCopy: { partNumbers: [3], status: 500 } });
    try {
      const { exitCode, stderr } = await h.sh("mv fragile fragile-moved", { reject: false });
      expect(exitCode).not.toBe(0);
      expect(stderr).toMatch(/Input\/output error/);
    } finally {
      await proxy().configure({ uploadPartCopy: true });
    }
    expect((await bytesOf("fragile")).equals(body)).toBe(true);
    expect(await exists("fragile-moved")).toBe(false);
    expect((await h.sh("stat -c %s fragile")).stdout.trim()).toBe(String(SIZE));

    const copies = await partCopies("fragile-moved");
    const third = copies.filter((r) => partOf(r) === 3);
    // Retried (maxAttempts: 2), then given up.
    expect(third.map((r) => r.status)).toEqual([500, 500]);
    const uploads = new Set(copies.map(uploadOf));
    expect(uploads.size).toBe(1);
    const [uploadId] = [...uploads];
    // s3rver implements neither ListMultipartUploads nor AbortMultipartUpload, so what the
    // proxy saw is the evidence: the upload was aborted (after its part copies) and never completed.
    const all = await proxy().requestsFor(BUCKET, "fragile-moved");
    const aborts = all.filter((r) => r.method === "DELETE" && uploadOf(r) === uploadId);
    expect(aborts.length).toBeGreaterThan(0);
    const lastPart = Math.max(...copies.map((r) => all.indexOf(r)));
    expect(all.indexOf(aborts[0] as ProxiedRequest)).toBeGreaterThan(lastPart);
    expect(all.filter((r) => r.method === "POST" && uploadOf(r) === uploadId)).toEqual([]);
    // Every upload started for the key is accounted for.
    const created = all.filter((r) => r.method === "POST" && r.path.includes("uploads"));
    expect(created.length).toBe(1);
  });
});

describe("multipart copy options", () => {
  it("refuses a part size or threshold outside S3's limits with DRIVER_INVALID_OPTION", async () => {
    const mountpoint = join("/nonexistent", "never-mounted");
    for (const [option, value, why] of [
      ["copyPartSize", 5 * MiB - 1, /S3 parts are 5 MiB to 5 GiB/],
      ["copyPartSize", 5 * 1024 * MiB + 1, /S3 parts are 5 MiB to 5 GiB/],
      ["copyThreshold", 5 * 1024 * MiB + 1, /S3 refuses CopyObject above 5 GiB/],
    ] as const) {
      const err = await mountFusion({ mountpoint, [option]: value }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DriverError);
      expect((err as DriverError).code).toBe("DRIVER_INVALID_OPTION");
      expect((err as Error).message).toContain(`${option}=${value}`);
      expect((err as Error).message).toMatch(why);
    }
  });

  it("raises the part size so that a copy never needs more than 10,000 parts", () => {
    const fiveTiB = 5 * 1024 * 1024 * MiB;
    const part = copyPartSizeFor(fiveTiB, 512 * MiB);
    expect(Math.ceil(fiveTiB / part)).toBeLessThanOrEqual(10_000);
    expect(part % MiB).toBe(0);
    expect(copyPartSizeFor(6 * 1024 * MiB, 512 * MiB)).toBe(512 * MiB);
  });
});

function partOf(r: ProxiedRequest): number {
  return Number(new URL(r.path, "http://x").searchParams.get("partNumber"));
}

function uploadOf(r: ProxiedRequest): string | null {
  return new URL(r.path, "http://x").searchParams.get("uploadId");
}
