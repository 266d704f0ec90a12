// Pre-dump support: the engine never writes a "predump" generation (it has no pre-dump
// path), and each committed checkpoint logs why pre-dump was not used, which on this
// kernel must be the missing soft-dirty tracking. The feature flag is checked against the
// kernel's own configuration where the kernel publishes it.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectCriuFeatures } from "../../../criu/index.js";
import { predumpStatus } from "../../../criu/runner/features.js";
import { EngineFixture, haveCc, waitFor, writtenBy } from "./engine-fixture.js";

describe.skipIf(!haveCc())("snapshot engine: pre-dump", () => {
  let f: EngineFixture;

  beforeAll(async () => {
    f = await EngineFixture.start();
  });

  afterAll(async () => {
    await f?.close();
  });

  it("detects mem_dirty_track as the kernel configures soft-dirty", async () => {
    const features = await detectCriuFeatures();
    const config = await readFile("/proc/config.gz").then(
      (b) => gunzipSync(b).toString("utf8"),
      () => undefined,
    );
    if (config !== undefined) {
      expect(features.memDirtyTrack).toBe(/^CONFIG_MEM_SOFT_DIRTY=y$/m.test(config));
    }
    expect(predumpStatus(features)).toMatch(
      features.memDirtyTrack ? /^not used: / : /^unavailable: .*soft-dirty/,
    );
  });

  it("records full/incremental-chunks and logs why pre-dump is not used", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
        done();
      },
    });
    await f.remount();
    const engine = f.engine({ taskId: "t-predump", logger: pino({ level: "info" }, sink) });
    const cwd = await f.workDir();
    const output = join(cwd, "predump.txt");
    const task = await engine.start({
      id: "t-predump",
      command: [f.memtask, "16", "200", "16", "50", output],
      cwd,
      stdoutPath: join(cwd, ".predump.out"),
      stderrPath: join(cwd, ".predump.err"),
    });
    f.tasks.push(task);
    await waitFor("a step", async () => (await writtenBy(task.pid, output)) >= 19);
    const first = await engine.checkpoint();
    const second = await engine.checkpoint({ leaveRunning: false });
    expect([first.mode, second.mode]).toEqual(["full", "incremental-chunks"]);
    const committed = lines.filter((l) => l.msg === "checkpoint committed");
    const reason = predumpStatus(await detectCriuFeatures());
    expect(committed.map((l) => [l.mode, l.predump])).toEqual([
      ["full", reason],
      ["incremental-chunks", reason],
    ]);
    console.log(`[predump] ${reason}`);
  });
});
