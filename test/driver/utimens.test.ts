import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET, FusionHarness } from "./helpers/fusion-harness.js";

// utimens through fuse-native as patched by patches/fuse-native+2.2.6.patch: the real mtime
// (2.2.6 passed atime twice), flag_utime_omit_ok (without it libfuse 2.9 drops a utimens that
// sets one time only), UTIME_NOW as now, UTIME_OMIT as "leave alone". The unpatched binding
// fails the touch -m, cp -p and tar x cases; the touch -a and plain touch cases cover the
// UTIME_OMIT and UTIME_NOW paths the patch opens.
describe("driver utimens (real FUSE mount on s3rver)", () => {
  let h: FusionHarness;
  let local: string;
  // Seconds since the epoch of each file as the mount must show it, checked again after a remount.
  const expected = new Map<string, number>();

  const mtimeOf = async (file: string) => Number((await h.sh(`stat -c %Y ${file}`)).stdout.trim());

  beforeAll(async () => {
    h = await FusionHarness.start({ statTtlMs: 1000 });
    local = join(h.dir, "local");
    await mkdir(local);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("touch -d sets the given mtime and stores it as object metadata", async () => {
    await h.sh("echo d > dated && touch -d '2001-02-03 04:05:06 UTC' dated");
    const want = Date.UTC(2001, 1, 3, 4, 5, 6) / 1000;
    expect(await mtimeOf("dated")).toBe(want);
    const head = await h.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "dated" }));
    expect(head.Metadata?.mtime).toBe(String(want));
    expected.set("dated", want);
  });

  it("touch -m -d sets mtime alone (atime omitted)", async () => {
    await h.sh("echo m > monly && touch -m -d @1000000000 monly");
    expect(await mtimeOf("monly")).toBe(1000000000);
    expected.set("monly", 1000000000);
  });

  it("touch -a leaves mtime unchanged, with a given time or now", async () => {
    await h.sh("echo a > aonly && touch -d @1500000000 aonly && touch -a -d @1700000000 aonly");
    expect(await mtimeOf("aonly")).toBe(1500000000);
    await h.sh("touch -a aonly");
    expect(await mtimeOf("aonly")).toBe(1500000000);
    expected.set("aonly", 1500000000);
  });

  it("touch without a time sets mtime to now (UTIME_NOW)", async () => {
    await h.sh("echo n > nowfile && touch -d @1500000000 nowfile");
    const before = Math.floor(Date.now() / 1000);
    await h.sh("touch nowfile");
    const after = Math.ceil(Date.now() / 1000);
    const mtime = await mtimeOf("nowfile");
    expect(mtime).toBeGreaterThanOrEqual(before);
    expect(mtime).toBeLessThanOrEqual(after);
  });

  it("cp -p keeps the mtime of a source whose atime differs", async () => {
    const src = join(local, "src");
    await h.sh(`echo c > ${src} && touch -m -d @1234567890 ${src} && touch -a -d @1300000000 ${src}`);
    expect((await h.sh(`stat -c '%X %Y' ${src}`)).stdout.trim()).toBe("1300000000 1234567890");
    await h.sh(`cp -p ${src} copied`);
    expect(await mtimeOf("copied")).toBe(1234567890);
    expected.set("copied", 1234567890);
  });

  it("tar x keeps the archived mtimes of files and of a directory's files", async () => {
    await h.sh(
      `cd ${local} && mkdir -p tree/sub && echo t > tree/top && echo s > tree/sub/deep && ` +
        "touch -d @1111111111 tree/top && touch -d @1222222222 tree/sub/deep && tar -cf tree.tar tree",
    );
    await h.sh(`tar -xf ${join(local, "tree.tar")}`);
    expect(await mtimeOf("tree/top")).toBe(1111111111);
    expect(await mtimeOf("tree/sub/deep")).toBe(1222222222);
    expected.set("tree/top", 1111111111);
    expected.set("tree/sub/deep", 1222222222);
  });

  it("keeps every mtime after unmount and remount", async () => {
    expect(expected.size).toBe(6);
    await h.remount();
    for (const [file, want] of expected) expect([file, await mtimeOf(file)]).toEqual([file, want]);
  });
});
