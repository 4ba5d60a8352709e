import { describe, expect, it } from "vitest";
import { slotStrip } from "../src/dashboard/snapshot.ts";
import { createEventRing } from "../src/observe/events.ts";
import { equalRanges } from "../src/routing/partition-map.ts";

describe("event ring", () => {
  it("keeps the newest events up to its size and tells subscribers", () => {
    const ring = createEventRing(3);
    const heard: string[] = [];
    const unsubscribe = ring.subscribe((e) => heard.push(e.text));
    for (const text of ["a", "b", "c", "d"]) ring.record("join", text);
    expect(ring.recent().map((e) => e.text)).toEqual(["b", "c", "d"]);
    unsubscribe();
    ring.record("move", "e");
    expect(heard).toEqual(["a", "b", "c", "d"]);
  });

  it("folds repeats of a folding kind into the newest entry, with a count", () => {
    const ring = createEventRing(3);
    ring.record("join", "w1 joining");
    for (let i = 1; i <= 50; i++) ring.record("checkpoint", `checkpoint ${i} written`, { fold: true });
    ring.record("move", "slots moved");
    ring.record("checkpoint", "checkpoint 51 written", { fold: true });
    expect(ring.recent().map((e) => [e.kind, e.text, e.count])).toEqual([
      ["checkpoint", "checkpoint 50 written", 50],
      ["move", "slots moved", 1],
      ["checkpoint", "checkpoint 51 written", 1],
    ]);
  });
});

describe("slot strip", () => {
  it("has a cell per slot for small maps and per range, by the majority owner, for large ones", () => {
    expect(slotStrip(equalRanges(8, ["w0", "w1"], 1))).toEqual({ slotsPerCell: 1, owners: ["w0", "w0", "w0", "w0", "w1", "w1", "w1", "w1"] });
    // 3 workers over 4096 slots in cells of 16: the cells where ranges meet go to the worker with more of their slots.
    const strip = slotStrip(equalRanges(4096, ["w0", "w1", "w2"], 1));
    expect(strip.slotsPerCell).toBe(16);
    expect(strip.owners).toHaveLength(256);
    expect(strip.owners.filter((o) => o === "w0")).toHaveLength(85);
    expect(strip.owners[85]).toBe("w1");
  });
});
