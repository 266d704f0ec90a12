import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { nodeEntry } from "../../common/entry.js";
import { ChunkStore, type Manifest, SnapshotError, SnapshotRepository } from "../../store/index.js";
import { MANIFEST_COMPRESS_FROM } from "../../store/manifest/manifest-encoding.js";
import { commitGeneration, manifestFor, readFile, writeFile } from "./manifest-fixture.js";
import { type S3Fixture, startS3 } from "./s3-fixture.js";

let s3: S3Fixture;
let store: ChunkStore;
let repo: SnapshotRepository;
let n = 0;

beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.close();
});
beforeEach(() => {
  const root = `w${n++}/.snapshots/`;
  store = new ChunkStore({
    client: s3.client,
    bucket: s3.bucket,
    prefix: `${root}chunks/`,
    chunkSize: 64 * 1024,
  });
  repo = new SnapshotRepository({ store, root, task: "t-42" });
});
afterEach(async () => {
  await store.close();
});

async function put(key: string, body: string | Buffer) {
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
}

// Two generations where generation 2 has chunks of its own; returns them and their data.
async function twoGenerations() {
  const shared = randomBytes(200 * 1024);
  const g1 = await commitGeneration(repo, { "pages-1.img": shared, "core-1.img": randomBytes(1000) });
  const own = randomBytes(150 * 1024);
  const g2 = await commitGeneration(repo, { "pages-1.img": Buffer.concat([shared, own]) });
  const sharedHashes = new Set(
    (g1.images["pages-1.img"] as { chunks: { hash: string }[] }).chunks.map((c) => c.hash),
  );
  const ownChunk = (g2.images["pages-1.img"] as { chunks: { hash: string; stored: number }[] }).chunks.find(
    (c) => !sharedHashes.has(c.hash),
  );
  if (!ownChunk) throw new Error("generation 2 has no chunk of its own");
  return { g1, g2, shared, own, ownChunk };
}

function codeOf(err: unknown): string | undefined {
  return err instanceof SnapshotError ? err.code : undefined;
}

describe("SnapshotRepository commit and load", () => {
  it("commits generations, lists them and restores their images byte for byte", async () => {
    const { g1, g2, shared, own } = await twoGenerations();
    expect(await repo.list()).toEqual([1, 2]);
    expect(await repo.latest()).toBe(2);
    const loaded = await repo.load(2);
    expect(loaded).toEqual(g2);
    expect(
      (await readFile(store, loaded.images["pages-1.img"] as Manifest["images"][string])).equals(
        Buffer.concat([shared, own]),
      ),
    ).toBe(true);
    expect((await repo.load(1)).images).toEqual(g1.images);
    const usable = await repo.loadLatestUsable({ verify: "full" });
    expect(usable).toMatchObject({ found: true, generation: 2, skipped: [] });
  });

  it("reports no snapshot when there is no manifest, and SNAPSHOT_NOT_FOUND for a missing generation", async () => {
    expect(await repo.list()).toEqual([]);
    expect(await repo.latest()).toBeUndefined();
    expect(await repo.loadLatestUsable()).toEqual({ found: false, reason: "no-snapshot", skipped: [] });
    expect(codeOf(await repo.load(1).catch((e: unknown) => e))).toBe("SNAPSHOT_NOT_FOUND");
  });

  it("refuses to commit a manifest whose chunks are not in the store, or a generation twice", async () => {
    const file = await writeFile(store, randomBytes(1000));
    const m1 = manifestFor(store, "t-42", 1, { "pages-1.img": file });
    await repo.commit(m1);
    expect(codeOf(await repo.commit(m1).catch((e: unknown) => e))).toBe("SNAPSHOT_GENERATION_EXISTS");
    const bogus = "ab".repeat(32);
    const m2 = manifestFor(store, "t-42", 2, {
      "pages-1.img": { size: 5, chunks: [{ hash: bogus, size: 5, stored: 30 }] },
    });
    const err = await repo.commit(m2).catch((e: unknown) => e);
    expect(codeOf(err)).toBe("SNAPSHOT_COMMIT_INCOMPLETE");
    expect((err as Error).message).toContain(bogus);
    expect(await repo.list()).toEqual([1]);
  });
});

async function getRaw(key: string) {
  const r = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return { body: Buffer.from((await r.Body?.transformToByteArray()) ?? []), encoding: r.ContentEncoding };
}

// A manifest of `refs` references to one stored chunk (what a file of identical pages
// gives): its JSON grows by about 130 bytes a reference.
async function manifestOfRefs(generation: number, refs: number): Promise<Manifest> {
  const one = await writeFile(store, randomBytes(4096));
  const ref = one.chunks[0] as Manifest["images"][string]["chunks"][number];
  return manifestFor(store, "t-42", generation, {
    "pages-1.img": { size: refs * ref.size, chunks: Array.from({ length: refs }, () => ({ ...ref })) },
  });
}

describe("SnapshotRepository manifest encoding", () => {
  it("stores a large manifest zstd-compressed and a small one as plain JSON, and loads both", async () => {
    const small = await manifestOfRefs(1, 10);
    await repo.commit(small);
    const plain = await getRaw(repo.manifestKey(1));
    expect(plain.body.subarray(0, 1).toString()).toBe("{");
    expect(plain.encoding).toBeUndefined();
    expect(JSON.parse(plain.body.toString())).toEqual(small);

    const large = await manifestOfRefs(2, 12_000);
    const json = JSON.stringify(large).length;
    expect(json).toBeGreaterThan(MANIFEST_COMPRESS_FROM);
    await repo.commit(large);
    const packed = await getRaw(repo.manifestKey(2));
    expect([...packed.body.subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
    expect(packed.encoding).toBe("zstd");
    expect(packed.body.length).toBeLessThan(json / 10);
    expect(await repo.load(2)).toEqual(large);
    expect(await repo.load(1)).toEqual(small);
    expect(await repo.loadLatestUsable({ verify: "full" })).toMatchObject({ found: true, generation: 2 });
  });

  it("reports a damaged compressed manifest as SNAPSHOT_MANIFEST_CORRUPT and falls back", async () => {
    await repo.commit(await manifestOfRefs(1, 10));
    await repo.commit(await manifestOfRefs(2, 12_000));
    const { body } = await getRaw(repo.manifestKey(2));
    const cases: [string, Buffer, RegExp][] = [
      ["truncated", body.subarray(0, Math.floor(body.length / 2)), /does not decompress .*truncated/],
      // A frame header that declares 2^40 bytes: refused before anything is allocated.
      [
        "huge",
        Buffer.concat([
          body.subarray(0, 4),
          Buffer.from([0xe0]),
          Buffer.from([0, 0, 0, 0, 0, 1, 0, 0]),
          body.subarray(9),
        ]),
        /declares 1099511627776 bytes.*header is damaged/,
      ],
    ];
    for (const [name, damaged, message] of cases) {
      await put(repo.manifestKey(2), damaged);
      const err = await repo.load(2).catch((e: unknown) => e);
      expect(codeOf(err), name).toBe("SNAPSHOT_MANIFEST_CORRUPT");
      expect((err as Error).message, name).toMatch(message);
      expect((err as Error).message, name).toContain(repo.manifestKey(2));
      expect(await repo.loadLatestUsable(), name).toMatchObject({
        found: true,
        generation: 1,
        skipped: [{ generation: 2, code: "SNAPSHOT_MANIFEST_CORRUPT" }],
      });
    }
  });
});

describe("SnapshotRepository damage and fallback", () => {
  it("names a damaged chunk (SNAPSHOT_CORRUPT_CHUNK) and falls back to the previous generation", async () => {
    const { ownChunk, shared } = await twoGenerations();
    // Same length, other bytes: only a full verification can tell.
    await put(store.keyOf(ownChunk.hash), randomBytes(ownChunk.stored));
    const fresh = new ChunkStore({
      client: s3.client,
      bucket: s3.bucket,
      prefix: store.prefix,
      chunkSize: 64 * 1024,
    });
    try {
      const r2 = new SnapshotRepository({ store: fresh, root: repo.root, task: "t-42" });
      expect(await r2.loadLatestUsable({ verify: "quick" })).toMatchObject({ found: true, generation: 2 });
      const usable = await r2.loadLatestUsable({ verify: "full" });
      expect(usable).toMatchObject({
        found: true,
        generation: 1,
        skipped: [{ generation: 2, code: "SNAPSHOT_CORRUPT_CHUNK", hash: ownChunk.hash }],
      });
      expect(usable.skipped[0]?.message).toContain(ownChunk.hash);
      if (!usable.found) throw new Error("unreachable");
      expect(
        (await readFile(fresh, usable.manifest.images["pages-1.img"] as Manifest["images"][string])).equals(
          shared,
        ),
      ).toBe(true);
      // Reading the damaged generation directly names the chunk too.
      const g2 = await r2.load(2);
      const err = await readFile(fresh, g2.images["pages-1.img"] as Manifest["images"][string]).catch(
        (e: unknown) => e,
      );
      expect(codeOf(err)).toBe("SNAPSHOT_CORRUPT_CHUNK");
      expect((err as Error).message).toContain(ownChunk.hash);
      // A chunk of another length is caught by the quick check as well.
      await put(store.keyOf(ownChunk.hash), randomBytes(10));
      expect(await r2.loadLatestUsable({ verify: "quick" })).toMatchObject({
        found: true,
        generation: 1,
        skipped: [{ generation: 2, code: "SNAPSHOT_CORRUPT_CHUNK", hash: ownChunk.hash }],
      });
    } finally {
      await fresh.close();
    }
  });

  it("names a missing chunk (SNAPSHOT_MISSING_CHUNK) and falls back", async () => {
    const { ownChunk } = await twoGenerations();
    await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: store.keyOf(ownChunk.hash) }));
    for (const verify of ["quick", "full"] as const) {
      const usable = await repo.loadLatestUsable({ verify });
      expect(usable).toMatchObject({
        found: true,
        generation: 1,
        skipped: [{ generation: 2, code: "SNAPSHOT_MISSING_CHUNK", hash: ownChunk.hash }],
      });
    }
  });

  it("reports a truncated manifest as SNAPSHOT_MANIFEST_CORRUPT and falls back", async () => {
    await twoGenerations();
    const text = JSON.stringify(await repo.load(2));
    await put(repo.manifestKey(2), text.slice(0, Math.floor(text.length / 2)));
    const err = await repo.load(2).catch((e: unknown) => e);
    expect(codeOf(err)).toBe("SNAPSHOT_MANIFEST_CORRUPT");
    expect((err as Error).message).toContain("generation 2");
    expect(await repo.loadLatestUsable()).toMatchObject({
      found: true,
      generation: 1,
      skipped: [{ generation: 2, code: "SNAPSHOT_MANIFEST_CORRUPT" }],
    });
    // Valid JSON that is not a manifest is corrupt too.
    await put(repo.manifestKey(2), JSON.stringify({ schemaVersion: 1, generation: 2 }));
    expect(codeOf(await repo.load(2).catch((e: unknown) => e))).toBe("SNAPSHOT_MANIFEST_CORRUPT");
  });

  it("refuses a manifest from a newer schema with SNAPSHOT_SCHEMA_TOO_NEW, naming the version", async () => {
    await twoGenerations();
    const newer = { ...(await repo.load(2)), schemaVersion: 4, generation: 7, somethingNew: { x: 1 } };
    await put(repo.manifestKey(7), JSON.stringify(newer));
    const err = await repo.load(7).catch((e: unknown) => e);
    expect(codeOf(err)).toBe("SNAPSHOT_SCHEMA_TOO_NEW");
    expect((err as Error).message).toBe(
      "manifest of task t-42 generation 7 has schemaVersion 4; this snapctl reads up to 3: upgrade snapctl",
    );
    // Falling back past it would silently lose work: refused instead.
    expect(codeOf(await repo.loadLatestUsable().catch((e: unknown) => e))).toBe("SNAPSHOT_SCHEMA_TOO_NEW");
  });

  it("ignores an interrupted dump (chunks uploaded, no manifest) and stray objects", async () => {
    const { g2 } = await twoGenerations();
    const writer = store.createWriter();
    await writer.write(randomBytes(300 * 1024));
    await writer.abort(new Error("spot interruption"));
    await put(`${repo.taskPrefix}gen-000003.json.tmp`, "{");
    await put(`${repo.taskPrefix}notes.txt`, "x");
    expect(await repo.list()).toEqual([2 - 1, 2]);
    expect(await repo.latest()).toBe(2);
    expect(await repo.loadLatestUsable({ verify: "full" })).toMatchObject({
      found: true,
      generation: 2,
      manifest: g2,
    });
  });

  it("leaves the previous generation restorable when the dumping process is killed mid-upload", async () => {
    const { g2, shared, own } = await twoGenerations();
    const { command, args } = nodeEntry("test/store/fixtures/dump-child");
    const child = spawn(command, [...args, s3.server.endpoint, s3.bucket, store.prefix, "64"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = once(child, "exit");
    try {
      let out = "";
      for await (const chunk of child.stdout) {
        out += String(chunk);
        if (out.includes("\n")) break;
      }
      expect(out.trim()).toBe("uploading");
      child.kill("SIGKILL");
      const [code, signal] = await exited;
      expect(signal ?? code).toBe("SIGKILL");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    // The crashed dump's chunks are in S3 (it printed "uploading" after 8 uploads)...
    const fresh = new ChunkStore({
      client: s3.client,
      bucket: s3.bucket,
      prefix: store.prefix,
      chunkSize: 64 * 1024,
    });
    try {
      let chunks = 0;
      for await (const _ of fresh.listChunks()) chunks++;
      expect(chunks).toBeGreaterThan(g2.images["pages-1.img"]?.chunks.length ?? 0);
      // ...but no generation mentions them, and generation 2 restores intact.
      const r2 = new SnapshotRepository({ store: fresh, root: repo.root, task: "t-42" });
      expect(await r2.list()).toEqual([1, 2]);
      const usable = await r2.loadLatestUsable({ verify: "full" });
      expect(usable).toMatchObject({ found: true, generation: 2, skipped: [] });
      if (!usable.found) throw new Error("unreachable");
      const back = await readFile(fresh, usable.manifest.images["pages-1.img"] as Manifest["images"][string]);
      expect(back.equals(Buffer.concat([shared, own]))).toBe(true);
    } finally {
      await fresh.close();
    }
  });
});
