// A rate limiter kept as a virtual clock (GCRA): each grant pushes `availableAt` forward by the
// time the bytes take at `bytesPerSec`. A small burst allowance lets the sender catch up
// after timer lateness (setTimeout wakes ~1 ms late) without ever exceeding the rate by
// more than `burstMs` worth of bytes.
export class TokenBucket {
  private availableAt = 0;

  // bytesPerSec: the cap (Infinity = unlimited). burstMs: catch-up allowance, default 5.
  constructor(
    readonly bytesPerSec: number,
    private readonly burstMs = 5,
  ) {}

  // The earliest time (ms, same clock as `now`) at which `bytes` may be sent.
  earliest(now: number): number {
    if (!Number.isFinite(this.bytesPerSec)) return now;
    return Math.max(now, this.availableAt - this.burstMs);
  }

  // Records that `bytes` were sent at `at`.
  consume(at: number, bytes: number): void {
    if (!Number.isFinite(this.bytesPerSec)) return;
    this.availableAt = Math.max(this.availableAt, at) + (bytes * 1000) / this.bytesPerSec;
  }
}
