import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AgentError,
  agentSocketPath,
  ControlServer,
  requestCheckpoint,
  sendControlRequest,
} from "../../agent/index.js";
import { treeResidentBytes } from "../../agent/run/task-memory.js";

describe("the agent's control socket", () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), "snap-agent-ctl-"));
  });
  afterAll(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it("answers checkpoint and status requests with the handler's result or its error code", async () => {
    let fail = false;
    const server = new ControlServer({
      path: agentSocketPath("t-1", home),
      handler: async (request) => {
        if (fail) throw new AgentError("AGENT_BUSY", "busy right now");
        return { answered: request.command };
      },
    });
    await server.listen();
    try {
      expect(await requestCheckpoint("t-1", { home })).toEqual({ answered: "checkpoint" });
      expect(await sendControlRequest("t-1", { command: "status" }, { home })).toEqual({
        answered: "status",
      });
      fail = true;
      await expect(requestCheckpoint("t-1", { home })).rejects.toMatchObject({
        code: "AGENT_BUSY",
        message: "busy right now",
      });
    } finally {
      await server.close();
    }
    await expect(requestCheckpoint("t-1", { home })).rejects.toMatchObject({ code: "AGENT_NOT_RUNNING" });
  });

  it("refuses a second agent for the same task and replaces a stale socket", async () => {
    const path = agentSocketPath("t-2", home);
    const first = new ControlServer({ path, handler: async () => ({}) });
    await first.listen();
    try {
      const second = new ControlServer({ path, handler: async () => ({}) });
      await expect(second.listen()).rejects.toMatchObject({ code: "AGENT_ALREADY_RUNNING" });
    } finally {
      await first.close();
    }
    // A file left by an agent that died without cleaning up.
    await writeFile(path, "");
    const third = new ControlServer({ path, handler: async () => ({ ok: 1 }) });
    await third.listen();
    try {
      expect(await requestCheckpoint("t-2", { home })).toEqual({ ok: 1 });
    } finally {
      await third.close();
    }
  });

  it("answers garbage and unknown commands with AGENT_CONTROL_FAILED", async () => {
    const path = agentSocketPath("t-3", home);
    const server = new ControlServer({ path, handler: async () => ({}) });
    await server.listen();
    try {
      const answers = await new Promise<string>((resolve, reject) => {
        const socket = createConnection(path);
        let text = "";
        socket.on("data", (d) => {
          text += d;
          if (text.split("\n").length > 2) {
            socket.destroy();
            resolve(text);
          }
        });
        socket.on("error", reject);
        socket.write('not json\n{"command":"explode"}\n');
      });
      const [a, b] = answers
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(a).toMatchObject({
        ok: false,
        error: { code: "AGENT_CONTROL_FAILED", message: "Request is not JSON: not json" },
      });
      expect(b).toMatchObject({
        ok: false,
        error: { code: "AGENT_CONTROL_FAILED", message: 'Unknown command "explode"' },
      });
    } finally {
      await server.close();
    }
  });

  it("rejects task ids that could escape the agents directory", () => {
    expect(() => agentSocketPath("../etc", home)).toThrow(/Task id "..\/etc" is invalid/);
  });
});

it("measures a process tree's resident memory from /proc", async () => {
  expect(await treeResidentBytes(process.pid)).toBeGreaterThan(10 * 1024 * 1024);
  expect(await treeResidentBytes(2 ** 22 + 7)).toBe(0);
});
