// native/page-hash: the codec workers' quick hash, checked against an independent XXH3-128
// (hash-wasm, a WebAssembly build, seeded the same way) over page sizes, partial last pages,
// seeds at both ends of the range and SharedArrayBuffer-backed views at an offset.
import { randomBytes, randomFillSync } from "node:crypto";
import { createXXHash128 } from "hash-wasm";
import { describe, expect, it } from "vitest";
import { loadHashPages, requirePageHashModule } from "../../common/page-hash.js";

const hashPages = loadHashPages();

async function reference(data: Uint8Array, page: number, seed: bigint): Promise<string[]> {
  const xx = await createXXHash128(Number(seed & 0xffffffffn), Number(seed >> 32n));
  const out: string[] = [];
  for (let at = 0; at < data.length; at += page) {
    xx.init();
    xx.update(data.subarray(at, Math.min(data.length, at + page)));
    out.push(xx.digest("hex"));
  }
  return out;
}

function split(out: Buffer, pages: number): string[] {
  return Array.from({ length: pages }, (_, p) => out.subarray(p * 16, p * 16 + 16).toString("hex"));
}

describe("hashPages (native/page-hash)", () => {
  it("gives each page's seeded XXH3-128, as hash-wasm does, for whole and partial last pages", async () => {
    const seeds = [0n, 1n, 0xffffffffffffffffn, randomBytes(8).readBigUInt64LE(0)];
    for (const [length, page] of [
      [65536, 4096],
      [65536 - 100, 4096],
      [4096 * 3 + 1, 4096],
      [1000, 4096],
      [777, 100],
      [16, 1],
    ] as const) {
      const data = randomFillSync(Buffer.alloc(length));
      const pages = Math.ceil(length / page);
      for (const seed of seeds) {
        const out = Buffer.alloc(pages * 16);
        hashPages(data, page, seed, out);
        expect(split(out, pages), `${length} bytes in pages of ${page}, seed ${seed}`).toEqual(
          await reference(data, page, seed),
        );
      }
    }
  });

  it("reads and writes SharedArrayBuffer views in place, at their offsets, and nothing else", async () => {
    const shared = new SharedArrayBuffer(3 * 4096 + 64);
    const bytes = new Uint8Array(shared);
    randomFillSync(bytes);
    const data = Buffer.from(shared, 64, 3 * 4096);
    const out = Buffer.from(new SharedArrayBuffer(100));
    out.fill(0xee);
    hashPages(data, 4096, 42n, out.subarray(2, 2 + 48));
    expect(split(out.subarray(2), 3)).toEqual(await reference(data, 4096, 42n));
    expect(out[0]).toBe(0xee);
    expect(out[1]).toBe(0xee);
    expect([...out.subarray(50)].every((b) => b === 0xee)).toBe(true);
    // A typed array of wider elements counts in bytes; no data writes nothing.
    const words = new Uint32Array(shared, 64, 1024);
    const one = Buffer.alloc(16);
    hashPages(words, 4096, 42n, one);
    expect(one.toString("hex")).toBe(split(out.subarray(2), 1)[0]);
    const untouched = Buffer.alloc(16, 7);
    hashPages(Buffer.alloc(0), 4096, 42n, untouched);
    expect([...untouched].every((b) => b === 7)).toBe(true);
  });

  it("depends on the seed", () => {
    const data = randomFillSync(Buffer.alloc(4096));
    const a = Buffer.alloc(16);
    const b = Buffer.alloc(16);
    hashPages(data, 4096, 1n, a);
    hashPages(data, 4096, 2n, b);
    expect(a.equals(b)).toBe(false);
  });

  it("refuses bad arguments with a clear error instead of reading or writing out of bounds", () => {
    const data = Buffer.alloc(8192);
    const call =
      (...args: unknown[]) =>
      () =>
        (hashPages as unknown as (...a: unknown[]) => void)(...args);
    expect(call(data, 4096, 1n, Buffer.alloc(31))).toThrow(/out must hold 16 bytes per page/);
    expect(call(data, 4096, 1n, Buffer.alloc(31))).toThrow(RangeError);
    expect(call("text", 4096, 1n, Buffer.alloc(32))).toThrow(/data must be a typed array/);
    expect(call(data, 4096, 1n, [])).toThrow(/out must be a typed array/);
    expect(call(new DataView(data.buffer), 4096, 1n, Buffer.alloc(32))).toThrow(/data must be a typed array/);
    expect(call(data, 0, 1n, Buffer.alloc(32))).toThrow(/pageBytes must be a positive integer/);
    expect(call(data, 4096, 1, Buffer.alloc(32))).toThrow(/seed must be a BigInt/);
    expect(call(data, 4096, -1n, Buffer.alloc(32))).toThrow(/seed must be a BigInt/);
    expect(call(data, 4096, 1n << 64n, Buffer.alloc(32))).toThrow(/seed must be a BigInt/);
    expect(call(data, 4096, 1n)).toThrow(/takes 4 arguments/);
  });

  it("says how to build the module when it is missing", () => {
    expect(() => requirePageHashModule("/nonexistent/page_hash.node")).toThrow(
      expect.objectContaining({
        code: "NATIVE_MODULE_MISSING",
        message: expect.stringContaining("scripts/setup.sh"),
      }),
    );
  });
});
