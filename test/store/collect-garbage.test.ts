import { randomBytes } from "node:crypto";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ChunkStore, type Manifest, SnapshotRepository } from "../../store/index.js";
import { commitGeneration, readFile } from "./manifest-fixture.js";
import { type S3Fixture, startS3 } from "./s3-fixture.js";

let s3: S3Fixture;
let store: ChunkStore;
let root: string;
let n = 0;
const HOUR = 60 * 60 * 1000;

beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.close();
});
beforeEach(() => {
  root = `g${n++}/.snapshots/`;
  store = new ChunkStore({
    client: s3.client,
    bucket: s3.bucket,
    prefix: `${root}chunks/`,
    chunkSize: 64 * 1024,
  });
});
afterEach(async () => {
  await store.close();
});

// A repository whose clock runs `aheadMs` in the future, so chunks look that old to GC.
function repoFor(task: string, aheadMs = 0): SnapshotRepository {
  return new SnapshotRepository({ store, root, task, clock: () => Date.now() + aheadMs });
}

async function chunkHashes(): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const c of store.listChunks()) out.add(c.hash);
  return out;
}

function hashesOf(manifest: Manifest): string[] {
  return Object.values(manifest.images).flatMap((f) => f.chunks.map((c) => c.hash));
}

// Four generations sharing a base file, each with a file of its own.
async function fourGenerations(repo: SnapshotRepository) {
  const base = randomBytes(128 * 1024);
  const gens: Manifest[] = [];
  for (let g = 1; g <= 4; g++) {
    gens.push(await commitGeneration(repo, { "pages-1.img": base, "pages-2.img": randomBytes(100 * 1024) }));
  }
  return { base, gens };
}

describe("SnapshotRepository.gc", () => {
  it("keeps the newest N, deletes older manifests and their own chunks, keeps shared chunks", async () => {
    const repo = repoFor("t-1", 2 * HOUR);
    const { base, gens } = await fourGenerations(repo);
    const before = await chunkHashes();
    const report = await repo.gc({ keep: 2 });
    expect(report).toMatchObject({ dryRun: false, deletedGenerations: [1, 2], keptGenerations: [3, 4] });
    expect(await repo.list()).toEqual([3, 4]);
    const after = await chunkHashes();
    const own = (m: Manifest) =>
      (m.images["pages-2.img"] as Manifest["images"][string]).chunks.map((c) => c.hash);
    for (const h of [...own(gens[0] as Manifest), ...own(gens[1] as Manifest)])
      expect(after.has(h)).toBe(false);
    for (const h of [...hashesOf(gens[2] as Manifest), ...hashesOf(gens[3] as Manifest)])
      expect(after.has(h)).toBe(true);
    expect(report.chunksDeleted).toBe(before.size - after.size);
    expect(report.chunksDeleted).toBeGreaterThan(0);
    expect(report.bytesFreed).toBeGreaterThan(0);
    // What is kept still restores, byte for byte.
    const usable = await repo.loadLatestUsable({ verify: "full" });
    expect(usable).toMatchObject({ found: true, generation: 4 });
    expect(
      (
        await readFile(store, (gens[2] as Manifest).images["pages-1.img"] as Manifest["images"][string])
      ).equals(base),
    ).toBe(true);
  });

  it("keeps the chunks of a manifest stored zstd-compressed (1 MiB of JSON or more)", async () => {
    const small = new ChunkStore({
      client: s3.client,
      bucket: s3.bucket,
      prefix: `${root}chunks/`,
      chunkSize: 4096,
    });
    try {
      const repo = new SnapshotRepository({
        store: small,
        root,
        task: "t-big",
        clock: () => Date.now() + 2 * HOUR,
      });
      // 12,000 references of distinct 4 KiB chunks: the manifest's JSON passes
      // MANIFEST_COMPRESS_FROM (1 MiB).
      const image = randomBytes(12_000 * 4096);
      const manifest = await commitGeneration(repo, {
        "pages-1.img": image,
        "pages-2.img": randomBytes(8192),
      });
      const key = repo.manifestKey(manifest.generation);
      const body = await (
        await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))
      ).Body?.transformToByteArray();
      // A zstd frame, not JSON text.
      expect([...(body ?? new Uint8Array()).subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
      const report = await repo.gc({ keep: 1 });
      expect(report.chunksDeleted).toBe(0);
      expect(await repo.loadLatestUsable({ verify: "full" })).toMatchObject({ found: true, generation: 1 });
    } finally {
      await small.close();
    }
  });

  it("removes orphan chunks of an interrupted dump once they are older than the grace period", async () => {
    const repo = repoFor("t-1");
    const { gens } = await fourGenerations(repo);
    const writer = store.createWriter();
    await writer.write(randomBytes(200 * 1024));
    // Uploaded, then the dump died before writing its manifest.
    await writer.finish();
    const referenced = new Set(gens.flatMap(hashesOf));
    const orphans = [...(await chunkHashes())].filter((h) => !referenced.has(h));
    expect(orphans.length).toBeGreaterThan(0);
    // Young: kept (a dump might be about to commit a manifest naming them).
    const young = await repo.gc({ keep: 4 });
    expect(young.chunksDeleted).toBe(0);
    expect(young.chunksKeptYoung).toBe(orphans.length);
    // Old enough: removed; every committed generation still verifies.
    const old = await repoFor("t-1", 2 * HOUR).gc({ keep: 4 });
    expect(old.deletedGenerations).toEqual([]);
    expect(old.chunksDeleted).toBe(orphans.length);
    const left = await chunkHashes();
    for (const h of orphans) expect(left.has(h)).toBe(false);
    expect(await repo.loadLatestUsable({ verify: "full" })).toMatchObject({
      found: true,
      generation: 4,
      skipped: [],
    });
  });

  it("keeps young unreferenced chunks of deleted generations within the grace period", async () => {
    const repo = repoFor("t-1", 10 * 60 * 1000); // chunks look 10 minutes old; grace is 60
    await fourGenerations(repo);
    const before = await chunkHashes();
    const report = await repo.gc({ keep: 1 });
    expect(report.deletedGenerations).toEqual([1, 2, 3]);
    expect(report.chunksDeleted).toBe(0);
    expect(report.chunksKeptYoung).toBeGreaterThan(0);
    expect(await chunkHashes()).toEqual(before);
    // With a 5-minute grace they go.
    const report2 = await repo.gc({ keep: 1, graceMs: 5 * 60 * 1000 });
    expect(report2.chunksDeleted).toBe(report.chunksKeptYoung);
  });

  it("never deletes chunks another task's manifests reference (shared chunk store)", async () => {
    const a = repoFor("task-a", 2 * HOUR);
    const b = repoFor("task-b", 2 * HOUR);
    const shared = randomBytes(128 * 1024);
    const ga = await commitGeneration(a, { "pages-1.img": shared, "x.img": randomBytes(70 * 1024) });
    await commitGeneration(a, { "pages-1.img": randomBytes(64 * 1024) });
    const gb = await commitGeneration(b, { "pages-1.img": shared });
    const report = await a.gc({ keep: 1 });
    expect(report.deletedGenerations).toEqual([1]);
    const after = await chunkHashes();
    for (const h of hashesOf(gb)) expect(after.has(h)).toBe(true);
    const onlyA = hashesOf(ga).filter((h) => !hashesOf(gb).includes(h));
    for (const h of onlyA) expect(after.has(h)).toBe(false);
    expect(await b.loadLatestUsable({ verify: "full" })).toMatchObject({
      found: true,
      generation: 1,
      skipped: [],
    });
  });

  it("deletes nothing in a dry run but reports what it would delete", async () => {
    const repo = repoFor("t-1", 2 * HOUR);
    await fourGenerations(repo);
    const before = await chunkHashes();
    const report = await repo.gc({ keep: 1, dryRun: true });
    expect(report).toMatchObject({ dryRun: true, deletedGenerations: [1, 2, 3], keptGenerations: [4] });
    expect(report.chunksDeleted).toBe(3 * 2);
    expect(await repo.list()).toEqual([1, 2, 3, 4]);
    expect(await chunkHashes()).toEqual(before);
  });

  it("refuses keep < 1", async () => {
    await expect(repoFor("t-1").gc({ keep: 0 })).rejects.toMatchObject({ code: "SNAPSHOT_INVALID_ARGUMENT" });
  });
});
