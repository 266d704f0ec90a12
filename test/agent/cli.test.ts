import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../protocol/index.js";
import { AgentFixture } from "./agent-fixture.js";

describe("snapctl agent run / checkpoint: failures before any task runs", () => {
  let f: AgentFixture;
  beforeAll(async () => {
    f = await AgentFixture.start();
  });
  afterAll(async () => {
    await f?.close();
  });

  it("exits 176 (restore failed) with --restore when the task has no snapshot, and reports it", async () => {
    const r = await f.agent([
      "--task",
      "t-none",
      "--workdir",
      "s3://work/jobs/none",
      "--mountpoint",
      f.mountpoint,
      "--restore",
      "--json",
    ]);
    expect(r.exitCode).toBe(ExitCode.restoreFailed);
    const outcome = JSON.parse(String(r.stdout).trim()) as {
      outcome: string;
      error: { code: string; message: string };
    };
    expect(outcome.outcome).toBe("restore-failed");
    expect(outcome.error.code).toBe("AGENT_NO_SNAPSHOT");
    expect(outcome.error.message).toContain('"t-none"');
    const events = await f.events();
    expect(events.map((e) => e.type)).toEqual(["failed"]);
    expect(events[0]).toMatchObject({ taskId: "t-none", exitCode: ExitCode.restoreFailed });
    // The agent's socket is gone once it has stopped.
    expect(await f.listAgents()).toEqual(["t-none"]);
  });

  // --compute-env's snapshots.enabled reaches the agent: the same 1 s interval (the flag
  // overrides the file's) checkpoints with it on and never with it off.
  it.each([true, false])("--compute-env with snapshots.enabled: %s", async (enabled) => {
    const file = join(f.dir, `env-${enabled}.yaml`);
    await writeFile(
      file,
      [
        `name: cli-${enabled}`,
        "provider: local",
        "region: us-east-1",
        "workDir: s3://work/jobs",
        "snapshots:",
        `  enabled: ${enabled}`,
        "  interval: 10s",
        "",
      ].join("\n"),
    );
    const r = await f.agent([
      "--task",
      `t-env-${enabled}`,
      "--workdir",
      `s3://work/jobs/env-${enabled}`,
      "--mountpoint",
      f.mountpoint,
      "--compute-env",
      file,
      "--checkpoint-interval",
      "1s",
      "--json",
      "--",
      "sh",
      "-c",
      "sleep 4",
    ]);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const outcome = JSON.parse(String(r.stdout).trim()) as { outcome: string; checkpoints: unknown[] };
    expect(outcome.outcome).toBe("exited");
    if (enabled) expect(outcome.checkpoints.length).toBeGreaterThan(0);
    else expect(outcome.checkpoints).toEqual([]);
  });

  it("refuses to start without a command when there is nothing to restore", async () => {
    const r = await f.agent([
      "--task",
      "t-nocmd",
      "--workdir",
      "s3://work/jobs/nocmd",
      "--mountpoint",
      f.mountpoint,
    ]);
    expect(r.exitCode).toBe(ExitCode.failure);
    expect(String(r.stderr)).toContain("AGENT_NO_COMMAND");
  });

  it("rejects a bad work dir and a bad task id before mounting anything", async () => {
    const bad = await f.agent([
      "--task",
      "t-1",
      "--workdir",
      "http://work/x",
      "--mountpoint",
      f.mountpoint,
      "--",
      "true",
    ]);
    expect(bad.exitCode).toBe(ExitCode.failure);
    expect(String(bad.stderr)).toContain('Work dir "http://work/x"');
    const badId = await f.agent([
      "--task",
      "../x",
      "--workdir",
      "s3://work/x",
      "--mountpoint",
      f.mountpoint,
      "--",
      "true",
    ]);
    expect(badId.exitCode).toBe(ExitCode.failure);
    expect(String(badId.stderr)).toContain('Task id "../x" is invalid');
  });

  it("snapctl checkpoint says when no agent runs the task", async () => {
    const r = await f.snapctl(["checkpoint", "t-absent"]);
    expect(r.exitCode).toBe(ExitCode.failure);
    expect(String(r.stderr)).toContain('No agent runs task "t-absent" here');
    expect(String(r.stderr)).toContain("AGENT_NOT_RUNNING");
  });
});
