import { setImmediate as tick } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { BlockPool, isSlab, SLAB_BLOCKS } from "../../driver/read/block-pool.js";

describe("driver read block pool", () => {
  it("reuses a block's space only after every holder released it, and not in the same macrotask", async () => {
    const pool = new BlockPool(4096);
    const a = pool.take(4096);
    expect(isSlab(a.buffer)).toBe(true);
    a.fill(1);
    pool.hold(a); // e.g. the recent-blocks memory
    pool.release(a); // the fetch lets go: still held
    await tick();
    const others = Array.from({ length: SLAB_BLOCKS - 1 }, () => pool.take(4096));
    expect(others.some((b) => b.byteOffset === a.byteOffset)).toBe(false);
    pool.release(a); // the last holder
    // Same macrotask: a new take must not hand out a's space (a reader may still copy from it).
    const sameTick = pool.take(4096);
    expect(sameTick.buffer === a.buffer && sameTick.byteOffset === a.byteOffset).toBe(false);
    expect(a[0]).toBe(1);
    await tick();
    const later = pool.take(100);
    expect(later.buffer).toBe(a.buffer);
    expect(later.byteOffset).toBe(a.byteOffset);
    expect(later.length).toBe(100);
    expect(pool.stats.reused).toBeGreaterThan(0);
  });

  it("ignores buffers it did not hand out and refuses oversized blocks", async () => {
    const pool = new BlockPool(1024);
    const foreign = Buffer.alloc(1024);
    pool.hold(foreign);
    pool.release(foreign);
    pool.release(foreign);
    const shared = Buffer.from(new SharedArrayBuffer(1024));
    expect(isSlab(shared.buffer)).toBe(false);
    pool.release(shared);
    await tick();
    expect(pool.stats.reused).toBe(0);
    expect(() => pool.take(1025)).toThrow(/do not fit/);
  });

  it("a double release does not hand the same space out twice", async () => {
    const pool = new BlockPool(512);
    const a = pool.take(512);
    pool.release(a);
    pool.release(a);
    await tick();
    const taken = Array.from({ length: SLAB_BLOCKS + 1 }, () => pool.take(512));
    const slabIds = new Map<ArrayBufferLike, number>();
    const places = new Set(
      taken.map((b) => {
        if (!slabIds.has(b.buffer)) slabIds.set(b.buffer, slabIds.size);
        return `${slabIds.get(b.buffer)}:${b.byteOffset}`;
      }),
    );
    expect(places.size).toBe(taken.length);
  });
});
