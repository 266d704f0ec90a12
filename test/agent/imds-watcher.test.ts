import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { ImdsClient, ImdsWatcher, parseNotice, type SpotNotice } from "../../agent/index.js";
import { ImdsEmulator } from "../../cloud/index.js";
import { freePort } from "../../common/ports.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function emulator(port?: number): Promise<ImdsEmulator> {
  const imds = new ImdsEmulator({ port });
  await imds.start();
  cleanups.push(() => imds.stop());
  return imds;
}

function watcher(endpoint: string, pollIntervalMs = 100): ImdsWatcher {
  const w = new ImdsWatcher({ endpoint, pollIntervalMs, maxBackoffMs: 400 });
  cleanups.push(() => w.close());
  return w;
}

describe("ImdsWatcher against the IMDS emulator", () => {
  it("sees nothing while IMDS answers 404, then one notice with AWS's action and time", async () => {
    const imds = await emulator();
    const w = watcher(imds.endpoint);
    const notices: SpotNotice[] = [];
    const rebalances: unknown[] = [];
    w.on("notice", (n) => notices.push(n));
    w.on("rebalance", (r) => rebalances.push(r));
    await w.pollOnce();
    await w.pollOnce();
    expect(notices).toEqual([]);
    expect(rebalances).toEqual([]);

    const scheduled = imds.scheduleInterruption({ in: 20, action: "stop" });
    await w.pollOnce();
    await w.pollOnce();
    expect(notices).toHaveLength(1);
    expect(notices[0]?.action).toBe("stop");
    // AWS times have whole seconds.
    expect(notices[0]?.deadline).toBe(Math.floor(scheduled.deadline / 1000) * 1000);
    expect(rebalances).toEqual([]);

    // A changed notice (AWS may move from stop to terminate) is reported again.
    imds.scheduleInterruption({ in: 30, action: "terminate" });
    await w.pollOnce();
    expect(notices.map((n) => n.action)).toEqual(["stop", "terminate"]);
  });

  it("reports a rebalance recommendation once", async () => {
    const imds = await emulator();
    const w = watcher(imds.endpoint);
    const seen: number[] = [];
    w.on("rebalance", (r) => seen.push(r.noticeTime));
    imds.scheduleRebalance();
    await w.pollOnce();
    await w.pollOnce();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeGreaterThan(0);
  });

  it("delivers a notice scheduled to appear later through its own polling loop", async () => {
    const imds = await emulator();
    const w = watcher(imds.endpoint);
    imds.scheduleInterruption({ in: 30, noticeAfter: 0.3 });
    w.start();
    const [notice] = (await once(w, "notice")) as [SpotNotice];
    expect(notice.action).toBe("terminate");
    expect(notice.deadline).toBeGreaterThan(notice.seenAt);
  });

  it("keeps polling with backoff while IMDS is down, and sees the notice once it is back", async () => {
    const port = await freePort();
    const w = watcher(`http://127.0.0.1:${port}`);
    const failures: number[] = [];
    w.on("unreachable", ({ error, failures: n }) => {
      expect(error.code).toBe("AGENT_IMDS_FAILED");
      failures.push(n);
    });
    w.start();
    while (failures.length < 2) await once(w, "unreachable");
    expect(failures.slice(0, 2)).toEqual([1, 2]);
    const imds = await emulator(port);
    imds.scheduleInterruption({ in: 60 });
    const [notice] = (await once(w, "notice")) as [SpotNotice];
    expect(notice.action).toBe("terminate");
  });

  it("renews a session token that IMDS no longer accepts", async () => {
    const imds = await emulator();
    // The client's frozen clock believes its 1 s token is still fresh after IMDS expired it.
    const frozen = Date.now();
    const client = new ImdsClient({ endpoint: imds.endpoint, tokenTtlSeconds: 1, now: () => frozen });
    expect(await client.get("/latest/meta-data/instance-id")).toBe(imds.instanceId);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await client.get("/latest/meta-data/instance-id")).toBe(imds.instanceId);
    expect(await client.get("/latest/meta-data/spot/instance-action")).toBeUndefined();
  });

  it("names the body of a notice it cannot understand", () => {
    expect(() => parseNotice('{"action":"terminate"}')).toThrow(/unexpected body: \{"action":"terminate"\}/);
    expect(() => parseNotice("<html>")).toThrow(/non-JSON: <html>/);
    expect(parseNotice('{"action":"hibernate","time":"2030-01-01T00:00:00Z"}', 5)).toEqual({
      action: "hibernate",
      deadline: Date.parse("2030-01-01T00:00:00Z"),
      seenAt: 5,
    });
  });
});
