import { PutObjectCommand } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

const MiB = 1024 * 1024;

// A node child that does step one, prints "ready", waits for a line on stdin, then does step
// two; it prints the errno code it ended with. The execa timeout is a hang guard, not a speed check.
function stepper(h: FusionHarness, script: string) {
  const child = execa("node", ["-e", script], { cwd: h.root, timeout: 120_000, reject: false });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) resolve();
    });
    child.once("exit", () => reject(new Error("stepper exited early")));
  });
  ready.catch(() => {});
  return { child, ready, go: () => child.stdin?.write("go\n") };
}

describe("driver when the S3 server goes away (real FUSE mount on s3rver)", () => {
  let h: FusionHarness;
  beforeAll(async () => {
    h = await FusionHarness.start({
      partSize: MiB,
      blockSize: MiB,
      uploadPartSize: 5 * MiB,
      requestTimeoutMs: 5000,
      maxAttempts: 3,
      statTtlMs: 60_000,
      readMemory: 8 * MiB,
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("answers EIO to a read when the server stops mid-file, and reads again after it restarts", async () => {
    const body = Buffer.alloc(48 * MiB, 7);
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "cold", Body: body }));
    const s = stepper(
      h,
      `const fs = require("fs");
       const fd = fs.openSync("cold", "r");
       const b = Buffer.alloc(1 << 20);
       fs.readSync(fd, b, 0, b.length, 0);
       console.log("ready");
       process.stdin.once("data", () => {
         try {
           let pos = 40 << 20;
           for (;;) { const n = fs.readSync(fd, b, 0, b.length, pos); if (n === 0) break; pos += n; }
           console.log("no error");
         } catch (e) { console.log("code=" + e.code); }
         process.exit(0);
       });`,
    );
    await s.ready;
    await h.server.kill();
    s.go();
    const result = await s.child;
    expect(result.stdout).toMatch(/code=EIO/);
    await h.server.start();
    const { stdout } = await h.sh("dd if=cold bs=1M skip=40 status=none | wc -c");
    expect(Number(stdout.trim())).toBe(8 * MiB);
  });

  it("answers EIO at close when the server stops mid-upload, and writes again after it restarts", async () => {
    const s = stepper(
      h,
      `const fs = require("fs");
       const fd = fs.openSync("upload", "w");
       const b = Buffer.alloc(1 << 20, 1);
       for (let i = 0; i < 6; i++) fs.writeSync(fd, b);
       console.log("ready");
       process.stdin.once("data", () => {
         try {
           for (let i = 0; i < 10; i++) fs.writeSync(fd, b);
           fs.closeSync(fd);
           console.log("no error");
         } catch (e) { console.log("code=" + e.code); }
         process.exit(0);
       });`,
    );
    await s.ready;
    await h.server.kill();
    s.go();
    const result = await s.child;
    expect(result.stdout).toMatch(/code=EIO/);
    expect(h.child.process.exitCode).toBeNull();
    await h.server.start();
    await h.sh("head -c 7000000 /dev/zero > upload && stat -c %s upload");
    const { stdout } = await h.sh("wc -c < upload");
    expect(Number(stdout.trim())).toBe(7_000_000);
  });

  it("answers EIO (not a hang) to a lookup while the server is down", async () => {
    await h.server.kill();
    try {
      const result = await execa("stat", ["never-seen"], { cwd: h.root, reject: false, timeout: 120_000 });
      expect(result.stderr).toMatch(/Input\/output error/);
    } finally {
      await h.server.start();
    }
    const { stdout } = await h.sh("echo back > after && cat after");
    expect(stdout.trim()).toBe("back");
  });
});
