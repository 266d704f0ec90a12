import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SnapshotEngine, TaskSpec } from "../../../criu/index.js";
import type { Manifest } from "../../../store/index.js";
import { BUCKET, EngineFixture, haveCc, WORK_PREFIX, waitFor, writtenBy } from "./engine-fixture.js";

const MIB = 64;
const STEPS = 40;
const CHURN = 64;
const SLEEP_MS = 100;
const ROOT = `${WORK_PREFIX}/.snapshots/t-1/`;
const manifestKey = (g: number) => `${ROOT}gen-${String(g).padStart(6, "0")}.json`;

// The PID of a running `criu dump` writing into generation `gen`'s images dir, if any.
async function criuDumpPid(gen: number): Promise<number | undefined> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("criu\0dump") && cmd.includes(`gen-${String(gen).padStart(6, "0")}`))
      return Number(entry);
  }
  return undefined;
}

describe.skipIf(!haveCc())("snapshot engine: damaged snapshots and a crash mid-dump", () => {
  let f: EngineFixture;
  let engine: SnapshotEngine;
  let spec: TaskSpec;
  let expected = "";
  let gen2: Manifest;
  let gen1: Manifest;

  beforeAll(async () => {
    f = await EngineFixture.start();
    const ref = await mkdtemp(join(tmpdir(), "snap-ref-"));
    try {
      execFileSync(f.memtask, [String(MIB), String(STEPS), String(CHURN), "0", join(ref, "out")], {
        stdio: "ignore",
      });
    } catch (err) {
      if ((err as { status?: number }).status !== 7) throw err;
    }
    expected = await readFile(join(ref, "out"), "utf8");
    await rm(ref, { recursive: true, force: true });
    await f.remount();
    // Images stream through the mount so that criu is still writing them when it is killed
    // (with local staging the dump is over in a moment and the upload follows it).
    engine = f.engine({ staging: "mount" });
    const cwd = await f.workDir();
    const output = join(cwd, "results.txt");
    spec = {
      id: "t-1",
      command: [f.memtask, String(MIB), String(STEPS), String(CHURN), String(SLEEP_MS), output],
      cwd,
      stdoutPath: join(cwd, ".command.out"),
      stderrPath: join(cwd, ".command.err"),
    };
    const task = await engine.start(spec);
    f.tasks.push(task);
    await waitFor("2 steps", async () => (await writtenBy(task.pid, output)) >= 2 * 19);
    await engine.checkpoint();
    const at = await writtenBy(task.pid, output);
    await waitFor("3 more steps", async () => (await writtenBy(task.pid, output)) >= at + 3 * 19);
    await engine.checkpoint();

    // A crash in the middle of a dump: criu is killed -9 while it writes pages.
    const before = (f.store?.stats.bytesWritten ?? 0) + 8 * 1024 * 1024;
    const third = engine.checkpoint();
    const killed = (async () => {
      await waitFor(
        "criu dump writing pages",
        async () => (f.store?.stats.bytesWritten ?? 0) > before,
        30_000,
      );
      const pid = await criuDumpPid(3);
      if (pid) process.kill(pid, "SIGKILL");
      return pid;
    })();
    await expect(third).rejects.toMatchObject({ code: "CRIU_DUMP_FAILED" });
    expect(await killed).toBeTypeOf("number");
    expect((await engine.latest())?.generation).toBe(2);
    task.kill("SIGKILL");
    await task.exited;
    gen1 = JSON.parse(await f.getText(manifestKey(1)));
    gen2 = JSON.parse(await f.getText(manifestKey(2)));
  });

  afterAll(async () => {
    await f?.close();
  });

  // Restores, waits for the task to finish, checks its output against an uninterrupted run.
  async function restoreAndFinish(): Promise<Awaited<ReturnType<SnapshotEngine["restore"]>>> {
    const restored = await engine.restore(spec);
    f.tasks.push(restored.task);
    expect(await restored.task.exited).toEqual({ exitCode: 7, signal: null });
    expect(await f.getText(`${WORK_PREFIX}/results.txt`)).toBe(expected);
    return restored;
  }

  // A chunk of generation 2's memory pages that generation 1 does not have: its hash, the
  // object holding it (its pack) and where its stored bytes are in that object.
  function newChunkOf2(): { hash: string; key: string; offset: number; stored: number } {
    const old = new Set(Object.values(gen1.images).flatMap((i) => i.chunks.map((c) => c.hash)));
    const fresh = Object.entries(gen2.images)
      .filter(([name]) => name.startsWith("pages-"))
      .flatMap(([, i]) => i.chunks)
      .find((c) => !old.has(c.hash));
    if (!fresh) throw new Error("generation 2 has no chunk of its own");
    const id = fresh.pack ?? fresh.hash;
    return { hash: fresh.hash, key: chunkKey(id), offset: fresh.offset ?? 0, stored: fresh.stored };
  }
  const chunkKey = (h: string) => `${WORK_PREFIX}/.snapshots/chunks/${h.slice(0, 2)}/${h}`;
  async function getBytes(key: string): Promise<Buffer> {
    const r = await f.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from((await r.Body?.transformToByteArray()) ?? []);
  }
  const put = (key: string, body: Buffer | string) =>
    f.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));

  it("restores the previous generation after a crash mid-dump (the dump left no manifest)", async () => {
    const r = await restoreAndFinish();
    expect(r.generation).toBe(2);
    expect(r.skipped).toEqual([]);
  });

  it("names a damaged chunk and falls back to the previous generation", async () => {
    const { hash, key, offset, stored } = newChunkOf2();
    const original = await getBytes(key);
    const damaged = Buffer.from(original);
    // Past the chunk's 16-byte header, inside its stored bytes only.
    for (let i = offset + 16; i < offset + stored; i += 97) damaged[i] = (damaged[i] as number) ^ 0xff;
    await put(key, damaged);
    try {
      const r = await restoreAndFinish();
      expect(r.generation).toBe(1);
      expect(r.skipped).toEqual([
        expect.objectContaining({
          generation: 2,
          code: "SNAPSHOT_CORRUPT_CHUNK",
          message: expect.stringContaining(hash),
        }),
      ]);
    } finally {
      await put(key, original);
    }
  });

  it("falls back past a missing chunk (its pack deleted)", async () => {
    const { key } = newChunkOf2();
    const original = await getBytes(key);
    await f.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    try {
      const r = await restoreAndFinish();
      expect(r.generation).toBe(1);
      expect(r.skipped).toEqual([
        expect.objectContaining({
          generation: 2,
          code: "SNAPSHOT_MISSING_CHUNK",
          // The pack's id (the last part of its key) is named.
          message: expect.stringContaining(key.slice(-64)),
        }),
      ]);
    } finally {
      await put(key, original);
    }
  });

  it("falls back past a truncated manifest", async () => {
    const text = await f.getText(manifestKey(2));
    await put(manifestKey(2), text.slice(0, Math.floor(text.length / 2)));
    try {
      const r = await restoreAndFinish();
      expect(r.generation).toBe(1);
      expect(r.skipped).toEqual([
        expect.objectContaining({ generation: 2, code: "SNAPSHOT_MANIFEST_CORRUPT" }),
      ]);
    } finally {
      await put(manifestKey(2), text);
    }
  });

  it("refuses a manifest from a newer schema, naming its version", async () => {
    await put(manifestKey(3), JSON.stringify({ ...gen2, schemaVersion: 99, generation: 3 }));
    try {
      await expect(engine.restore(spec)).rejects.toMatchObject({
        code: "CRIU_SNAPSHOT_TOO_NEW",
        message: expect.stringContaining("schemaVersion 99"),
      });
    } finally {
      await f.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: manifestKey(3) }));
    }
  });

  it("says there is no snapshot when a task has none", async () => {
    const other = f.engine({ taskId: "t-none" });
    expect(await other.latest()).toBeUndefined();
    await expect(other.restore({ ...spec, id: "t-none" })).rejects.toMatchObject({
      code: "CRIU_NO_SNAPSHOT",
    });
  });
});
