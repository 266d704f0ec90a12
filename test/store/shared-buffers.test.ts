// SharedBufferPool: the buffers lent to codec workers (batch, object, pack and GET buffers).
import { describe, expect, it } from "vitest";
import { SharedBufferPool } from "../../store/chunk/shared-buffers.js";

const MiB = 1024 * 1024;

describe("SharedBufferPool", () => {
  it("hands a given-back buffer out again, only for a request it fits without waste", () => {
    const pool = new SharedBufferPool(4);
    const big = pool.take(4 * MiB);
    expect(big.byteLength).toBe(4 * MiB);
    // Rounded up: 64 KiB units below 1 MiB, 1 MiB units above.
    expect(pool.take(100_000).byteLength).toBe(128 * 1024);
    expect(pool.take(MiB + 1).byteLength).toBe(2 * MiB);
    pool.give(big);
    // A 100 KB request does not take a 4 MiB spare; a 3 MiB one does (at most twice its size).
    expect(pool.take(100_000)).not.toBe(big);
    expect(pool.spares).toBe(1);
    expect(pool.take(3 * MiB)).toBe(big);
    expect(pool.spares).toBe(0);
    pool.clear();
  });

  it("keeps at most maxSpare buffers, and drops them all after idleMs without a give", async () => {
    const pool = new SharedBufferPool(2, 50);
    for (let i = 0; i < 3; i++) pool.give(new SharedArrayBuffer(MiB));
    expect(pool.spares).toBe(2);
    await new Promise((done) => setTimeout(done, 20));
    pool.give(new SharedArrayBuffer(MiB)); // full: ignored, and does not re-arm the timer
    expect(pool.spares).toBe(2);
    await new Promise((done) => setTimeout(done, 120));
    expect(pool.spares).toBe(0);
    // Works again after being emptied.
    const b = new SharedArrayBuffer(MiB);
    pool.give(b);
    expect(pool.take(MiB)).toBe(b);
    pool.clear();
  });
});
