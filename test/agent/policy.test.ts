import { describe, expect, it } from "vitest";
import { CheckpointPolicy } from "../../agent/index.js";

const MiB = 1024 * 1024;

// A clock the test moves by hand: the policy is pure, so no test here waits.
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, set: (v: number) => (t = v), advance: (ms: number) => (t += ms) };
}

describe("CheckpointPolicy", () => {
  it("checkpoints every interval when a final dump fits the notice window easily", () => {
    const c = clock();
    const policy = new CheckpointPolicy({ now: c.now, intervalMs: 300_000 });
    expect(policy.next()).toEqual({ at: c.now() + 300_000, reason: "periodic", estimateMs: undefined });
    // 64 MiB in 4 s after 5 minutes: 16 MiB/s, a change rate far below what the window allows.
    const start = c.now() + 300_000;
    policy.recordCheckpoint({
      startedAt: start,
      totalMs: 4_000,
      freezeMs: 1_000,
      bytesLogical: 80 * MiB,
      bytesUploaded: 64 * MiB,
    });
    const due = policy.next();
    expect(due.reason).toBe("periodic");
    expect(due.at).toBe(start + 4_000 + 300_000);
    expect(policy.fitsWindow(due.at)).toBe(true);
  });

  it("checkpoints sooner when the changes since the last dump would no longer upload within the window", () => {
    const c = clock();
    const policy = new CheckpointPolicy({
      now: c.now,
      intervalMs: 300_000,
      noticeWindowMs: 20_000,
      reserveMs: 2_000,
      safetyFactor: 1.5,
      minGapMs: 1_000,
    });
    const t0 = c.now();
    // A task dirtying ~1 MiB/s (measured over the first 60 s) and a slow 8 MiB/s upload.
    policy.recordCheckpoint({
      startedAt: t0 + 60_000,
      totalMs: 8_000,
      freezeMs: 2_000,
      bytesLogical: 64 * MiB,
      bytesUploaded: 60 * MiB,
    });
    policy.recordCheckpoint({
      startedAt: t0 + 120_000,
      totalMs: 8_000,
      freezeMs: 2_000,
      bytesLogical: 64 * MiB,
      bytesUploaded: 60 * MiB,
    });
    const due = policy.next();
    expect(due.reason).toBe("deadline");
    expect(due.at).toBeLessThan(t0 + 128_000 + 300_000);
    expect(due.at).toBeGreaterThanOrEqual(t0 + 128_000 + 8_000);
    // At the due time the dump still fits the budget (12 s = (20 - 2) / 1.5); a little later it does not.
    expect(policy.budgetMs).toBe(12_000);
    expect(policy.fitsWindow(due.at)).toBe(true);
    expect(policy.fitsWindow(due.at + 5_000)).toBe(false);
    expect(due.estimateMs).toBeLessThanOrEqual(12_000);
  });

  it("never starts the next checkpoint sooner than the gap after the previous one, even when nothing fits", () => {
    const c = clock();
    // A dump's fixed cost alone (15 s) is over the 12 s budget: checkpoint as often as allowed.
    const policy = new CheckpointPolicy({
      now: c.now,
      noticeWindowMs: 20_000,
      reserveMs: 2_000,
      minGapMs: 3_000,
    });
    const t0 = c.now();
    policy.recordCheckpoint({
      startedAt: t0 + 10_000,
      totalMs: 15_000,
      freezeMs: 5_000,
      bytesLogical: MiB,
      bytesUploaded: MiB,
    });
    const due = policy.next();
    expect(due.reason).toBe("deadline");
    // The last dump took 15 s: the task gets at least as long to run before the next.
    expect(due.at).toBe(t0 + 10_000 + 15_000 + 15_000);
    expect(policy.fitsWindow(due.at)).toBe(false);
  });

  it("takes the first checkpoint early when the task's whole memory would not fit the window", () => {
    const c = clock();
    const policy = new CheckpointPolicy({
      now: c.now,
      noticeWindowMs: 30_000,
      minGapMs: 5_000,
      initialThroughputBps: 10 * MiB,
    });
    policy.taskStarted(c.now());
    policy.setTaskBytes(64 * MiB);
    expect(policy.next().reason).toBe("periodic");
    // 2 GiB at 10 MiB/s is ~205 s, far over the window: dump as soon as the gap allows.
    policy.setTaskBytes(2048 * MiB);
    expect(policy.next()).toMatchObject({ at: c.now() + 5_000, reason: "deadline" });
  });

  it("estimates a final dump from the measured throughput and the change since the last dump, capped at a full dump", () => {
    const c = clock();
    const policy = new CheckpointPolicy({ now: c.now, minThroughputSampleBytes: MiB });
    const t0 = c.now();
    expect(policy.estimateFinalMs()).toBeUndefined();
    // 40 MiB changed over 40 s (1 MiB/s); uploaded in 2 s => 20 MiB/s including fixed cost.
    policy.recordCheckpoint({
      startedAt: t0 + 40_000,
      totalMs: 2_000,
      freezeMs: 500,
      bytesLogical: 50 * MiB,
      bytesUploaded: 40 * MiB,
    });
    expect(policy.throughputBps).toBe(20 * MiB);
    expect(policy.changedBytes(t0 + 40_000)).toBe(0);
    expect(policy.changedBytes(t0 + 50_000)).toBeCloseTo(10 * MiB, -3);
    // Fixed cost (2 s, the quickest dump seen) plus 10 MiB at 20 MiB/s.
    expect(policy.estimateFinalMs(t0 + 50_000)).toBeCloseTo(2_500, 0);
    // Never more than the largest dump seen, however long it has been.
    expect(policy.changedBytes(t0 + 10_000_000)).toBe(40 * MiB);
    // A small dump does not move the throughput (it is mostly fixed cost), but lowers the fixed cost.
    policy.recordCheckpoint({
      startedAt: t0 + 100_000,
      totalMs: 800,
      freezeMs: 300,
      bytesLogical: MiB,
      bytesUploaded: MiB / 2,
    });
    expect(policy.throughputBps).toBe(20 * MiB);
    expect(policy.estimateFinalMs(t0 + 100_000)).toBe(800);
  });

  it("rejects options that make no sense, naming them", () => {
    expect(() => new CheckpointPolicy({ intervalMs: 0 })).toThrow(/intervalMs=0/);
    expect(() => new CheckpointPolicy({ smoothing: 2 })).toThrow(/smoothing=2/);
    expect(() => new CheckpointPolicy({ reserveMs: -1 })).toThrow(/reserveMs=-1/);
  });
});
