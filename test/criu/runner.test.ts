import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectCriuFeatures, namespaceInit, pidNamespacePrefix, runCriu } from "../../criu/index.js";
import { type FifoPipe, openFifo } from "../helpers/fifo.js";

// A counter that keeps its state only in memory and prints it every 100 ms.
const COUNTER = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done";

describe("CRIU through the wrapper", () => {
  let dir: string;
  const pipes: FifoPipe[] = [];
  const restoredPids: number[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "snap-criu-"));
  });

  afterAll(async () => {
    for (const pid of restoredPids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const p of pipes) await p.close();
    if (!process.env.KEEP) await rm(dir, { recursive: true, force: true });
  });

  it("detects the version and features from criu check", async () => {
    const features = await detectCriuFeatures();
    expect(features.version).toMatch(/^\d+\.\d+/);
    expect(features.checkOk).toBe(true);
    // Facts of this kernel (ENVIRONMENT.md): no soft-dirty, userfaultfd works.
    expect(typeof features.memDirtyTrack).toBe("boolean");
    expect(features.uffd).toBe(true);
  });

  it("dumps a process tree in its own PID namespace and restores it twice side by side", async () => {
    const out = await openFifo(join(dir, "task.fifo"));
    pipes.push(out);
    // Restored detached (-d) below, so the tree must not carry unshare's PDEATHSIG.
    const [cmd, ...prefix] = [...pidNamespacePrefix({ killWithParent: false }), "sh", "-c", COUNTER];
    const task = spawn(cmd!, prefix, { stdio: ["ignore", out.writeFd, out.writeFd] });
    await out.closeWriteEnd();
    await out.waitFor((lines) => lines.length >= 5);
    const init = await namespaceInit(task.pid!);

    const images = join(dir, "images");
    await mkdir(images);
    await runCriu(["dump", "-t", String(init), "-D", images, "--log-file", "dump.log"], {
      logFile: join(images, "dump.log"),
    });
    // CRIU killed the tree after dumping it: the counter's last value is the dumped state.
    if (task.exitCode === null && task.signalCode === null) await once(task, "exit");
    const dumpedAt = Math.max(...out.lines.map(Number).filter(Number.isFinite));
    expect(dumpedAt).toBeGreaterThanOrEqual(5);

    const restores: FifoPipe[] = [];
    for (const n of [1, 2]) {
      const copy = await openFifo(join(dir, `restore-${n}.fifo`));
      pipes.push(copy);
      restores.push(copy);
      const pidfile = join(dir, `restore-${n}.pid`);
      // The task's stdout was the FIFO at `out.path`; --inherit-fd replaces it with our new one.
      await runCriu(
        [
          "restore",
          "-D",
          images,
          "-d",
          "--pidfile",
          pidfile,
          "--log-file",
          `restore-${n}.log`,
          "--inherit-fd",
          `fd[3]:${out.path.slice(1)}`,
        ],
        { extraFds: [copy.writeFd], logFile: join(images, `restore-${n}.log`) },
      );
      await copy.closeWriteEnd();
      restoredPids.push(Number((await readFile(pidfile, "utf8")).trim()));
    }
    // Both copies run at the same time and continue from the dumped value.
    for (const copy of restores) {
      await copy.waitFor((lines) => lines.map(Number).filter(Number.isFinite).length >= 5);
      const values = copy.lines.map(Number).filter(Number.isFinite).slice(0, 5);
      expect(values).toEqual([dumpedAt + 1, dumpedAt + 2, dumpedAt + 3, dumpedAt + 4, dumpedAt + 5]);
    }
    expect(new Set(restoredPids).size).toBe(2);
    for (const pid of restoredPids) expect(() => process.kill(pid, 0)).not.toThrow();
  });

  it("names the failure when a dump target does not exist", async () => {
    const images = join(dir, "bad");
    await mkdir(images);
    await expect(
      runCriu(["dump", "-t", "999999", "-D", images, "--log-file", "dump.log"], {
        logFile: join(images, "dump.log"),
      }),
    ).rejects.toMatchObject({ code: "CRIU_FAILED" });
  });
});
