import { PutObjectCommand } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

const MiB = 1024 * 1024;

// Every 4 KiB of the body names its version, so mixed versions show in any read.
function versioned(size: number, version: number): Buffer {
  const b = Buffer.alloc(size, version);
  for (let i = 0; i + 8 <= size; i += 4096) b.writeUInt32LE(version, i);
  return b;
}

// Opens and reads `file` whole in a child process: "size=<n> versions=<stamps>" or "errno=<n>".
async function readWhole(h: FusionHarness, file: string): Promise<string> {
  const script = `const fs = require("fs");
    try {
      const data = fs.readFileSync(${JSON.stringify(file)});
      const seen = new Set();
      for (let i = 0; i + 8 <= data.length; i += 4096) seen.add(data.readUInt32LE(i));
      process.stdout.write("size=" + data.length + " versions=" + [...seen].sort().join(","));
    } catch (e) { process.stdout.write("errno=" + e.errno); }`;
  const { stdout } = await execa("node", ["-e", script], { cwd: h.root, timeout: 120_000 });
  return stdout;
}

// A node child that opens `file`, reads its first MiB, prints "ready"; on a first line on stdin
// reads from `at` to the end and prints the versions it saw and the errno it ended with (Node
// has no name for ESTALE: it shows as -116, "Stale file handle" in C tools), then
// "waiting"; on a second line reads the first MiB again through the same descriptor and exits.
// The execa timeout is a hang guard, not a speed check.
function holdOpenReader(h: FusionHarness, file: string, at: number) {
  const script = `const fs = require("fs");
    const stamps = (b, n) => { const s = new Set(); for (let i = 0; i + 8 <= n; i += 4096) s.add(b.readUInt32LE(i)); return [...s]; };
    const say = (line) => fs.writeSync(1, line + "\\n");
    const fd = fs.openSync(${JSON.stringify(file)}, "r");
    const b = Buffer.alloc(1 << 20);
    const n0 = fs.readSync(fd, b, 0, b.length, 0);
    say("first=" + stamps(b, n0).join(","));
    say("ready");
    let step = 0;
    process.stdin.on("data", () => {
      if (step++ === 0) {
        const seen = new Set();
        try {
          let pos = ${at};
          for (;;) { const n = fs.readSync(fd, b, 0, b.length, pos); if (n === 0) break; for (const v of stamps(b, n)) seen.add(v); pos += n; }
          say("no error");
        } catch (e) { say("errno=" + e.errno); }
        say("later=" + [...seen].join(","));
        say("waiting");
        return;
      }
      try {
        const again = fs.readSync(fd, b, 0, b.length, 0);
        say("reread=" + stamps(b, again).join(","));
      } catch (e) { say("reread errno=" + e.errno); }
      process.exit(0);
    });`;
  const child = execa("node", ["-e", script], { cwd: h.root, timeout: 120_000, reject: false });
  let out = "";
  const seenLine = (word: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (out.includes(word)) resolve();
      };
      child.stdout?.on("data", check);
      child.once("exit", () => reject(new Error(`reader exited before "${word}": ${out}`)));
      check();
    });
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const ready = seenLine("ready");
  ready.catch(() => {});
  return {
    child,
    ready,
    // Runs the read to the end; resolves when the reader waits with the file still open.
    readRest: async () => {
      const waiting = seenLine("waiting");
      child.stdin?.write("go\n");
      await waiting;
      return out;
    },
    finish: () => child.stdin?.write("go\n"),
  };
}

describe("driver pins an open file to one object version (real FUSE mount, If-Match enforced by a proxy)", () => {
  let h: FusionHarness;
  beforeAll(async () => {
    h = await FusionHarness.start(
      { partSize: MiB, blockSize: MiB, readMemory: 8 * MiB, statTtlMs: 60_000 },
      { proxy: true },
    );
  });
  afterAll(async () => {
    await h?.close();
  });

  it("sends If-Match with the ETag seen at open on every ranged GET of one open file (after the lookup)", async () => {
    const body = versioned(6 * MiB + 123, 1);
    const put = await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "pinned", Body: body }));
    const proxy = h.proxy;
    if (!proxy) throw new Error("no proxy");
    const { stdout } = await h.sh(
      "sha256sum < pinned && dd if=pinned bs=4k skip=700 count=3 status=none | wc -c",
    );
    expect(stdout).toContain("12288");
    // The lookup (before any open) is a GET of the first 128 KiB, pinned to nothing yet.
    const [lookup, ...reads] = await proxy.requestsFor(BUCKET, "pinned", "GET");
    expect(lookup?.headers.range).toBe("bytes=0-131071");
    expect(lookup?.headers["if-match"]).toBeUndefined();
    expect(reads.length).toBeGreaterThan(1);
    for (const get of reads) {
      expect(get.headers.range).toMatch(/^bytes=\d+-\d+$/);
      expect(get.headers["if-match"]).toBe(put.ETag);
      expect(get.status).toBe(206);
    }
  });

  it("answers ESTALE (no hang, no mixed data) when the object is replaced under an open file, and a new open reads the new version", async () => {
    const size = 24 * MiB;
    const v1 = await h.client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "replaced", Body: versioned(size, 1) }),
    );
    const reader = holdOpenReader(h, "replaced", 20 * MiB);
    await reader.ready;
    const v2 = await h.client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "replaced", Body: versioned(size, 2) }),
    );
    expect(v2.ETag).not.toBe(v1.ETag);
    await reader.readRest();
    reader.finish();
    const result = await reader.child;
    expect(result.stdout).toContain("first=1\n");
    expect(result.stdout).toMatch(/errno=-116\n/);
    // Whatever the open file returned came from version 1 only.
    expect(result.stdout).toMatch(/later=(1)?\n/);
    expect(result.stdout).toMatch(/^reread=1$/m);
    const refused =
      (await h.proxy?.requestsFor(BUCKET, "replaced", "GET"))?.filter((r) => r.status === 412) ?? [];
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.headers["if-match"]).toBe(v1.ETag);

    // A new open (the mount had this key in its stat cache for 60 s) reads version 2 whole.
    expect(await readWhole(h, "replaced")).toBe(`size=${size} versions=2`);
  });

  it("gives a new open the new version while an older open of the same file still holds the old one", async () => {
    const size = 24 * MiB;
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "overlap", Body: versioned(size, 3) }));
    const reader = holdOpenReader(h, "overlap", 20 * MiB);
    await reader.ready;
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "overlap", Body: versioned(size, 4) }));
    const out = await reader.readRest();
    expect(out).toMatch(/errno=-116\n/);
    expect(out).toContain("first=3\n");
    // The old descriptor is still open here.
    const { stdout } = await h.sh("dd if=overlap bs=1M skip=20 count=1 status=none | od -An -tu4 -w4 -N4");
    expect(stdout.trim()).toBe("4");
    reader.finish();
    const result = await reader.child;
    expect(result.stdout).toMatch(/^reread=3$/m);
  });

  it("reads a small file with the one GET of its lookup, and an empty object with no hang", async () => {
    const small = Buffer.from("x".repeat(5000));
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "small", Body: small }));
    await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "empty", Body: Buffer.alloc(0) }));
    const { stdout } = await h.sh("cat small | wc -c && cat empty | wc -c");
    expect(stdout.split("\n")).toEqual(["5000", "0"]);
    const proxy = h.proxy;
    if (!proxy) throw new Error("no proxy");
    const smallRequests = await proxy.requestsFor(BUCKET, "small");
    expect(smallRequests.map((r) => `${r.method} ${r.headers.range}`)).toEqual(["GET bytes=0-131071"]);
    expect((await proxy.requestsFor(BUCKET, "empty")).length).toBeGreaterThan(0);
  });
});
