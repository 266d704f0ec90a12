// When to checkpoint next: periodically, and sooner when a final dump would no longer fit
// in a spot notice window. Pure and clock-injected: the agent feeds it what it measured
// and asks it for the next due time; nothing here waits or does I/O.

const MiB = 1024 * 1024;

// What one committed checkpoint measured.
export interface CheckpointSample {
  // When it started, on the policy's clock (ms).
  startedAt: number;
  // From its start until its manifest was committed.
  totalMs: number;
  freezeMs: number;
  // Bytes of images CRIU wrote, and bytes uploaded after dedup and compression.
  bytesLogical: number;
  bytesUploaded: number;
}

export interface CheckpointPolicyOptions {
  // Periodic checkpoint interval. Default 5 minutes.
  intervalMs?: number;
  // The time a final dump must fit in (between a spot notice and the reclaim). Default 120 s.
  noticeWindowMs?: number;
  // The final dump is assumed to take this many times its estimate. Default 1.5.
  safetyFactor?: number;
  // Kept back from the window for what follows the dump (flush, unmount, exit). Default 5 s.
  reserveMs?: number;
  // Least time between the end of one checkpoint and the start of the next, so the task
  // keeps running most of the time. The last checkpoint's duration is used when longer.
  // Default 10 s.
  minGapMs?: number;
  // Upload throughput assumed until one is measured, in bytes per second. Default 20 MiB/s.
  initialThroughputBps?: number;
  // Fixed cost of a checkpoint (CRIU start, manifest) assumed until measured. Default 2 s.
  initialFixedMs?: number;
  // Weight of the newest sample in the moving averages, 0-1. Default 0.5.
  smoothing?: number;
  // Samples smaller than this do not update the throughput (their time is mostly fixed
  // cost). Default 4 MiB.
  minThroughputSampleBytes?: number;
  // Clock (ms). Default Date.now.
  now?: () => number;
}

export type DueReason = "periodic" | "deadline";

export interface CheckpointDue {
  // When the next checkpoint should start (ms, the policy's clock).
  at: number;
  reason: DueReason;
  // Estimated duration of a final dump started at `at`, when one can be estimated.
  estimateMs: number | undefined;
}

const DEFAULTS = {
  intervalMs: 5 * 60_000,
  noticeWindowMs: 120_000,
  safetyFactor: 1.5,
  reserveMs: 5_000,
  minGapMs: 10_000,
  initialThroughputBps: 20 * MiB,
  initialFixedMs: 2_000,
  smoothing: 0.5,
  minThroughputSampleBytes: 4 * MiB,
} as const;

export class CheckpointPolicy {
  private readonly o: Required<Omit<CheckpointPolicyOptions, "now">>;
  private readonly now: () => number;
  private taskStartedAt: number;
  private last: CheckpointSample | undefined;
  // Uploaded bytes per ms, and fixed cost per checkpoint, as measured.
  private throughputPerMs: number;
  private fixedMs: number;
  private measuredThroughput = false;
  // Bytes (as uploaded) the task changes per ms of running, as measured.
  private dirtyPerMs: number | undefined;
  // Upper bound of what one dump can upload: the largest dump seen.
  private largestUpload = 0;
  private taskBytes: number | undefined;

  constructor(options: CheckpointPolicyOptions = {}) {
    const { now, ...rest } = options;
    this.o = { ...DEFAULTS, ...stripUndefined(rest) };
    for (const [name, value] of Object.entries(this.o)) {
      if (!Number.isFinite(value) || value < 0)
        throw new RangeError(`CheckpointPolicy option ${name}=${value} must be a finite number >= 0`);
    }
    if (this.o.intervalMs <= 0) throw new RangeError(`intervalMs=${this.o.intervalMs} must be > 0`);
    if (this.o.smoothing <= 0 || this.o.smoothing > 1)
      throw new RangeError(`smoothing=${this.o.smoothing} must be in (0, 1]`);
    this.now = now ?? Date.now;
    this.taskStartedAt = this.now();
    this.throughputPerMs = this.o.initialThroughputBps / 1000;
    this.fixedMs = this.o.initialFixedMs;
  }

  // The task (re)started now: the first checkpoint is counted from here.
  taskStarted(at = this.now()): void {
    this.taskStartedAt = at;
  }

  // The task's memory size (e.g. its RSS), used to estimate a dump before the first one.
  setTaskBytes(bytes: number): void {
    this.taskBytes = bytes;
  }

  // Records a committed checkpoint and updates the measured throughput and change rate.
  recordCheckpoint(sample: CheckpointSample): void {
    const a = this.o.smoothing;
    const previousStart = this.last?.startedAt ?? this.taskStartedAt;
    const ranMs = Math.max(1, sample.startedAt - previousStart);
    const rate = sample.bytesUploaded / ranMs;
    this.dirtyPerMs = this.dirtyPerMs === undefined ? rate : a * rate + (1 - a) * this.dirtyPerMs;
    if (sample.bytesUploaded >= this.o.minThroughputSampleBytes && sample.totalMs > 0) {
      // Time includes the fixed cost, so this underestimates throughput: the safe side.
      const measured = sample.bytesUploaded / sample.totalMs;
      this.throughputPerMs = this.measuredThroughput
        ? a * measured + (1 - a) * this.throughputPerMs
        : measured;
      this.measuredThroughput = true;
    }
    // The quickest checkpoint seen bounds the fixed cost from above.
    this.fixedMs = this.last === undefined ? sample.totalMs : Math.min(this.fixedMs, sample.totalMs);
    this.largestUpload = Math.max(this.largestUpload, sample.bytesUploaded);
    this.last = sample;
  }

  // Measured (or assumed) upload throughput in bytes per second.
  get throughputBps(): number {
    return this.throughputPerMs * 1000;
  }

  // The time a final dump may take for it to fit in the notice window.
  get budgetMs(): number {
    return (this.o.noticeWindowMs - this.o.reserveMs) / this.o.safetyFactor;
  }

  // Bytes a dump started at `at` would upload, or undefined when nothing is known yet.
  changedBytes(at = this.now()): number | undefined {
    if (this.last === undefined || this.dirtyPerMs === undefined) return this.taskBytes;
    const grown = this.dirtyPerMs * Math.max(0, at - this.last.startedAt);
    return Math.min(grown, Math.max(this.largestUpload, this.taskBytes ?? 0));
  }

  // Estimated duration of a final dump started at `at`.
  estimateFinalMs(at = this.now()): number | undefined {
    const bytes = this.changedBytes(at);
    if (bytes === undefined) return undefined;
    return this.fixedMs + bytes / this.throughputPerMs;
  }

  // Whether a final dump started at `at` is expected to fit in the notice window.
  fitsWindow(at = this.now()): boolean {
    const estimate = this.estimateFinalMs(at);
    return estimate === undefined || estimate <= this.budgetMs;
  }

  // When the next (leave-running) checkpoint is due, and why.
  next(): CheckpointDue {
    const last = this.last;
    const endedAt = last ? last.startedAt + last.totalMs : this.taskStartedAt;
    const earliest = last ? endedAt + Math.max(this.o.minGapMs, last.totalMs) : this.taskStartedAt;
    const periodic = endedAt + this.o.intervalMs;
    const deadline = this.latestFittingStart();
    let at = periodic;
    let reason: DueReason = "periodic";
    if (deadline !== undefined && deadline < periodic) {
      at = deadline;
      reason = "deadline";
    }
    at = Math.max(at, earliest);
    return { at, reason, estimateMs: this.estimateFinalMs(at) };
  }

  // The latest time a final dump would still fit the window, if the window limits it.
  private latestFittingStart(): number | undefined {
    const spare = this.budgetMs - this.fixedMs;
    if (this.last === undefined || this.dirtyPerMs === undefined) {
      if (this.taskBytes === undefined) return undefined;
      // Before the first dump the whole task must go: early if that would not fit.
      const fits = this.fixedMs + this.taskBytes / this.throughputPerMs <= this.budgetMs;
      return fits ? undefined : this.taskStartedAt + this.o.minGapMs;
    }
    if (spare <= 0) return this.last.startedAt;
    if (this.dirtyPerMs === 0) return undefined;
    return this.last.startedAt + Math.floor((spare * this.throughputPerMs) / this.dirtyPerMs);
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
