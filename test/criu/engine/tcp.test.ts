// The engine's TCP modes with a real connection: the task (fixtures/tcptask.c) holds one
// TCP connection on loopback to a peer this test runs, and pings it once a step.
// "close": restored, the task finds its connection closed and carries on without it.
// "established": the same connection goes on working after a periodic checkpoint and
// after a restore on a fresh mount. CRIU before 4.2 cannot dump TCP sockets at all on
// Linux 6.16 and later (criu#2705): there the engine must refuse with
// CRIU_SOCKETS_UNSUPPORTED and leave the task and its connection running.
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { release } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectCriuFeatures, type SnapshotEngine, type TaskSpec } from "../../../criu/index.js";
import { EngineFixture, haveCc, WORK_PREFIX, waitFor } from "./engine-fixture.js";

const STEPS = 40;
const SLEEP_MS = 150;

// "6.18.44-fc" -> [6, 18, 44]
const numbers = (v: string) => (v.match(/^\d+(\.\d+)*/)?.[0] ?? "0").split(".").map(Number);
function atLeast(version: string, wanted: string): boolean {
  const a = numbers(version);
  const b = numbers(wanted);
  for (let i = 0; i < b.length; i++) {
    if ((a[i] ?? 0) !== (b[i] as number)) return (a[i] ?? 0) > (b[i] as number);
  }
  return true;
}

// The peer: answers "ping N" with "pong N" on every connection; records what it saw.
class Peer {
  readonly server: Server;
  readonly connections: Array<{ socket: Socket; pings: number[]; ended: boolean; error?: string }> = [];
  port = 0;

  constructor() {
    this.server = createServer((socket) => {
      const c = { socket, pings: [] as number[], ended: false, error: undefined as string | undefined };
      this.connections.push(c);
      let buf = "";
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => {
        buf += d;
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const n = Number(/^ping (\d+)$/.exec(line)?.[1]);
          c.pings.push(n);
          socket.write(`pong ${n}\n`);
        }
      });
      socket.on("error", (err: NodeJS.ErrnoException) => {
        c.error = err.code ?? err.message;
      });
      socket.on("close", () => {
        c.ended = true;
      });
    });
  }

  async start(): Promise<void> {
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    this.port = (this.server.address() as { port: number }).port;
  }

  get pings(): number {
    return this.connections.reduce((n, c) => n + c.pings.length, 0);
  }

  async stop(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

describe.skipIf(!haveCc())("snapshot engine: TCP connections", () => {
  let f: EngineFixture;
  let tcptask = "";
  let unsupported = false;
  let criuVersion = "";

  beforeAll(async () => {
    f = await EngineFixture.start();
    tcptask = await f.compile("tcptask");
    criuVersion = (await detectCriuFeatures()).version;
    // checkpoint-restore/criu#2705: CRIU < 4.2 reads SO_PASSCRED/SO_PASSSEC, which Linux
    // 6.16+ refuses on inet sockets, so every dump of a task with one fails.
    unsupported = !atLeast(criuVersion, "4.2") && atLeast(release(), "6.16");
    console.log(
      `[tcp] CRIU ${criuVersion} on Linux ${release()}: ${unsupported ? "TCP sockets cannot be dumped (refusal expected)" : "TCP sockets can be dumped"}`,
    );
  });

  afterAll(async () => {
    await f?.close();
  });

  async function startTask(
    mode: "close" | "established",
    peer: Peer,
  ): Promise<{ engine: SnapshotEngine; spec: TaskSpec; key: string }> {
    await f.remount();
    const taskId = `t-tcp-${mode}`;
    const engine = f.engine({ taskId, tcpMode: mode, workDir: join(f.dir, `work-${mode}`) });
    const cwd = await f.workDir();
    const spec: TaskSpec = {
      id: taskId,
      command: [tcptask, String(peer.port), String(STEPS), String(SLEEP_MS), join(cwd, `${mode}.txt`)],
      cwd,
      stdoutPath: join(cwd, `.${mode}.out`),
      stderrPath: join(cwd, `.${mode}.err`),
    };
    const task = await engine.start(spec);
    f.tasks.push(task);
    await waitFor("3 pings", async () => peer.pings >= 3);
    return { engine, spec, key: `${WORK_PREFIX}/${mode}.txt` };
  }

  // On CRIU < 4.2 with Linux >= 6.16: the refusal, and the task unharmed by it.
  async function expectRefusal(engine: SnapshotEngine, peer: Peer): Promise<void> {
    await expect(engine.checkpoint({ leaveRunning: false })).rejects.toMatchObject({
      code: "CRIU_SOCKETS_UNSUPPORTED",
      message: expect.stringContaining(`CRIU ${criuVersion} cannot dump`),
    });
    expect(await engine.latest()).toBeUndefined();
    const at = peer.pings;
    await waitFor("2 more pings after the refused checkpoint", async () => peer.pings >= at + 2);
    expect(peer.connections).toHaveLength(1);
    expect(peer.connections[0]?.ended).toBe(false);
  }

  it('"close": the restored task finds its connection closed and finishes without it', async () => {
    const peer = new Peer();
    await peer.start();
    try {
      const { engine, spec, key } = await startTask("close", peer);
      if (unsupported) return await expectRefusal(engine, peer);
      const cp = await engine.checkpoint({ leaveRunning: false, reason: "notice" });
      expect(cp.generation).toBe(1);
      // Killed after a --tcp-close dump: the kernel closed the connection, the peer saw it.
      await waitFor("the peer to see the connection end", async () => peer.connections[0]?.ended === true);
      const pinged = peer.pings;

      await f.remount();
      const restored = await f
        .engine({ taskId: spec.id, tcpMode: "close", workDir: join(f.dir, "work-close-2") })
        .restore(spec);
      f.tasks.push(restored.task);
      expect(await restored.task.exited).toEqual({ exitCode: 0, signal: null });
      const lines = (await f.getText(key)).trimEnd().split("\n");
      expect(lines).toHaveLength(STEPS);
      // The step in flight at the freeze may have sent its ping without reading the pong.
      const c = lines.findIndex((l) => l.includes("closed"));
      expect([pinged - 1, pinged]).toContain(c);
      expect(lines.slice(0, c)).toEqual(Array.from({ length: c }, (_, i) => `step ${i + 1} pong`));
      expect(lines[c]).toMatch(new RegExp(`^step ${c + 1} closed: `));
      expect(lines.slice(c + 1)).toEqual(
        Array.from({ length: STEPS - c - 1 }, (_, i) => `step ${c + i + 2} offline`),
      );
      console.log(`[tcp] close: the restored task says "${lines[c]}"`);
      // No new connection, no ping after the restore.
      expect(peer.connections).toHaveLength(1);
      expect(peer.pings).toBe(pinged);
    } finally {
      await peer.stop();
    }
  });

  it('"established": the same connection works after a periodic checkpoint and after a restore', async () => {
    const peer = new Peer();
    await peer.start();
    try {
      const { engine, spec, key } = await startTask("established", peer);
      if (unsupported) return await expectRefusal(engine, peer);
      expect(await engine.checkpoint({ reason: "periodic" })).toMatchObject({ generation: 1 });
      // The task went on running: its connection must still carry pings.
      const afterFirst = peer.pings;
      await waitFor(
        "3 pings after the periodic checkpoint",
        async () => peer.pings >= afterFirst + 3,
        20_000,
      );
      expect(await engine.checkpoint({ leaveRunning: false, reason: "notice" })).toMatchObject({
        generation: 2,
      });
      const pinged = peer.pings;

      await f.remount();
      const restored = await f
        .engine({ taskId: spec.id, tcpMode: "established", workDir: join(f.dir, "work-established-2") })
        .restore(spec);
      f.tasks.push(restored.task);
      expect(restored.generation).toBe(2);
      expect(await restored.task.exited).toEqual({ exitCode: 0, signal: null });
      // Every step answered, over the one connection the task opened before the checkpoints.
      expect((await f.getText(key)).trimEnd().split("\n")).toEqual(
        Array.from({ length: STEPS }, (_, i) => `step ${i + 1} pong`),
      );
      expect(peer.connections).toHaveLength(1);
      expect(peer.connections[0]?.pings).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
      expect(peer.connections[0]?.error).toBeUndefined();
      console.log(`[tcp] established: ${STEPS - pinged} pings exchanged over the restored connection`);
    } finally {
      await peer.stop();
    }
  });
});
