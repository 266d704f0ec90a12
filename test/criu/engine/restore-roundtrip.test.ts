import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ListObjectsCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKET, EngineFixture, haveCc, WORK_PREFIX, waitFor, writtenBy } from "./engine-fixture.js";

// Every key under `prefix`, sorted.
async function keys(f: EngineFixture, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let marker: string | undefined;
  for (;;) {
    const r = await f.client.send(
      new ListObjectsCommand({ Bucket: BUCKET, Prefix: prefix, ...(marker ? { Marker: marker } : {}) }),
    );
    for (const o of r.Contents ?? []) if (o.Key) out.push(o.Key);
    if (!r.IsTruncated || !r.Contents?.length) return out.sort();
    marker = r.Contents.at(-1)?.Key;
  }
}

const MIB = 256;
// Enough steps that the restored task is still running when it is checkpointed again.
const STEPS = 60;
// 10% of the pages over 10 steps; each step's run starts at a multiple of 64 pages, and
// 659 pages end it inside a 64 KiB chunk, which the next checkpoint stores patched.
const CHURN = Math.ceil((MIB * 256) / 100) + 3;
const SLEEP_MS = 150;

describe.skipIf(!haveCc())("snapshot engine: dump through Fusion, restore from S3 alone", () => {
  let f: EngineFixture;
  let expected = "";

  beforeAll(async () => {
    f = await EngineFixture.start();
    const ref = await mkdtemp(join(tmpdir(), "snap-ref-"));
    try {
      execFileSync(f.memtask, [String(MIB), String(STEPS), String(CHURN), "0", join(ref, "out")], {
        stdio: "ignore",
      }).toString();
    } catch (err) {
      if ((err as { status?: number }).status !== 7) throw err;
    }
    expected = await readFile(join(ref, "out"), "utf8");
    await rm(ref, { recursive: true, force: true });
  });

  afterAll(async () => {
    await f?.close();
  });

  it("checkpoints a 256 MiB task twice (second one incremental), kills it, restores it on a fresh mount", async () => {
    await f.remount();
    const engine = f.engine();
    const cwd = await f.workDir();
    const output = join(cwd, "results.txt");
    const spec = {
      id: "t-1",
      command: [f.memtask, String(MIB), String(STEPS), String(CHURN), String(SLEEP_MS), output],
      cwd,
      stdoutPath: join(cwd, ".command.out"),
      stderrPath: join(cwd, ".command.err"),
    };
    expect(await engine.latest()).toBeUndefined();
    const task = await engine.start(spec);
    f.tasks.push(task);
    // Bytes of the first n result lines ("<step> <16 hex>\n").
    const bytesOf = (n: number) =>
      Array.from({ length: n }, (_, i) => String(i + 1).length + 18).reduce((a, b) => a + b, 0);
    const stepsDone = async () => {
      const pos = await writtenBy(task.pid, output);
      let n = 0;
      while (bytesOf(n + 1) <= pos) n++;
      return n;
    };
    await waitFor("3 steps", async () => (await stepsDone()) >= 3);

    const first = await engine.checkpoint({ reason: "periodic" });
    expect(first).toMatchObject({ generation: 1, parentGeneration: null, mode: "full" });
    // About 10% of the memory changes before the next checkpoint (one step may already
    // have run between the resume and this read, so 9 more).
    const at = await stepsDone();
    await waitFor("9 more steps", async () => (await stepsDone()) >= at + 9);
    const second = await engine.checkpoint({ leaveRunning: false, reason: "notice" });
    expect(second).toMatchObject({ generation: 2, parentGeneration: 1, mode: "incremental-chunks" });
    console.log(
      `[engine] full: ${first.bytesLogical} B logical, ${first.bytesUploaded} B uploaded, freeze ${first.freezeMs} ms, total ${first.totalMs} ms; ` +
        `incremental: ${second.bytesLogical} B logical, ${second.bytesUploaded} B uploaded ` +
        `(${((100 * second.bytesUploaded) / first.bytesUploaded).toFixed(1)}% of the full), freeze ${second.freezeMs} ms, total ${second.totalMs} ms`,
    );
    expect(first.bytesLogical).toBeGreaterThan(MIB * 1024 * 1024);
    expect(second.bytesUploaded).toBeLessThanOrEqual(0.2 * first.bytesUploaded);
    // Staged locally by the same engine: most chunks are found unchanged on their quick hash.
    expect(first.chunksUnchanged).toBe(0);
    expect(second.chunksUnchanged).toBeGreaterThan(0);
    expect(first.chunksPatched).toBe(0);
    expect(second.chunksPatched).toBeGreaterThan(0);
    const killed = await task.exited;
    expect(killed.exitCode).toBeNull();
    expect(task.checkpointed).toBe(true);

    // The machine goes away: mount and cache removed. A fresh mount, from S3 alone.
    await f.remount();
    const engine2 = f.engine({ workDir: join(f.dir, "engine-work-2") });
    const restored = await engine2.restore(spec);
    f.tasks.push(restored.task);
    console.log(
      `[engine] restore: generation ${restored.generation}, task running again after ${Math.round(restored.resumeMs)} ms`,
    );
    expect(restored.generation).toBe(2);
    expect(restored.skipped).toEqual([]);
    // Its run time goes on from the one recorded at the freeze (not from 0).
    expect(first.taskRuntimeMs).toBeGreaterThan(0);
    expect(second.taskRuntimeMs).toBeGreaterThan(first.taskRuntimeMs);
    const manifest2 = await engine2.repo.load(2);
    expect(manifest2.task.runtimeMs).toBe(Math.round(second.taskRuntimeMs));
    expect(restored.runtimeBeforeMs).toBe(manifest2.task.runtimeMs);
    expect(engine2.runtimeMs()).toBeGreaterThanOrEqual(restored.runtimeBeforeMs);
    // The restored task is checkpointed again (the agent's periodic checkpoints go on).
    const third = await engine2.checkpoint({ reason: "periodic" });
    expect(third).toMatchObject({ generation: 3, parentGeneration: 2, mode: "incremental-chunks" });
    expect(third.taskRuntimeMs).toBeGreaterThan(second.taskRuntimeMs);
    console.log(
      `[engine] checkpoint of the restored task: ${third.bytesUploaded} B uploaded, freeze ${third.freezeMs} ms`,
    );
    const exit = await restored.task.exited;
    expect(exit).toEqual({ exitCode: 7, signal: null });
    expect(await f.getText(`${WORK_PREFIX}/results.txt`)).toBe(expected);
    const stdout = await f.getText(`${WORK_PREFIX}/.command.out`);
    expect(stdout).toBe(Array.from({ length: STEPS }, (_, i) => `step ${i + 1}\n`).join(""));

    // The task ended on its own: cleanup removes every generation's memory images and
    // open-file copies, keeps the manifests (retired/) and the task's files, and nothing
    // looks restorable any more.
    expect(await engine2.repo.list()).toEqual([2, 3]);
    expect((await keys(f, `${WORK_PREFIX}/.snapshots/chunks/`)).length).toBeGreaterThan(0);
    await engine2.cleanup();
    expect(await keys(f, `${WORK_PREFIX}/.snapshots/chunks/`)).toEqual([]);
    expect(await keys(f, `${WORK_PREFIX}/.snapshots/t-1/files/`)).toEqual([]);
    expect(await keys(f, `${WORK_PREFIX}/.snapshots/t-1/`)).toEqual([
      `${WORK_PREFIX}/.snapshots/t-1/finished.json`,
      `${WORK_PREFIX}/.snapshots/t-1/retired/000002.json`,
      `${WORK_PREFIX}/.snapshots/t-1/retired/000003.json`,
    ]);
    expect(
      JSON.parse(await f.getText(`${WORK_PREFIX}/.snapshots/t-1/retired/000003.json`)).task.runtimeMs,
    ).toBe(Math.round(third.taskRuntimeMs));
    expect(await f.getText(`${WORK_PREFIX}/results.txt`)).toBe(expected);
    expect(await engine2.latest()).toBeUndefined();
    await expect(engine2.restore(spec)).rejects.toThrow(
      /nothing to restore: it finished at .* and cleanup removed its memory images/,
    );
  });
});
