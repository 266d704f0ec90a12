import { HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forEachBounded } from "../../common/for-each-bounded.js";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

describe("driver namespace (real FUSE mount on s3rver)", () => {
  let h: FusionHarness;
  beforeAll(async () => {
    h = await FusionHarness.start({ statTtlMs: 1000 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("lists a directory of 2,500 keys completely (paginated listing)", async () => {
    const keys = Array.from({ length: 2500 }, (_, i) => `many/f-${String(i).padStart(5, "0")}`);
    await forEachBounded(keys, 32, async (key) => {
      await h.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: key }));
    });
    const { stdout } = await h.sh("ls many | wc -l && ls many | sort | head -1 && ls many | sort | tail -1");
    expect(stdout.trim().split("\n")).toEqual(["2500", "f-00000", "f-02499"]);
    const { stdout: content } = await h.sh("cat many/f-01234");
    expect(content).toBe("many/f-01234");
  });

  it("makes and removes directories; rmdir of a non-empty one fails with ENOTEMPTY", async () => {
    await h.sh("mkdir d1 && test -d d1 && echo x > d1/file");
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "d1/" }));
    expect(head.ContentLength).toBe(0);
    const { stderr, exitCode } = await h.sh("rmdir d1", { reject: false });
    expect(exitCode).not.toBe(0);
    expect(stderr).toMatch(/not empty/i);
    await h.sh("rm d1/file && rmdir d1 && ! test -e d1");
  });

  it("renames a file and a whole directory with nested content", async () => {
    await h.sh(
      "mkdir -p tree/a/b && echo one > tree/a/one && echo two > tree/a/b/two && echo top > tree/top",
    );
    await h.sh("mv tree/top tree/top2 && mv tree moved");
    const { stdout } = await h.sh("find moved -type f | sort && cat moved/a/b/two moved/top2");
    expect(stdout.trim().split("\n")).toEqual(["moved/a/b/two", "moved/a/one", "moved/top2", "two", "top"]);
    const { exitCode } = await h.sh("test -e tree", { reject: false });
    expect(exitCode).not.toBe(0);
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "moved/a/b/two" }));
    expect(head.ContentLength).toBe(4);
  });

  it("keeps a symlink across unmount and remount, stored the s3fs way", async () => {
    await h.sh("echo target-content > real && ln -s real link && ln -s ../elsewhere/x dangling");
    expect((await h.sh("readlink link")).stdout.trim()).toBe("real");
    await h.remount();
    expect((await h.sh("readlink link && cat link && readlink dangling")).stdout.trim().split("\n")).toEqual([
      "real",
      "target-content",
      "../elsewhere/x",
    ]);
    expect((await h.sh("stat -c %F link")).stdout.trim()).toBe("symbolic link");
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "link" }));
    expect(Number(head.Metadata?.mode) & 0o170000).toBe(0o120000);
  });

  it("keeps chmod, chown and mtime as object metadata", async () => {
    await h.sh("echo m > meta && chmod 600 meta && chown 1234:5678 meta && touch -d @1600000000 meta");
    await h.remount();
    const { stdout } = await h.sh("stat -c '%a %u %g %Y' meta");
    expect(stdout.trim()).toBe("600 1234 5678 1600000000");
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "meta" }));
    expect(head.Metadata?.uid).toBe("1234");
  });

  it("unlinks files, refuses hard links with ENOTSUP, and answers statfs", async () => {
    await h.sh("echo u > gone && rm gone");
    const gone = await h.sh("cat gone", { reject: false });
    expect(gone.exitCode).not.toBe(0);
    await h.sh("echo l > orig");
    const link = await h.sh("ln orig hard", { reject: false });
    expect(link.exitCode).not.toBe(0);
    expect(link.stderr).toMatch(/not supported/i);
    const { stdout } = await h.sh("df -P . | tail -1");
    expect(stdout).toMatch(/fusion/);
    expect(h.child.stderr).toMatch(/hard links are not supported/);
  });

  it("shows the bucket under s3/ and a missing path as ENOENT", async () => {
    const { stdout } = await h.sh(`ls ${h.mountpoint}/s3`);
    expect(stdout.trim().split("\n")).toContain(BUCKET);
    const missing = await h.sh("stat nothing-here", { reject: false });
    expect(missing.stderr).toMatch(/No such file/);
  });
});
