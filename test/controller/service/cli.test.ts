import { execa } from "execa";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { nodeEntry } from "../../../common/entry.js";
import { ServiceHarness } from "./harness.js";

const h = new ServiceHarness();
beforeAll(() => h.start());
afterAll(() => h.stop());
afterEach(() => h.cleanup());

// snapctl from source in a child process, pointed at the test's Redis and key prefix.
function snapctl(prefix: string, ...args: string[]) {
  const { command, args: entry } = nodeEntry("cli/snapctl");
  return execa(command, [...entry, ...args], {
    reject: false,
    env: { SNAPCTL_REDIS_URL: h.redis.url, SNAPCTL_PREFIX: prefix, SNAPCTL_LOCAL_CLOUD: "0" },
  });
}

it("runs a task with --wait, exits with its exit code, and shows it in ls and status", async () => {
  const t = await h.setup({ enabled: false });
  await t.service().ready();
  const run = await snapctl(
    t.prefix,
    "run",
    "--compute-env",
    t.envFile,
    "--wait",
    "--json",
    "--",
    "sh",
    "-c",
    "exit 4",
  );
  expect(run.exitCode, run.stderr).toBe(4);
  const lines = run.stdout.split("\n").map((l) => JSON.parse(l) as { id: string; state: string });
  const id = lines[0]?.id as string;
  expect(lines.at(-1)).toMatchObject({ id, state: "failed" });

  const ls = await snapctl(t.prefix, "ls", "--json");
  expect(ls.exitCode, ls.stderr).toBe(0);
  expect(JSON.parse(ls.stdout)).toEqual([
    expect.objectContaining({
      id,
      state: "failed",
      attempts: 1,
      interruptionsSurvived: 0,
      snapshotsTaken: 0,
    }),
  ]);
  const status = await snapctl(t.prefix, "status", id, "--transitions", "--json");
  expect(JSON.parse(status.stdout)).toMatchObject({ id, exitCode: 4, transitions: expect.any(Array) });
  const text = await snapctl(t.prefix, "status", id);
  expect(text.stdout).toContain("interruptions survived: 0 of 0");
});

it("gives clear errors and exit code 1 for restore and interrupt of unknown or finished tasks", async () => {
  const t = await h.setup({ enabled: false });
  await t.service().ready();
  const unknown = await snapctl(t.prefix, "restore", "t-unknown");
  expect(unknown.exitCode).toBe(1);
  expect(unknown.stderr).toBe('snapctl: Task "t-unknown" does not exist [REGISTRY_TASK_NOT_FOUND]');
  const run = await snapctl(t.prefix, "run", "--compute-env", t.envFile, "--wait", "--", "true");
  expect(run.exitCode, run.stderr).toBe(0);
  const id = run.stdout.trim();
  const restore = await snapctl(t.prefix, "restore", id);
  expect(restore.exitCode).toBe(1);
  expect(restore.stderr).toContain(
    `Cannot restore task "${id}": it finished (succeeded, exit code 0) [CONTROLLER_NOT_RESTORABLE]`,
  );
  const interrupt = await snapctl(t.prefix, "interrupt", id, "--in", "5");
  expect(interrupt.exitCode).toBe(1);
  expect(interrupt.stderr).toContain("[CONTROLLER_NO_INSTANCE]");
  const usage = await snapctl(t.prefix, "run", "--", "true");
  expect(usage.exitCode).toBe(2);
});
