import { describe, expect, it } from "vitest";
import { pipeline } from "../src/index.ts";
import { createSlotOf } from "../src/routing/hash.ts";
import { equalRanges } from "../src/routing/partition-map.ts";
import { compileDataflow, type Dataflow } from "../src/runtime/dataflow.ts";

const SLOTS = 64;

// Two stages: count words, then re-key by first letter and count the words seen per letter.
const app = pipeline("p")
  .source("in")
  .flatMap((line) => line.split(" "))
  .keyBy((w) => w)
  .state(
    () => ({ n: 0 }),
    (w, s) => {
      s.n++;
      return { w, n: s.n };
    },
  )
  .keyBy((r) => r.w[0]!)
  .state(
    () => ({ seen: 0 }),
    (r, s) => {
      s.seen++;
      return `${r.w}:${r.n}`;
    },
  )
  .sink("out");

function perKey(lines: readonly unknown[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const line of lines as string[]) {
    const word = line.slice(0, line.indexOf(":"));
    groups.set(word, [...(groups.get(word) ?? []), line]);
  }
  return groups;
}

describe("dataflow across workers", () => {
  it("forwards records for slots another worker owns and gathers the same per-key outputs", async () => {
    const slotOf = await createSlotOf(SLOTS);
    const map = equalRanges(SLOTS, ["w0", "w1", "w2"], 1);
    const flows: Dataflow[] = [];
    const forwarded = [0, 0, 0];
    for (let self = 0; self < 3; self++) {
      flows.push(
        compileDataflow(app, {
          slotOf,
          placement: { map, self },
          forward: async (owner, stage, batch, withOrigins) => {
            forwarded[owner]! += batch.values.length;
            return flows[owner]!.runStage(stage, structuredClone(batch), withOrigins);
          },
        }),
      );
    }
    const single = compileDataflow(app, { slotOf, placement: { map: equalRanges(SLOTS, ["w0"], 1), self: 0 } });
    const lines = ["the quick brown fox", "jumps over the lazy dog", "the end of the quick tale"];
    const batch = { values: lines, position: 3n, recordIds: ["a", "b", "c"] };

    const distributed = await flows[0]!.process(batch, true);
    const alone = await single.process(batch, true);
    expect(forwarded[1]! + forwarded[2]!).toBeGreaterThan(0);
    expect(perKey(distributed.values)).toEqual(perKey(alone.values));
    expect(new Set(distributed.ids)).toEqual(new Set(alone.ids));
    expect(distributed.values).toHaveLength(15);
    // Each worker holds state only for the slots it owns.
    flows.forEach((flow, self) => {
      for (const store of flow.stores) {
        store.text.forEach((m, slot) => {
          if (m !== undefined) expect(map.owners[slot]).toBe(self);
        });
      }
    });
  });

  it("fails clearly when a slot is owned elsewhere and nothing can forward", async () => {
    const flow = compileDataflow(app, { slotOf: await createSlotOf(SLOTS), placement: { map: equalRanges(SLOTS, ["w0", "w1"], 1), self: 0 } });
    await expect(flow.process({ values: ["a b c d e f g h i j k l m n o p"], position: 1n }, false)).rejects.toThrow(/cannot forward/);
  });
});
