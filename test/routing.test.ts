import { describe, expect, it } from "vitest";
import { createKeyHash, createSlotOf, SLOT_COUNT_DEFAULT } from "../src/routing/hash.ts";
import { equalRanges, rangesOf } from "../src/routing/partition-map.ts";
import { KeywayError } from "../src/errors.ts";
import { SHORT_KEY_MAX, xxh64HighShortAscii } from "../src/routing/xxh64-short.ts";
import xxhash from "xxhash-wasm";

describe("slotOf", () => {
  it("takes the top bits of xxhash64 over the key's UTF-8 bytes", async () => {
    const slotOf = await createSlotOf(SLOT_COUNT_DEFAULT);
    // xxhash64("hello", seed 0) = 0x26c7827d889f6da3; its top 12 bits are 0x26c.
    expect(slotOf("hello")).toBe(0x26c);
    expect(slotOf(new TextEncoder().encode("hello"))).toBe(0x26c);
    expect(slotOf("größe")).toBe(slotOf(new TextEncoder().encode("größe")));
  });

  it("hashes short ASCII keys in JavaScript exactly as xxhash-wasm does, and leaves the rest to it", async () => {
    const { h64 } = await xxhash();
    let seed = 7;
    const nextChar = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return String.fromCharCode(seed % 128);
    };
    for (let length = 0; length <= SHORT_KEY_MAX; length++) {
      for (let n = 0; n < 300; n++) {
        let key = "";
        for (let i = 0; i < length; i++) key += nextChar();
        expect(xxh64HighShortAscii(key)).toBe(Number(h64(key) >> 32n));
      }
    }
    expect(xxh64HighShortAscii("\x7f".repeat(SHORT_KEY_MAX))).toBe(Number(h64("\x7f".repeat(SHORT_KEY_MAX)) >> 32n));
    expect(xxh64HighShortAscii("x".repeat(SHORT_KEY_MAX + 1))).toBe(-1);
    for (const key of ["é", "abcdefgé", "abcé", "aé", "\u0080"]) expect(xxh64HighShortAscii(key)).toBe(-1);
    const slotOf = await createSlotOf(SLOT_COUNT_DEFAULT);
    const hashOf = await createKeyHash();
    for (const key of ["x".repeat(40), "größe", "abcdefgh", "abcdefghijkl", "hello"]) {
      expect(slotOf(key)).toBe(Number(h64(key) >> 52n));
      // The routing hash is the high half as a signed 32-bit number.
      expect(hashOf(key)).toBe(Number(BigInt.asIntN(32, h64(key) >> 32n)));
    }
  });

  it("spreads keys evenly over the slots", async () => {
    const slotOf = await createSlotOf(16);
    const counts = new Array(16).fill(0);
    for (let i = 0; i < 160_000; i++) counts[slotOf(`key-${i}`)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });

  it("maps everything to slot 0 with one slot", async () => {
    const slotOf = await createSlotOf(1);
    expect(slotOf("a")).toBe(0);
    expect(slotOf("zzz")).toBe(0);
  });

  it("refuses a slot count that is not a power of two", async () => {
    await expect(createSlotOf(1000)).rejects.toThrow(KeywayError);
    await expect(createSlotOf(0)).rejects.toThrow(/power of two/);
    await expect(createSlotOf(131072)).rejects.toThrow(/power of two/);
  });
});

describe("partition map", () => {
  it("gives each worker one contiguous range of equal size", () => {
    const map = equalRanges(4096, ["a", "b", "c"], 7);
    expect(map.epoch).toBe(7);
    expect(rangesOf(map, "a")).toEqual([[0, 1365]]);
    expect(rangesOf(map, "b")).toEqual([[1365, 2730]]);
    expect(rangesOf(map, "c")).toEqual([[2730, 4096]]);
  });

  it("gives a single worker every slot", () => {
    const map = equalRanges(4096, ["w0"], 1);
    expect(rangesOf(map, "w0")).toEqual([[0, 4096]]);
    expect(map.owners.every((o) => o === 0)).toBe(true);
  });
});
