import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Server } from "../../cloud/index.js";
import { silentLogger } from "../../common/log.js";
import { BlockCache } from "../../driver/cache/block-cache.js";
import { BlockSource } from "../../driver/read/block-source.js";
import { S3Ops } from "../../driver/s3/s3-ops.js";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";
import { S3Proxy } from "./helpers/s3-proxy.js";

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const pause = (ms: number) => new Promise((done) => setTimeout(done, ms));

// The first byte a recorded GET asked for (its Range header).
const rangeStart = (headers: Record<string, unknown>) =>
  Number(/^bytes=(\d+)-/.exec(String(headers.range))?.[1]);

// Waits until the proxy holds at least one GET of `key` (a hang guard of 60 s, not a speed check).
async function heldGet(proxy: S3Proxy, key: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if ((await proxy.requestsFor(BUCKET, key, "GET")).some((r) => r.served === "stalled")) return;
    await pause(100);
  }
  throw new Error(`the proxy never held a GET of ${key}`);
}

describe("driver ranged GETs under network faults (real FUSE mount, s3rver behind a fault-injecting proxy)", () => {
  let h: FusionHarness;
  beforeAll(async () => {
    h = await FusionHarness.start(
      {
        partSize: 4 * MiB,
        blockSize: MiB,
        readMemory: 32 * MiB,
        maxAttempts: 3,
        statTtlMs: 60_000,
        // Far beyond the stop's SIGKILL fallback (60 s): a close that waited for a held GET's
        // stall timer instead of aborting it would be killed, not exit 0.
        requestTimeoutMs: 300_000,
      },
      { proxy: true },
    );
  });
  afterAll(async () => {
    await h?.close();
  });

  it("reads sequentially and at random offsets of a cold file byte for byte", async () => {
    const body = randomBytes(21 * MiB + 4321);
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "seq", Body: body }));
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "rand", Body: body }));
    const { stdout } = await h.sh("sha256sum < seq");
    expect(stdout.split(" ")[0]).toBe(sha(body));

    // A second key, so that nothing of it is in memory or on disk yet.
    const reads: Array<[number, number]> = [];
    for (let i = 0; i < 60; i++)
      reads.push([Math.floor(Math.random() * (body.length - 1)), 1 + Math.floor(Math.random() * 300_000)]);
    const script = `const fs = require("fs"); const crypto = require("crypto");
      const fd = fs.openSync("rand", "r"); const h = crypto.createHash("sha256");
      for (const [at, len] of ${JSON.stringify(reads)}) {
        const b = Buffer.alloc(len); let got = 0;
        while (got < len) { const n = fs.readSync(fd, b, got, len - got, at + got); if (n === 0) break; got += n; }
        h.update(b.subarray(0, got));
      }
      process.stdout.write(h.digest("hex"));`;
    const { stdout: digest } = await execa("node", ["-e", script], { cwd: h.root, timeout: 120_000 });
    const expected = createHash("sha256");
    for (const [at, len] of reads) expected.update(body.subarray(at, Math.min(body.length, at + len)));
    expect(digest).toBe(expected.digest("hex"));
  });

  it("takes a GET whose body is cut mid-way up again from the exact byte reached, and reads the right bytes", async () => {
    const body = randomBytes(12 * MiB + 99);
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "reset", Body: body }));
    // Not a block boundary: a resume from the start of the block would show.
    const afterBytes = 2 * MiB + 12_345;
    await h.proxy?.configure({ resetGets: { key: "reset", afterBytes, count: 2 } });
    try {
      const { stdout } = await h.sh("sha256sum < reset");
      expect(stdout.split(" ")[0]).toBe(sha(body));
    } finally {
      await h.proxy?.configure({});
    }
    const gets = (await h.proxy?.requestsFor(BUCKET, "reset", "GET")) ?? [];
    const cut = gets.filter((r) => r.served === "reset");
    expect(cut).toHaveLength(2);
    const starts = gets.map((r) => rangeStart(r.headers));
    for (const r of cut) expect(starts).toContain(rangeStart(r.headers) + afterBytes);
  });

  it("closes promptly while reads wait on GETs that never answer: the mount exits 0, the reader gets an error", async () => {
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "stalled", Body: randomBytes(8 * MiB) }));
    await h.proxy?.configure({ stallGets: { key: "stalled" } });
    try {
      const reader = execa("dd", ["if=stalled", "of=/dev/null", "bs=1M"], {
        cwd: h.root,
        timeout: 120_000,
        reject: false,
      });
      await heldGet(h.proxy as S3Proxy, "stalled");
      // stop() sends SIGTERM and SIGKILLs after 60 s: a close that waited for the held GETs
      // (requestTimeoutMs is 300 s) would end as SIGKILL (exit code null).
      expect(await h.child.stop()).toBe(0);
      const read = await reader;
      expect(read.timedOut).toBe(false);
      expect(read.exitCode).not.toBe(0);
    } finally {
      await h.proxy?.configure({});
      await h.mount();
    }
  });
});

describe("driver BlockSource close (s3rver behind the proxy, no FUSE)", () => {
  let dir: string;
  let server: S3Server;
  let proxy: S3Proxy;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "read-faults-"));
    server = new S3Server({ directory: join(dir, "s3"), buckets: [BUCKET] });
    await server.start();
    proxy = new S3Proxy(server.endpoint);
    await proxy.start();
  });
  afterAll(async () => {
    await proxy?.stop();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("aborts the GET in flight and the one waiting for a slot: their readers get DRIVER_ABORTED", async () => {
    const client = new S3Client({
      endpoint: proxy.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
      maxAttempts: 1,
    });
    const put = await client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "held", Body: randomBytes(3 * MiB) }),
    );
    const cache = new BlockCache({ dir: join(dir, "cache"), maxBytes: 64 * MiB, logger: silentLogger });
    await cache.init();
    const source = new BlockSource({
      s3: new S3Ops(client, { maxAttempts: 3, baseMs: 50, timeoutMs: 30_000, logger: silentLogger }),
      cache,
      blockSize: MiB,
      partSize: 2 * MiB,
      readMemory: 16 * MiB,
      // One GET at a time: the second read waits for the held GET's slot.
      maxConcurrentGets: 1,
      // Without the abort, close would wait this long for each held attempt.
      requestTimeoutMs: 600_000,
      maxAttempts: 3,
      retryBaseMs: 50,
      logger: silentLogger,
    });
    try {
      await proxy.configure({ stallGets: { key: "held" } });
      const object = { bucket: BUCKET, key: "held", etag: put.ETag ?? "", size: 3 * MiB };
      const inFlight = source.read(object, 0, MiB, 2);
      const queued = source.read(object, 2, MiB, 1);
      inFlight.catch(() => {});
      queued.catch(() => {});
      await heldGet(proxy, "held");
      // A hang guard (the held GET would keep close waiting for 10 minutes), not a speed check.
      let guard: NodeJS.Timeout | undefined;
      const closed = await Promise.race([
        source.close().then(() => "closed"),
        new Promise((done) => {
          guard = setTimeout(() => done("still waiting after 60 s"), 60_000);
        }),
      ]);
      clearTimeout(guard);
      expect(closed).toBe("closed");
      await expect(inFlight).rejects.toMatchObject({ code: "DRIVER_ABORTED" });
      await expect(queued).rejects.toMatchObject({ code: "DRIVER_ABORTED" });
      // Only the first GET was ever sent: the queued one ended without a request.
      expect(await proxy.requestsFor(BUCKET, "held", "GET")).toHaveLength(1);
    } finally {
      await proxy.configure({});
      client.destroy();
      await source.close();
      await cache.close({ remove: true });
    }
  });
});
