// SnapshotRepository.retire(): after a task ended on its own, its memory images go, its
// manifests stay (under retired/), and nothing of it looks restorable. Real s3rver.
import { randomBytes } from "node:crypto";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type ChunkedFile,
  ChunkStore,
  type Manifest,
  parseManifest,
  SnapshotError,
  SnapshotRepository,
} from "../../store/index.js";
import { commitGeneration, manifestFor, writeFile } from "./manifest-fixture.js";
import { type S3Fixture, startS3 } from "./s3-fixture.js";

let s3: S3Fixture;
let store: ChunkStore;
let repo: SnapshotRepository;
let other: SnapshotRepository;
let n = 0;

beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.close();
});
beforeEach(() => {
  const root = `r${n++}/.snapshots/`;
  store = new ChunkStore({
    client: s3.client,
    bucket: s3.bucket,
    prefix: `${root}chunks/`,
    chunkSize: 64 * 1024,
  });
  repo = new SnapshotRepository({ store, root, task: "t-42" });
  other = new SnapshotRepository({ store, root, task: "t-43" });
});
afterEach(async () => {
  await store.close();
});

const hashes = (m: Manifest) =>
  new Set(Object.values(m.images).flatMap((f: ChunkedFile) => f.chunks.map((c) => c.hash)));

async function exists(key: string): Promise<boolean> {
  return await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key })).then(
    () => true,
    () => false,
  );
}

async function text(key: string): Promise<string> {
  const r = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return (await r.Body?.transformToString("utf8")) ?? "";
}

describe("SnapshotRepository.retire", () => {
  it("deletes every generation's chunks, keeps a chunk another task references, moves the manifests and says the task finished", async () => {
    const shared = randomBytes(64 * 1024);
    const g1 = await commitGeneration(repo, {
      "pages-1.img": Buffer.concat([shared, randomBytes(128 * 1024)]),
    });
    const g2 = await commitGeneration(repo, {
      "pages-1.img": randomBytes(128 * 1024),
      "core-1.img": randomBytes(900),
    });
    const o1 = await commitGeneration(other, {
      "pages-1.img": Buffer.concat([shared, randomBytes(64 * 1024)]),
    });
    const sharedHash = [...hashes(g1)].find((h) => hashes(o1).has(h)) as string;
    expect(sharedHash).toBeDefined();
    const ours = [...hashes(g1), ...hashes(g2)].filter((h) => h !== sharedHash);
    expect(ours.length).toBeGreaterThanOrEqual(4);

    const report = await repo.retire({ detail: { exitCode: 0 } });
    expect(report).toMatchObject({
      retiredGenerations: [1, 2],
      chunksDeleted: ours.length,
      chunksKeptShared: 1,
    });
    for (const h of ours) expect(await exists(store.keyOf(h)), h).toBe(false);
    expect(await exists(store.keyOf(sharedHash))).toBe(true);
    // The other task is untouched and still restorable, chunks verified.
    const theirs = await other.loadLatestUsable({ verify: "full" });
    expect(theirs.found).toBe(true);

    // Nothing of t-42 looks restorable; it says why.
    expect(await repo.list()).toEqual([]);
    const latest = await repo.loadLatestUsable();
    expect(latest).toMatchObject({
      found: false,
      reason: "finished",
      finished: { task: "t-42", retiredGenerations: [1, 2] },
    });
    const err = await repo.load(2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as Error).message).toMatch(/finished at .* and its memory images were removed/);
    // The manifests stay, readable, for the record.
    const kept = parseManifest(await text(repo.retiredKey(2)), { task: "t-42", generation: 2 });
    expect(kept.images).toEqual(g2.images);
    const marker = JSON.parse(await text(repo.finishedKey));
    expect(marker).toMatchObject({ task: "t-42", retiredGenerations: [1, 2], detail: { exitCode: 0 } });

    // Retiring again (a second cleanup) changes nothing; GC does not see retired manifests.
    expect((await repo.retire()).retiredGenerations).toEqual([]);
    expect((await other.gc({ keep: 1, graceMs: 0 })).chunksDeleted).toBe(0);
    expect(await exists(store.keyOf(sharedHash))).toBe(true);
  });

  it("keeps a chunk of its own that another writer uploaded again after its last commit (a dump in progress elsewhere)", async () => {
    const g1 = await commitGeneration(repo, { "pages-1.img": randomBytes(192 * 1024) });
    const [reused, ...rest] = [...hashes(g1)];
    // Another task's dump, started later, uploads the same content again (its store did
    // not list it) and has not committed yet. Later than the commit by S3's clock.
    await new Promise((r) => setTimeout(r, 1100));
    const key = store.keyOf(reused as string);
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: await fetchObject(key) }));

    const report = await repo.retire();
    expect(report).toMatchObject({ chunksDeleted: rest.length, chunksKeptYoung: 1 });
    expect(await exists(key)).toBe(true);
    for (const h of rest) expect(await exists(store.keyOf(h))).toBe(false);
    // Once old enough, the next GC of any task of the workdir removes it.
    expect((await other.gc({ keep: 1, graceMs: 0 })).chunksDeleted).toBe(1);
    expect(await exists(key)).toBe(false);
  });

  it("a new run committing under the same task id is restorable again", async () => {
    await commitGeneration(repo, { "pages-1.img": randomBytes(64 * 1024) });
    await repo.retire();
    await commitGeneration(repo, { "pages-1.img": randomBytes(64 * 1024) });
    const latest = await repo.loadLatestUsable();
    expect(latest).toMatchObject({ found: true, generation: 1 });
  });
});

describe("manifest task.runtimeMs (optional, schema 1)", () => {
  it("round-trips when present and is absent from manifests written before it existed", async () => {
    const images = { "pages-1.img": await writeFile(store, randomBytes(4096)) };
    const old = manifestFor(store, "t-42", 1, images);
    expect(old.task.runtimeMs).toBeUndefined();
    await repo.commit(old);
    expect((await repo.load(1)).task.runtimeMs).toBeUndefined();
    const withRuntime = manifestFor(store, "t-42", 2, images);
    withRuntime.task.runtimeMs = 123_456;
    await repo.commit(withRuntime);
    expect((await repo.load(2)).task.runtimeMs).toBe(123_456);
    const bad = manifestFor(store, "t-42", 3, images);
    (bad.task as { runtimeMs: unknown }).runtimeMs = -1;
    await expect(repo.commit(bad)).rejects.toThrow(/runtimeMs/);
  });
});

async function fetchObject(key: string): Promise<Buffer> {
  const r = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return Buffer.from((await r.Body?.transformToByteArray()) as Uint8Array);
}
