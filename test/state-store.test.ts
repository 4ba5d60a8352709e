import { describe, expect, it } from "vitest";
import type { Key } from "../src/app/spec.ts";
import { createKeyHash, createSlotOf } from "../src/routing/hash.ts";
import { captureSlots, clearDirty, createStageStore, dropSlot, exportSlot, importSlot, passMark, peekState, putState, stateFor } from "../src/runtime/state-store.ts";
import { ErrorCode } from "../src/errors.ts";

const SLOTS = 4096;
const hashOf = await createKeyHash();
const slotOf8 = await createSlotOf(8);

/** A key of this slot among 8, named after `name`. */
function keyIn(slot: number, name: string): string {
  for (let i = 0; ; i++) if (slotOf8(`${name}${i}`) === slot) return `${name}${i}`;
}

/** stateFor with the key's real routing hash, as the dataflow calls it. */
const stateOf = (store: ReturnType<typeof createStageStore>, key: Key, init: (key: Key) => object) => stateFor(store, hashOf(key), key, init);

describe("keyed state store", () => {
  it("creates a million keys on the fly, each once, and finds them again", async () => {
    const store = createStageStore(SLOTS, hashOf);
    let inits = 0;
    const init = () => {
      inits++;
      return { n: 0 };
    };
    for (let i = 0; i < 1_000_000; i++) {
      const key = `k${i}`;
      (stateOf(store, key, init) as { n: number }).n += i;
    }
    expect(inits).toBe(1_000_000);
    expect(store.keyCount).toBe(1_000_000);
    for (let i = 0; i < 1_000_000; i += 997) {
      const key = `k${i}`;
      expect(stateOf(store, key, init)).toEqual({ n: i });
    }
    expect(inits).toBe(1_000_000);
  });

  it("exports one slot and imports it elsewhere, text and byte keys alike", async () => {
    const slotOf = await createSlotOf(SLOTS);
    const source = [createStageStore(SLOTS, hashOf), createStageStore(SLOTS, hashOf)];
    const init = () => ({ values: [] as number[] });
    const textKeys: string[] = [];
    for (let i = 0; textKeys.length < 50; i++) if (slotOf(`t${i}`) === 42) textKeys.push(`t${i}`);
    const byteKey = (() => {
      for (let i = 0; ; i++) {
        const b = new Uint8Array([0xff, 0x00, i & 0xff, i >> 8]);
        if (slotOf(b) === 42) return b;
      }
    })();
    textKeys.forEach((k, i) => (stateOf(source[0]!, k, init) as { values: number[] }).values.push(i, i * 2));
    (stateOf(source[1]!, byteKey, init) as { values: number[] }).values.push(99);
    const elsewhere = (() => {
      for (let i = 0; ; i++) if (slotOf(`e${i}`) !== 42) return `e${i}`;
    })();
    stateOf(source[0]!, elsewhere, init);

    const bytes = exportSlot(source, 42);
    const target = [createStageStore(SLOTS, hashOf), createStageStore(SLOTS, hashOf)];
    importSlot(target, 42, bytes);

    expect(target[0]!.keyCount).toBe(50);
    expect(target[1]!.keyCount).toBe(1);
    textKeys.forEach((k, i) => expect(stateOf(target[0]!, k, init)).toEqual({ values: [i, i * 2] }));
    expect(stateOf(target[1]!, byteKey, init)).toEqual({ values: [99] });
    // The text key with the same characters as the byte key is a different key.
    const sameChars = Buffer.from(byteKey).toString("latin1");
    expect(stateFor(target[1]!, hashOf(byteKey), sameChars, init)).toEqual({ values: [] });
    expect(target[0]!.keyCount).toBe(50);

    dropSlot(source[0]!, 42);
    expect(source[0]!.keyCount).toBe(1);
  });

  it("encodes states with a user codec when one is given", () => {
    const codec = {
      encode: (s: object) => new TextEncoder().encode(String((s as { n: number }).n)),
      decode: (b: Uint8Array) => ({ n: Number(new TextDecoder().decode(b)), decoded: true }),
    };
    const store = createStageStore(8, hashOf, codec);
    const a = keyIn(3, "a");
    (stateOf(store, a, () => ({ n: 0 })) as { n: number }).n = 17;
    const target = createStageStore(8, hashOf, codec);
    importSlot([target], 3, exportSlot([store], 3));
    expect(stateOf(target, a, () => ({ n: 0 }))).toEqual({ n: 17, decoded: true });
  });

  it("refuses bytes that are not an exported slot with a typed error", () => {
    const store = createStageStore(8, hashOf);
    expect(() => importSlot([store], 1, new Uint8Array([1, 2, 3]))).toThrow(expect.objectContaining({ code: ErrorCode.MALFORMED }));
    expect(() => importSlot([store, store], 1, exportSlot([store], 1))).toThrow(expect.objectContaining({ code: ErrorCode.MALFORMED }));
  });

  it("refuses a state init that returns no object", () => {
    const store = createStageStore(8, hashOf);
    expect(() => stateOf(store, "a", () => 5 as unknown as object)).toThrow(expect.objectContaining({ code: ErrorCode.BAD_APP }));
  });

  it("marks a slot dirty where its state may change, and a capture clears what it took", () => {
    const stores = [createStageStore(8, hashOf), createStageStore(8, hashOf)];
    const init = () => ({ n: 0 });
    const dirtySlots = () => [0, 1, 2, 3, 4, 5, 6, 7].filter((slot) => stores.some((s) => s.dirty[slot] === 1));
    (stateOf(stores[0]!, keyIn(1, "a"), init) as { n: number }).n = 1;
    (stateOf(stores[1]!, keyIn(2, "b"), init) as { n: number }).n = 2;
    stateOf(stores[0]!, keyIn(3, "c"), init);
    expect(dirtySlots()).toEqual([1, 2, 3]);

    // The first capture of everything: a base, every occupied slot, nothing dirty after it.
    const all = captureSlots(stores, true);
    expect(all.slots.map(([slot]) => slot)).toEqual([1, 2, 3]);
    expect(all.complete).toBe(true);
    expect(dirtySlots()).toEqual([]);

    // A read for update, a moved mark, an import and a drop each make their slot dirty.
    stateOf(stores[1]!, keyIn(2, "b"), init);
    expect(passMark(stores[0]!, 5, "src", 1, 0)).toBe(true);
    expect(passMark(stores[0]!, 5, "src", 1, 0)).toBe(false);
    importSlot(stores, 6, exportSlot(stores, 1));
    dropSlot(stores[0]!, 3);
    expect(dirtySlots()).toEqual([2, 3, 5, 6]);

    // A delta: the dirty slots only, an emptied one as null; slot 1 is unchanged, so it is not complete.
    const delta = captureSlots(stores, false);
    expect(delta.slots.map(([slot, state]) => [slot, state === null])).toEqual([[2, false], [3, true], [5, false], [6, false]]);
    expect(delta.complete).toBe(false);
    expect(dirtySlots()).toEqual([]);
    // A slot whose replayed mark did not move stays clean.
    expect(passMark(stores[0]!, 5, "src", 0, 9)).toBe(false);
    expect(captureSlots(stores, false)).toEqual({ slots: [], complete: false });

    // Every occupied slot changed: the capture is the whole state.
    for (const slot of [1, 2, 5, 6]) stateOf(stores[0]!, keyIn(slot, "x"), init);
    expect(captureSlots(stores, false).complete).toBe(true);

    stateOf(stores[0]!, keyIn(7, "y"), init);
    clearDirty(stores);
    expect(dirtySlots()).toEqual([]);
  });

  it("keeps every key of a slot findable as its table grows, and lets a state be looked at or replaced", () => {
    const store = createStageStore(1, hashOf);
    const keys = Array.from({ length: 5000 }, (_, i) => (i % 3 === 0 ? new TextEncoder().encode(`b${i}`) : `k${i}`));
    keys.forEach((key, i) => ((stateOf(store, key, () => ({ n: 0 })) as { n: number }).n = i));
    expect(store.keyCount).toBe(5000);
    keys.forEach((key, i) => expect(peekState(store, hashOf(key), key)).toEqual({ n: i }));
    expect(peekState(store, hashOf("absent"), "absent")).toBeUndefined();
    putState(store, hashOf("k1"), "k1", { n: -1 });
    putState(store, hashOf("new"), "new", { n: -2 });
    expect(store.keyCount).toBe(5001);
    expect(stateOf(store, "k1", () => ({ n: 0 }))).toEqual({ n: -1 });
    const copy = createStageStore(1, hashOf);
    importSlot([copy], 0, exportSlot([store], 0));
    expect(copy.keyCount).toBe(5001);
    keys.forEach((key, i) => expect(peekState(copy, hashOf(key), key)).toEqual({ n: i === 1 ? -1 : i }));
  });
});
